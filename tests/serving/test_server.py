"""The model server driven over real gRPC with the official TF Serving stubs."""

import argparse
import gc
import os
import re
import subprocess
import sys
import urllib.request

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import numpy as np
import pytest

from serving import cli
from serving import client
from serving import model_config
from serving import server as server_lib
from serving import server_main
from serving import tensors
from melody_testing import toy_saved_model

from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = tmp_path_factory.mktemp("models")
  toy_saved_model.write_version(str(root / "toy"), 1, scale=1.0)
  toy_saved_model.write_version(str(root / "toy"), 2, scale=2.0)
  toy_saved_model.write_version(str(root / "other"), 7, scale=10.0)
  config = model_config.write_model_config(str(root / "models.config"), [
      model_config.ModelEntry("toy", str(root / "toy"),
                              model_config.VersionPolicy("specific", versions=(1, 2)), {
                                  "stable": 1,
                                  "canary": 2
                              }),
      model_config.ModelEntry("other", str(root / "other")),
  ])
  options = server_lib.ServerOptions(port=0, metrics_port=0,
                                     file_system_poll_wait_seconds=0)
  server = server_lib.ModelServer.from_config_file(config, options).start()
  channel = grpc.insecure_channel(server.target)
  yield server, channel, root
  channel.close()
  server.stop(grace=1)


def _predict(channel, model, signature, inputs, **spec):
  request = client.predict_request(model, signature, inputs, **spec)
  return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def _outputs(response):
  return {k: tensors.from_tensor_proto(v) for k, v in response.outputs.items()}


def test_predict_serving_default_exact(served):
  _, channel, _ = served
  inputs = toy_saved_model.score_inputs(5, seed=3)
  response = _predict(channel, "toy", "serving_default", inputs)
  out = _outputs(response)
  # Default version is the newest loaded one (2, scale 2).
  assert response.model_spec.version.value == 2
  assert response.model_spec.signature_name == "serving_default"
  np.testing.assert_array_equal(out["score"],
                                toy_saved_model.expected_score(inputs["x"], inputs["ids"], 2.0))
  np.testing.assert_array_equal(out["version"], [2] * 5)
  assert out["score"].dtype == np.float32 and out["version"].dtype == np.int64


def test_predict_other_signatures_exact(served):
  _, channel, _ = served
  out = _outputs(_predict(channel, "toy", "tag",
                          {"words": np.array([b"rain", b"", "caf\u00e9".encode()], object)}))
  np.testing.assert_array_equal(out["length"], [4, 0, 5])
  assert list(out["upper"]) == [b"RAIN", b"", "CAF\u00e9".encode()]

  out = _outputs(_predict(channel, "toy", "fixed",
                          {"m": np.array([[1, 2], [3, 4]], np.float32)}, version=1))
  assert out["total"].shape == () and out["total"] == 10.0

  out = _outputs(_predict(channel, "toy", "ragged",
                          {"v": np.array([[1, 2, 3, 4], [0.5, 0, 0, 0]], np.float32)}))
  np.testing.assert_array_equal(out["row_sum"], [20.0, 1.0])

  out = _outputs(_predict(channel, "toy", "explode", {"flag": np.array([0, -3], np.int32)}))
  np.testing.assert_array_equal(out["out"], [0, -6])

  out = _outputs(_predict(channel, "other", "serving_default", toy_saved_model.score_inputs(1, 0)))
  inputs = toy_saved_model.score_inputs(1, 0)
  np.testing.assert_array_equal(out["score"],
                                toy_saved_model.expected_score(inputs["x"], inputs["ids"], 10.0))


def test_output_filter_returns_only_named_outputs(served):
  _, channel, _ = served
  response = _predict(channel, "toy", "serving_default", toy_saved_model.score_inputs(2, 1),
                      output_filter=["version"])
  assert list(response.outputs) == ["version"]


