"""Scheduled local runs over a rolling window of day spans, caught up in order, pushed once.

A dataset written with the span layout (``examples/span-YYYYMMDD/``, by ``melody data
examples`` or ``melody data generate --span-layout``) gains one span a day. A scheduled
run for span S (``melody pipeline run --window-days N``):

* trains on the spans of the N days ending with S and evaluates on S alone: the window's
  inputs are one folder per run, ``WORKDIR/window_inputs/span-S/examples/span-S/``, with
  links to the train files of every span in the window and to the eval files of S, so
  ImportExampleGen reads one span (recorded as span S in ML Metadata) and its Examples
  artifact points at exactly what was used;
* checks the new span against the one before it (``pipeline.drift_gate``), and against
  logged serving requests when given (``pipeline.skew_gate``), before TFX starts;
* warm-starts the Trainer from the latest pushed version (``pipeline.warm_start``);
* records the window's span names on the run's ``pipeline_run`` context in ML Metadata
  (``window_spans``), which ``melody pipeline runs`` shows.

Which spans run: every span after the newest one a COMPLETE run already covered, oldest
first, up to ``until`` (default: the newest span) — a missed day is caught up before the
next one; on a first run, only the newest span. A span that a run already pushed is
skipped, so re-running it never pushes twice, and a span lock (``pipeline.span_lock``)
keeps two runners of one span from running (and pushing) at the same time.
"""

import dataclasses
import datetime
import os
import re
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple

from pipeline import configs
from pipeline import drift_gate
from pipeline import local_runner
from pipeline import runs
from pipeline import skew_gate
from pipeline import span_lock
from pipeline import warm_start

SPAN_DIR = re.compile(r"^span-(\d{8})$")


def span_name(span: int) -> str:
  return f"span-{span:08d}"


def _date(span: int) -> datetime.date:
  return datetime.datetime.strptime(str(span), "%Y%m%d").date()


def available_spans(data_root: str, listdir: Callable[[str], List[str]] = os.listdir
                    ) -> List[int]:
  """The spans (YYYYMMDD numbers) under ``data_root/examples``, oldest first.

  Args:
    data_root: the dataset's root.
    listdir: lists a folder's names (another filesystem's, e.g. an object store's);
      raises FileNotFoundError for a missing folder.
  """
  try:
    names = listdir(os.path.join(data_root, "examples"))
  except (FileNotFoundError, NotADirectoryError):
    return []
  return sorted(int(m.group(1)) for m in map(SPAN_DIR.match, names) if m)


def window(span: int, available: Sequence[int], days: int) -> Tuple[int, ...]:
  """The available spans of the ``days`` calendar days ending with ``span``."""
  if days < 1:
    raise ValueError(f"window days must be >= 1, got {days}")
  first = _date(span) - datetime.timedelta(days=days - 1)
  return tuple(s for s in available if first <= _date(s) <= _date(span))


def pending(available: Sequence[int], covered: Sequence[int],
            until: Optional[int] = None) -> List[int]:
  """Spans still to run, oldest first: those after the newest covered one (all missed
  days), or only the newest when nothing is covered yet."""
  candidates = [s for s in available if until is None or s <= until]
  if not candidates:
    return []
  if not covered:
    return [candidates[-1]]
  return [s for s in candidates if s > max(covered)]


class WindowFile(NamedTuple):
  """One file a window reads: its path in the span, its split and its window name."""
  source: str
  split: str
  name: str


def window_files(data_root: str, spans: Sequence[int],
                 listdir: Callable[[str], List[str]] = os.listdir) -> List[WindowFile]:
  """The files of a window: the train files of every span and the eval files of the
  newest; each named ``<split>-<span>-<rest>`` so that spans never collide."""
  out = []
  for span in spans:
    source = os.path.join(data_root, "examples", span_name(span))
    for name in sorted(listdir(source)):
      split = name.split("-", 1)[0]
      if split == "train" or (split == "eval" and span == spans[-1]):
        out.append(WindowFile(os.path.join(source, name), split,
                              f"{split}-{span}-{name[len(split) + 1:]}"))
  return out


def window_input(data_root: str, workdir: str, spans: Sequence[int]) -> str:
  """Builds the input folder of a window (links to :func:`window_files`) and returns
  its root, which holds ``examples/span-S/``."""
  newest = spans[-1]
  root = os.path.join(workdir, "window_inputs", span_name(newest))
  folder = os.path.join(root, "examples", span_name(newest))
  os.makedirs(folder, exist_ok=True)
  for name in os.listdir(folder):
    os.remove(os.path.join(folder, name))
  for f in window_files(data_root, spans):
    os.symlink(os.path.abspath(f.source), os.path.join(folder, f.name))
  return root


def latest_pushed(serving_dir: str) -> str:
  """The newest version directory the Pusher wrote, or ''."""
  if not os.path.isdir(serving_dir):
    return ""
  versions = [v for v in os.listdir(serving_dir) if v.isdigit()]
  return os.path.join(serving_dir, max(versions, key=int)) if versions else ""


