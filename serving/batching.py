"""Server-side batching: merges concurrent Predict calls into one model call.

This module owns the batch scheduler. Requests are queued by a key the server builds
from (model, version, signature, every input's dtype and trailing dims), so requests in
one queue can always be concatenated along dim 0. A queue runs a batch when it holds
``max_batch_size`` rows or when its oldest request has waited ``batch_timeout_micros``;
``num_batch_threads`` workers run batches; the results are split back per request. A
batch that fails, or whose outputs do not split along dim 0, is re-run request by
request, so one bad request never fails its neighbours. A request whose client no longer
waits (its deadline passed or it cancelled; ``serving.call_deadline``) never runs: it is
dropped when its batch is formed, and a request still queued at its deadline leaves the
queue and returns at once.

With ``batch_timeout_micros`` 0 nothing ever waits for a batch to fill: batches form
only from requests that queue while every one of the ``num_batch_threads`` slots is
busy. A request that finds its queue empty and a slot free then runs at once on its own
(RPC) thread, saving the hand-off to a worker and back (the common case at low load).
At most ``num_batch_threads`` model calls run at once either way.
"""

import collections
import dataclasses
import threading
import time
from typing import Callable, Deque, Dict, Hashable, List, Mapping, Optional

import numpy as np

from serving import call_deadline
from serving import model_config
from serving import tensors

Arrays = Dict[str, np.ndarray]
RunFn = Callable[[Arrays], Arrays]


class QueueFullError(RuntimeError):
  """The batch queue of a key holds ``max_enqueued_batches`` batches already."""


class SchedulerStoppedError(RuntimeError):
  """The scheduler stopped before the request ran."""


@dataclasses.dataclass(eq=False)  # Tasks hold arrays: compare them by identity.
class _Task:
  inputs: Arrays
  rows: int
  enqueued: float
  deadline: call_deadline.CallDeadline = call_deadline.NO_DEADLINE
  queued: bool = False
  done: threading.Event = dataclasses.field(default_factory=threading.Event)
  result: Optional[Arrays] = None
  error: Optional[BaseException] = None


@dataclasses.dataclass
class _Queue:
  run: RunFn
  tasks: Deque[_Task] = dataclasses.field(default_factory=collections.deque)
  rows: int = 0


