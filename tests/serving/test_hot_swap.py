"""New versions appearing under a served base path are swapped in without failed requests."""

import gc
import os
import threading
import weakref

import grpc
import numpy as np
import pytest

from serving import client
from serving import model_config
from serving import server as server_lib
from serving import server_metrics
from serving import version_manager
from melody_testing import toy_saved_model

from tensorflow_serving.apis import get_model_status_pb2

State = get_model_status_pb2.ModelVersionStatus.State
INPUTS = toy_saved_model.score_inputs(4, seed=11)
WARMUP = [toy_saved_model.score_inputs(r, seed=r) for r in (1, 2, 3)]


def _expected(scale):
  return toy_saved_model.expected_score(INPUTS["x"], INPUTS["ids"], scale)


class _Caller(threading.Thread):
  """Sends Predict calls back to back; stops after ``after_switch`` answers from
  ``new_version`` or ``max_calls`` calls, whichever comes first."""

  def __init__(self, target, new_version, after_switch=50, max_calls=20000):
    super().__init__(daemon=True)
    self.target, self.new_version = target, new_version
    self.after_switch, self.max_calls = after_switch, max_calls
    self.answers, self.failures = [], []
    self.started = threading.Event()

  def run(self):
    with client.ModelClient(self.target, timeout=30) as c:
      newer = 0
      for _ in range(self.max_calls):
        try:
          outputs, version = c.predict_full("toy", "serving_default", INPUTS)
          self.answers.append((version, outputs["score"]))
          newer += version == self.new_version
        except grpc.RpcError as e:
          self.failures.append(f"{e.code()}: {e.details()}")
        self.started.set()
        if newer >= self.after_switch:
          return


@pytest.fixture
def base(tmp_path):
  path = str(tmp_path / "toy")
  toy_saved_model.write_version(path, 1, scale=1.0)
  return path


def test_new_version_swaps_in_with_zero_failed_requests(base):
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0.05,
                                     enable_batching=True)
  with server_lib.ModelServer([model_config.ModelEntry("toy", base)], options) as server:
    assert server.loaded_versions("toy") == (1,)
    caller = _Caller(server.target, new_version=2)
    caller.start()
    assert caller.started.wait(60)
    # Written under a temporary name, then renamed into place while calls are flowing.
    toy_saved_model.write_version(base, 2, scale=3.0, warmup=WARMUP)
    assert server.wait_for_versions("toy", [2], timeout=60)
    caller.join(timeout=60)
    assert not caller.is_alive()

    assert caller.failures == []
    versions = [v for v, _ in caller.answers]
    first_new = versions.index(2)
    assert first_new > 0 and set(versions[:first_new]) == {1}
    assert set(versions[first_new:]) == {2}  # Never back to the old version.
    for version, score in caller.answers:
      np.testing.assert_array_equal(score, _expected({1: 1.0, 2: 3.0}[version]))
    assert server.registry.get_sample_value("melody_serving_warmup_requests_total",
                                            {"model": "toy"}) == len(WARMUP)
    with client.ModelClient(server.target, timeout=30) as c:
      assert [(s.version, s.state) for s in c.status("toy")] == [(2, "AVAILABLE"), (1, "END")]


def test_version_with_failing_warmup_is_not_swapped_in(base):
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  with server_lib.ModelServer([model_config.ModelEntry("toy", base)], options) as server:
    # A warmup record the signature rejects (float64 x) fails the whole load.
    bad = [{"x": np.zeros((1, 3)), "ids": np.zeros((1, 2), np.int64)}]
    toy_saved_model.write_version(base, 2, scale=5.0, warmup=bad)
    server.poll_file_system()
    assert server.loaded_versions("toy") == (1,)
    with client.ModelClient(server.target, timeout=30) as c:
      statuses = {s.version: s for s in c.status("toy")}
      assert statuses[1].state == "AVAILABLE"
      assert statuses[2].state == "END" and statuses[2].error_code != 0
      assert "warmup record 0" in statuses[2].error_message
      assert "'x'" in statuses[2].error_message
      outputs, version = c.predict_full("toy", "serving_default", INPUTS)
      assert version == 1
      np.testing.assert_array_equal(outputs["score"], _expected(1.0))
    assert server.registry.get_sample_value("melody_serving_model_loads_total",
                                            {"model": "toy", "result": "error"}) == 1


