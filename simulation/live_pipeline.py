"""The live loop's data and training side: logged plays -> example spans -> a candidate.

This module owns what happens to a day's plays after the listeners are gone: they are
written as a Parquet file in the common event schema (the simulated history of day 0 is
the first), ``features.own_logs.build_examples`` (the job behind `melody data examples`)
turns every logged day into ``examples/span-YYYYMMDD/`` folders, and the scheduled
pipeline (``pipeline.window_runs``: local runner, rolling window, warm start from the
last pushed model) runs the day's span. A blessed model is pushed under the serving
directory; the version it got is the candidate the loop serves as ``canary``.
"""

import dataclasses
import datetime
import os
import shutil
from typing import Dict, List, Optional, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from features import events as events_lib
from features import own_logs
from pipeline import configs
from pipeline import rollback as rollback_lib
from pipeline import window_runs


@dataclasses.dataclass(frozen=True)
class TrainingOptions:
  """How small each day's training is (the loop must fit its time budget).

  Attributes:
    steps: Trainer steps of a cold-started run (the bootstrap's, the drill's).
    warm_steps: Trainer steps of a daily run, which warm-starts from the last pushed
      model and so only has to take in the window's newest day.
    eval_steps: Evaluation steps per run.
    window_days: Days of spans each run trains on.
    shards: Files per split and span.
  """
  steps: int = 60
  warm_steps: int = 30
  eval_steps: int = 2
  window_days: int = 2
  shards: int = 1

  def __post_init__(self):
    for name in ("steps", "warm_steps", "eval_steps", "window_days", "shards"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")

  def warm(self) -> "TrainingOptions":
    """These options for a warm-started daily run (``warm_steps`` Trainer steps)."""
    return dataclasses.replace(self, steps=self.warm_steps)


@dataclasses.dataclass
class CandidateRun:
  """A day's pipeline run.

  Attributes:
    span: The day's span (YYYYMMDD).
    pushed_version: The version the Pusher wrote, or None (not blessed, or not run).
    note: What happened, for the report.
  """
  span: int
  pushed_version: Optional[int]
  note: str


def span_of(ts: int) -> int:
  """The span (YYYYMMDD, UTC) holding epoch second ``ts``."""
  return int(datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y%m%d"))


def write_events(logged_dir: str, name: str, rows: Sequence[Dict[str, object]]) -> str:
  """Writes play events (dicts with at least the EVENT_SCHEMA fields) as
  ``logged_dir/<name>.parquet``; returns its path."""
  os.makedirs(logged_dir, exist_ok=True)
  columns = {field.name: [row.get(field.name) for row in rows]
             for field in events_lib.EVENT_SCHEMA}
  table = pa.Table.from_pydict(columns, schema=events_lib.EVENT_SCHEMA)
  path = os.path.join(logged_dir, f"{name}.parquet")
  pq.write_table(table, path)
  return path


def write_table(logged_dir: str, name: str, table: pa.Table) -> str:
  """Writes an EVENT_SCHEMA table as ``logged_dir/<name>.parquet``; returns its path."""
  os.makedirs(logged_dir, exist_ok=True)
  path = os.path.join(logged_dir, f"{name}.parquet")
  pq.write_table(table, path)
  return path


def build_spans(logged_dir: str, tracks_path: str, data_dir: str,
                options: TrainingOptions) -> List[str]:
  """Every logged day to example spans under ``data_dir``; returns the span names."""
  manifest = own_logs.build_examples(logged_dir, tracks_path, data_dir, span_by="day",
                                     shards=options.shards)
  return list(manifest["spans"])


def versions(serving_dir: str) -> List[int]:
  """The pushed versions, oldest first."""
  return [int(v) for v in rollback_lib.versions(serving_dir)]


def copy_version(model_dir: str, serving_dir: str, version: int) -> str:
  """Copies the SavedModel ``model_dir`` to ``serving_dir/<version>``; returns that path.

  The copy is made under a name the model server ignores and then renamed, so a server
  watching ``serving_dir`` never sees half a model.
  """
  os.makedirs(serving_dir, exist_ok=True)
  partial = os.path.join(serving_dir, f".partial-{version}")
  shutil.rmtree(partial, ignore_errors=True)
  shutil.copytree(model_dir, partial)
  target = os.path.join(serving_dir, str(version))
  os.rename(partial, target)
  return target


def adopt_version(source_serving_dir: str, serving_dir: str) -> int:
  """Copies the newest version another run pushed (e.g. `make demo`'s pipeline) into
  ``serving_dir`` under the same number; returns the number.

  Raises:
    ValueError: ``source_serving_dir`` holds no version.
  """
  found = versions(source_serving_dir)
  if not found:
    raise ValueError(f"no pushed version under {source_serving_dir}")
  copy_version(os.path.join(source_serving_dir, str(found[-1])), serving_dir, found[-1])
  return found[-1]


def pipeline_config(data_dir: str, workdir: str,
                    options: TrainingOptions) -> configs.PipelineConfig:
  # Transform's TFDV statistics are for a person to inspect and no component reads
  # them; a daily run skips them.
  return configs.local_config(data_dir, workdir, train_steps=options.steps,
                              eval_steps=options.eval_steps, transform_statistics=False)


def train_candidate(data_dir: str, workdir: str, span: int,
                    options: TrainingOptions, verbose: bool = False) -> CandidateRun:
  """Runs the scheduled pipeline on ``span`` (its window: the ``window_days`` days ending
  with it); returns the version it pushed, if any.

  The drift gate is off: live days are served on the ``home`` surface through the
  gateway while the history's logging policy spread plays over every surface, so the
  first live span always differs from the history in ``context_surface`` by design.
  """
  config = pipeline_config(data_dir, workdir, options)
  before = set(versions(config.serving_dir))
  try:
    # The day's span alone: a day without a run (the drill's) is in the window of the
    # next run's training data, not run on its own afterwards.
    outcomes = window_runs.run_spans(config, options.window_days, span=span,
                                     verbose=verbose, drift_check=False)
  except Exception as e:  # pylint: disable=broad-except
    # A failed run is a day without a candidate, not the end of the loop.
    return CandidateRun(span, None, f"pipeline failed: {type(e).__name__}: {e}")
  new = sorted(set(versions(config.serving_dir)) - before)
  notes = []
  for outcome in outcomes:
    if outcome.run is None:
      notes.append(f"{window_runs.span_name(outcome.span)} skipped ({outcome.skipped})")
    else:
      notes.append(f"{window_runs.span_name(outcome.span)} "
                   f"{'pushed' if outcome.run.pushed else 'not blessed'}")
  return CandidateRun(span, new[-1] if new else None, "; ".join(notes) or "no span to run")
