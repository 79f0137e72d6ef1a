"""Runs the Melody pipeline on the embedded engines: LocalDagRunner, SQLite ML Metadata
under the work directory, Beam DirectRunner.

Before TFX starts, the input shards are checked (``pipeline.shard_check``) so that a
broken shard is named at once. Each run gets an id up front and a directory
``WORKDIR/runs/<run id>/`` with the runner's record (``pipeline.run_record``: process,
start, end, one-line error) and ``pipeline.log``, which receives the Python log records
of the run (INFO and up; TFX's Beam executors may turn absl's INFO off part way) and the
full traceback of a failure. Progress per
component is printed while the run goes (polling ML Metadata from the main thread); a
failure raises :class:`pipeline.run_errors.PipelineRunError` with the one-line cause.
"""

import contextlib
import logging
import os
import sys
import threading
import time
from typing import Callable, Optional, Sequence

from tfx import v1 as tfx
from tfx.dsl.compiler import compiler
from tfx.dsl.compiler import constants
from tfx.orchestration.portable import runtime_parameter_utils

from pipeline import configs
from pipeline import pipeline as melody_pipeline
from pipeline import run_errors
from pipeline import run_record
from pipeline import runs
from pipeline import shard_check

_log = logging.getLogger(__name__)


def run(config: configs.PipelineConfig, outputs: Optional[dict] = None,
        poll_seconds: float = 2.0, verbose: bool = True,
        checks: Sequence[Callable[[], None]] = ()) -> runs.RunSummary:
  """Checks the input shards, then runs Melody's pipeline to completion.

  Args:
    config: the run's configuration.
    outputs: model output name -> label key for the Evaluator.
    poll_seconds: progress polling period.
    verbose: print progress.
    checks: more checks of the inputs (e.g. ``pipeline.drift_gate``), run after the
      shard check; an exception stops the run before TFX starts, as the run's error.

  Returns:
    The run's summary.

  Raises:
    PipelineRunError: the shard check or a component failed (the message names the
      shard and feature, or the component, and the run's log file).
  """
  os.makedirs(os.path.dirname(config.metadata_path), exist_ok=True)
  patterns = [s.pattern for s in melody_pipeline.example_input_config(config.use_spans).splits]

  def build() -> tfx.dsl.Pipeline:
    shard_check.check_data(config.input_root(), patterns)
    for check in checks:
      check()
    return melody_pipeline.create_pipeline(
        config,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            config.metadata_path),
        outputs=outputs)

  return run_pipeline(build, config.metadata_path, config.runs_dir, poll_seconds, verbose)


def run_pipeline(build: Callable[[], tfx.dsl.Pipeline], metadata_path: str,
                 runs_dir: str = "", poll_seconds: float = 2.0,
                 verbose: bool = True) -> runs.RunSummary:
  """Runs the pipeline ``build()`` returns, with a run record and a run log.

  Args:
    build: makes the pipeline (and may check its inputs first); its errors are the
      run's errors.
    metadata_path: the SQLite ML Metadata file the pipeline is configured with.
    runs_dir: where run directories go (default ``runs/`` beside the metadata
      directory).
    poll_seconds: progress polling period.
    verbose: print progress; the libraries' console logging then goes to the run log
      only.
  """
  runs_dir = runs_dir or run_record.default_runs_dir(metadata_path)
  record = run_record.start(runs_dir, run_record.new_run_id())
  if verbose:
    print(f"[pipeline] run {record.run_id}: log {record.log_path}", flush=True)
  with _logging_to(record.log_path, quiet_console=verbose):
    try:
      _run_and_follow(build(), record.run_id, metadata_path, poll_seconds, verbose)
    except Exception as e:  # pylint: disable=broad-except
      failure = run_errors.describe(e, _failed_node(metadata_path, record), record.log_path)
      _log.error("run %s failed: %s", record.run_id, failure.cause, exc_info=e)
      run_record.finish(record, failure.cause)
      raise failure from e
    except BaseException as e:
      run_record.finish(record, f"interrupted ({type(e).__name__})")
      raise
  run_record.finish(record)
  summary = runs.get_run(metadata_path, record.run_id, runs_dir=runs_dir)
  if summary is None:
    raise RuntimeError(f"run {record.run_id} left no record in ML Metadata")
  return summary


