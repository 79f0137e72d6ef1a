"""Shutdown: the drain is visible (health NOT_SERVING, new calls refused) and its end is hard.

In-process servers show the drain step by step, with Predict calls held in a validator
(``melody_testing.held_calls``); one ``melody serve`` process shows that SIGTERM ends
the process within the grace period plus a margin even while a model call never returns.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import numpy as np
import pytest

from serving import client
from serving import model_config
from serving import server as server_lib
from serving import tensors
from melody_testing import held_calls
from melody_testing import toy_saved_model

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORDS = {"words": np.array([b"rain"], object)}


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("models") / "toy")
  toy_saved_model.write_version(path, 1, scale=2.0)
  return path


def _start(base_path, held):
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  return server_lib.ModelServer([model_config.ModelEntry("toy", base_path)], options,
                                validators={"toy": {"tag": held}}).start()


def _health(channel, timeout=30):
  return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                   timeout=timeout).status


def test_stop_drains_visibly_and_lets_a_running_call_finish(base_path):
  held = held_calls.HeldCalls()
  server = _start(base_path, held)
  channel = grpc.insecure_channel(server.target)
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  stopped = {}
  stopper = threading.Thread(target=lambda: stopped.update(running=server.stop(grace=120)),
                             daemon=True)
  try:
    assert _health(channel) == health_pb2.HealthCheckResponse.SERVING
    running = stub.Predict.future(client.predict_request("toy", "tag", WORDS), timeout=120)
    assert held.wait_entered()
    stopper.start()
    # Health turns NOT_SERVING at once and keeps answering while the call runs.
    assert held_calls.wait_until(
        lambda: _health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING)
    assert server.draining
    with pytest.raises(grpc.RpcError) as e:
      stub.Predict(client.predict_request("toy", "serving_default",
                                          toy_saved_model.score_inputs(1, seed=0)), timeout=30)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in e.value.details()
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "toy"
    with pytest.raises(grpc.RpcError) as e:
      stub.GetModelMetadata(metadata, timeout=30)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "toy"
    answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status,
                                                                             timeout=30)
    assert [s.version for s in answer.model_version_status] == [1]
    held.release.set()
    # The running call ends with its answer, and then the drain is over.
    outputs = {k: tensors.from_tensor_proto(v)
               for k, v in running.result(timeout=60).outputs.items()}
    np.testing.assert_array_equal(outputs["length"], [4])
    stopper.join(timeout=60)
    assert not stopper.is_alive() and stopped["running"] == 0
  finally:
    held.release.set()
    channel.close()
    server.stop(grace=0)


def test_stop_does_not_wait_past_the_grace_period_for_a_running_call(base_path):
  held = held_calls.HeldCalls()
  server = _start(base_path, held)
  try:
    with grpc.insecure_channel(server.target) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      running = stub.Predict.future(client.predict_request("toy", "tag", WORDS), timeout=120)
      assert held.wait_entered()
      # The held call is still inside the server when stop returns.
      assert server.stop(grace=0.2) == 1
      assert not held.release.is_set()
      assert running.exception(timeout=60).code() == grpc.StatusCode.UNAVAILABLE
  finally:
    held.release.set()


_SERVE = """
import sys, threading
def stuck(arrays):
  print("melody-test: stuck call started", flush=True)
  threading.Event().wait(600)
from serving import server_main
sys.exit(server_main.main())
"""
GRACE = 2


@pytest.mark.slow
def test_sigterm_drains_then_exits_without_waiting_for_a_stuck_model_call(base_path):
  proc = subprocess.Popen(
      [sys.executable, "-c", _SERVE, "--model_name", "toy", "--model_base_path", base_path,
       "--port", "0", "--rest_api_port", "0", "--file_system_poll_wait_seconds", "0",
       "--grace-seconds", str(GRACE), "--input-validator", "toy:tag=__main__:stuck"],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
  lines = queue.Queue()
  threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()

  def wait_for_line(pattern):
    while True:
      line = lines.get(timeout=60)  # Raises queue.Empty if it never comes.
      match = re.search(pattern, line)
      if match:
        return match

  try:
    target = wait_for_line(r"gRPC on (\S+)").group(1)
    with client.ModelClient(target, timeout=30) as c:
      inputs = toy_saved_model.score_inputs(2, seed=1)
      np.testing.assert_array_equal(
          c.predict("toy", "serving_default", inputs)["score"],
          toy_saved_model.expected_score(inputs["x"], inputs["ids"], 2.0))
    channel = grpc.insecure_channel(target)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    stuck = stub.Predict.future(client.predict_request("toy", "tag", WORDS), timeout=120)
    wait_for_line("stuck call started")
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    # Health goes NOT_SERVING while the stuck call holds the drain open.
    assert held_calls.wait_until(
        lambda: _health(channel, timeout=10) == health_pb2.HealthCheckResponse.NOT_SERVING)
    # The process ends once the grace period is over (plus a margin for a loaded
    # machine), long before the stuck call (600 s) could return.
    assert proc.wait(timeout=max(0.0, sent + GRACE + 10 - time.monotonic())) == 0
    assert stuck.exception(timeout=30).code() == grpc.StatusCode.UNAVAILABLE
    wait_for_line(r"stopped; 1 model call\(s\) still running are abandoned")
    channel.close()
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait(timeout=10)
