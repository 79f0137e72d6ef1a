"""Runs the Melody pipeline on the embedded engines: LocalDagRunner, SQLite ML Metadata
under the work directory, Beam DirectRunner. Prints progress per component while the
run goes (polling ML Metadata from the main thread) and a summary at the end.
"""

import os
import threading
import time
from typing import Optional

from tfx import v1 as tfx

from pipeline import configs
from pipeline import pipeline as melody_pipeline
from pipeline import runs


def run(config: configs.PipelineConfig, outputs: Optional[dict] = None,
        poll_seconds: float = 2.0, verbose: bool = True) -> runs.RunSummary:
  """Runs the pipeline to completion; returns the run's summary.

  Raises:
    RuntimeError: a component failed (the message names it and carries its error).
  """
  os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
  p = melody_pipeline.create_pipeline(
      config,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          config.metadata_path),
      outputs=outputs)
  error = []

  def target():
    try:
      tfx.orchestration.LocalDagRunner().run(p)
    except BaseException as e:  # pylint: disable=broad-except
      error.append(e)

  before = _run_ids(config.metadata_path)
  t0 = time.time()
  thread = threading.Thread(target=target, name="LocalDagRunner", daemon=True)
  thread.start()
  seen = {}
  n_components = len(p.components)
  while thread.is_alive():
    thread.join(poll_seconds)
    if verbose:
      _report_progress(config.metadata_path, before, seen, n_components, t0)
  if verbose:
    _report_progress(config.metadata_path, before, seen, n_components, t0)
  new = [r for r in runs.list_runs(config.metadata_path, with_metrics=True)
         if r.run_id not in before]
  if error:
    failed = [c.node for c in (new[-1].components if new else []) if c.state == "FAILED"]
    where = f" in {', '.join(failed)}" if failed else ""
    raise RuntimeError(f"pipeline run failed{where}: {error[0]}") from error[0]
  if not new:
    raise RuntimeError("the pipeline run left no record in ML Metadata")
  return new[-1]


def _run_ids(metadata_path: str) -> set:
  if not os.path.exists(metadata_path):
    return set()
  return {r.run_id for r in runs.list_runs(metadata_path, with_metrics=False)}


def _report_progress(metadata_path, before, seen, n_components, t0):
  if not os.path.exists(metadata_path):
    return
  try:
    current = [r for r in runs.list_runs(metadata_path, with_metrics=False)
               if r.run_id not in before]
  except Exception:  # pylint: disable=broad-except
    return  # the store is being written; try at the next poll
  if not current:
    return
  for c in current[-1].components:
    if seen.get(c.node) == c.state:
      continue
    seen[c.node] = c.state
    done = sum(1 for s in seen.values() if s in ("COMPLETE", "CACHED", "FAILED"))
    elapsed = time.time() - t0
    eta = elapsed / done * (n_components - done) if done else float("nan")
    print(f"[pipeline] {done}/{n_components} {c.node:<32} {c.state:<9} "
          f"{c.seconds:6.1f}s  elapsed {elapsed:5.0f}s  eta {eta:4.0f}s", flush=True)
