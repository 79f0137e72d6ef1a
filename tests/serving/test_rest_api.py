"""TF Serving's REST API on a real ``ModelServer`` (toy SavedModel), over HTTP.

The examples of TF Serving's REST docs (row and columnar predict, b64 bytes, versions
and labels, status, metadata) answered as the stock server shapes them and equal to the
gRPC answers; the error mapping; the metrics page on the REST port; the REST client;
the flags; and the REST side of deadlines and the drain.
"""

import argparse
import base64
import concurrent.futures
import http.client
import json
import re
import threading
import time

from google.protobuf import json_format
import grpc
import numpy as np
import pytest

from serving import client
from serving import model_config
from serving import rest_client
from serving import server as server_lib
from serving import server_main
from melody_testing import held_calls
from melody_testing import toy_saved_model

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("models") / "toy")
  toy_saved_model.write_version(base, 1, scale=1.0)
  toy_saved_model.write_version(base, 2, scale=2.0)
  entry = model_config.ModelEntry("toy", base, model_config.VersionPolicy("all"),
                                  {"stable": 1, "canary": 2})
  options = server_lib.ServerOptions(port=0, rest_api_port=0, file_system_poll_wait_seconds=0)
  server = server_lib.ModelServer([entry], options).start()
  yield server, base
  server.stop(grace=1)