class BatchScheduler:
  """Runs queued requests in batches on a few worker threads.

  Args:
    params: Batching parameters.
    on_batch: Called after each model call with ``(key, num_requests, num_rows)``.
  """

  def __init__(self, params: model_config.BatchingParameters,
               on_batch: Optional[Callable[[Hashable, int, int], None]] = None):
    self._params = params
    self._on_batch = on_batch
    self._timeout = params.batch_timeout_micros / 1e6
    self._cond = threading.Condition()
    self._queues: Dict[Hashable, _Queue] = {}
    self._stopping = False
    self._flushing = False
    self._threads: List[threading.Thread] = []
    self._running = 0   # model calls in progress (workers and callers running inline)

  @property
  def params(self) -> model_config.BatchingParameters:
    return self._params

  def start(self) -> "BatchScheduler":
    for i in range(self._params.num_batch_threads):
      thread = threading.Thread(target=self._work, name=f"melody-batch-{i}", daemon=True)
      thread.start()
      self._threads.append(thread)
    return self

  def flush(self) -> None:
    """From now on runs every queued request at once, full batch or not.

    Used while the server drains: requests still arriving are accepted, but none
    waits for a batch to fill.
    """
    with self._cond:
      self._flushing = True
      self._cond.notify_all()

  def pending_rows(self) -> int:
    """Rows waiting in all queues."""
    with self._cond:
      return sum(q.rows for q in self._queues.values())

  def stop(self, timeout: Optional[float] = None) -> None:
    """Runs what is queued, then stops the workers.

    Args:
      timeout: Longest wait for the workers (None: until they finish). A worker stuck
        in a model call is left behind (it is a daemon thread); requests still queued
        then fail with ``SchedulerStoppedError``.
    """
    with self._cond:
      self._stopping = True
      self._cond.notify_all()
    end = None if timeout is None else time.monotonic() + timeout
    for thread in self._threads:
      thread.join(None if end is None else max(0.0, end - time.monotonic()))
    self._threads = []
    with self._cond:
      leftovers = [t for q in self._queues.values() for t in q.tasks]
      self._queues.clear()
      for task in leftovers:
        task.queued = False
    for task in leftovers:
      task.error = SchedulerStoppedError("the batch scheduler stopped")
      task.done.set()

  def can_batch(self, rows: int) -> bool:
    """Whether a request of ``rows`` rows may join a batch (else it runs alone)."""
    return 0 < rows <= self._params.max_batch_size

  def run(self, key: Hashable, run: RunFn, inputs: Arrays, rows: int,
          deadline: Optional[call_deadline.CallDeadline] = None) -> Arrays:
    """Queues one request and blocks until its rows come back.

    Args:
      key: Queue key; requests with equal keys must be concatenable along dim 0 and
        served by the same ``run``.
      run: The model call for a (possibly merged) batch.
      inputs: The request's arrays, all with ``rows`` rows in dim 0.
      rows: The request's batch size (at most ``max_batch_size``).
      deadline: The client's deadline and liveness (None: no deadline).

    Raises:
      QueueFullError: Too much is queued for ``key``.
      SchedulerStoppedError: The scheduler is stopping.
      call_deadline.CallExpired: The client stopped waiting before the request ran
        (or, at its deadline, before the batch it joined came back).
      Exception: Whatever ``run`` raised for this request alone.
    """
    deadline = deadline or call_deadline.NO_DEADLINE
    deadline.check()
    task = _Task(inputs=inputs, rows=rows, enqueued=time.monotonic(), deadline=deadline)
    with self._cond:
      if self._stopping or not self._threads:
        raise SchedulerStoppedError("the batch scheduler is not running")
      queue = self._queues.get(key)
      inline = (self._timeout == 0 and (queue is None or not queue.tasks)
                and self._slot_free())
      if inline:
        self._running += 1
      else:
        if queue is None:
          queue = self._queues[key] = _Queue(run=run)
        limit = self._params.max_enqueued_batches * self._params.max_batch_size
        if queue.rows + rows > limit:
          raise QueueFullError(f"the batch queue is full ({queue.rows} rows queued, limit "
                               f"{limit})")
        queue.tasks.append(task)
        queue.rows += rows
        task.queued = True
        self._cond.notify()
    if inline:
      self._execute_in_slot(key, run, [task])
    elif not self._wait(key, task):
      raise call_deadline.CallExpired(call_deadline.DEADLINE_EXCEEDED)
    if task.error is not None:
      raise task.error
    return task.result

  def _wait(self, key: Hashable, task: _Task) -> bool:
    """Waits for ``task``'s rows until its deadline; False if the deadline came first.

    At the deadline a task still queued leaves its queue; one already running is left
    to finish on its worker, and its result is dropped.
    """
    while True:
      if task.done.wait(task.deadline.remaining()):
        return True
      if task.deadline.remaining() != 0.0:
        continue  # Woke a hair early: the two clocks differ in resolution.
      with self._cond:
        if task.done.is_set():
          return True
        if task.queued:
          queue = self._queues[key]
          queue.tasks.remove(task)
          queue.rows -= task.rows
          task.queued = False
          if not queue.tasks:
            del self._queues[key]
      return False

  def _work(self) -> None:
    while True:
      with self._cond:
        picked = None
        while picked is None:
          if self._slot_free():
            picked = self._pick()
            if picked is not None:
              break
          if self._stopping and not any(q.tasks for q in self._queues.values()):
            return
          self._cond.wait(self._next_deadline() if self._slot_free() else None)
        self._running += 1
      self._execute_in_slot(*picked)

  def _slot_free(self) -> bool:
    """Whether fewer than ``num_batch_threads`` model calls run (call under the lock)."""
    return self._running < self._params.num_batch_threads

  def _execute_in_slot(self, key: Hashable, run: RunFn, batch: List[_Task]) -> None:
    """Runs ``batch`` in a slot the caller took (``_running`` += 1), then frees it."""
    try:
      self._execute(key, run, batch)
    finally:
      with self._cond:
        self._running -= 1
        self._cond.notify_all()

  def _pick(self):
    """Pops a ready batch (under the lock), preferring the oldest waiting request.

    Requests whose client no longer waits are dropped here, so they never run; None
    when nothing is ready (or everything picked was dropped: the caller looks again).
    """
    now = time.monotonic()
    best = None
    for key, queue in self._queues.items():
      if not queue.tasks:
        continue
      head = queue.tasks[0]
      ready = (self._stopping or self._flushing or queue.rows >= self._params.max_batch_size
               or now - head.enqueued >= self._timeout)
      if ready and (best is None or head.enqueued < best[1].tasks[0].enqueued):
        best = (key, queue)
    if best is None:
      return None
    key, queue = best
    batch, rows = [], 0
    while queue.tasks and rows + queue.tasks[0].rows <= self._params.max_batch_size:
      task = queue.tasks.popleft()
      queue.rows -= task.rows
      task.queued = False
      if not _drop_if_expired(task):
        batch.append(task)
        rows += task.rows
    if not queue.tasks:
      # Drop idle queues so keys of unloaded versions do not pile up.
      del self._queues[key]
    return (key, queue.run, batch) if batch else None

  def _next_deadline(self) -> Optional[float]:
    heads = [q.tasks[0].enqueued for q in self._queues.values() if q.tasks]
    if not heads:
      return None
    return max(0.0, min(heads) + self._timeout - time.monotonic())

  def _execute(self, key: Hashable, run: RunFn, batch: List[_Task]) -> None:
    if len(batch) > 1:
      try:
        merged = {name: np.concatenate([t.inputs[name] for t in batch], axis=0)
                  for name in batch[0].inputs}
        outputs = run(merged)
        total = sum(t.rows for t in batch)
        if all(np.ndim(v) >= 1 and np.shape(v)[0] == total for v in outputs.values()):
          pieces = {name: tensors.split_rows(value, [t.rows for t in batch])
                    for name, value in outputs.items()}
          for i, task in enumerate(batch):
            task.result = {name: pieces[name][i] for name in pieces}
          self._report(key, len(batch), total)
          for task in batch:
            task.done.set()
          return
      except Exception:  # pylint: disable=broad-except
        pass  # Fall through: isolate the failing request by running each alone.
    for task in batch:
      if _drop_if_expired(task):
        continue
      try:
        task.result = run(task.inputs)
      except Exception as e:  # pylint: disable=broad-except
        task.error = e
      self._report(key, 1, task.rows)
      task.done.set()

  def _report(self, key: Hashable, requests: int, rows: int) -> None:
    if self._on_batch is not None:
      try:
        self._on_batch(key, requests, rows)
      except Exception:  # pylint: disable=broad-except
        pass  # Metrics must never fail a request.


def _drop_if_expired(task: _Task) -> bool:
  """Fails ``task`` without running it if its client no longer waits."""
  expired = task.deadline.expired()
  if expired is None:
    return False
  task.error = expired
  task.done.set()
  return True


def mergeable_key(prefix: Hashable, inputs: Mapping[str, np.ndarray]) -> Hashable:
  """A queue key: ``prefix`` plus each input's dtype and trailing dims."""
  return (prefix,) + tuple((name, inputs[name].dtype.str, inputs[name].shape[1:])
                           for name in sorted(inputs))
