"""Tests of pipeline.trainer and pipeline.train_local.main on toy raw examples.

One module-scoped run: toy events -> raw gzip TFRecords and ``tracks.parquet`` ->
``melody train`` (TFT with Beam, ``trainer.fit``, ``serving.export``) -> a numbered
serving version under ``serving_model/`` with the server configs beside it. The tests
check the saved signatures against the trained model restored from its checkpoints,
``melody export`` from the same directory, the model server answering ``rank`` for the
version as ``melody train`` left it, the checkpoints and TensorBoard logs, and the
custom_config parsing.
"""

import argparse
import json
import os

import numpy as np
import pytest

from features import example_io
from features import feature_spec
from melody_testing import toy_events
from pipeline import trainer
from pipeline import train_local

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

HEADS = feature_spec.LABEL_KEYS + ("interest",)


def _write(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in records:
      w.write(r)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp("train")
  events, tracks = toy_events.toy_events(n_users=8, events_per_user=12, n_tracks=40)
  records = example_io.events_to_examples(events, tracks)
  _write(str(root / "data" / "examples" / "train-00000-of-00001.tfrecord.gz"), records[:80])
  _write(str(root / "data" / "examples" / "eval-00000-of-00001.tfrecord.gz"), records[80:])
  tracks.to_parquet(str(root / "data" / "tracks.parquet"))
  # 21 steps log every 2 steps in epochs of 2: the last epoch runs the 1 step left over.
  args = argparse.Namespace(data=str(root / "data"), out=str(root / "out"), steps=21,
                            batch_size=16, config="mmoe", seed=3)
  assert train_local.main(args) == 0
  return {"root": root, "data": root / "data", "out": root / "out", "records": records,
          "version": root / "out" / "serving_model" / "1"}


@pytest.mark.slow
def test_train_writes_a_numbered_serving_version_and_configs(trained):
  from serving import model_config  # pylint: disable=g-import-not-at-top
  out = trained["out"]
  assert sorted(os.listdir(out / "serving_model")) == ["1"]
  version = trained["version"]
  assert (version / "saved_model.pb").exists()
  assert (version / "assets.extra" / "tf_serving_warmup_requests").exists()
  (entry,) = model_config.read_model_config(str(out / "models.config"))
  assert entry.name == "melody"
  assert entry.base_path == str(out / "serving_model")
  assert (out / "batching_parameters.txt").exists()
  signatures = set(tf.saved_model.load(str(version)).signatures)
  assert {"serving_default", "rank", "recommend", "score_examples",
          "transform_features"} <= signatures, signatures


@pytest.mark.slow
def test_score_examples_outputs_per_head(trained):
  loaded = tf.saved_model.load(str(trained["version"]))
  out = loaded.signatures["score_examples"](examples=tf.constant(trained["records"][:5]))
  assert set(out) == set(HEADS)
  for k, v in out.items():
    assert v.shape == (5,), k
    assert np.all(np.isfinite(v.numpy())), k
  for k in feature_spec.BINARY_LABELS + ("interest_completion",):
    assert np.all((out[k].numpy() >= 0) & (out[k].numpy() <= 1)), k


@pytest.mark.slow
def test_signatures_agree_with_the_model_restored_from_checkpoints(trained):
  from serving import export  # pylint: disable=g-import-not-at-top
  loaded = tf.saved_model.load(str(trained["version"]))
  recs = tf.constant(trained["records"][:7])
  xf = loaded.signatures["transform_features"](examples=recs)
  assert set(feature_spec.TRANSFORMED_FEATURES) <= set(xf)
  served = loaded.signatures["score_examples"](examples=recs)
  model = export.restore_trained_model(str(trained["out"]), "mmoe")
  direct = model(dict(xf), training=False)
  for k in HEADS:
    np.testing.assert_allclose(served[k].numpy(), direct[k].numpy(), atol=1e-5, err_msg=k)


@pytest.mark.slow
def test_melody_export_re_exports_the_trained_model(trained, tmp_path):
  from melody_cli import main as cli  # pylint: disable=g-import-not-at-top
  base = tmp_path / "models" / "ranker"
  assert cli.main(["export", "--train-out", str(trained["out"]), "--data",
                   str(trained["data"]), "--base-dir", str(base), "--n-max", "50"]) == 0
  assert sorted(os.listdir(base)) == ["1"]
  assert (tmp_path / "models" / "models.config").exists()
  recs = tf.constant(trained["records"][:6])
  again = tf.saved_model.load(str(base / "1")).signatures["score_examples"](examples=recs)
  first = tf.saved_model.load(str(trained["version"])).signatures["score_examples"](
      examples=recs)
  for k in HEADS:
    np.testing.assert_allclose(again[k].numpy(), first[k].numpy(), atol=1e-5, err_msg=k)
  missing = cli.main(["export", "--train-out", str(tmp_path / "nothing"), "--data",
                      str(trained["data"]), "--base-dir", str(base)])
  assert missing == 2


@pytest.mark.slow
def test_the_model_server_serves_the_train_output_as_it_is(trained):
  from serving import client as client_lib  # pylint: disable=g-import-not-at-top
  from serving import model_config  # pylint: disable=g-import-not-at-top
  from serving import server as server_lib  # pylint: disable=g-import-not-at-top
  from serving import warmup  # pylint: disable=g-import-not-at-top
  # What `melody serve --model_name melody --model_base_path OUT/serving_model` serves.
  server = server_lib.ModelServer(
      [model_config.ModelEntry("melody", str(trained["out"] / "serving_model"))],
      server_lib.ServerOptions(port=0, metrics_port=None, file_system_poll_wait_seconds=0))
  server.start()
  try:
    assert server.loaded_versions("melody") == (1,)
    inputs = warmup.rank_inputs(warmup.parse_examples(trained["records"][:20]), [2, 5], 12)
    got = client_lib.ModelClient(server.target, timeout=120).predict("melody", "rank", inputs)
  finally:
    server.stop(0)
  local = tf.saved_model.load(str(trained["version"])).signatures["rank"](
      **{k: tf.constant(v) for k, v in inputs.items()})
  assert got["ranked_track_ids"].shape == (2, 12)
  np.testing.assert_array_equal(got["ranked_track_ids"], local["ranked_track_ids"].numpy())
  np.testing.assert_allclose(got["fused_score"], local["fused_score"].numpy(), atol=1e-5)


@pytest.mark.slow
def test_checkpoints_logs_and_metrics(trained):
  out = trained["out"]
  latest = tf.train.latest_checkpoint(str(out / "run" / "checkpoints"))
  assert tf.io.gfile.glob(str(out / "run" / "logs" / "train" / "events.out.tfevents.*"))
  metrics = json.loads((out / "metrics.json").read_text())
  assert metrics["steps"] == 21
  # Exactly --steps optimizer steps (both parts of the composite optimizer), and one
  # checkpoint per epoch, the short last epoch included.
  iterations = [tf.train.load_variable(latest, name)
                for name, _ in tf.train.list_variables(latest)
                if name.startswith("optimizer/") and "/iter/" in name]
  assert iterations and all(int(i) == 21 for i in iterations)
  assert int(tf.train.load_variable(latest, "save_counter/.ATTRIBUTES/VARIABLE_VALUE")) == 11
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
  _write(str(tmp_path / "examples" / "train-00000-of-00001.tfrecord.gz"), [b""])
  with pytest.raises(ValueError, match=f"no catalogue at {tmp_path}/tracks.parquet"):
    train_local.main(args)


def test_run_fn_needs_the_catalogue(tmp_path):
  with pytest.raises(ValueError, match="custom_config has no 'catalog_path'"):
    trainer.catalog_path({"model_config": "mmoe"})
  missing = str(tmp_path / "tracks.parquet")
  with pytest.raises(ValueError, match=f"the catalogue {missing} does not exist"):
    trainer.catalog_path({"catalog_path": missing})
  (tmp_path / "tracks.parquet").write_bytes(b"")
  assert trainer.catalog_path({"catalog_path": missing}) == missing


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
