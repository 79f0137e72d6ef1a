"""Tests of serving.export and serving.warmup: versions, warmup records, server configs,
``saved_model_cli`` and reload equality.

Version 1 is the session's export of the tiny ranker (``ranker_export`` in conftest.py:
N_max 200, 14 warmup records); version 2, exported here, adds an intent module.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

from serving import export
from serving import catalog as catalog_lib
from serving import model_config
from serving import request_schema
from serving import signatures as signatures_lib
from serving import tensors
from serving import warmup

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order
from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-bad-import-order

SAVED_MODEL_CLI = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")


class TextLengthIntent(tf.Module):
  """A minimal intent source honouring the contract (rows from the text length)."""

  def __init__(self, catalog_size: int):
    super().__init__()
    self.catalog_size = tf.constant(catalog_size)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string),
                                tf.TensorSpec([], tf.int32)])
  def candidates(self, texts, k):
    rows = (tf.strings.length(texts)[:, tf.newaxis] + tf.range(k)[tf.newaxis, :]) % (
        self.catalog_size)
    return rows, tf.ones(tf.shape(rows), tf.float32)


@pytest.fixture(scope="module")
def exported(ranker_export):
  paths, model, base = ranker_export["paths"], ranker_export["model"], ranker_export["base"]
  # Version 2 carries an intent module: the hook adds a signature and an input.
  intent = TextLengthIntent(len(catalog_lib.Catalog.from_tracks(paths["tracks"])))
  v2 = export.export_serving_model(model, paths["tft"], paths["tracks"], base, n_max=200,
                                   num_warmup_records=9, intent=intent)
  return {"paths": paths, "model": model, "base": base, "v1": ranker_export["v1"], "v2": v2,
          "parsed": warmup.parse_examples(warmup.read_examples(paths["examples"], 100))}


def test_numbered_versions_are_published_without_leftovers(exported):
  assert exported["v1"] == os.path.join(exported["base"], "1")
  assert exported["v2"] == os.path.join(exported["base"], "2")
  assert sorted(os.listdir(exported["base"])) == ["1", "2"]
  assert model_config.list_versions(exported["base"]) == [1, 2]
  info = export.read_info(exported["v1"])
  assert info["n_max"] == 200 and info["intent"] is False
  assert {"rank", "recommend", "score_examples", "transform_features",
          "serving_default"} == set(info["signatures"])


def test_an_existing_version_is_not_overwritten(exported):
  with pytest.raises(ValueError, match="version 1 exists"):
    export.export_serving_model(exported["model"], exported["paths"]["tft"],
                                exported["paths"]["tracks"], exported["base"], version=1)


def test_server_configs_next_to_the_base_dir(exported):
  config_dir = os.path.dirname(exported["base"])
  (entry,) = model_config.read_model_config(os.path.join(config_dir, "models.config"))
  assert entry.name == "melody" and entry.base_path == exported["base"]
  assert entry.labels == {"stable": 1, "canary": 2}
  assert entry.version_policy.select([1, 2, 3]) == (1, 2)
  batching = model_config.read_batching_parameters(
      os.path.join(config_dir, "batching_parameters.txt"))
  assert batching == export.DEFAULT_BATCHING
  assert model_config.read_monitoring_config(
      os.path.join(config_dir, "monitoring.config")).enable


def _serve_graph(version_dir):
  """The ``serve`` MetaGraphDef of a SavedModel, read from saved_model.pb."""
  proto = saved_model_pb2.SavedModel()
  with open(os.path.join(version_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  (graph,) = [m for m in proto.meta_graphs if "serve" in m.meta_info_def.tags]
  return graph


def saved_signatures(version_dir):
  """The signature names of a SavedModel's ``serve`` graph."""
  return set(_serve_graph(version_dir).signature_def) - {"__saved_model_init_op"}


def test_the_model_is_saved_once_and_no_keras_object_is_saved(exported):
  graph = _serve_graph(exported["v1"])
  library = [f.signature.name for f in graph.graph_def.library.function]
  # One listener's scoring is one function, called by both rank and recommend (in
  # their batch-of-one and per-row paths), and so is retrieval.
  assert len([n for n in library if "_score_row_" in n]) == 1, library
  assert len([n for n in library if "_retrieve_row_" in n]) == 1, library
  # Keras objects (the TFT layer is one) would carry Keras' own re-traced functions.
  keras = [node.user_object.identifier for node in graph.object_graph_def.nodes
           if node.HasField("user_object") and "keras" in node.user_object.identifier]
  assert keras == []


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_signature_of_the_saved_model_has_warmup_records(exported, version):
  names = saved_signatures(exported[version])
  assert {"rank", "serving_default", "recommend", "score_examples",
          "transform_features"} <= names
  logs = warmup.read_warmup(exported[version])
  warmed = [log.predict_log.request.model_spec.signature_name for log in logs]
  assert set(warmed) == names
  # The first round calls each signature once, before any is called twice.
  assert sorted(warmed[:len(names)]) == sorted(names)


