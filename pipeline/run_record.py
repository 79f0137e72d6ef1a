"""The local runner's own record of each pipeline run: which process runs it, and how
it ended.

ML Metadata only knows executions; a runner killed mid-run leaves its executions
RUNNING forever. So before a run starts, the runner writes
``RUNS_DIR/<run id>/run.json`` with its process id, host and the process's start time,
and on the way out the end time and the one-line error, if any. A reader
(``pipeline.runs``) then tells a run that is still going from one whose process is gone
(abandoned). The same directory holds the run's log (``pipeline.log``: the Python log
records of the run and the full traceback of a failure).

The module imports nothing heavy, so a reader or a short-lived process can use it.
"""

import dataclasses
import datetime
import json
import os
import socket
import time
from typing import Dict, Optional, Tuple

RECORD_FILE = "run.json"
LOG_FILE = "pipeline.log"


@dataclasses.dataclass
class RunRecord:
  """One run as its runner saw it.

  Attributes:
    run_id: the TFX pipeline run id (the ``pipeline_run`` context's name in MLMD).
    directory: the run's directory (record and log).
    pid / host / process_start: the runner process; ``process_start`` tells a live
      runner from a later process that reuses its pid (None where the OS does not
      say).
    started / finished: epoch seconds; ``finished`` is None while the run goes (or
      after its runner died).
    error: the one-line cause of a failure ('' for a success).
  """
  run_id: str
  directory: str
  pid: int
  host: str
  process_start: Optional[int]
  started: float
  finished: Optional[float] = None
  error: str = ""

  @property
  def log_path(self) -> str:
    return os.path.join(self.directory, LOG_FILE)


def new_run_id() -> str:
  """A run id of the form LocalDagRunner gives its runs (local time, ISO 8601)."""
  return datetime.datetime.now().isoformat()


def default_runs_dir(metadata_path: str) -> str:
  """``WORKDIR/runs`` for the local layout ``WORKDIR/metadata/metadata.sqlite``."""
  return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(metadata_path))),
                      "runs")


def _dir_name(run_id: str) -> str:
  # Colons (ISO times) trip up scp, make and some shells.
  return run_id.replace(":", "-")


def _proc_stat(pid: int) -> Optional[Tuple[str, int]]:
  """(state letter, start time in clock ticks since boot) from /proc (Linux), or None."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
      stat = f.read()
  except OSError:
    return None
  # The command name (field 2) may hold spaces; the fields after it are plain.
  fields = stat[stat.rindex(")") + 2:].split()
  return fields[0], int(fields[19])


def process_start(pid: int) -> Optional[int]:
  """The process's start time in clock ticks since boot (Linux), else None."""
  stat = _proc_stat(pid)
  return stat[1] if stat else None


def start(runs_dir: str, run_id: str) -> RunRecord:
  """Writes the record of a run this process is about to start."""
  pid = os.getpid()
  record = RunRecord(run_id=run_id, directory=os.path.join(runs_dir, _dir_name(run_id)),
                     pid=pid, host=socket.gethostname(), process_start=process_start(pid),
                     started=time.time())
  os.makedirs(record.directory, exist_ok=True)
  _write(record)
  return record


def finish(record: RunRecord, error: str = "") -> None:
  """Marks the run as over, with its one-line error ('' for success)."""
  record.finished = time.time()
  record.error = error
  _write(record)


def _write(record: RunRecord) -> None:
  path = os.path.join(record.directory, RECORD_FILE)
  tmp = path + ".tmp"
  fields = dataclasses.asdict(record)
  del fields["directory"]
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(fields, f, indent=1)
  os.replace(tmp, path)  # readers never see half a file


def read_all(runs_dir: str) -> Dict[str, RunRecord]:
  """Every readable record under ``runs_dir``, by run id."""
  out = {}
  if not os.path.isdir(runs_dir):
    return out
  for name in sorted(os.listdir(runs_dir)):
    path = os.path.join(runs_dir, name, RECORD_FILE)
    try:
      with open(path, encoding="utf-8") as f:
        fields = json.load(f)
      record = RunRecord(directory=os.path.join(runs_dir, name), **fields)
    except (OSError, ValueError, TypeError):
      continue  # not a run directory, or a record from an incompatible version
    out[record.run_id] = record
  return out


def runner_alive(record: RunRecord) -> Optional[bool]:
  """Whether the run's process still runs: True, False, or None (another host)."""
  if record.host != socket.gethostname():
    return None
  try:
    os.kill(record.pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # it exists, under another user
  stat = _proc_stat(record.pid)
  if stat is None:
    # Without /proc the pid exists, which is all the OS tells; with it, the process
    # ended between the two looks.
    return not os.path.exists("/proc/self/stat")
  if stat[0] in ("Z", "X"):
    return False  # exited; its parent has not reaped it yet
  if record.process_start is not None and stat[1] != record.process_start:
    return False  # the pid was reused by a later process
  return True
