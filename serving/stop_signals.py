"""Stopping Melody's long-running processes by signal.

This module owns the one rule ``melody serve``, ``melody gateway`` and ``melody
nearline`` follow: SIGTERM or SIGINT sets a stop event that the process's loop watches,
so the work in progress (a drain, a micro-batch's commit) ends cleanly; the previous
handlers come back when the block ends.
"""

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
  """Yields an event that SIGTERM and SIGINT set during the ``with`` block.

  Outside the main thread (where handlers cannot be installed) the event is only set by
  the caller.
  """
  stop = threading.Event()
  previous = {}
  if threading.current_thread() is threading.main_thread():
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield stop
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)
