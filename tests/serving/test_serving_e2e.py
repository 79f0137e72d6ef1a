"""End to end: export -> ``serving.server.ModelServer`` on 127.0.0.1 -> the official
``PredictionServiceStub`` / ``ModelServiceStub`` on rank, recommend, score_examples,
metadata, status and bad requests, with server-side batching on.
"""

import concurrent.futures
import dataclasses
import os

import grpc
import numpy as np
import pytest

from melody_testing import version_copies
from serving import client
from serving import model_config
from serving import request_schema
from serving import server as server_lib
from serving import tensors
from serving import version_manager
from serving import warmup

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order
from tensorflow_serving.apis import get_model_metadata_pb2  # pylint: disable=g-bad-import-order
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

pytestmark = pytest.mark.slow
N_MAX = 200   # The shared export's (conftest.py).


@pytest.fixture(scope="module")
def served(ranker_export, tmp_path_factory):
  paths = ranker_export["paths"]
  # The session's export as the only version of a private base path, with server configs
  # of its own: other modules add versions and labels to the worker's shared base path.
  config_dir = str(tmp_path_factory.mktemp("e2e") / "models")
  version_dir = version_copies.copy_as_first_version(ranker_export["v1"],
                                                     os.path.join(config_dir, "melody"))
  options = server_lib.ServerOptions(
      port=0, file_system_poll_wait_seconds=0, enable_batching=True,
      batching=model_config.read_batching_parameters(
          os.path.join(config_dir, "batching_parameters.txt")))
  server = server_lib.ModelServer.from_config_file(
      os.path.join(config_dir, "models.config"), options,
      validators={"melody": request_schema.validators(N_MAX)}).start()
  channel = grpc.insecure_channel(server.target)
  yield {"server": server, "channel": channel, "stub":
         prediction_service_pb2_grpc.PredictionServiceStub(channel),
         "loaded": tf.saved_model.load(version_dir), "paths": paths,
         "version_dir": version_dir,
         "parsed": warmup.parse_examples(warmup.read_examples(paths["examples"], 100))}
  channel.close()
  server.stop(grace=1)


def _predict(env, signature, inputs, **spec):
  request = client.predict_request("melody", signature, inputs, **spec)
  response = env["stub"].Predict(request, timeout=60)
  return {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}


def _local(env, signature, inputs):
  out = env["loaded"].signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
  return {k: v.numpy() for k, v in out.items()}


def _assert_same(got, want):
  assert set(got) == set(want)
  for k, v in want.items():
    if v.dtype.kind in "fc":
      np.testing.assert_allclose(got[k], v, atol=1e-5, err_msg=k)
    else:
      np.testing.assert_array_equal(got[k], v, err_msg=k)


def test_rank_over_grpc_equals_the_saved_model(served):
  inputs = warmup.rank_inputs(served["parsed"], [3, 8], 40)
  got = _predict(served, "rank", inputs, version_label="stable")
  _assert_same(got, _local(served, "rank", inputs))
  assert got["ranked_track_ids"].shape == (2, 40)
  _assert_same(_predict(served, "serving_default", inputs), got)


def test_recommend_and_score_examples_over_grpc(served):
  inputs = warmup.recommend_inputs(served["parsed"], [5], 15)
  got = _predict(served, "recommend", inputs, version_label="canary")
  _assert_same(got, _local(served, "recommend", inputs))
  assert got["ranked_track_ids"].shape == (1, 15)
  records = np.asarray(warmup.read_examples(served["paths"]["examples"], 5), dtype=object)
  scored = _predict(served, "score_examples", {"examples": records})
  _assert_same(scored, _local(served, "score_examples", {"examples": records}))


def test_server_signatures_take_the_flat_call_and_answer_like_the_keyword_call(served):
  loaded = version_manager.load_version(served["version_dir"], 1)
  rank = loaded.signatures["rank"]
  assert rank.flat_order is not None and sorted(rank.flat_order) == sorted(rank.inputs)
  inputs = warmup.rank_inputs(served["parsed"], [4, 9], 30)
  keyword = dataclasses.replace(rank, flat_order=None)
  _assert_same(rank.call(inputs), keyword.call(inputs))
  _assert_same(rank.call(inputs), _local(served, "rank", inputs))


def test_batched_concurrent_requests_get_their_own_answers(served):
  """Each request gets the answer it gets alone, to the bit, whether the server merges it
  with concurrent requests or a client sends the rows as one batch. The requests repeat
  tracks: exact ties, which any batch-dependent rounding of the scores would reorder."""
  requests = [warmup.rank_inputs(served["parsed"], [i], 25) for i in range(16)]
  assert sum(len(set(r["candidate_ids"][0])) < 25 for r in requests) >= 4
  with concurrent.futures.ThreadPoolExecutor(8) as pool:
    answers = list(pool.map(lambda r: _predict(served, "rank", r), requests))
  merged = _predict(served, "rank", {k: np.concatenate([r[k] for r in requests])
                                     for k in requests[0]})
  for b, (inputs, got) in enumerate(zip(requests, answers)):
    want = _local(served, "rank", inputs)
    assert set(got) == set(merged) == set(want)
    for k, v in want.items():
      np.testing.assert_array_equal(got[k], v, err_msg=k)
      np.testing.assert_array_equal(merged[k][b:b + 1], v, err_msg=k)


def test_metadata_and_status(served):
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = "melody"
  response = served["stub"].GetModelMetadata(request, timeout=30)
  signatures = get_model_metadata_pb2.SignatureDefMap()
  response.metadata["signature_def"].Unpack(signatures)
  defs = signatures.signature_def
  assert {"rank", "serving_default", "recommend", "score_examples",
          "transform_features"} <= set(defs)
  assert {"candidate_ids", "candidate_is_promo", "hist_track_ids", "alpha_beta_gamma",
          "override", "exploration_seed"} <= set(defs["rank"].inputs)
  assert {"ranked_track_ids", "reasons", "order", "fused_score", "weights",
          "interest"} <= set(defs["rank"].outputs)
  status_request = get_model_status_pb2.GetModelStatusRequest()
  status_request.model_spec.name = "melody"
  status = model_service_pb2_grpc.ModelServiceStub(served["channel"]).GetModelStatus(
      status_request, timeout=30)
  (version,) = status.model_version_status
  assert version.version == 1
  assert version.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.mark.parametrize("change,field", [
    (lambda r: r.update(candidate_ids=np.resize(r["candidate_ids"], (1, N_MAX + 1)),
                        candidate_is_promo=np.zeros((1, N_MAX + 1), np.int64)),
     "candidate_ids"),
    (lambda r: r.update(candidate_is_promo=r["candidate_is_promo"].astype(np.float32)),
     "candidate_is_promo"),
    (lambda r: r.update(candidate_is_promo=r["candidate_is_promo"][:, :3]),
     "candidate_is_promo"),
    (lambda r: r.update(sess_len=np.array([99], np.int64)), "sess_len"),
    (lambda r: r.pop("hist_len"), "hist_len"),
])
def test_bad_requests_are_invalid_argument_naming_the_input(served, change, field):
  inputs = warmup.rank_inputs(served["parsed"], [0], 10)
  change(inputs)
  with pytest.raises(grpc.RpcError) as info:
    _predict(served, "rank", inputs)
  assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert field in info.value.details()
