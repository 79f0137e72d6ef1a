"""Malformed Predict requests get INVALID_ARGUMENT / NOT_FOUND naming what is wrong, and
the server keeps serving correct answers after thousands of them."""

import threading

import grpc
import numpy as np
import pytest

from serving import client
from serving import model_config
from serving import server as server_lib
from serving import tensors
from melody_testing import toy_saved_model

from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
MAX_WORDS = 3


def _at_most_three_words(inputs):
  if inputs["words"].shape[0] > MAX_WORDS:
    raise ValueError(f"words: {inputs['words'].shape[0]} candidates, more than N_max="
                     f"{MAX_WORDS}")


def _broken_validator(inputs):
  raise RuntimeError("validator bug")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = tmp_path_factory.mktemp("models")
  toy_saved_model.write_version(str(root / "toy"), 1, scale=1.0)
  entry = model_config.ModelEntry("toy", str(root / "toy"), version_labels={"stable": 1})
  options = server_lib.ServerOptions(
      port=0, file_system_poll_wait_seconds=0, enable_batching=True,
      batching=model_config.BatchingParameters(max_batch_size=16, batch_timeout_micros=1000),
      max_tensor_elements=10_000)
  server = server_lib.ModelServer(
      [entry], options,
      validators={"toy": {"tag": _at_most_three_words, "fixed": _broken_validator}}).start()
  channel = grpc.insecure_channel(server.target)
  yield server, prediction_service_pb2_grpc.PredictionServiceStub(channel)
  channel.close()
  server.stop(grace=1)


def _request(inputs, signature="serving_default", model="toy", **spec):
  return client.predict_request(model, signature, inputs, **spec)


def _good():
  return dict(toy_saved_model.score_inputs(2, seed=5))


def _with(**changes):
  inputs = _good()
  for name, value in changes.items():
    if value is None:
      del inputs[name]
    else:
      inputs[name] = value
  return _request(inputs)


def _raw(name, dtype, dims, **values):
  """A request whose input ``name`` is a hand-built TensorProto."""
  request = _request({"ids": _good()["ids"]})
  proto = request.inputs[name]
  proto.dtype = dtype
  for d in dims:
    proto.tensor_shape.dim.add(size=d)
  for field, value in values.items():
    if field == "tensor_content":
      proto.tensor_content = value
    else:
      getattr(proto, field).extend(value)
  return request


def _label_request():
  request = _request(_good())
  request.model_spec.version_label = "canary"
  return request


# (case, request factory, expected code, substrings the message must contain)
CASES = [
    ("missing input", lambda: _with(ids=None), INVALID, ["ids", "missing"]),
    ("unknown input", lambda: _with(extra=np.zeros((2,), np.float32)), INVALID,
     ["extra", "unknown"]),
    ("wrong dtype", lambda: _with(x=np.zeros((2, 3), np.float64)), INVALID,
     ["'x'", "float64", "float32"]),
    ("wrong dtype int", lambda: _with(ids=np.zeros((2, 2), np.int32)), INVALID,
     ["'ids'", "int32", "int64"]),
    ("wrong rank", lambda: _with(x=np.zeros((6,), np.float32)), INVALID, ["'x'", "rank 1"]),
    ("wrong trailing dim", lambda: _with(x=np.zeros((2, 4), np.float32)), INVALID,
     ["'x'", "dim 1"]),
    ("batch dims disagree", lambda: _with(ids=np.zeros((3, 2), np.int64)), INVALID,
     ["'ids'", "'x'", "batch"]),
    ("string for float", lambda: _with(x=np.array([["a", "b", "c"]] * 2)), INVALID,
     ["'x'", "string"]),
    ("unknown signature", lambda: _request(_good(), signature="recommend"), INVALID,
     ["'recommend'", "serving_default", "tag", "ragged"]),
    ("unknown model", lambda: _request(_good(), model="nope"), NOT_FOUND, ["'nope'", "toy"]),
    ("unknown version", lambda: _request(_good(), version=9), NOT_FOUND, ["version 9"]),
    ("unknown label", _label_request, NOT_FOUND, ["'canary'", "stable"]),
    ("short tensor_content",
     lambda: _raw("x", types_pb2.DT_FLOAT, [2, 3], tensor_content=b"\0" * 20), INVALID,
     ["'x'", "20 bytes", "24"]),
    ("too many values", lambda: _raw("x", types_pb2.DT_FLOAT, [2, 3], float_val=[1.0] * 7),
     INVALID, ["'x'", "7 values"]),
    ("huge claimed shape", lambda: _raw("x", types_pb2.DT_FLOAT, [10 ** 9, 3], float_val=[1]),
     INVALID, ["'x'", "elements"]),
    ("negative dim", lambda: _raw("x", types_pb2.DT_FLOAT, [-1, 3]), INVALID,
     ["'x'", "negative"]),
    ("unknown output filter",
     lambda: _request(_good(), output_filter=["probability"]), INVALID, ["'probability'"]),
    ("validator rejects",
     lambda: _request({"words": np.array([b"a"] * 4, object)}, signature="tag"), INVALID,
     ["words", "N_max=3"]),
]


@pytest.mark.parametrize("case, make, code, needles", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_with_a_named_cause(served, case, make, code, needles):
  _, stub = served
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(make(), timeout=30)
  assert e.value.code() == code, (case, e.value.details())
  for needle in needles:
    assert needle in e.value.details(), (case, needle, e.value.details())


def test_validator_passes_good_input_and_bug_is_internal(served):
  _, stub = served
  response = stub.Predict(_request({"words": np.array([b"ab"] * 3, object)}, signature="tag"),
                          timeout=30)
  np.testing.assert_array_equal(tensors.from_tensor_proto(response.outputs["length"]),
                                [2, 2, 2])
  with pytest.raises(grpc.RpcError) as e:
    stub.Predict(_request({"m": np.ones((2, 2), np.float32)}, signature="fixed"), timeout=30)
  assert e.value.code() == grpc.StatusCode.INTERNAL and "validator bug" in e.value.details()


@pytest.mark.slow
def test_server_keeps_serving_after_10000_malformed_requests(served):
  server, stub = served
  requests = [(make(), code) for _, make, code, _ in CASES]
  threads, per_thread = 4, 2500
  wrong = []
  lock = threading.Lock()

  def hammer(offset):
    mismatches = []
    for i in range(per_thread):
      request, code = requests[(offset + i) % len(requests)]
      try:
        stub.Predict(request, timeout=30)
        mismatches.append("accepted a malformed request")
      except grpc.RpcError as e:
        if e.code() != code:
          mismatches.append(f"{e.code()}: {e.details()}")
    with lock:
      wrong.extend(mismatches)

  workers = [threading.Thread(target=hammer, args=(k,), daemon=True) for k in range(threads)]
  for w in workers:
    w.start()
  for w in workers:
    w.join(timeout=120)
  assert not any(w.is_alive() for w in workers)
  assert wrong == []

  total = sum(s.value for metric in server.registry.collect()
              if metric.name == "melody_serving_errors"
              for s in metric.samples if s.name.endswith("_total"))
  assert total >= threads * per_thread
  inputs = toy_saved_model.score_inputs(3, seed=8)
  response = stub.Predict(_request(inputs), timeout=30)
  np.testing.assert_array_equal(tensors.from_tensor_proto(response.outputs["score"]),
                                toy_saved_model.expected_score(inputs["x"], inputs["ids"], 1.0))
