"""The pieces of scheduled window runs that need no TFX: which spans run and in what
order, the window's inputs, the span lock, warm-start matching and rollback."""

import json
import os
import subprocess
import sys

import pytest

from pipeline import rollback
from pipeline import span_lock
from pipeline import warm_start
from pipeline import window_runs


def test_window_is_calendar_days_ending_with_the_span():
  available = [20240101, 20240102, 20240104, 20240105]
  assert window_runs.window(20240105, available, 2) == (20240104, 20240105)
  # A day without data shortens the window instead of reaching further back.
  assert window_runs.window(20240104, available, 2) == (20240104,)
  assert window_runs.window(20240102, available, 7) == (20240101, 20240102)
  with pytest.raises(ValueError, match="window days"):
    window_runs.window(20240102, available, 0)


def test_pending_catches_up_missed_days_in_order():
  available = [20240101, 20240102, 20240103, 20240104]
  assert window_runs.pending(available, [], until=20240101) == [20240101]
  # First run ever: only the newest span, not the whole history.
  assert window_runs.pending(available, []) == [20240104]
  # Day 2 was missed: on day 3 both run, oldest first; day 4 waits for its date.
  assert window_runs.pending(available, [20240101], until=20240103) == [20240102, 20240103]
  assert window_runs.pending(available, [20240104]) == []


def _span(root, day, splits=("train", "eval")):
  folder = root / "data" / "examples" / f"span-{day}"
  folder.mkdir(parents=True)
  for split in splits:
    (folder / f"{split}-00000-of-00001.tfrecord.gz").write_bytes(day.encode())


def test_window_input_links_every_train_span_and_the_newest_eval(tmp_path):
  for day in ("20240101", "20240102", "20240103"):
    _span(tmp_path, day)
  assert window_runs.available_spans(str(tmp_path / "data")) == [20240101, 20240102, 20240103]
  root = window_runs.window_input(str(tmp_path / "data"), str(tmp_path / "work"),
                                  (20240102, 20240103))
  folder = os.path.join(root, "examples", "span-20240103")
  assert sorted(os.listdir(folder)) == ["eval-20240103-00000-of-00001.tfrecord.gz",
                                        "train-20240102-00000-of-00001.tfrecord.gz",
                                        "train-20240103-00000-of-00001.tfrecord.gz"]
  with open(os.path.join(folder, "train-20240102-00000-of-00001.tfrecord.gz"), "rb") as f:
    assert f.read() == b"20240102"
  # Building it again (a re-run) replaces the links instead of failing on them.
  window_runs.window_input(str(tmp_path / "data"), str(tmp_path / "work"), (20240103,))
  assert sorted(os.listdir(folder)) == ["eval-20240103-00000-of-00001.tfrecord.gz",
                                        "train-20240103-00000-of-00001.tfrecord.gz"]


def test_a_live_holder_keeps_the_span_and_a_dead_one_does_not(tmp_path):
  locks = str(tmp_path / "locks")
  with span_lock.hold(locks, "span-20240103"):
    with pytest.raises(span_lock.SpanBusyError, match=f"pid {os.getpid()}"):
      with span_lock.hold(locks, "span-20240103"):
        pass
    with span_lock.hold(locks, "span-20240104"):  # another span is free
      pass
  assert not os.listdir(locks)  # released
  # A holder that exited (its pid is gone) left its file behind: taken over.
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  with open(os.path.join(locks, "span-20240103.lock"), "w", encoding="utf-8") as f:
    json.dump({"run_id": "x", "pid": int(dead.stdout), "host": os.uname().nodename,
               "process_start": 1, "started": 0.0}, f)
  with span_lock.hold(locks, "span-20240103"):
    pass


def test_rollback_moves_newer_versions_aside(tmp_path):
  serving = tmp_path / "serving_model"
  for v in ("100", "200", "300"):
    (serving / v).mkdir(parents=True)
  done = rollback.rollback(str(serving), str(tmp_path / "rolled_back"))
  assert done == rollback.Rollback("200", ["300"])
  assert rollback.versions(str(serving)) == ["100", "200"]
  assert (tmp_path / "rolled_back" / "300").is_dir()
  done = rollback.rollback(str(serving), str(tmp_path / "rolled_back"), to="100")
  assert done.moved == ["200"] and rollback.versions(str(serving)) == ["100"]
  with pytest.raises(ValueError, match="nothing to roll back to"):
    rollback.rollback(str(serving), str(tmp_path / "rolled_back"))
  log = (tmp_path / "rolled_back" / "rollbacks.jsonl").read_text().splitlines()
  assert [json.loads(line)["serving"] for line in log] == ["200", "100"]


def test_warm_start_names_keras_counters_apart():
  assert warm_start._base_name("tower_skip/dense_3/kernel:0") == "tower_skip/dense/kernel"
  # Weights built through the model's __call__ carry its scope; built in fit they may not.
  assert (warm_start._base_name("ranking_model/user_embedding/embeddings:0", "ranking_model")
          == warm_start._base_name("user_embedding/embeddings", "ranking_model")
          == warm_start._base_name("ranking_model/user_embedding/embeddings",
                                   "ranking_model_1"))
  assert warm_start.maybe_warm_start(None, {}).reason == "not asked for"
  result = warm_start.maybe_warm_start(None, {warm_start.WARM_START_KEY: ""})
  assert not result.warm and result.reason == "no pushed model yet"
  result = warm_start.warm_start(None, "/nonexistent/model")
  assert not result.warm and result.reason.startswith("cannot read /nonexistent/model")
