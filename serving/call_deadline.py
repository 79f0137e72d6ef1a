"""Whether the client of a request still waits for its answer: deadline and cancellation.

This module owns the one question the server asks before it spends model time on a
request: is anyone still waiting for the answer? A gRPC client sends a deadline with its
call and may cancel it; once the deadline has passed or the call is cancelled, running
the model only takes a thread and a core from requests that can still be answered.
:class:`CallDeadline` wraps a call's ``grpc.ServicerContext`` (or anything with its
``time_remaining()`` and ``is_active()``); a call without a context, such as a REST
request, has no deadline and is never cancelled.
"""

from typing import Optional

DEADLINE_EXCEEDED = "deadline_exceeded"
CANCELLED = "cancelled"

# gRPC reports "no deadline" as a remaining time of about 9.2e18 seconds; anything past
# a year is treated as none.
_NO_DEADLINE_AFTER = 365 * 24 * 3600.0


class CallExpired(Exception):
  """The client no longer waits: its deadline passed or it cancelled the call.

  Attributes:
    reason: ``DEADLINE_EXCEEDED`` or ``CANCELLED``.
  """

  def __init__(self, reason: str):
    super().__init__("the client's deadline passed" if reason == DEADLINE_EXCEEDED
                     else "the client cancelled the call")
    self.reason = reason


class CallDeadline:
  """The deadline and liveness of one call's client.

  Args:
    context: The call's ``grpc.ServicerContext``, or any object with its
      ``time_remaining()`` and ``is_active()`` methods; None for a call that has no
      deadline and cannot be cancelled.
  """

  def __init__(self, context=None):
    self._context = context

  def remaining(self) -> Optional[float]:
    """Seconds until the deadline (0 once it passed), or None without a deadline."""
    if self._context is None:
      return None
    left = self._context.time_remaining()
    if left is None or left > _NO_DEADLINE_AFTER:
      return None
    return max(0.0, left)

  def expired(self) -> Optional[CallExpired]:
    """The reason not to run the call now, or None while the client still waits.

    A passed deadline wins over cancellation: gRPC cancels a call when its deadline
    passes, and that is still a deadline.
    """
    if self._context is None:
      return None
    if self.remaining() == 0.0:
      return CallExpired(DEADLINE_EXCEEDED)
    if not self._context.is_active():
      return CallExpired(CANCELLED)
    return None

  def check(self) -> None:
    """Raises :class:`CallExpired` if the client no longer waits."""
    error = self.expired()
    if error is not None:
      raise error


NO_DEADLINE = CallDeadline()