def test_warmup_records_are_real_replayable_requests(exported):
  logs = warmup.read_warmup(exported["v1"])
  assert len(logs) == 14 <= warmup.MAX_RECORDS
  assert len(warmup.read_warmup(exported["v2"])) == 9
  loaded = tf.saved_model.load(exported["v1"])
  users = set(exported["parsed"]["user_id"])
  for log in logs:
    request = log.predict_log.request
    assert request.model_spec.name == "melody"
    name = request.model_spec.signature_name
    fn = loaded.signatures[name]
    arrays = tensors.decode_inputs(request.inputs, tensors.input_specs(fn), name)
    out = {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in arrays.items()}
                                       ).items()}
    if name in ("score_examples", "transform_features"):
      assert len(arrays["examples"]) >= 1
      assert all(len(v) == len(arrays["examples"]) for v in out.values()), name
      continue
    assert set(arrays["user_id"]) <= users   # listeners of real examples
    assert np.all(np.isfinite(out["fused_score"]))
    if name in ("rank", "serving_default"):
      request_schema.validate_rank(arrays, 200)


def test_an_intent_module_adds_intent_candidates_and_request_text(exported):
  info = export.read_info(exported["v2"])
  assert info["intent"] is True and "intent_candidates" in info["signatures"]
  loaded = tf.saved_model.load(exported["v2"])
  assert "request_text" in loaded.signatures["recommend"].structured_input_signature[1]
  got = loaded.signatures["intent_candidates"](text=tf.constant([b"abc", b""]),
                                               k=tf.constant(2, tf.int32))
  ids = catalog_lib.Catalog.from_tracks(exported["paths"]["tracks"]).track_ids
  np.testing.assert_array_equal(got["track_ids"].numpy()[0], ids[3:5])
  assert list(got["track_ids"].numpy()[1]) == [b"", b""]   # empty text: no candidates
  signatures = {log.predict_log.request.model_spec.signature_name
                for log in warmup.read_warmup(exported["v2"])}
  assert "intent_candidates" in signatures
  assert "request_text" not in tf.saved_model.load(exported["v1"]).signatures[
      "recommend"].structured_input_signature[1]


def test_saved_model_cli_lists_the_signatures(exported):
  result = subprocess.run([SAVED_MODEL_CLI, "show", "--all", "--dir", exported["v1"]],
                          capture_output=True, text=True, timeout=120, check=True)
  for name in ("rank", "serving_default", "recommend", "transform_features",
               "score_examples"):
    assert f"signature_def['{name}']" in result.stdout, name
  for name in ("candidate_ids", "hist_track_ids", "alpha_beta_gamma", "ranked_track_ids",
               "reasons", "fused_score", "examples"):
    assert f"['{name}']" in result.stdout, name


def test_reload_gives_identical_outputs(exported):
  paths, parsed = exported["paths"], exported["parsed"]
  module = signatures_lib.RankerServingModule(exported["model"], paths["tft"], paths["tracks"],
                                   n_max=200)
  fns = module.signatures()
  loaded = tf.saved_model.load(exported["v1"])
  rank = warmup.rank_inputs(parsed, [1, 4], 30)
  rank["exploration_seed"] = np.array([5, -1], np.int64)
  recommend = warmup.recommend_inputs(parsed, [2], 12)
  records = tf.constant(warmup.read_examples(paths["examples"], 6))
  for name, inputs in (("rank", rank), ("serving_default", rank), ("recommend", recommend),
                       ("score_examples", {"examples": records}),
                       ("transform_features", {"examples": records})):
    tensors_in = {k: tf.constant(v) for k, v in inputs.items()}
    want, got = fns[name](**tensors_in), loaded.signatures[name](**tensors_in)
    assert set(want) == set(got), name
    for k in want:
      np.testing.assert_array_equal(got[k].numpy(), want[k].numpy(), err_msg=f"{name}/{k}")


def test_export_from_training_writes_the_model_in_place(exported, tmp_path):
  target = str(tmp_path / "serving_model")
  path = export.export_from_training(exported["model"], exported["paths"]["tft"],
                                     exported["paths"]["tracks"], target)
  assert path == target
  assert os.path.isfile(os.path.join(target, "saved_model.pb"))
  assert 0 < len(warmup.read_warmup(target)) <= warmup.MAX_RECORDS
  assert "score_examples" in tf.saved_model.load(target).signatures
  with pytest.raises(ValueError, match="holds a SavedModel"):
    export.export_from_training(exported["model"], exported["paths"]["tft"],
                                exported["paths"]["tracks"], target)
