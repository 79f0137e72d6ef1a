"""Deadlines and overload: work no client waits for, or that would starve the server, never runs.

The scheduler tests drive ``serving.batching`` with fake call contexts; the server tests
hold Predict calls in a validator (``melody_testing.held_calls``) and use real gRPC
deadlines, so what happens first is decided by events and by the deadline itself.
"""

import threading
import time

import grpc
from grpc_health.v1 import health_pb2
from grpc_health.v1 import health_pb2_grpc
import numpy as np
import pytest

from serving import batching
from serving import call_deadline
from serving import client
from serving import model_config
from serving import server as server_lib
from melody_testing import held_calls
from melody_testing import toy_saved_model

from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

DEADLINE = 1.0  # seconds: the client deadline of calls meant to expire


class FakeCall:
  """The two methods of a ``grpc.ServicerContext`` the server reads."""

  def __init__(self, remaining=None, active=True):
    self.remaining = remaining
    self.active = active

  def time_remaining(self):
    return self.remaining() if callable(self.remaining) else self.remaining

  def is_active(self):
    return self.active


def _greedy_scheduler():
  params = model_config.BatchingParameters(max_batch_size=8, batch_timeout_micros=0,
                                           num_batch_threads=1, max_enqueued_batches=4)
  calls = []
  scheduler = batching.BatchScheduler(
      params, lambda key, requests, rows: calls.append((requests, rows))).start()
  return scheduler, calls


class _BlockedSlot:
  """Holds the scheduler's only slot with a first call until ``release`` is set."""

  def __init__(self, scheduler):
    self.scheduler = scheduler
    self.entered = threading.Event()
    self.release = threading.Event()
    self.rows_per_call = []
    self.results = {}

  def model(self, arrays):
    self.rows_per_call.append(len(arrays["x"]))
    if len(self.rows_per_call) == 1:
      self.entered.set()
      assert self.release.wait(60)
    return {"y": arrays["x"] + 1}

  def send(self, name, deadline=None):
    """Sends one one-row request on a thread; its result or error lands in results."""
    def call():
      try:
        self.results[name] = self.scheduler.run("k", self.model, {"x": np.zeros((1, 1))}, 1,
                                                deadline)
      except Exception as e:  # pylint: disable=broad-except
        self.results[name] = e
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("fake, reason", [
    (FakeCall(remaining=1000.0), call_deadline.DEADLINE_EXCEEDED),
    (FakeCall(remaining=None), call_deadline.CANCELLED),
], ids=["deadline", "cancelled"])
def test_a_queued_request_whose_client_left_is_dropped_from_its_batch(fake, reason):
  scheduler, calls = _greedy_scheduler()
  slot = _BlockedSlot(scheduler)
  threads = [slot.send("first")]
  assert slot.entered.wait(60)
  threads += [slot.send("gone", call_deadline.CallDeadline(fake)), slot.send("kept")]
  assert held_calls.wait_until(lambda: scheduler.pending_rows() == 2)
  if reason == call_deadline.DEADLINE_EXCEEDED:
    fake.remaining = 0.0
  else:
    fake.active = False
  slot.release.set()
  for thread in threads:
    thread.join(timeout=60)
  scheduler.stop()
  assert slot.rows_per_call == [1, 1]   # the held call, then "kept" alone
  assert sorted(calls) == [(1, 1), (1, 1)]
  assert isinstance(slot.results["gone"], call_deadline.CallExpired)
  assert slot.results["gone"].reason == reason
  assert not isinstance(slot.results["kept"], Exception)


def test_a_queued_request_leaves_the_queue_at_its_deadline():
  scheduler, _ = _greedy_scheduler()
  slot = _BlockedSlot(scheduler)
  first = slot.send("first")
  assert slot.entered.wait(60)
  end = time.time() + 0.2
  waiter = slot.send("late", call_deadline.CallDeadline(FakeCall(lambda: end - time.time())))
  # It returns at its deadline while the slot is still held, and takes its rows along.
  waiter.join(timeout=60)
  assert not waiter.is_alive()
  assert slot.results["late"].reason == call_deadline.DEADLINE_EXCEEDED
  assert scheduler.pending_rows() == 0
  slot.release.set()
  first.join(timeout=60)
  scheduler.stop()
  assert slot.rows_per_call == [1]


def test_an_expired_request_does_not_run_inline_nor_take_the_slot():
  scheduler, calls = _greedy_scheduler()
  ran = []
  try:
    with pytest.raises(call_deadline.CallExpired):
      scheduler.run("k", lambda a: ran.append(a) or a, {"x": np.ones((1, 1))}, 1,
                    call_deadline.CallDeadline(FakeCall(remaining=0.0)))
    out = scheduler.run("k", lambda a: {"y": a["x"]}, {"x": np.ones((1, 1))}, 1,
                        call_deadline.CallDeadline(FakeCall(remaining=None)))
    np.testing.assert_array_equal(out["y"], [[1.0]])
  finally:
    scheduler.stop()
  assert ran == [] and calls == [(1, 1)]