def execute(p: tfx.dsl.Pipeline, run_id: str) -> None:
  """Runs ``p`` with LocalDagRunner under the given pipeline run id."""
  ir = compiler.Compiler().compile(p)
  # LocalDagRunner names the run itself unless the IR already carries an id; naming
  # it here lets the run record exist before the first component starts.
  runtime_parameter_utils.substitute_runtime_parameter(
      ir, {constants.PIPELINE_RUN_ID_PARAMETER_NAME: run_id})
  tfx.orchestration.LocalDagRunner().run_with_ir(ir)


def _run_and_follow(p, run_id, metadata_path, poll_seconds, verbose) -> None:
  error = []

  def target():
    try:
      execute(p, run_id)
    except BaseException as e:  # pylint: disable=broad-except
      error.append(e)

  t0 = time.time()
  thread = threading.Thread(target=target, name="LocalDagRunner", daemon=True)
  thread.start()
  seen = {}
  while thread.is_alive():
    thread.join(poll_seconds)
    if verbose:
      _report_progress(metadata_path, run_id, seen, len(p.components), t0)
  if verbose:
    _report_progress(metadata_path, run_id, seen, len(p.components), t0)
  if error:
    raise error[0]


def _failed_node(metadata_path: str, record: run_record.RunRecord) -> str:
  try:
    summary = runs.get_run(metadata_path, record.run_id, with_metrics=False,
                           runs_dir=os.path.dirname(record.directory))
  except Exception:  # pylint: disable=broad-except
    return ""  # no store yet (the run stopped before TFX started)
  failed = [c.node for c in (summary.components if summary else []) if c.state == "FAILED"]
  return ", ".join(failed)


@contextlib.contextmanager
def _logging_to(path: str, quiet_console: bool):
  """Sends Python log records (INFO and up) to ``path`` for the duration; with
  ``quiet_console`` the root logger's console handlers are muted meanwhile, so that a
  component's long tracebacks land in the log instead of between the progress lines."""
  root = logging.getLogger()
  handler = logging.FileHandler(path, encoding="utf-8")
  handler.setLevel(logging.INFO)
  handler.setFormatter(logging.Formatter(
      "%(asctime)s %(levelname)s %(name)s %(threadName)s: %(message)s"))
  consoles = [h for h in root.handlers if quiet_console and _is_console(h)]
  saved_levels = [h.level for h in consoles]
  saved_root_level = root.level
  for h in consoles:
    h.setLevel(logging.CRITICAL + 1)
  root.addHandler(handler)
  if root.level > logging.INFO:
    root.setLevel(logging.INFO)
  try:
    yield
  finally:
    root.removeHandler(handler)
    handler.close()
    root.setLevel(saved_root_level)
    for h, level in zip(consoles, saved_levels):
      h.setLevel(level)


def _is_console(handler: logging.Handler) -> bool:
  return (isinstance(handler, logging.StreamHandler)
          and not isinstance(handler, logging.FileHandler)
          and getattr(handler, "stream", None) in (sys.stderr, sys.stdout, sys.__stderr__,
                                                   sys.__stdout__))


def _report_progress(metadata_path, run_id, seen, n_components, t0):
  if not os.path.exists(metadata_path):
    return
  try:
    current = runs.get_run(metadata_path, run_id, with_metrics=False)
  except Exception:  # pylint: disable=broad-except
    return  # the store is being written; try at the next poll
  if current is None:
    return
  for c in current.components:
    if seen.get(c.node) == c.state:
      continue
    seen[c.node] = c.state
    done = sum(1 for s in seen.values() if s in ("COMPLETE", "CACHED", "FAILED"))
    elapsed = time.time() - t0
    eta = elapsed / done * (n_components - done) if done else float("nan")
    print(f"[pipeline] {done}/{n_components} {c.node:<32} {c.state:<9} "
          f"{c.seconds:6.1f}s  elapsed {elapsed:5.0f}s  eta {eta:4.0f}s", flush=True)
