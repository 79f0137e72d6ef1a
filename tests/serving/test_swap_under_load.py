"""A real exported model under continuous load: warm first calls and a hot swap.

The session's export of the tiny ranker (``ranker_export`` in conftest.py) is served
with batching on, as ``melody serve`` serves an export. Right after the load, the first call
of every signature finds its function ready (the warmup replayed them all). Then client
threads with deadlines call a mix of signatures while a new version is published into the
base path: no request fails, GetModelStatus keeps answering, and the new version answers
within the poll period plus its measured load and warmup time.
"""

import os
import shutil
import threading
import time

import grpc
import numpy as np
import pytest

from melody_testing import function_probe
from serving import client
from serving import export
from serving import model_config
from serving import request_schema
from serving import server as server_lib
from serving import warmup

pytestmark = pytest.mark.slow
N_MAX = 200   # The shared export's (conftest.py).
# A request stuck behind the swap still fails; the margin is for a CPU shared with other
# test workers, where a sub-second call can take a few seconds.
DEADLINE_SECONDS = 5.0
POLL_SECONDS = 0.5
CLIENTS = 2
# Slack for a loaded CI machine on top of poll period + load + warmup.
SWAP_SLACK_SECONDS = 20.0


@pytest.fixture(scope="module")
def served(ranker_export, tmp_path_factory):
  paths, exported = ranker_export["paths"], ranker_export["v1"]
  base = str(tmp_path_factory.mktemp("swap") / "models" / "melody")
  os.makedirs(base)
  shutil.copytree(exported, os.path.join(base, "1"))
  options = server_lib.ServerOptions(
      port=0, file_system_poll_wait_seconds=POLL_SECONDS, enable_batching=True,
      batching=export.DEFAULT_BATCHING)
  server = server_lib.ModelServer([model_config.ModelEntry("melody", base)], options,
                                  validators={"melody": request_schema.validators(N_MAX)})
  server.start()
  parsed = warmup.parse_examples(warmup.read_examples(paths["examples"], 40))
  examples = np.asarray(warmup.read_examples(paths["examples"], 4), dtype=object)
  requests = {
      "serving_default": warmup.rank_inputs(parsed, [3], 20),
      "score_examples": {"examples": examples},
      "rank": warmup.rank_inputs(parsed, [5, 6], 30),
      "recommend": warmup.recommend_inputs(parsed, [7], 10),
      "transform_features": {"examples": examples[:2]},
  }
  yield {"server": server, "base": base, "exported": exported, "requests": requests}
  server.stop(grace=1)


def test_the_first_call_of_every_signature_after_load_finds_its_function(served):
  # Runs before any other call reaches the server (the module's first test).
  assert set(served["requests"]) == set(export.read_info(served["exported"])["signatures"])
  with client.ModelClient(served["server"].target, timeout=60) as c:
    for name, inputs in served["requests"].items():
      call = lambda: c.predict("melody", name, inputs)  # pylint: disable=cell-var-from-loop
      assert function_probe.functions_built_by(call) == 0, name


class _Caller(threading.Thread):
  """Calls the signatures in turn, each with a deadline, until ``stop`` is set."""

  def __init__(self, target, requests, offset, stop):
    super().__init__(daemon=True)
    self.target, self.stop = target, stop
    self.plan = list(requests.items())[offset:] + list(requests.items())[:offset]
    self.answers, self.failures = [], []   # (time, signature, version) / (time, error)
    self.slowest = (0.0, 0.0, "")   # Longest answered call: (seconds, start, signature).

  def run(self):
    with client.ModelClient(self.target, timeout=DEADLINE_SECONDS) as c:
      i = 0
      while not self.stop.is_set():
        name, inputs = self.plan[i % len(self.plan)]
        i += 1
        start = time.monotonic()
        try:
          _, version = c.predict_full("melody", name, inputs)
          self.answers.append((time.monotonic(), name, version))
          self.slowest = max(self.slowest, (time.monotonic() - start, start, name))
        except grpc.RpcError as e:
          self.failures.append((time.monotonic(), f"{name}: {e.code()}: {e.details()}"))


class _StatusWatcher(threading.Thread):
  """Asks GetModelStatus every 50 ms (with a deadline); notes when each state is first seen."""

  def __init__(self, target, stop):
    super().__init__(daemon=True)
    self.target, self.stop = target, stop
    self.answered, self.failures, self.first_seen = [], [], {}

  def run(self):
    with client.ModelClient(self.target, timeout=DEADLINE_SECONDS) as c:
      while not self.stop.wait(0.05):
        try:
          statuses = c.status("melody")
        except grpc.RpcError as e:
          self.failures.append(f"{e.code()}: {e.details()}")
          continue
        self.answered.append(time.monotonic())
        for s in statuses:
          self.first_seen.setdefault((s.version, s.state), time.monotonic())


def _wait_for(condition, timeout):
  deadline = time.monotonic() + timeout
  while not condition():
    if time.monotonic() > deadline:
      return False
    time.sleep(0.05)
  return True


def test_a_version_published_under_load_swaps_in_without_a_failed_request(served):
  server = served["server"]
  stop = threading.Event()
  callers = [_Caller(server.target, served["requests"], k, stop) for k in range(CLIENTS)]
  watcher = _StatusWatcher(server.target, stop)
  for thread in callers + [watcher]:
    thread.start()
  try:
    assert _wait_for(lambda: all(len(c.answers) >= 10 for c in callers), 120)
    staging = os.path.join(served["base"], ".tmp-2")
    shutil.copytree(served["exported"], staging)
    published = time.monotonic()
    os.rename(staging, os.path.join(served["base"], "2"))
    assert server.wait_for_versions("melody", [2], timeout=300)
    # Keep the load on until every client has had every signature from the new version.
    assert _wait_for(lambda: all(
        {n for _, n, v in c.answers if v == 2} == set(served["requests"]) for c in callers),
                     60)
  finally:
    stop.set()
    for thread in callers + [watcher]:
      thread.join(timeout=60)

  answers = sorted(a for c in callers for a in c.answers)
  failures = [f for c in callers for f in c.failures]
  first_new = min(t for t, _, v in answers if v == 2)
  loading, available = watcher.first_seen[(2, "LOADING")], watcher.first_seen[(2, "AVAILABLE")]
  load_and_warmup = available - loading
  print(f"\nswap under load: {len(answers)} answered, {len(failures)} failed, "
        f"{len(watcher.answered)} status calls ({len(watcher.failures)} failed); new version "
        f"answered {first_new - published:.1f} s after publishing (load + warmup "
        f"{load_and_warmup:.1f} s, poll period {POLL_SECONDS} s)")
  slowest, start, name = max(c.slowest for c in callers)
  print(f"slowest answer {slowest:.2f} s ({name}), sent {start - published:+.1f} s after "
        f"publishing; version 2 was LOADING at {loading - published:+.1f} s and "
        f"AVAILABLE at {available - published:+.1f} s")
  assert failures == []
  assert watcher.failures == []
  # Status answered while the new version was loading, not only before and after.
  assert any(loading <= t <= available for t in watcher.answered)
  assert first_new - published <= POLL_SECONDS + load_and_warmup + SWAP_SLACK_SECONDS
  for caller in callers:   # Each client's calls are sequential: never back to the old one.
    versions = [v for _, _, v in caller.answers]
    assert set(versions[versions.index(2):]) == {2}