def test_no_context_means_no_deadline():
  assert call_deadline.NO_DEADLINE.remaining() is None
  assert call_deadline.NO_DEADLINE.expired() is None
  # gRPC's "no deadline" is a remaining time of ~9.2e18 s.
  assert call_deadline.CallDeadline(FakeCall(remaining=9.2e18)).remaining() is None


# ------------------------------------------------------------------ over gRPC

MAX_WORKERS = 4
RESERVED = 2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = tmp_path_factory.mktemp("models")
  toy_saved_model.write_version(str(root / "toy"), 1, scale=2.0)
  # A batch never fills and never times out: a batched request waits until the test
  # (or its deadline) decides.
  params = model_config.BatchingParameters(max_batch_size=4,
                                           batch_timeout_micros=600_000_000,
                                           num_batch_threads=1, max_enqueued_batches=4)
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0,
                                     enable_batching=True, batching=params,
                                     max_workers=MAX_WORKERS, reserved_workers=RESERVED)
  server = server_lib.ModelServer([model_config.ModelEntry("toy", str(root / "toy"))],
                                  options).start()
  channel = grpc.insecure_channel(server.target)
  # Connected before any deadline starts, so that every call reaches the server in time.
  grpc.channel_ready_future(channel).result(timeout=60)
  yield server, channel
  channel.close()
  server.stop(grace=1)


def _model_calls(server, signature):
  return server.registry.get_sample_value(
      "melody_serving_batch_requests_count", {"model": "toy", "signature": signature}) or 0


def _errors(server, signature, code):
  return server.registry.get_sample_value(
      "melody_serving_errors_total",
      {"api": "predict", "model": "toy", "signature": signature, "code": code}) or 0


def _fixed_request():
  # "fixed" has no batch dim, so it runs on the handler thread, never in a batch.
  return client.predict_request("toy", "fixed", {"m": np.ones((2, 2), np.float32)})


def test_a_request_past_its_deadline_does_not_run_the_model(served):
  server, channel = served
  held = held_calls.HeldCalls()
  server.register_validator("toy", "fixed", held)
  try:
    calls, errors = _model_calls(server, "fixed"), _errors(server, "fixed", "DEADLINE_EXCEEDED")
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    future = stub.Predict.future(_fixed_request(), timeout=DEADLINE)
    assert held.wait_entered()
    entered = time.time()
    assert future.exception(timeout=60).code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # The server's copy of the deadline started when the call arrived, before the
    # validator saw it: past entered + DEADLINE it has passed on the server too.
    assert held_calls.wait_until(lambda: time.time() > entered + DEADLINE + 0.05)
    held.release.set()
    assert held_calls.wait_until(
        lambda: _errors(server, "fixed", "DEADLINE_EXCEEDED") == errors + 1)
    assert _model_calls(server, "fixed") == calls
  finally:
    held.release.set()
    server.register_validator("toy", "fixed", lambda arrays: None)


def test_a_batched_request_past_its_deadline_leaves_the_queue(served):
  server, channel = served
  calls = _model_calls(server, "serving_default")
  errors = _errors(server, "serving_default", "DEADLINE_EXCEEDED")
  request = client.predict_request("toy", "serving_default",
                                   toy_saved_model.score_inputs(1, seed=2))
  with pytest.raises(grpc.RpcError) as e:
    prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request,
                                                                       timeout=DEADLINE)
  assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
  assert held_calls.wait_until(
      lambda: _errors(server, "serving_default", "DEADLINE_EXCEEDED") == errors + 1)
  assert server.pending_batch_rows() == 0
  assert _model_calls(server, "serving_default") == calls


def test_status_metadata_and_health_answer_while_every_predict_slot_is_busy(served):
  server, channel = served
  held = held_calls.HeldCalls()
  server.register_validator("toy", "fixed", held)
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  unavailable = _errors(server, "fixed", "UNAVAILABLE")
  futures = []
  try:
    # As many Predict calls as there are handler threads: the first ones take every
    # Predict slot and are held, the rest are refused at once.
    futures = [stub.Predict.future(_fixed_request(), timeout=120) for _ in range(MAX_WORKERS)]
    assert held.wait_entered(MAX_WORKERS - RESERVED)
    assert held_calls.wait_until(
        lambda: _errors(server, "fixed", "UNAVAILABLE") == unavailable + RESERVED)
    assert server.registry.get_sample_value("melody_serving_predicts_in_flight") == \
        MAX_WORKERS - RESERVED

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "toy"
    answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status,
                                                                             timeout=30)
    assert [s.version for s in answer.model_version_status] == [1]
    metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    metadata.model_spec.name = "toy"
    assert stub.GetModelMetadata(metadata, timeout=30).model_spec.version.value == 1
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                        timeout=30)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
  finally:
    held.release.set()
    failures = [f.exception(timeout=60) for f in futures]
    server.register_validator("toy", "fixed", lambda arrays: None)
  codes = [f.code().name if f is not None else "OK" for f in failures]
  assert sorted(codes) == ["OK"] * (MAX_WORKERS - RESERVED) + ["UNAVAILABLE"] * RESERVED
  assert all("overloaded" in f.details() for f in failures if f is not None)
  assert held.count == MAX_WORKERS - RESERVED