def record_spans(metadata_path: str, run_id: str, spans: Sequence[int]) -> bool:
  """Writes the window's span names onto the run's ``pipeline_run`` context.

  Returns:
    False when the run has no context (it stopped before TFX started).
  """
  from ml_metadata.metadata_store import metadata_store  # pylint: disable=g-import-not-at-top
  from ml_metadata.proto import metadata_store_pb2  # pylint: disable=g-import-not-at-top
  cfg = metadata_store_pb2.ConnectionConfig()
  cfg.sqlite.filename_uri = metadata_path
  store = metadata_store.MetadataStore(cfg)
  ctx = store.get_context_by_type_and_name("pipeline_run", run_id)
  if ctx is None:
    return False
  ctx.custom_properties[runs.WINDOW_SPANS].string_value = ",".join(span_name(s) for s in spans)
  store.put_contexts([ctx])
  return True


class SpanOutcome(NamedTuple):
  """One span of a scheduled run: its window and run, or why it was skipped."""
  span: int
  spans: Tuple[int, ...]
  run: Optional[runs.RunSummary]
  skipped: str = ""


def _covered(history: Sequence[runs.RunSummary]) -> Dict[int, List[runs.RunSummary]]:
  out: Dict[int, List[runs.RunSummary]] = {}
  for r in history:
    if r.spans and r.state == runs.COMPLETE:
      out.setdefault(int(r.spans[-1][len("span-"):]), []).append(r)
  return out


def run_spans(base: configs.PipelineConfig, window_days: int,
              until: Optional[int] = None, span: Optional[int] = None,
              verbose: bool = True, drift_check: bool = True,
              serving_log: str = "") -> List[SpanOutcome]:
  """Runs the pending spans (or ``span`` alone) of ``base.data_root``, in order.

  Args:
    base: the local config (``local_config``); its paths and training settings.
    window_days: N: train on the spans of the N days ending with each span.
    until: the scheduled date (YYYYMMDD): spans after it are not run yet.
    span: run this span only (a re-run); skipped if a run already pushed it.
    verbose: print progress.
    drift_check: check each span against the one before it first.
    serving_log: a ``melody serve --request-log`` file: each span is first checked
      for training/serving skew against its requests (``pipeline.skew_gate``).

  Returns:
    One outcome per span looked at.

  Raises:
    PipelineRunError: a span's run failed (later spans are not run).
    SpanBusyError: another live runner holds a span.
  """
  available = available_spans(base.data_root)
  if not available:
    raise ValueError(f"no span folders (examples/span-YYYYMMDD) under {base.data_root}")
  history = runs.list_runs(base.metadata_path, with_metrics=False, runs_dir=base.runs_dir) if (
      os.path.exists(base.metadata_path)) else []
  covered = _covered(history)
  if span is not None:
    if span not in available:
      raise ValueError(f"{span_name(span)} is not in {base.data_root}/examples")
    todo = [span]
  else:
    todo = pending(available, sorted(covered), until)
  outcomes = []
  for s in todo:
    with span_lock.hold(os.path.join(os.path.dirname(base.metadata_path), "locks"),
                        span_name(s)):
      outcomes.append(_run_one(base, s, window(s, available, window_days), available,
                               verbose, drift_check, serving_log))
  return outcomes


def _run_ids(base: configs.PipelineConfig) -> List[str]:
  if not os.path.exists(base.metadata_path):
    return []
  return [r.run_id for r in runs.list_runs(base.metadata_path, with_metrics=False,
                                           runs_dir=base.runs_dir)]


def _already_pushed(base: configs.PipelineConfig, span: int) -> Optional[runs.RunSummary]:
  # Read after taking the lock, so that a run that just pushed this span is seen.
  if not os.path.exists(base.metadata_path):
    return None
  history = runs.list_runs(base.metadata_path, with_metrics=False, runs_dir=base.runs_dir)
  return next((r for r in _covered(history).get(span, []) if r.pushed), None)


def _run_one(base, span, spans, available, verbose, drift_check, serving_log="") -> SpanOutcome:
  pushed = _already_pushed(base, span)
  if pushed is not None:
    why = f"already pushed by run {pushed.run_id} (version {pushed.pushed_version or '?'})"
    if verbose:
      print(f"[schedule] {span_name(span)}: {why}; not run again", flush=True)
    return SpanOutcome(span, spans, None, why)
  checks = []
  earlier = [s for s in available if s < span]
  if drift_check and earlier:
    current, previous = (os.path.join(base.data_root, "examples", span_name(s))
                         for s in (span, earlier[-1]))
    schema = os.path.join(base.schema_dir or configs.CURATED_SCHEMA_DIR, "schema.pbtxt")
    checks.append(lambda: drift_gate.check_spans(schema, current, previous))
  if serving_log:
    checks.append(skew_gate.serving_log_check(
        base, os.path.join(base.data_root, "examples", span_name(span)), serving_log))
  warm = latest_pushed(base.serving_dir)
  extra = dict(base.extra_trainer_config)
  extra[warm_start.WARM_START_KEY] = warm
  config = dataclasses.replace(
      base, use_spans=True, examples_root=window_input(base.data_root,
                                                       os.path.dirname(base.pipeline_root),
                                                       spans),
      extra_trainer_config=tuple(sorted(extra.items())))
  if verbose:
    print(f"[schedule] {span_name(span)}: window {', '.join(map(span_name, spans))}"
          f"{'; warm start from ' + warm if warm else '; cold start'}", flush=True)
  before = set(_run_ids(base))
  try:
    summary = local_runner.run(config, verbose=verbose, checks=checks)
  finally:
    for run_id in set(_run_ids(base)) - before:
      record_spans(base.metadata_path, run_id, spans)
  summary.spans = [span_name(s) for s in spans]
  return SpanOutcome(span, spans, summary)