def test_version_and_label_routing(served):
  _, channel, _ = served
  inputs = toy_saved_model.score_inputs(3, seed=4)
  for spec, version, scale in [({"version": 1}, 1, 1.0), ({"version": 2}, 2, 2.0),
                               ({"version_label": "stable"}, 1, 1.0),
                               ({"version_label": "canary"}, 2, 2.0)]:
    response = _predict(channel, "toy", "serving_default", inputs, **spec)
    assert response.model_spec.version.value == version, spec
    np.testing.assert_array_equal(
        _outputs(response)["score"],
        toy_saved_model.expected_score(inputs["x"], inputs["ids"], scale))


def test_get_model_metadata_signature_defs(served):
  _, channel, _ = served
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
  request.model_spec.name = "toy"
  request.model_spec.version_label = "stable"
  response = stub.GetModelMetadata(request, timeout=30)
  assert response.model_spec.version.value == 1
  signatures = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signatures)
  assert set(signatures.signature_def) == set(toy_saved_model.SIGNATURES)
  default = signatures.signature_def["serving_default"]
  assert default.inputs["x"].dtype == types_pb2.DT_FLOAT
  assert [d.size for d in default.inputs["x"].tensor_shape.dim] == [-1, 3]
  assert default.inputs["ids"].dtype == types_pb2.DT_INT64
  assert set(default.outputs) == {"score", "version"}
  assert signatures.signature_def["tag"].inputs["words"].dtype == types_pb2.DT_STRING

  request.ClearField("metadata_field")
  with pytest.raises(grpc.RpcError) as e:
    stub.GetModelMetadata(request, timeout=30)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_get_model_status(served):
  _, channel, _ = served
  stub = model_service_pb2_grpc.ModelServiceStub(channel)
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = "toy"
  response = stub.GetModelStatus(request, timeout=30)
  assert [(s.version, s.state, s.status.error_code)
          for s in response.model_version_status] == [(2, AVAILABLE, 0), (1, AVAILABLE, 0)]
  request.model_spec.version_label = "stable"
  response = stub.GetModelStatus(request, timeout=30)
  assert [s.version for s in response.model_version_status] == [1]
  request.model_spec.version.value = 5
  with pytest.raises(grpc.RpcError) as e:
    stub.GetModelStatus(request, timeout=30)
  assert e.value.code() == grpc.StatusCode.NOT_FOUND and "5" in e.value.details()


def test_health_serving(served):
  server, channel, _ = served
  stub = health_pb2_grpc.HealthStub(channel)
  for service in ("", "toy", "other"):
    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    assert response.status == health_pb2.HealthCheckResponse.SERVING, service
  assert server.loaded_versions("toy") == (1, 2)
  # The heap held before the first load is frozen out of the collector's view.
  assert gc.get_freeze_count() > 0


def test_unimplemented_apis(served):
  _, channel, _ = served
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  request = classification_pb2.ClassificationRequest()
  request.model_spec.name = "toy"
  with pytest.raises(grpc.RpcError) as e:
    stub.Classify(request, timeout=30)
  assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
  assert served[0].registry.get_sample_value(
      "melody_serving_errors_total",
      {"api": "classify", "model": "toy", "signature": "", "code": "UNIMPLEMENTED"}) == 1


def test_model_failure_is_internal_counted_and_server_keeps_serving(served):
  server, channel, _ = served
  labels = {"api": "predict", "model": "toy", "signature": "explode", "code": "INTERNAL"}
  before = server.registry.get_sample_value("melody_serving_errors_total", labels) or 0
  for _ in range(3):
    with pytest.raises(grpc.RpcError) as e:
      _predict(channel, "toy", "explode", {"flag": np.array([0, 1], np.int32)})
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "explode" in e.value.details()
  assert server.registry.get_sample_value("melody_serving_errors_total", labels) == before + 3
  out = _outputs(_predict(channel, "toy", "explode", {"flag": np.array([4], np.int32)[:0]}))
  assert out["out"].shape == (0,)
  out = _outputs(_predict(channel, "toy", "explode", {"flag": np.array([-1], np.int32)}))
  np.testing.assert_array_equal(out["out"], [-2])


