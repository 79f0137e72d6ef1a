"""Tests of the bytes the gateway writes itself: the Predict request's inputs
(online.predict_wire) and the Recommend response's items (online.gateway_items), against
the same data built as protobuf messages."""

import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import predict_pb2

from online import gateway
from online import gateway_items
from online import gateway_metrics
from online import gateway_proto
from online import listener_state
from online import predict_wire
from serving import client
from serving import tensors

T0 = 1_700_000_000


def _state() -> listener_state.ListenerState:
  plays = [(T0 - 600 * i, f"t{i:03d}", f"a{i % 3}", 0.25 * (i % 5), float(i % 2), "s1")
           for i in range(7)]
  return listener_state.ListenerState("u7", segment="premium", tenure_days=40.0,
                                      tenure_ts=T0 - 86400, plays=plays, newest_ts=T0)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 16383, 16384, 2**21, 2**35, -1])
def test_varints_match_protobuf(value):
  packed = tensor_pb2.TensorProto(int64_val=[value]).SerializeToString()
  assert packed == predict_wire.length_delimited(b"\x52", predict_wire.varint(value))


@pytest.mark.parametrize("text,weights", [("", None), ("calm piano", [2.0, -1.0, 0.5])])
def test_predict_request_bytes_parse_to_the_request_built_as_a_message(text, weights):
  fields = {"user_id": "u7", "context": "workout", "surface": "home", "k": 25,
            "text": text, "weights": weights}
  inputs = gateway.model_inputs(_state(), fields, T0 + 60)
  # A few dtypes and shapes the gateway does not send today, and one for the generic path.
  inputs.update(empty=np.zeros((1, 0), np.float32), wide=np.arange(5000, dtype=np.int64),
                flags=np.asarray([True, False]), words=np.asarray(["héllo"]))
  expected = client.predict_request("melody", "recommend", inputs, version_label="canary")
  head = client.predict_request("melody", "recommend", {}, version_label="canary")
  sent = head.SerializeToString() + predict_wire.predict_inputs(inputs)
  assert predict_pb2.PredictRequest.FromString(sent) == expected
  for name, value in inputs.items():
    assert predict_wire.tensor_bytes(value) == expected.inputs[name].SerializeToString(), name


def _answer(width=6, placed=4, float_val_head=False, long_reason=False):
  """A recommend answer as the model server sends it (tensor_content floats, or float_val
  for one head as stock TF Serving writes them) and as numpy arrays."""
  rng = np.random.default_rng(3)
  arrays = {name: rng.random((1, width), dtype=np.float32) for name in
            ("interest", "interest_skip", "subscription", "fused_score", "retrieval_score")}
  ids = [f"t{i:02d}".encode() for i in range(placed)] + [b""] * (width - placed)
  arrays["ranked_track_ids"] = np.asarray([ids], dtype=object)
  why = [b"promo" * (40 if long_reason and i == 1 else 1) for i in range(width)]
  arrays["reasons"] = np.asarray([why], dtype=object)
  arrays["weights"] = np.asarray([[0.5, 0.25, 2.0]], np.float32)
  arrays["pool_ids"] = rng.random((1, width + 1), dtype=np.float32)   # not per position
  response = predict_pb2.PredictResponse()
  for name, value in arrays.items():
    tensors.fill_tensor_proto(response.outputs[name], value)
  if float_val_head:
    response.outputs["interest"].ClearField("tensor_content")
    response.outputs["interest"].float_val.extend(arrays["interest"].ravel().tolist())
  return predict_pb2.PredictResponse.FromString(response.SerializeToString()), arrays


def _reference(arrays):
  """The response items built field by field from the decoded arrays."""
  response = gateway_proto.RecommendResponse()
  heads = ("interest", "interest_skip", "subscription")
  for i, track in enumerate(arrays["ranked_track_ids"][0]):
    if track:
      item = response.items.add(track_id=track.decode(),
                                fused_score=arrays["fused_score"][0, i],
                                reasons=arrays["reasons"][0, i].decode())
      for name in heads:
        item.head_scores[name] = arrays[name][0, i]
  response.weights.alpha, response.weights.beta, response.weights.gamma = (
      arrays["weights"][0].tolist())
  return response


@pytest.mark.parametrize("float_val_head,long_reason", [(False, False), (True, True)])
def test_encoded_items_equal_the_items_built_field_by_field(float_val_head, long_reason):
  answer, arrays = _answer(float_val_head=float_val_head, long_reason=long_reason)
  response = gateway_proto.RecommendResponse()
  # What Gateway.recommend does with a model answer.
  response.MergeFromString(
      gateway._answer_items(response, answer.outputs))   # pylint: disable=protected-access
  assert response == _reference(arrays)
  assert [item.track_id for item in response.items] == ["t00", "t01", "t02", "t03"]
  assert set(response.items[0].head_scores) == {"interest", "interest_skip", "subscription"}


def test_an_answer_with_no_placed_position_has_no_items():
  answer, _ = _answer(placed=0)
  assert gateway_items.encode_items(answer.outputs) == b""


class _RecordingModel:
  """A model server stand-in: keeps the request bytes the gateway would send."""
  model, target = "melody", "test"

  def __init__(self):
    self.sent = []

  def predict(self, inputs, version_label=None, encoded_inputs=b""):
    head = client.predict_request("melody", "recommend", {}, version_label=version_label)
    self.sent.append(head.SerializeToString() + predict_wire.predict_inputs(inputs)
                     + encoded_inputs)
    return _answer()[0]


class _OneStateStore:
  def get(self, user_id):
    return _state() if user_id == "u7" else None


@pytest.mark.parametrize("weights", [None, (2.0, -1.0, 0.5)])
def test_the_sent_request_with_prepared_controls_is_the_model_inputs_request(weights):
  model = _RecordingModel()
  gw = gateway.Gateway(_OneStateStore(), model, gateway_metrics.GatewayMetrics(),
                       clock=lambda: T0 + 60)
  request = gateway_proto.RecommendRequest(user_id="u7", context="workout", k=25,
                                           experiment="canary")
  if weights is not None:
    request.weights_override.alpha, request.weights_override.beta, \
        request.weights_override.gamma = weights
  response = gw.recommend(request)
  assert response.source == "model" and len(response.items) == 4
  expected = client.predict_request(
      "melody", "recommend", gateway.model_inputs(_state(), gw.check(request), T0 + 60),
      version_label="canary")
  sent = predict_pb2.PredictRequest.FromString(model.sent[0])
  assert sent == expected
  assert list(tensors.from_tensor_proto(sent.inputs["override"])) == [
      0 if weights is None else 1]
