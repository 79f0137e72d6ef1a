"""A throttled watch on one file: whether it changed, looked at no more than once a period.

This module owns the part the gateway's reloadable files share (the policy file,
``online.policy_source``, and the promo controller's override,
``online.promo_controller.OverrideFile``): a ``stat`` at most every ``check_every_s``
seconds under a lock, so concurrent requests neither pile up on the file system nor
reload twice, and a stamp (inode, size, modification time) that tells a changed file
from the one already read; an atomic replace by rename changes the inode even when the
size and time agree. What a change or a missing file means is the caller's.
"""

import os
import threading
import time
from typing import Callable, Optional, Tuple

Stamp = Tuple[int, int, int]
# What a look found.
NOT_YET, MISSING, UNCHANGED, CHANGED = "not_yet", "missing", "unchanged", "changed"


def stamp_of(path: str) -> Optional[Stamp]:
  """(inode, size, modification ns) of ``path``, or None when it cannot be stat'ed."""
  try:
    info = os.stat(path)
  except OSError:
    return None
  return info.st_ino, info.st_size, info.st_mtime_ns


class FileWatch:
  """Looks at ``path`` at most once per ``check_every_s``.

  Args:
    path: The watched file.
    check_every_s: Least seconds between two looks.
    clock: Monotonic seconds (tests pass their own).
    known: The stamp of the file as the caller has already read it (None: nothing
      read yet, so the first look reports the file as changed).
    look_now: Whether the first call to :meth:`look` may look at once; otherwise it
      waits ``check_every_s`` from construction.
  """

  def __init__(self, path: str, check_every_s: float = 1.0,
               clock: Callable[[], float] = time.monotonic, known: Optional[Stamp] = None,
               look_now: bool = True):
    if check_every_s < 0:
      raise ValueError(f"check_every_s must be >= 0, got {check_every_s}")
    self.path, self.check_every_s, self._clock = path, check_every_s, clock
    self._lock = threading.Lock()
    self._stamp = known
    self._next = -float("inf") if look_now else clock() + check_every_s

  def look(self, on_change: Callable[[], None],
           on_missing: Optional[Callable[[], None]] = None) -> str:
    """Looks at the file if it is time; returns what the look found.

    ``on_change`` runs (under the lock) when the file's stamp differs from the last one
    seen, ``on_missing`` when the file is gone; a file that comes back after being gone
    counts as changed.

    Returns:
      ``NOT_YET`` (too soon, or another thread is looking), ``MISSING``, ``UNCHANGED``
      or ``CHANGED``.
    """
    now = self._clock()
    if now < self._next:
      return NOT_YET
    with self._lock:
      if now < self._next:
        return NOT_YET
      self._next = now + self.check_every_s
      stamp = stamp_of(self.path)
      if stamp is None:
        self._stamp = None
        if on_missing is not None:
          on_missing()
        return MISSING
      if stamp == self._stamp:
        return UNCHANGED
      self._stamp = stamp
      on_change()
      return CHANGED
