"""The input-shard check before ImportExampleGen, and how the CLI reports a broken
shard: the one-line cause first and last, the full traceback in the run's log."""

import os
import re

import pytest

import pipeline  # noqa: F401  (Keras 2 before TensorFlow)
from features import example_io
from melody_testing import toy_events
from pipeline import shard_check

_TRAIN = os.path.join("examples", "train-00000-of-00001.tfrecord.gz")
_EVAL = os.path.join("examples", "eval-00000-of-00001.tfrecord.gz")
_PATTERNS = ("examples/train-*", "examples/eval-*")


@pytest.fixture(scope="module")
def records():
  events, tracks = toy_events.toy_events(n_users=4, events_per_user=8)
  return example_io.events_to_examples(events, tracks)


def _data(root, records, train=None):
  """A data root with a train and an eval shard; ``train`` replaces the train shard's
  bytes."""
  os.makedirs(root / "examples", exist_ok=True)
  example_io.write_shard(str(root / _EVAL), [records])
  example_io.write_shard(str(root / _TRAIN), [records])
  if train is not None:
    (root / _TRAIN).write_bytes(train)
  return root


def _float_hour(records):
  import tensorflow as tf
  out = []
  for raw in records:
    ex = tf.train.Example.FromString(raw)
    hour = ex.features.feature["context_hour"]
    value = float(hour.int64_list.value[0]) + 0.5
    hour.ClearField("int64_list")
    hour.float_list.value.append(value)
    out.append(ex.SerializeToString())
  return out


def test_healthy_shards_pass(tmp_path, records):
  root = _data(tmp_path, records)
  assert shard_check.check_data(str(root), _PATTERNS) == 2
  assert shard_check.check_shard(str(root / _TRAIN), str(root)) == len(records)


def test_a_corrupt_gzip_shard_is_named(tmp_path, records):
  good = _data(tmp_path / "good", records)
  raw = bytearray((good / _TRAIN).read_bytes())
  middle = len(raw) // 2
  raw[middle:middle + 64] = bytes(64)
  root = _data(tmp_path / "bad", records, train=bytes(raw))
  with pytest.raises(shard_check.ShardError) as err:
    shard_check.check_data(str(root), _PATTERNS)
  assert err.value.shard == _TRAIN
  assert str(err.value).startswith(f"input shard {_TRAIN}: ")


def test_a_truncated_shard_is_named(tmp_path, records):
  good = _data(tmp_path / "good", records)
  raw = (good / _TRAIN).read_bytes()
  root = _data(tmp_path / "bad", records, train=raw[:-40])
  with pytest.raises(shard_check.ShardError, match=re.escape(_TRAIN)):
    shard_check.check_data(str(root), _PATTERNS)


def test_a_float_context_hour_names_the_feature_expected_type_first(tmp_path, records):
  root = _data(tmp_path, records)
  example_io.write_shard(str(root / _TRAIN), [_float_hour(records)])
  with pytest.raises(shard_check.ShardError) as err:
    shard_check.check_data(str(root), _PATTERNS)
  assert err.value.shard == _TRAIN and err.value.feature == "context_hour"
  assert str(err.value) == (
      f"input shard {_TRAIN}: record 0: feature 'context_hour': expected int64 values "
      "(int64_list), found float values (float_list)")


def test_only_the_latest_span_is_checked(tmp_path, records):
  for span in ("20260101", "20260102"):
    os.makedirs(tmp_path / "examples" / f"span-{span}")
    for tag in ("train", "eval"):
      example_io.write_shard(str(tmp_path / "examples" / f"span-{span}" /
                                 f"{tag}-00000-of-00001.tfrecord.gz"), [records])
  (tmp_path / "examples" / "span-20260101" / "train-00000-of-00001.tfrecord.gz").write_bytes(
      b"not gzip")
  paths = shard_check.shard_paths(str(tmp_path), ("examples/span-{SPAN}/train-*",
                                                  "examples/span-{SPAN}/eval-*"))
  assert [os.path.relpath(p, tmp_path) for p in paths] == [
      os.path.join("examples", "span-20260102", f"{tag}-00000-of-00001.tfrecord.gz")
      for tag in ("eval", "train")]
  with pytest.raises(FileNotFoundError, match="no example shards"):
    shard_check.check_data(str(tmp_path), ("examples/nothing-*",))


def test_cli_puts_the_cause_first_and_last_and_the_traceback_in_the_run_log(
    tmp_path, records, capsys):
  from melody_cli import main as cli
  data = _data(tmp_path / "data", records)
  example_io.write_shard(str(data / _TRAIN), [_float_hour(records)])
  workdir = tmp_path / "work"
  assert cli.main(["pipeline", "run", "--data", str(data), "--workdir", str(workdir)]) == 1
  err = capsys.readouterr().err.strip().splitlines()
  cause = (f"error: input shard {_TRAIN}: record 0: feature 'context_hour': "
           "expected int64 values (int64_list), found float values (float_list)")
  assert err[0] == cause and err[-1] == cause
  (log_line,) = [line for line in err if "full traceback in" in line]
  log_path = log_line.split("full traceback in ", 1)[1]
  assert log_path.startswith(str(workdir / "runs")) and log_path.endswith("pipeline.log")
  log = open(log_path, encoding="utf-8").read()
  assert "Traceback (most recent call last)" in log and "ShardError" in log
  # The run is in the history as failed, with its cause, though TFX never started.
  assert cli.main(["pipeline", "runs", "--workdir", str(workdir)]) == 0
  out = capsys.readouterr().out
  assert "FAILED" in out and cause[len("error: "):] in out