def _call(port, method, path, body=None):
  """``(status, JSON answer)`` of one call on a fresh connection."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
  try:
    payload = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    connection.request(method, path, body=payload)
    response = connection.getresponse()
    text = response.read().decode()
    assert response.getheader("Content-Type") == "application/json", text
    return response.status, json.loads(text)
  finally:
    connection.close()


def _rest(served, method, path, body=None):
  return _call(served[0].rest_api_port, method, path, body)


def _grpc_predict(server, signature, inputs, **spec):
  with client.ModelClient(server.target, timeout=60) as c:
    return c.predict("toy", signature, inputs, **spec)


def test_row_format_answers_per_instance_and_equals_grpc(served):
  inputs = toy_saved_model.score_inputs(3, seed=5)
  instances = [{"x": x.tolist(), "ids": ids.tolist()} for x, ids in zip(inputs["x"],
                                                                       inputs["ids"])]
  status, answer = _rest(served, "POST", "/v1/models/toy:predict", {"instances": instances})
  assert status == 200
  expected = toy_saved_model.expected_score(inputs["x"], inputs["ids"], 2.0)
  # Several outputs: one object per instance, newest version (2) by default.
  assert answer == {"predictions": [{"score": float(s), "version": 2} for s in expected]}
  grpc_out = _grpc_predict(served[0], "serving_default", inputs)
  np.testing.assert_array_equal(
      np.array([p["score"] for p in answer["predictions"]], np.float32), grpc_out["score"])
  # One output: the values themselves, one per instance.
  status, answer = _rest(served, "POST", "/v1/models/toy:predict",
                         {"signature_name": "ragged", "instances": [[1, 2, 3, 4],
                                                                    [0.5, 0, 0, 0]]})
  assert (status, answer) == (200, {"predictions": [20.0, 1.0]})


def test_columnar_format_answers_per_output_and_equals_grpc(served):
  inputs = toy_saved_model.score_inputs(2, seed=6)
  body = {"signature_name": "serving_default",
          "inputs": {name: value.tolist() for name, value in inputs.items()}}
  status, answer = _rest(served, "POST", "/v1/models/toy/versions/1:predict", body)
  assert status == 200
  grpc_out = _grpc_predict(served[0], "serving_default", inputs, version=1)
  assert answer == {"outputs": {name: value.tolist() for name, value in grpc_out.items()}}
  # One input, one output, no batch dim: the bare values.
  status, answer = _rest(served, "POST", "/v1/models/toy:predict",
                         {"signature_name": "fixed", "inputs": [[1, 2], [3, 4]]})
  assert (status, answer) == (200, {"outputs": 20.0})


def test_b64_bytes_in_and_out(served):
  words = [b"rain", b"\xffrain", "caf\u00e9".encode()]
  body = {"signature_name": "tag",
          "instances": ["rain", {"b64": base64.b64encode(words[1]).decode()}, "caf\u00e9"]}
  status, answer = _rest(served, "POST", "/v1/models/toy:predict", body)
  assert status == 200
  # Text that is not UTF-8 comes back as {"b64": ...}.
  assert answer == {"predictions": [
      {"length": 4, "upper": "RAIN"},
      {"length": 5, "upper": {"b64": base64.b64encode(b"\xffRAIN").decode()}},
      {"length": 5, "upper": "CAF\u00e9"}]}
  grpc_out = _grpc_predict(served[0], "tag", {"words": np.array(words, dtype=object)})
  assert list(grpc_out["upper"]) == [b"RAIN", b"\xffRAIN", "CAF\u00e9".encode()]


def test_versions_and_labels_route_like_grpc(served):
  inputs = toy_saved_model.score_inputs(1, seed=7)
  body = {"inputs": {name: value.tolist() for name, value in inputs.items()}}
  for path, scale in [("/versions/1", 1.0), ("/versions/2", 2.0), ("/labels/stable", 1.0),
                      ("/labels/canary", 2.0), ("", 2.0)]:
    status, answer = _rest(served, "POST", f"/v1/models/toy{path}:predict", body)
    assert status == 200, answer
    assert answer["outputs"]["score"] == toy_saved_model.expected_score(
        inputs["x"], inputs["ids"], scale).tolist(), path
    assert answer["outputs"]["version"] == [int(scale)]


def test_status_is_get_model_status_as_json(served):
  def entry(version):
    return {"version": str(version), "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""}}
  assert _rest(served, "GET", "/v1/models/toy") == (
      200, {"model_version_status": [entry(2), entry(1)]})
  assert _rest(served, "GET", "/v1/models/toy/versions/1") == (
      200, {"model_version_status": [entry(1)]})
  assert _rest(served, "GET", "/v1/models/toy/labels/canary") == (
      200, {"model_version_status": [entry(2)]})


def test_metadata_is_the_signature_defs_as_tf_serving_prints_them(served):
  status, answer = _rest(served, "GET", "/v1/models/toy/labels/stable/metadata")
  assert status == 200
  assert answer["model_spec"] == {"name": "toy", "version": "1", "signature_name": ""}
  signatures = answer["metadata"]["signature_def"]["signature_def"]
  assert set(signatures) == set(toy_saved_model.SIGNATURES)
  x = signatures["serving_default"]["inputs"]["x"]
  assert x["dtype"] == "DT_FLOAT"
  assert [d["size"] for d in x["tensor_shape"]["dim"]] == ["-1", "3"]
  # Exactly the gRPC GetModelMetadata answer.
  parsed = get_model_metadata_pb2.SignatureDefMap()
  json_format.ParseDict(answer["metadata"]["signature_def"], parsed)
  with client.ModelClient(served[0].target, timeout=60) as c:
    assert dict(parsed.signature_def) == c.metadata("toy", version_label="stable")


@pytest.mark.parametrize("method, path, body, code, message", [
    ("POST", "/v1/models/toy:predict", {"inputs": {"x": [[1, 2, 3]]}}, 400,
     r"missing input\(s\) \['ids'\]"),
    ("POST", "/v1/models/toy:predict", {"inputs": {"x": [["a", 2, 3]], "ids": [[1, 2]]}}, 400,
     r"inputs\['x'\]: \"a\""),
    ("POST", "/v1/models/toy:predict", {"inputs": {"x": [[1, 2]], "ids": [[1, 2]]}}, 400,
     r"input 'x' has size 2 in dim 1"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "nope", "instances": [1]}, 400,
     r"signature 'nope' not found"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "fixed", "instances": [[1, 2],
                                                                                 [3, 4]]},
     400, r"output 'total' is a scalar"),
    ("POST", "/v1/models/toy:predict", b'{"instances": [1,', 400, "malformed JSON"),
    ("POST", "/v1/models/toy:predict", b"", 400, "body is empty"),
    ("POST", "/v1/models/nope:predict", {"instances": [1]}, 404, "model 'nope' is not served"),
    ("POST", "/v1/models/toy/versions/9:predict", {"instances": [1]}, 404,
     "version 9 is not loaded"),
    ("POST", "/v1/models/toy/labels/beta:predict", {"instances": [1]}, 404,
     "no version label 'beta'"),
    ("GET", "/v1/models/nope", None, 404, "model 'nope' is not served"),
    ("GET", "/v1/models/toy/versions/9", None, 404, "has no version 9"),
    ("GET", "/v1/models/toy/labels/beta/metadata", None, 404, "no version label 'beta'"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "explode", "inputs": [1]}, 500,
     "signature 'explode' failed"),
    ("POST", "/v1/models/toy:classify", {"examples": []}, 501, "classify is not implemented"),
    ("GET", "/v1/models", None, 400, "Missing model name"),
    ("GET", "/v1/things", None, 400, "Malformed request"),
    ("GET", "/favicon.ico", None, 404, "no REST route"),
])
def test_errors_map_to_http_status_with_the_message(served, method, path, body, code, message):
  status, answer = _rest(served, method, path, body)
  assert status == code, answer
  assert set(answer) == {"error"} and re.search(message, answer["error"]), answer


def test_errors_and_requests_are_counted_like_grpc(served):
  server = served[0]
  labels = {"api": "predict", "model": "toy", "signature": "serving_default",
            "code": "INVALID_ARGUMENT"}
  before = server.registry.get_sample_value("melody_serving_errors_total", labels) or 0
  assert _rest(served, "POST", "/v1/models/toy:predict", {"inputs": {"x": [[1]]}})[0] == 400
  assert server.registry.get_sample_value("melody_serving_errors_total", labels) == before + 1


def test_metrics_page_is_on_the_rest_port(served):
  _rest(served, "POST", "/v1/models/toy:predict", {"signature_name": "tag", "instances": ["a"]})
  connection = http.client.HTTPConnection("127.0.0.1", served[0].rest_api_port, timeout=60)
  try:
    connection.request("GET", "/monitoring/prometheus/metrics")
    response = connection.getresponse()
    text = response.read().decode()
  finally:
    connection.close()
  assert response.status == 200 and response.getheader("Content-Type").startswith("text/plain")
  assert re.search(r'melody_serving_requests_total\{api="predict",model="toy",'
                   r'signature="tag"\} [1-9]', text)
  assert 'melody_serving_loaded_version{model="toy",version="2"} 1.0' in text


def test_concurrent_calls_on_kept_alive_connections_get_their_own_answers(served):
  def worker(seed):
    inputs = toy_saved_model.score_inputs(2, seed=seed)
    body = json.dumps({"inputs": {k: v.tolist() for k, v in inputs.items()}}).encode()
    connection = http.client.HTTPConnection("127.0.0.1", served[0].rest_api_port, timeout=60)
    try:
      answers = []
      for _ in range(3):   # One connection, several calls (HTTP/1.1 keep-alive).
        connection.request("POST", "/v1/models/toy/versions/1:predict", body=body)
        answers.append(json.loads(connection.getresponse().read())["outputs"]["score"])
    finally:
      connection.close()
    expected = toy_saved_model.expected_score(inputs["x"], inputs["ids"], 1.0).tolist()
    return all(a == expected for a in answers)
  with concurrent.futures.ThreadPoolExecutor(6) as pool:
    assert all(pool.map(worker, range(12)))


def test_rest_client_matches_the_grpc_client(served):
  server = served[0]
  inputs = toy_saved_model.score_inputs(3, seed=8)
  words = {"words": np.array([b"rain", b"\xff"], dtype=object)}
  with rest_client.RestClient(f"127.0.0.1:{server.rest_api_port}", timeout=60) as rest, \
      client.ModelClient(server.target, timeout=60) as rpc:
    for signature, args, spec in [("serving_default", inputs, {"version_label": "stable"}),
                                  ("serving_default", inputs, {}), ("tag", words, {}),
                                  ("fixed", {"m": np.ones((2, 2), np.float32)},
                                   {"version": 1})]:
      got = rest.predict("toy", signature, args, **spec)
      want = rpc.predict("toy", signature, args, **spec)
      assert set(got) == set(want)
      for name in want:
        assert got[name].dtype == want[name].dtype and got[name].shape == want[name].shape
        np.testing.assert_array_equal(got[name], want[name])
    assert rest.status("toy") == rpc.status("toy")
    assert rest.metadata("toy", version=2) == rpc.metadata("toy", version=2)
    with pytest.raises(rest_client.RestError) as e:
      rest.status("nope")
    assert e.value.status == 404 and "nope" in e.value.message


def test_serve_flags_follow_the_stock_server():
  parser = argparse.ArgumentParser()
  server_main.add_serve_arguments(parser)
  common = ["--model_name", "toy", "--model_base_path", "/nonexistent"]
  options = server_main.server_from_args(parser.parse_args(common)).options
  assert (options.rest_api_port, options.rest_api_timeout_seconds, options.metrics_port) == (
      8501, 30.0, None)
  options = server_main.server_from_args(parser.parse_args(
      common + ["--rest_api_port", "0", "--rest_api_timeout_in_ms", "250",
                "--metrics-port", "0"])).options
  assert (options.rest_api_port, options.rest_api_timeout_seconds, options.metrics_port) == (
      None, 0.25, 0)
  with pytest.raises(ValueError, match="both 8500"):
    server_main.server_from_args(parser.parse_args(common + ["--rest_api_port", "8500"]))


def test_rest_deadline_and_drain(served):
  """A REST call past its deadline answers 504 without running the model; while the
  server drains, status, metadata and predict answer 503 and a running call finishes."""
  held = held_calls.HeldCalls()
  entry = model_config.ModelEntry("toy", served[1], model_config.VersionPolicy(
      "specific", versions=(1,)))
  options = server_lib.ServerOptions(port=0, rest_api_port=0, rest_api_timeout_seconds=0.2,
                                     file_system_poll_wait_seconds=0)
  server = server_lib.ModelServer([entry], options, validators={"toy": {"tag": held}}).start()
  port = server.rest_api_port
  tag = {"signature_name": "tag", "instances": ["rain"]}
  try:
    # The validator holds the call past its 0.2 s deadline: the model is not run.
    answer = {}
    caller = threading.Thread(target=lambda: answer.update(
        result=_call(port, "POST", "/v1/models/toy:predict", tag)), daemon=True)
    caller.start()
    assert held_calls.wait_until(lambda: held.count or not caller.is_alive())
    time.sleep(0.3)   # Past the deadline, whenever the call reached the validator.
    held.release.set()
    caller.join(timeout=60)
    status, body = answer["result"]
    assert status == 504 and "deadline" in body["error"], body
    assert server.registry.get_sample_value(
        "melody_serving_errors_total", {"api": "predict", "model": "toy", "signature": "tag",
                                        "code": "DEADLINE_EXCEEDED"}) == 1
    assert not server.registry.get_sample_value(
        "melody_serving_batch_rows_count", {"model": "toy", "signature": "tag"})

    # Drain: a gRPC call (no REST deadline) is held while the server stops.
    held.release.clear()
    entered = held.count
    with grpc.insecure_channel(server.target) as channel:
      running = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict.future(
          client.predict_request("toy", "tag", {"words": np.array([b"a"], object)}),
          timeout=120)
      assert held_calls.wait_until(lambda: held.count == entered + 1)
      stopper = threading.Thread(target=lambda: server.stop(grace=120), daemon=True)
      stopper.start()
      assert held_calls.wait_until(lambda: server.draining)
      for method, path, body in [("GET", "/v1/models/toy", None),
                                 ("GET", "/v1/models/toy/metadata", None),
                                 ("POST", "/v1/models/toy:predict", tag)]:
        status, answer = _call(port, method, path, body)
        assert status == 503 and "shutting down" in answer["error"], (path, answer)
      held.release.set()
      assert set(running.result(timeout=60).outputs) == {"length", "upper"}
      stopper.join(timeout=60)
      assert not stopper.is_alive()
  finally:
    held.release.set()
    server.stop(grace=0)
