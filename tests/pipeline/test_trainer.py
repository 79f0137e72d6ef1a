"""Tests of pipeline.trainer.run_fn and pipeline.train_local.main on toy raw examples.

One module-scoped run: toy events -> raw gzip TFRecords -> ``melody train`` (TFT with
Beam, then run_fn) -> SavedModel. The tests check the saved signatures against the
in-process model, the checkpoints and TensorBoard logs, and the custom_config parsing.
"""

import argparse
import json
import os

import numpy as np
import pytest

from features import examples as examples_lib
from features import feature_spec
from melody_testing import toy_events
from pipeline import trainer
from pipeline import train_local
from ranking import config as config_lib

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order


def _write(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in records:
      w.write(r)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("train")
  events, tracks = toy_events.toy_events(n_users=8, events_per_user=12, n_tracks=40)
  records = examples_lib.events_to_examples(events, tracks)
  _write(str(root / "data" / "examples" / "train-00000-of-00001.tfrecord.gz"), records[:80])
  _write(str(root / "data" / "examples" / "eval-00000-of-00001.tfrecord.gz"), records[80:])
  args = argparse.Namespace(data=str(root / "data"), out=str(root / "out"), steps=6,
                            batch_size=16, config="mmoe", seed=3)
  assert train_local.main(args) == 0
  return {"root": root, "out": root / "out", "records": records}


@pytest.mark.slow
def test_serving_default_outputs_per_head(trained):
  loaded = tf.saved_model.load(str(trained["out"] / "serving_model"))
  assert {"serving_default", "transform_features"} <= set(loaded.signatures)
  out = loaded.signatures["serving_default"](examples=tf.constant(trained["records"][:5]))
  assert set(out) == set(feature_spec.LABEL_KEYS) | {"interest"}
  for k, v in out.items():
    assert v.shape == (5,), k
    assert np.all(np.isfinite(v.numpy())), k
  for k in feature_spec.BINARY_LABELS + ("interest_completion",):
    assert np.all((out[k].numpy() >= 0) & (out[k].numpy() <= 1)), k


@pytest.mark.slow
def test_signatures_agree_with_model_on_transformed_features(trained):
  loaded = tf.saved_model.load(str(trained["out"] / "serving_model"))
  recs = tf.constant(trained["records"][:7])
  xf = loaded.signatures["transform_features"](examples=recs)
  assert set(feature_spec.TRANSFORMED_FEATURES) <= set(xf)
  served = loaded.signatures["serving_default"](examples=recs)
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  listener = {k: xf[k] for k in model_lib.LISTENER_FEATURES}
  candidates = {k: xf[k] for k in model_lib.CANDIDATE_FEATURES}
  direct = loaded.score(loaded.encode_listener(listener), candidates)
  for k in served:
    np.testing.assert_allclose(served[k].numpy(), direct[k].numpy(), atol=1e-5)
  # The listener encoder and candidate scorer stay separately callable after loading:
  # one listener encoded once, broadcast against all 7 candidates.
  one = loaded.encode_listener({k: v[:1] for k, v in listener.items()})
  broadcast = loaded.score(one, candidates)
  tiled = loaded.score(loaded.encode_listener(
      {k: tf.repeat(v[:1], 7, axis=0) for k, v in listener.items()}), candidates)
  np.testing.assert_allclose(broadcast["interest"].numpy(), tiled["interest"].numpy(),
                             atol=1e-5)


@pytest.mark.slow
def test_checkpoints_logs_and_metrics(trained):
  out = trained["out"]
  assert tf.train.latest_checkpoint(str(out / "run" / "checkpoints"))
  assert tf.io.gfile.glob(str(out / "run" / "logs" / "train" / "events.out.tfevents.*"))
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["steps"] == 6
  assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["eval_loss"])
  assert "interest_skip_auc" in metrics and "interest_completion_calibration" in metrics


def test_configs_from_custom():
  model_config, train_config = trainer.configs_from_custom(
      {"model_config": "single:subscription", "batch_size": 32, "seed": 5,
       "learning_rate": 0.01})
  assert model_config.tasks == ("subscription",)
  assert model_config.mixture == "shared_bottom"
  assert (train_config.batch_size, train_config.seed) == (32, 5)
  assert train_config.learning_rate == 0.01
  with pytest.raises(ValueError, match="unknown model config 'moe'"):
    trainer.configs_from_custom({"model_config": "moe"})


def test_train_local_rejects_bad_arguments(tmp_path):
  args = argparse.Namespace(data=str(tmp_path), out=str(tmp_path / "o"), steps=0,
                            batch_size=8, config="mmoe", seed=1)
  with pytest.raises(ValueError, match="--steps must be positive, got 0"):
    train_local.main(args)
  args.steps = 5
  with pytest.raises(ValueError, match="no raw training examples"):
    train_local.main(args)


def test_input_fn_batches_transformed_records(tmp_path):
  from melody_testing import synthetic_batches  # pylint: disable=g-import-not-at-top
  batch = synthetic_batches.synthetic_batch(10, seed=0)
  spec = {}
  recs = []
  for i in range(10):
    feats = {}
    for k, v in batch.items():
      row = np.atleast_1d(v[i])
      if row.dtype.kind == "i":
        feats[k] = tf.train.Feature(int64_list=tf.train.Int64List(value=row))
      else:
        feats[k] = tf.train.Feature(float_list=tf.train.FloatList(value=row))
      shape = [] if np.ndim(v[i]) == 0 else [len(v[i])]
      spec[k] = tf.io.FixedLenFeature(shape, tf.int64 if row.dtype.kind == "i" else tf.float32)
    recs.append(tf.train.Example(features=tf.train.Features(feature=feats))
                .SerializeToString())
  _write(str(tmp_path / "Split-train" / "data.gz"), recs)
  ds = trainer.input_fn([str(tmp_path / "Split-train")], spec, batch_size=4, shuffle=False,
                        repeat=False)
  got = list(ds)
  assert len(got) == 2   # 10 records, batches of 4, remainder dropped
  np.testing.assert_array_equal(got[0][feature_spec.xf("hist_track_ids")].numpy(),
                                batch[feature_spec.xf("hist_track_ids")][:4])
  assert got[0]["exposure"].shape == (4,)
