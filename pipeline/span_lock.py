"""One runner per span: a lock file that two scheduled runs of the same span cannot both hold.

A scheduler that fires twice (a retry while the first attempt still runs, two operators
catching up at once) must not train twice and push twice. Before a span's run starts,
its runner creates ``WORKDIR/locks/span-YYYYMMDD.lock`` with ``O_EXCL`` (atomic on a
local or NFS filesystem) holding its pid, host and process start time
(``pipeline.run_record``). A second runner finds the file and stops with
:class:`SpanBusyError` while the holder is alive; a lock whose holder is gone (killed,
machine rebooted) is taken over, so a crash never blocks a span for good.
"""

import contextlib
import json
import os
import socket
import time
from typing import Iterator

from pipeline import run_record


class SpanBusyError(RuntimeError):
  """Another live runner holds the span."""


def _path(lock_dir: str, span: str) -> str:
  return os.path.join(lock_dir, f"{span}.lock")


def _holder(path: str) -> run_record.RunRecord:
  with open(path, encoding="utf-8") as f:
    fields = json.load(f)
  return run_record.RunRecord(directory=os.path.dirname(path), **fields)


def _create(path: str) -> bool:
  try:
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  pid = os.getpid()
  fields = {"run_id": os.path.basename(path), "pid": pid, "host": socket.gethostname(),
            "process_start": run_record.process_start(pid), "started": time.time()}
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    json.dump(fields, f)
  return True


@contextlib.contextmanager
def hold(lock_dir: str, span: str) -> Iterator[None]:
  """Holds ``span``'s lock for the duration.

  Raises:
    SpanBusyError: a live runner holds it (the message names its pid and host).
  """
  os.makedirs(lock_dir, exist_ok=True)
  path = _path(lock_dir, span)
  if not _create(path):
    try:
      holder = _holder(path)
    except (OSError, ValueError, TypeError):
      holder = None  # being written this instant, or unreadable: treat as held
    if holder is None or run_record.runner_alive(holder) is not False:
      who = f"pid {holder.pid} on {holder.host}" if holder else "another runner"
      raise SpanBusyError(f"{span} is being run by {who} ({path})")
    os.remove(path)  # the holder is gone
    if not _create(path):
      raise SpanBusyError(f"{span} was taken by another runner ({path})")
  try:
    yield
  finally:
    with contextlib.suppress(FileNotFoundError):
      os.remove(path)
