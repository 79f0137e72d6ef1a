"""kill -9 of a running ``melody nearline`` and restarts lose and double-count nothing.

A real updater process applies a log in micro-batches and is killed with SIGKILL
while it works, several times, each time restarted on the same store; the states it
ends with must equal those of one uninterrupted in-process pass over the same lines.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from melody_testing import online_events
from online import event_source
from online import nearline
from online import stores

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
USERS = 40
CHUNKS = 3


def _start(events_dir, url):
  env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
  return subprocess.Popen(
      [sys.executable, "-m", "online.nearline_main", "--events", str(events_dir),
       "--store", url, "--interval", "0.05", "--max-batch", "200"],
      cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _applied_lines(store):
  return sum(o.lines for o in store.offsets().values())


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_sigkill_mid_batch_then_restart_is_exactly_once(tmp_path, backend, request):
  url = (f"sqlite:///{tmp_path / 'state.db'}" if backend == "sqlite"
         else request.getfixturevalue("redis_store_url"))
  events_dir = tmp_path / "events"
  events_dir.mkdir()
  docs = online_events.random_plays(seed=11, users=USERS, per_user=150)
  size = len(docs) // CHUNKS
  chunks = [docs[i * size:(i + 1) * size] for i in range(CHUNKS - 1)] + [
      docs[(CHUNKS - 1) * size:] + ["not an event"]]
  killed_with_work_left = 0
  with stores.open_store(url) as store:
    for i, chunk in enumerate(chunks):
      online_events.append(events_dir / f"part-{i % 2}.jsonl", chunk)
      before = _applied_lines(store)
      proc = _start(events_dir, url)
      deadline = time.monotonic() + 120
      while _applied_lines(store) == before and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.01)
      time.sleep(0.02 * i)
      proc.send_signal(signal.SIGKILL)
      proc.wait(timeout=60)
      killed_with_work_left += _applied_lines(store) < before + len(chunk)
    # The last restart runs to the end of the logs and stops on SIGTERM.
    proc = _start(events_dir, url)
    deadline = time.monotonic() + 120
    while _applied_lines(store) < len(docs) + 1 and time.monotonic() < deadline:
      time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    users = [f"u{u:04d}" for u in range(USERS)]
    got = {u: s.to_json() for u, s in store.get_many(users).items()}
    quarantined = store.quarantined()
    popular = dict(store.top_tracks("all", 1000))
  assert killed_with_work_left >= 1
  with stores.open_store(str(tmp_path / "reference.db")) as reference:
    nearline.Updater(event_source.DirectorySource(str(events_dir)), reference,
                     nearline.NearlineOptions(max_batch=1_000_000)).drain()
    want = {u: s.to_json() for u, s in reference.get_many(users).items()}
    assert popular == dict(reference.top_tracks("all", 1000))
  assert len(want) == USERS and got == want
  assert [(q.file, q.raw) for q in quarantined] == [("part-0.jsonl", "not an event")]
  assert quarantined[0].reason.startswith("not JSON")
