"""A failed run's error: the root cause's first line with the failed component, the
rest of its message as details, and the log path; the CLI block repeats the cause."""

import pipeline  # noqa: F401  (Keras 2 before TensorFlow)
from pipeline import run_errors
from pipeline import shard_check


def _raise_chain():
  try:
    try:
      raise ValueError("bad shard\n  train: feature 'x'\n  eval: feature 'y'")
    except ValueError as inner:
      raise RuntimeError("Beam pipeline failed") from inner
  except RuntimeError as outer:
    return outer


def test_the_root_cause_and_the_component_lead():
  error = run_errors.describe(_raise_chain(), "StatisticsGen", "/w/runs/r/pipeline.log")
  assert error.cause == "pipeline run failed in StatisticsGen: ValueError: bad shard"
  assert error.details == ["  train: feature 'x'", "  eval: feature 'y'"]
  assert str(error).splitlines()[0] == error.cause
  assert str(error).splitlines()[-1] == "full log: /w/runs/r/pipeline.log"
  report = error.report().splitlines()
  assert report[0] == report[-1] == f"error: {error.cause}"
  assert "  full traceback in /w/runs/r/pipeline.log" in report


def test_a_shard_error_is_the_cause_as_it_is():
  try:
    raise RuntimeError("wrapped") from shard_check.ShardError("examples/a.gz", "truncated")
  except RuntimeError as e:
    error = run_errors.describe(e, "", "log")
  assert error.cause == "input shard examples/a.gz: truncated" and error.details == []


def test_long_messages_are_cut_and_say_so():
  error = run_errors.describe(ValueError("\n".join(f"line {i}" for i in range(40))), "", "l")
  assert error.cause == "pipeline run failed: ValueError: line 0"
  assert len(error.details) == 21 and error.details[-1] == "… 19 more lines in the log"
