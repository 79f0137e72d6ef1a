"""Directories a test session builds once and every pytest-xdist worker reads.

Each xdist worker is its own process with its own session fixtures, so an expensive
read-only setup (a simulated world and its TFT output, an exported SavedModel) would be
built once per worker. The workers of one session share the parent of their base
temporary directories (``<pytest-N>/popen-gw0``, ``popen-gw1``): the first worker to ask
builds the directory there while holding an exclusive file lock; the others wait on the
lock and find it complete. Without xdist the session's own base directory is used.
Anything a test changes must be copied into the worker's own temporary directory first.
"""

import contextlib
import fcntl
import os
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")


def session_root(tmp_path_factory) -> str:
  """The temporary directory every worker of this test session shares."""
  base = tmp_path_factory.getbasetemp()
  return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


@contextlib.contextmanager
def exclusive(path: str) -> Iterator[None]:
  """Holds an exclusive lock on ``path + '.lock'`` (released when the process dies)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".lock", "a", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


def build_once(tmp_path_factory, name: str, build: Callable[[str], T]) -> T:
  """``build(DIR)`` for ``DIR = <session root>/<name>``, one worker at a time.

  ``build`` must return early when ``DIR`` is complete (e.g. by checking a marker it
  writes last), so that only the first worker does the work.

  Args:
    tmp_path_factory: pytest's session-scoped factory.
    name: the shared directory's name.
    build: builds (or finds complete) the directory; its result is returned.

  Returns:
    What ``build`` returned.
  """
  path = os.path.join(session_root(tmp_path_factory), name)
  with exclusive(path):
    return build(path)