def test_version_policies_unload_old_versions(base):
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0)
  latest2 = model_config.ModelEntry("toy", base, model_config.VersionPolicy("latest",
                                                                            num_versions=2))
  with server_lib.ModelServer([latest2], options) as server:
    toy_saved_model.write_version(base, 2, scale=2.0)
    server.poll_file_system()
    assert server.loaded_versions("toy") == (1, 2)
    toy_saved_model.write_version(base, 3, scale=3.0)
    server.poll_file_system()
    assert server.loaded_versions("toy") == (2, 3)
    with client.ModelClient(server.target, timeout=30) as c:
      with pytest.raises(grpc.RpcError) as e:
        c.predict("toy", "serving_default", INPUTS, version=1)
      assert e.value.code() == grpc.StatusCode.NOT_FOUND
      np.testing.assert_array_equal(
          c.predict("toy", "serving_default", INPUTS, version=2)["score"], _expected(2.0))

  pinned = model_config.ModelEntry("toy", base,
                                   model_config.VersionPolicy("specific", versions=(1, 3)), {
                                       "stable": 1,
                                       "canary": 3
                                   })
  with server_lib.ModelServer([pinned], options) as server:
    assert server.loaded_versions("toy") == (1, 3)
    toy_saved_model.write_version(base, 4, scale=4.0)
    server.poll_file_system()
    assert server.loaded_versions("toy") == (1, 3)  # 4 is not in the policy.
    with client.ModelClient(server.target, timeout=30) as c:
      np.testing.assert_array_equal(
          c.predict("toy", "serving_default", INPUTS, version_label="canary")["score"],
          _expected(3.0))


def test_a_failed_version_is_retried_once_its_variables_are_fixed(base, tmp_path):
  options = server_lib.ServerOptions(port=0, file_system_poll_wait_seconds=0,
                                     max_load_retries=1)
  with server_lib.ModelServer([model_config.ModelEntry("toy", base)], options) as server:
    # Version 2 is published with a truncated variables shard: its restore fails.
    staged = toy_saved_model.write_version(str(tmp_path / "staging"), 2, scale=2.0)
    (shard,) = (tmp_path / "staging" / "2" / "variables").glob("variables.data-*")
    good = shard.read_bytes()
    shard.write_bytes(good[:len(good) // 2])
    os.rename(staged, os.path.join(base, "2"))
    for _ in range(4):   # The first load and one retry; then it waits for a change.
      server.poll_file_system()
    errors = {"model": "toy", "result": "error"}
    assert server.registry.get_sample_value("melody_serving_model_loads_total", errors) == 2
    assert server.loaded_versions("toy") == (1,)

    fixed = os.path.join(base, "2", "variables", shard.name)
    with open(fixed, "wb") as f:   # Only a file under variables/ changes.
      f.write(good)
    server.poll_file_system()
    assert server.loaded_versions("toy") == (2,)
    assert server.registry.get_sample_value("melody_serving_model_loads_total", errors) == 2
    with client.ModelClient(server.target, timeout=30) as c:
      outputs, version = c.predict_full("toy", "serving_default", INPUTS)
      assert version == 2
      np.testing.assert_array_equal(outputs["score"], _expected(2.0))
      assert [(s.version, s.state) for s in c.status("toy")] == [(2, "AVAILABLE"), (1, "END")]


def test_an_unloaded_version_is_freed_once_no_request_holds_it(base):
  manager = version_manager.VersionManager([model_config.ModelEntry("toy", base)],
                                           server_metrics.ServerMetrics(),
                                           replay=lambda *_: None)
  manager.poll()
  in_flight = manager.models["toy"].versions[1]   # As a request running on it holds it.
  module = weakref.ref(in_flight.module)
  # A real SavedModel's objects sit in reference cycles, which only a collection frees;
  # the toy's do not, so one is added (past the module's attribute tracking).
  vars(in_flight.module)["melody_test_cycle"] = [in_flight.module]
  gc.disable()   # Only the manager's own collections may free anything from here on.
  try:
    toy_saved_model.write_version(base, 2, scale=2.0)
    manager.poll()
    assert manager.loaded_versions("toy") == (2,)
    assert module() is not None
    del in_flight   # The request finishes; the next poll frees the old version.
    manager.poll()
    assert module() is None
  finally:
    gc.enable()
