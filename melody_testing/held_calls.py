"""A model server input validator that holds requests until a test lets them go.

This module owns :class:`HeldCalls`, the way server tests make a Predict call "slow"
without timing: registered as a validator (``ModelServer.register_validator`` or the
``validators`` argument), it runs on the handler thread right before the model would,
counts the calls that reached it and blocks each until the test sets ``release``. What
the server does meanwhile (deadlines, admission, draining) is then decided by events,
and :func:`wait_until` waits, with a bound, for what the server does on its own threads.
"""

import threading
from typing import Mapping, Optional

import numpy as np


class HeldCalls:
  """A validator that blocks every call until ``release`` is set.

  Attributes:
    release: Set it to let every held (and later) call go on.
  """

  def __init__(self):
    self.release = threading.Event()
    self._entered = threading.Semaphore(0)
    self._lock = threading.Lock()
    self._count = 0

  @property
  def count(self) -> int:
    """Calls that reached the validator so far."""
    with self._lock:
      return self._count

  def wait_entered(self, calls: int = 1, timeout: float = 60.0) -> bool:
    """Waits until ``calls`` more calls reached the validator; False on timeout."""
    return all(self._entered.acquire(timeout=timeout) for _ in range(calls))

  def __call__(self, arrays: Mapping[str, np.ndarray]) -> None:
    del arrays
    with self._lock:
      self._count += 1
    self._entered.release()
    if not self.release.wait(600):
      raise RuntimeError("held call was never released")


def wait_until(condition, timeout: float = 60.0, step: float = 0.01) -> Optional[bool]:
  """Polls ``condition()`` until it is true or ``timeout`` passes; returns its last value."""
  waiter = threading.Event()
  for _ in range(max(1, int(timeout / step))):
    value = condition()
    if value:
      return value
    waiter.wait(step)
  return condition()
