"""A simulated daily schedule with a rolling window of 2 days, end to end.

Three day spans of simulated listeners; one work directory; in order:
1. the run scheduled on day 1 trains on day 1 (cold start) and pushes;
2. day 2's run is missed; the run scheduled on day 3 catches up day 2 (window days 1-2),
   then day 3 (window days 2-3), each warm-started from the model pushed before it;
3. re-running day 3 does not push again, and a second runner cannot take day 3 while
   another holds it;
4. a drifted day 4 (every play logged as "workout") stops the run before TFX starts,
   naming the feature and its distance; the pushed models stay;
5. rollback serves the previous version again.
"""

import glob
import os
import shutil

import pytest

pytestmark = pytest.mark.slow

DAY1, DAY2, DAY3, DAY4 = 20240101, 20240102, 20240103, 20240104


@pytest.fixture(scope="module")
def data(tmp_path_factory):
  from simulation import datagen
  root = tmp_path_factory.mktemp("schedule")
  # 3 days of activity give span folders for days 1-3 (and a few plays past midnight
  # of day 3, which land in day 4's folder: removed, day 4 is made below).
  assert datagen.run(users=160, days=3, out=str(root / "data"), seed=11, shards=1,
                     tracks=1500, span_layout=True) == 0
  shutil.rmtree(root / "data" / "examples" / f"span-{DAY4}", ignore_errors=True)
  return root


def _base(root):
  from pipeline import configs
  return configs.local_config(str(root / "data"), str(root / "work"), train_steps=40,
                              eval_steps=2)


def _versions(root):
  from pipeline import rollback
  return rollback.versions(str(root / "work" / "serving_model"))


def _log(summary):
  return open(summary.log_path, encoding="utf-8").read()


@pytest.fixture(scope="module")
def schedule(data):
  from pipeline import window_runs
  day1 = window_runs.run_spans(_base(data), 2, until=DAY1, verbose=False)
  day3 = window_runs.run_spans(_base(data), 2, until=DAY3, verbose=False)
  return day1, day3


def test_day_one_trains_cold_on_its_span_and_pushes(schedule, data):
  (first,), _ = schedule
  assert (first.span, first.spans) == (DAY1, (DAY1,))
  assert first.run.state == "COMPLETE" and first.run.pushed is True
  assert "cold start: no pushed model yet" in _log(first.run)


def test_a_missed_day_is_caught_up_in_order_with_warm_starts(schedule, data):
  _, (second, third) = schedule
  assert [(o.span, o.spans) for o in (second, third)] == [
      (DAY2, (DAY1, DAY2)), (DAY3, (DAY2, DAY3))]
  for outcome in (second, third):
    assert outcome.run.state == "COMPLETE", outcome.run.components
    assert outcome.run.blessed is True and outcome.run.pushed is True
  versions = _versions(data)
  assert len(versions) == 3
  # The third run started from the model the second one pushed.
  pushed_by_second = os.path.join(str(data / "work" / "serving_model"), versions[1])
  assert f"warm start: " in _log(third.run)
  assert f"variables from {pushed_by_second}" in _log(third.run)


def test_runs_record_their_spans_in_ml_metadata(schedule, data):
  from pipeline import runs
  base = _base(data)
  history = runs.list_runs(base.metadata_path, runs_dir=base.runs_dir)
  assert [r.spans for r in history] == [
      [f"span-{DAY1}"], [f"span-{DAY1}", f"span-{DAY2}"], [f"span-{DAY2}", f"span-{DAY3}"]]
  table = runs.format_runs(history)
  assert f"{DAY2}..{DAY3} (2)" in table
  # The evaluation ran on the newest span only: ImportExampleGen read one span.
  examples = glob.glob(str(data / "work" / "window_inputs" / f"span-{DAY3}" / "examples" /
                           f"span-{DAY3}" / "eval-*"))
  assert [os.path.basename(p).split("-")[1] for p in examples] == [str(DAY3)]


def test_a_span_is_pushed_once_and_run_by_one_runner(schedule, data):
  from pipeline import span_lock, window_runs
  before = _versions(data)
  (again,) = window_runs.run_spans(_base(data), 2, span=DAY3, verbose=False)
  assert again.run is None and again.skipped.startswith("already pushed by run ")
  assert window_runs.run_spans(_base(data), 2, until=DAY3, verbose=False) == []
  locks = os.path.join(str(data / "work" / "metadata"), "locks")
  with span_lock.hold(locks, f"span-{DAY3}"):
    with pytest.raises(span_lock.SpanBusyError, match=f"span-{DAY3} is being run by pid"):
      window_runs.run_spans(_base(data), 2, span=DAY3, verbose=False)
  assert _versions(data) == before


def _drifted_copy(src_dir, dst_dir):
  import tensorflow as tf
  from features import example_io
  os.makedirs(dst_dir)
  for path in sorted(glob.glob(os.path.join(src_dir, "*.tfrecord.gz"))):
    with tf.io.TFRecordWriter(os.path.join(dst_dir, os.path.basename(path)),
                              options="GZIP") as w:
      for raw in example_io.iter_records(path):
        ex = tf.train.Example.FromString(raw)
        ex.features.feature["context_activity"].bytes_list.value[:] = [b"workout"]
        w.write(ex.SerializeToString())


def test_a_drifted_span_stops_the_run_and_the_pushed_model_stays(schedule, data):
  from pipeline import run_errors, window_runs
  examples = data / "data" / "examples"
  _drifted_copy(str(examples / f"span-{DAY3}"), str(examples / f"span-{DAY4}"))
  before = _versions(data)
  try:
    with pytest.raises(run_errors.PipelineRunError) as err:
      window_runs.run_spans(_base(data), 2, until=DAY4, verbose=False)
  finally:
    shutil.rmtree(examples / f"span-{DAY4}")
  message = str(err.value)
  assert f"span-{DAY4} drifted from span-{DAY3}" in message
  assert "feature 'context_activity': L-infinity distance" in message
  assert "> 0.3" in message
  assert _versions(data) == before


def test_rollback_serves_the_previous_version(schedule, data):
  from pipeline import rollback
  before = _versions(data)
  done = rollback.rollback(str(data / "work" / "serving_model"),
                           str(data / "work" / "rolled_back"))
  assert done.serving == before[-2] and done.moved == [before[-1]]
  assert _versions(data) == before[:-1]
