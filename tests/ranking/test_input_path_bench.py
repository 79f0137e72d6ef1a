"""Tests of the ranking benchmark's input-path stages (bench/ranking_input_path.py) on a
few synthetic transformed records: every stage reads the records it should, and the
stage timing covers all of them."""

import numpy as np
import pytest

from bench import ranking_input_path
from features import feature_spec
from melody_testing import synthetic_batches

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order


@pytest.fixture(scope="module")
def records(tmp_path_factory):
  batch = synthetic_batches.synthetic_batch(24, seed=0)
  spec, recs = {}, []
  for i in range(24):
    feats = {}
    for k, v in batch.items():
      row = np.atleast_1d(v[i])
      kind = tf.int64 if row.dtype.kind == "i" else tf.float32
      feats[k] = (tf.train.Feature(int64_list=tf.train.Int64List(value=row)) if kind == tf.int64
                  else tf.train.Feature(float_list=tf.train.FloatList(value=row)))
      spec[k] = tf.io.FixedLenFeature([] if np.ndim(v[i]) == 0 else [len(v[i])], kind)
    recs.append(tf.train.Example(features=tf.train.Features(feature=feats))
                .SerializeToString())
  path = str(tmp_path_factory.mktemp("xf") / "train-00000-of-00001.tfrecord.gz")
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in recs:
      w.write(r)
  return {"files": [path], "spec": spec, "arrays": batch}


def test_parse_stage_reads_the_records_in_file_order(records):
  ds = ranking_input_path._stage_dataset(  # pylint: disable=protected-access
      "parse", records["files"], records["spec"], 8, records["arrays"])
  first = next(iter(ds))
  for key in (feature_spec.xf("hist_track_ids"), "exposure"):
    np.testing.assert_array_equal(first[key].numpy(), records["arrays"][key][:8])


def test_every_stage_is_timed(records):
  got = ranking_input_path.stage_throughput(records["files"], records["spec"],
                                            records["arrays"], batch_size=8, batches=4)
  assert tuple(got) == ranking_input_path.STAGES
  assert all(v["examples_per_s"] > 0 and v["cpu_us_per_example"] >= 0 for v in got.values())
  assert "ratio" in "\n".join(ranking_input_path.lines(
      {"stages": got, "training": {"steps": 2, "trainer_path_examples_per_s": 80.0,
                                   "in_memory_examples_per_s": 100.0,
                                   "trainer_path_over_in_memory": 0.8}}))
