"""Tests of ``melody data generate`` (simulation.datagen): layout, counts, determinism."""

import glob
import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from features import events as events_lib
from features import example_io
from features import feature_spec
from features import splits
from melody_cli import main as cli
from simulation import datagen

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

SMALL = ["--users", "30", "--days", "2", "--tracks", "200", "--shards", "2"]


def _generate(out, seed):
  assert cli.main(["data", "generate", *SMALL, "--seed", str(seed), "--out", str(out)]) == 0
  with open(os.path.join(out, "manifest.json")) as f:
    return json.load(f)


def _records(out, split):
  return list(
      example_io.iter_records(os.path.join(str(out), "examples", f"{split}-*.tfrecord.gz")))


@pytest.fixture(scope="module")
def run_a(tmp_path_factory):
  out = tmp_path_factory.mktemp("gen_a")
  return out, _generate(out, seed=3)


def test_layout_and_counts(run_a):
  out, manifest = run_a
  names = sorted(os.path.relpath(p, out) for p in glob.glob(str(out / "**" / "*"),
                                                             recursive=True)
                 if os.path.isfile(p))
  examples = [n for n in names if n.startswith("examples/")]
  assert examples == [f"examples/{s}-0000{i}-of-00002.tfrecord.gz"
                      for s in ("eval", "train") for i in (0, 1)]
  assert "tracks.parquet" in names and "manifest.json" in names
  event_files = [n for n in names if n.startswith("events/")]
  assert event_files and all(n.endswith(".parquet") for n in event_files)

  events = pq.read_table(str(out / "events"))
  assert events.schema.equals(events_lib.EVENT_SCHEMA)
  tracks = pq.read_table(str(out / "tracks.parquet"))
  assert set(events_lib.TRACK_SCHEMA.names) <= set(tracks.column_names)
  assert tracks.num_rows == 200

  train, evals = _records(out, "train"), _records(out, "eval")
  counts = manifest["counts"]
  assert counts["events"] == events.num_rows > 0
  assert counts["train_examples"] == len(train) and counts["eval_examples"] == len(evals)
  assert len(train) + len(evals) == events.num_rows  # one example per impression
  assert manifest["seed"] == 3 and manifest["layout"] == "flat"
  assert manifest["feature_spec"]["history_len"] == feature_spec.HISTORY_LEN
  assert sorted(manifest["files"]["examples"]) == examples


def test_examples_parse_and_splits_are_disjoint_by_user(run_a):
  out, _ = run_a
  spec = feature_spec.raw_feature_spec()
  train = tf.io.parse_example(_records(out, "train"), spec)
  evals = tf.io.parse_example(_records(out, "eval"), spec)
  assert not set(train["user_id"].numpy().tolist()) & set(evals["user_id"].numpy().tolist())
  hist_len = train["hist_len"].numpy()
  assert hist_len.max() <= feature_spec.HISTORY_LEN and hist_len.max() > 0
  weights = train["interest_completion_weight"].numpy()
  assert set(np.unique(weights).tolist()) <= {0.0, 1.0}


def test_same_seed_same_data_other_seed_other_data(run_a, tmp_path):
  out_a, manifest_a = run_a
  manifest_b = _generate(tmp_path / "b", seed=3)
  assert manifest_b["counts"] == manifest_a["counts"]
  a_events = pq.read_table(str(out_a / "events"))
  b_events = pq.read_table(str(tmp_path / "b" / "events"))
  assert a_events.equals(b_events)
  for split in ("train", "eval"):
    assert sorted(map(example_io.canonical, _records(out_a, split))) == sorted(
        map(example_io.canonical, _records(tmp_path / "b", split)))
  _generate(tmp_path / "c", seed=4)
  c_events = pq.read_table(str(tmp_path / "c" / "events"))
  assert not a_events.equals(c_events)


def test_span_layout_has_one_folder_per_event_day(tmp_path):
  datagen.run(users=10, days=2, out=str(tmp_path), seed=5, shards=1, tracks=100,
              span_layout=True)
  events = pq.read_table(str(tmp_path / "events"))
  days = np.unique(events.column("ts").to_numpy() // 86400)
  spans = sorted(os.listdir(tmp_path / "examples"))
  assert spans == [splits.span_name(d) for d in days]
  n = sum(len(list(example_io.iter_records(str(tmp_path / "examples" / s / "*.tfrecord.gz"))))
          for s in spans)
  assert n == events.num_rows


def test_bad_arguments_name_the_value(tmp_path):
  with pytest.raises(ValueError, match="users must be >= 1, got 0"):
    datagen.run(users=0, days=1, out=str(tmp_path))
  with pytest.raises(ValueError, match="shards must be >= 1, got 0"):
    datagen.run(users=1, days=1, out=str(tmp_path), shards=0)
