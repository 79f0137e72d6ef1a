"""Admission of model work: how many Predict calls may run at once, and the drain.

This module owns the gate every Predict call passes before it touches a model. The gRPC
server runs handlers on a fixed pool of threads, and a model call holds its thread until
it returns; if model calls could take every thread, GetModelStatus, GetModelMetadata and
health checks would wait behind them. :class:`Admission` lets at most ``limit`` calls in
and refuses the rest at once (a refused call costs its thread microseconds, not a model
call), and, when the server shuts down, closes: calls already in keep running, new ones
are refused, and the server can wait, with a bound, for the ones inside to finish.
"""

import threading
from typing import Optional


class Refused(Exception):
  """A call was not let in: the server is at its limit or shutting down."""


class Admission:
  """Counts calls in progress, refuses calls past ``limit`` and after ``close``.

  Args:
    limit: Most calls in progress at once (at least 1); None for no limit.
  """

  def __init__(self, limit: Optional[int] = None):
    if limit is not None and limit < 1:
      raise ValueError(f"admission limit must be >= 1, got {limit}")
    self._limit = limit
    self._cond = threading.Condition()
    self._in_flight = 0
    self._closed = False

  @property
  def limit(self) -> Optional[int]:
    return self._limit

  @property
  def in_flight(self) -> int:
    """Calls admitted and not yet finished."""
    with self._cond:
      return self._in_flight

  @property
  def closed(self) -> bool:
    """Whether :meth:`close` was called (the server is draining)."""
    with self._cond:
      return self._closed

  def enter(self) -> None:
    """Takes one place; every successful ``enter`` needs one :meth:`leave`.

    Raises:
      Refused: ``limit`` calls are in progress, or the gate is closed.
    """
    with self._cond:
      if self._closed:
        raise Refused("the server is shutting down")
      if self._limit is not None and self._in_flight >= self._limit:
        raise Refused(f"the server is overloaded: {self._in_flight} Predict calls in "
                      f"progress (limit {self._limit}); retry later")
      self._in_flight += 1

  def leave(self) -> None:
    """Gives back the place taken by :meth:`enter`."""
    with self._cond:
      self._in_flight -= 1
      self._cond.notify_all()

  def close(self) -> None:
    """Refuses every call from now on; calls already admitted keep running."""
    with self._cond:
      self._closed = True

  def wait_idle(self, timeout: float) -> bool:
    """Waits until no admitted call is in progress; False if ``timeout`` passed first."""
    with self._cond:
      return self._cond.wait_for(lambda: self._in_flight == 0, timeout=max(0.0, timeout))
