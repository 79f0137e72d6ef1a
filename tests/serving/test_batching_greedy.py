"""Greedy batching (``batch_timeout_micros`` 0): nothing waits for a batch to fill.

A lone request runs on its caller's thread; requests that arrive while every batch slot
is busy queue up and run together as soon as a slot frees. The model call here blocks on
an event, so which requests share a call is decided by the test, not by timing.
"""

import threading

import numpy as np

from serving import batching
from serving import model_config
def _scheduler(threads: int = 1, max_batch: int = 8):
  params = model_config.BatchingParameters(max_batch_size=max_batch, batch_timeout_micros=0,
                                 num_batch_threads=threads, max_enqueued_batches=4)
  calls = []
  scheduler = batching.BatchScheduler(
      params, lambda key, requests, rows: calls.append((requests, rows))).start()
  return scheduler, calls


def test_a_lone_request_runs_on_the_callers_thread():
  scheduler, calls = _scheduler()
  seen = []

  def run(arrays):
    seen.append(threading.current_thread())
    return {"y": arrays["x"] * 2}

  try:
    out = scheduler.run("k", run, {"x": np.array([[1.0, 2.0]])}, 1)
  finally:
    scheduler.stop()
  np.testing.assert_array_equal(out["y"], [[2.0, 4.0]])
  assert seen == [threading.current_thread()]
  assert calls == [(1, 1)]


def test_requests_arriving_while_the_slot_is_busy_share_the_next_call():
  scheduler, calls = _scheduler(threads=1)
  release = threading.Event()
  entered = threading.Event()
  batch_rows = []

  def run(arrays):
    batch_rows.append(len(arrays["x"]))
    if len(batch_rows) == 1:   # the first call holds the only slot
      entered.set()
      assert release.wait(60)
    return {"y": arrays["x"] + 1}

  results = {}

  def call(i):
    results[i] = scheduler.run("k", run, {"x": np.full((1, 2), float(i))}, 1)

  first = threading.Thread(target=call, args=(0,), daemon=True)
  first.start()
  assert entered.wait(60)
  others = [threading.Thread(target=call, args=(i,), daemon=True) for i in (1, 2, 3)]
  for t in others:
    t.start()
  # Bounded wait until the three requests sit in the queue behind the busy slot.
  for _ in range(6000):
    if scheduler.pending_rows() == 3:
      break
    threading.Event().wait(0.01)
  assert scheduler.pending_rows() == 3
  release.set()
  for t in [first] + others:
    t.join(timeout=60)
  scheduler.stop()
  assert batch_rows == [1, 3]            # the lone call, then one merged call of three
  assert sorted(calls) == [(1, 1), (3, 3)]
  for i in range(4):
    np.testing.assert_array_equal(results[i]["y"], np.full((1, 2), i + 1.0))


def test_a_failing_inline_request_raises_its_own_error():
  scheduler, _ = _scheduler()

  def run(arrays):
    raise ValueError("bad row")

  try:
    try:
      scheduler.run("k", run, {"x": np.zeros((1, 1))}, 1)
    except ValueError as e:
      assert "bad row" in str(e)
    else:
      raise AssertionError("the error was swallowed")
    # The slot was released: the next request still runs.
    out = scheduler.run("k", lambda a: {"y": a["x"]}, {"x": np.ones((1, 1))}, 1)
    np.testing.assert_array_equal(out["y"], [[1.0]])
  finally:
    scheduler.stop()
