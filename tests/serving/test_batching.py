"""Server-side batching: concurrent requests share one model call and get their own rows.

The batch timeout is set far beyond the test's run time, so a batch runs only when it
is full: which requests end up together is decided by the request sizes, not by timing.
"""

import threading

import grpc
import numpy as np
import pytest

from serving import client
from serving import model_config
from serving import server as server_lib
from melody_testing import toy_saved_model

MAX_BATCH = 4


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  root = tmp_path_factory.mktemp("models")
  toy_saved_model.write_version(str(root / "toy"), 1, scale=2.0)
  params = model_config.BatchingParameters(max_batch_size=MAX_BATCH,
                                           batch_timeout_micros=600_000_000,
                                           num_batch_threads=1,
                                           max_enqueued_batches=4)
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0,
                                     enable_batching=True, batching=params, max_workers=16)
  server = server_lib.ModelServer([model_config.ModelEntry("toy", str(root / "toy"))],
                                  options).start()
  yield server
  server.stop(grace=1)


def _stats(server, signature):
  """(model calls, requests served by them, rows served by them) so far."""
  get = server.registry.get_sample_value
  labels = {"model": "toy", "signature": signature}
  return (get("melody_serving_batch_requests_count", labels) or 0,
          get("melody_serving_batch_requests_sum", labels) or 0,
          get("melody_serving_batch_rows_sum", labels) or 0)


def _delta(after, before):
  return tuple(a - b for a, b in zip(after, before))


def _concurrently(server, signature, inputs_list):
  """Sends one Predict per inputs dict, all at once; returns outputs or RpcErrors."""
  results = [None] * len(inputs_list)
  barrier = threading.Barrier(len(inputs_list))

  def call(i):
    with client.ModelClient(server.target, timeout=120) as c:
      barrier.wait(timeout=60)
      try:
        results[i] = c.predict("toy", signature, inputs_list[i])
      except grpc.RpcError as e:
        results[i] = e

  threads = [threading.Thread(target=call, args=(i,), daemon=True)
             for i in range(len(inputs_list))]
  for t in threads:
    t.start()
  for t in threads:
    t.join(timeout=150)
  assert not any(t.is_alive() for t in threads)
  return results


def test_concurrent_requests_share_one_call(served):
  before = _stats(served, "serving_default")
  inputs = [toy_saved_model.score_inputs(1, seed=s) for s in range(MAX_BATCH)]
  results = _concurrently(served, "serving_default", inputs)
  # The four one-row requests can only have run as one full batch of four.
  assert _delta(_stats(served, "serving_default"), before) == (1, 4, 4)
  for one, out in zip(inputs, results):
    np.testing.assert_array_equal(out["score"],
                                  toy_saved_model.expected_score(one["x"], one["ids"], 2.0))
    assert out["score"].shape == (1,)


def test_requests_with_different_trailing_dims_batch_separately(served):
  before = _stats(served, "ragged")
  rng = np.random.default_rng(0)
  inputs = [{"v": rng.integers(0, 9, size=(2, width)).astype(np.float32)}
            for width in (3, 5, 3, 5)]
  results = _concurrently(served, "ragged", inputs)
  # Two batches (width 3 and width 5), each of two requests with two rows.
  assert _delta(_stats(served, "ragged"), before) == (2, 4, 8)
  for one, out in zip(inputs, results):
    np.testing.assert_array_equal(out["row_sum"], one["v"].sum(axis=1) * 2.0)


def test_oversized_and_unbatchable_requests_run_alone(served):
  with client.ModelClient(served.target, timeout=120) as c:
    before = _stats(served, "serving_default")
    big = toy_saved_model.score_inputs(MAX_BATCH + 2, seed=1)
    out = c.predict("toy", "serving_default", big)
    np.testing.assert_array_equal(out["score"],
                                  toy_saved_model.expected_score(big["x"], big["ids"], 2.0))
    assert _delta(_stats(served, "serving_default"), before) == (1, 1, MAX_BATCH + 2)

    # A fully fixed shape has no batch dim: it never waits for a batch to fill.
    out = c.predict("toy", "fixed", {"m": np.full((2, 2), 1.5, np.float32)})
    assert out["total"] == 12.0


def test_failing_request_does_not_fail_its_batch_neighbours(served):
  flags = [np.array([0], np.int32), np.array([-2], np.int32), np.array([5], np.int32),
           np.array([3], np.int32)]
  results = _concurrently(served, "explode", [{"flag": f} for f in flags])
  np.testing.assert_array_equal(results[0]["out"], [0])
  np.testing.assert_array_equal(results[1]["out"], [-4])
  for failed in results[2:]:
    assert isinstance(failed, grpc.RpcError)
    assert failed.code() == grpc.StatusCode.INTERNAL


def test_stop_drains_a_request_waiting_for_its_batch(tmp_path):
  toy_saved_model.write_version(str(tmp_path / "toy"), 1, scale=2.0)
  params = model_config.BatchingParameters(max_batch_size=MAX_BATCH,
                                           batch_timeout_micros=600_000_000,
                                           num_batch_threads=1)
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0,
                                     enable_batching=True, batching=params)
  server = server_lib.ModelServer([model_config.ModelEntry("toy", str(tmp_path / "toy"))],
                                  options).start()
  one = toy_saved_model.score_inputs(1, seed=4)
  result = {}

  def call():
    with client.ModelClient(server.target, timeout=120) as c:
      try:
        result["out"] = c.predict("toy", "serving_default", one)
      except grpc.RpcError as e:
        result["error"] = e

  caller = threading.Thread(target=call, daemon=True)
  caller.start()
  # Bounded wait until the request sits in its (never filling) batch queue.
  for _ in range(6000):
    if server.pending_batch_rows() == 1 or not caller.is_alive():
      break
    caller.join(timeout=0.01)
  assert server.pending_batch_rows() == 1
  # Stopping flushes the queue: the in-flight request completes instead of being cut
  # off at the end of the grace period.
  server.stop(grace=60)
  caller.join(timeout=60)
  assert "error" not in result, result.get("error")
  np.testing.assert_array_equal(result["out"]["score"],
                                toy_saved_model.expected_score(one["x"], one["ids"], 2.0))
  with client.ModelClient(server.target, timeout=5) as c:
    with pytest.raises(grpc.RpcError) as e:
      c.predict("toy", "serving_default", one)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