def test_metrics_page(served):
  server, channel, _ = served
  _predict(channel, "toy", "tag", {"words": np.array([b"a"], object)})
  url = f"http://127.0.0.1:{server.metrics_port}/monitoring/prometheus/metrics"
  with urllib.request.urlopen(url, timeout=30) as page:
    text = page.read().decode()
  assert re.search(r'melody_serving_request_latency_seconds_count\{model="toy",'
                   r'signature="tag"\} [1-9]', text)
  assert 'melody_serving_loaded_version{model="toy",version="1"} 1.0' in text
  assert 'melody_serving_loaded_version{model="other",version="7"} 1.0' in text
  assert re.search(r'melody_serving_requests_total\{api="predict",model="toy",'
                   r'signature="tag"\} [1-9]', text)


def test_client_wraps_the_same_calls(served):
  server, _, _ = served
  with client.ModelClient(server.target, timeout=30) as c:
    inputs = toy_saved_model.score_inputs(2, seed=9)
    outputs, version = c.predict_full("toy", "serving_default", inputs, version_label="stable")
    assert version == 1
    np.testing.assert_array_equal(outputs["score"],
                                  toy_saved_model.expected_score(inputs["x"], inputs["ids"], 1.0))
    assert set(c.metadata("toy", version=2)) == set(toy_saved_model.SIGNATURES)
    assert c.status("toy") == (client.VersionStatus(2, "AVAILABLE"),
                               client.VersionStatus(1, "AVAILABLE"))
    assert c.health() == "SERVING"
    with pytest.raises(ValueError, match="not both"):
      c.predict("toy", "serving_default", inputs, version=1, version_label="stable")


def test_serve_cli_arguments():
  parser = argparse.ArgumentParser(prog="melody")
  cli.register(parser.add_subparsers(dest="command"))
  args = parser.parse_args(["serve", "--model_name", "m", "--model_base_path", "/x",
                            "--port", "0", "--enable_batching",
                            "--file_system_poll_wait_seconds", "0.5"])
  assert (args.model_name, args.model_base_path, args.port, args.host) == ("m", "/x", 0,
                                                                           "127.0.0.1")
  assert args.enable_batching and args.file_system_poll_wait_seconds == 0.5
  assert args.handler.__module__ == "serving.cli"
  args.model_config_file = "/models.config"
  with pytest.raises(ValueError, match="not both"):
    server_main.server_from_args(args)


def test_cli_imports_neither_tensorflow_nor_grpc():
  code = ("import sys; from serving import cli; "
          "print(sorted(m for m in ('tensorflow', 'grpc') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                       text=True, check=True, timeout=120).stdout
  assert out.strip() == "[]"


def test_melody_flags_are_kebab_case_and_stock_flags_keep_their_names():
  parser = argparse.ArgumentParser()
  server_main.add_serve_arguments(parser)
  actions = parser._actions  # pylint: disable=protected-access
  flags = {flag for action in actions for flag in action.option_strings}
  stock = {"--port", "--model_config_file", "--model_name", "--model_base_path",
           "--enable_batching", "--batching_parameters_file", "--monitoring_config_file",
           "--file_system_poll_wait_seconds", "--rest_api_port", "--rest_api_timeout_in_ms"}
  assert stock <= flags
  assert {f for f in flags - stock if "_" in f} == set()
  args = parser.parse_args(["--metrics-port", "0", "--grace-seconds", "3",
                            "--input-validator", "m:s=pkg.mod:fn"])
  assert (args.metrics_port, args.grace_seconds, args.input_validator) == (
      0, 3.0, ["m:s=pkg.mod:fn"])


def test_main_reports_bad_configuration(tmp_path, capsys):
  assert server_main.main(["--model_config_file", str(tmp_path / "missing.config"),
                           "--port", "0", "--metrics-port", "-1"]) == 2
  assert "missing.config" in capsys.readouterr().err
  (tmp_path / "bad.txt").write_text("max_batch_size { value: 0 }")
  assert server_main.main(["--model_name", "m", "--model_base_path", str(tmp_path),
                           "--batching_parameters_file", str(tmp_path / "bad.txt")]) == 2
  assert "max_batch_size" in capsys.readouterr().err
