"""The embedded listener state store: one SQLite file in WAL mode.

This module owns :class:`SqliteStore`, the default backend of ``online.state_store``:
tables ``listener_state`` (entity key, state JSON, event timestamp, write time — the
columns Feast's SQLite online store keeps per entity and feature view), ``popularity``
(segment, track, plays), ``quarantine`` (file, line, raw text, reason) and
``source_offsets`` (file, byte offset, lines). A batch commits in one ``BEGIN
IMMEDIATE`` transaction; WAL lets the gateway read while the updater writes, and
``synchronous=NORMAL`` keeps every committed batch across a crash of the process (an OS
crash may lose the last batches, never half of one).
"""

import os
import sqlite3
import threading
import time
from typing import Dict, List, Sequence, Tuple

from online import listener_state
from online import state_store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS listener_state (
  user_id TEXT PRIMARY KEY, state BLOB NOT NULL, event_ts INTEGER NOT NULL,
  created_ts REAL NOT NULL);
CREATE TABLE IF NOT EXISTS popularity (
  segment TEXT NOT NULL, track_id TEXT NOT NULL, plays INTEGER NOT NULL,
  PRIMARY KEY (segment, track_id));
CREATE INDEX IF NOT EXISTS popularity_rank ON popularity (segment, plays DESC);
CREATE TABLE IF NOT EXISTS quarantine (
  file TEXT NOT NULL, line INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (file, line));
CREATE TABLE IF NOT EXISTS source_offsets (
  file TEXT PRIMARY KEY, byte_offset INTEGER NOT NULL, lines INTEGER NOT NULL);
"""
_MAX_VARS = 500   # ids per IN (...) query, below SQLite's variable limit
_CACHE_KIB = 64 << 10
_MMAP_BYTES = 256 << 20
# An upsert rewrites the row in place where INSERT OR REPLACE deletes and re-inserts it.
_UPSERT_STATE = (
    "INSERT INTO listener_state VALUES (?, ?, ?, ?) ON CONFLICT (user_id) DO UPDATE SET "
    "state = excluded.state, event_ts = excluded.event_ts, created_ts = excluded.created_ts")


class SqliteStore(state_store.StateStore):
  """Listener states in one SQLite file (created when missing).

  Args:
    path: The database file.
    timeout: Seconds a writer waits for the lock.

  One connection per thread: the gateway's handler threads each get their own.
  """

  def __init__(self, path: str, timeout: float = 30.0):
    self.path = os.path.abspath(path)
    self.url = f"sqlite:///{self.path}"
    self._timeout = timeout
    self._local = threading.local()
    self._all: List[sqlite3.Connection] = []
    self._lock = threading.Lock()
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    conn = self._conn()
    conn.executescript(_SCHEMA)

  def _conn(self) -> sqlite3.Connection:
    conn = getattr(self._local, "conn", None)
    if conn is None:
      conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                             check_same_thread=False)
      conn.execute("PRAGMA journal_mode=WAL")
      conn.execute("PRAGMA synchronous=NORMAL")
      # A batch rewrites thousands of rows spread over the whole table: a page cache
      # and a memory map that hold the table make that CPU work instead of page reads
      # (memory is taken only as the file grows).
      conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
      conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
      self._local.conn = conn
      with self._lock:
        self._all.append(conn)
    return conn

  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    out = {}
    ids = list(dict.fromkeys(user_ids))
    conn = self._conn()
    for i in range(0, len(ids), _MAX_VARS):
      chunk = ids[i:i + _MAX_VARS]
      marks = ",".join("?" * len(chunk))
      for user, blob in conn.execute(
          f"SELECT user_id, state FROM listener_state WHERE user_id IN ({marks})", chunk):
        out[user] = listener_state.ListenerState.from_json(blob)
    return out

  def commit(self, batch: state_store.Batch) -> None:
    conn = self._conn()
    now = time.time()
    conn.execute("BEGIN IMMEDIATE")
    try:
      # In key order, the rows of one batch touch each page of the table once.
      conn.executemany(_UPSERT_STATE, sorted(
          (s.user_id, s.to_json(), s.newest_ts, now) for s in batch.states))
      conn.executemany(
          "INSERT INTO popularity VALUES (?, ?, ?) ON CONFLICT (segment, track_id) "
          "DO UPDATE SET plays = plays + excluded.plays",
          [(seg, track, n) for (seg, track), n in batch.popularity.items()])
      conn.executemany("INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?)",
                       [(q.file, q.line, q.raw, q.reason) for q in batch.quarantined])
      conn.executemany("INSERT OR REPLACE INTO source_offsets VALUES (?, ?, ?)",
                       [(f, o.offset, o.lines) for f, o in batch.offsets.items()])
      conn.execute("COMMIT")
    except BaseException:
      conn.execute("ROLLBACK")
      raise

  def offsets(self) -> Dict[str, state_store.Offset]:
    rows = self._conn().execute("SELECT file, byte_offset, lines FROM source_offsets")
    return {f: state_store.Offset(o, n) for f, o, n in rows}

  def top_tracks(self, segment: str, k: int) -> List[Tuple[str, float]]:
    rows = self._conn().execute(
        "SELECT track_id, plays FROM popularity WHERE segment = ? "
        "ORDER BY plays DESC, track_id LIMIT ?", (segment, int(k)))
    return [(t, float(n)) for t, n in rows]

  def quarantined(self) -> List[state_store.Quarantined]:
    rows = self._conn().execute("SELECT file, line, raw, reason FROM quarantine "
                                "ORDER BY file, line")
    return [state_store.Quarantined(*r) for r in rows]

  def listener_count(self) -> int:
    return int(self._conn().execute("SELECT COUNT(*) FROM listener_state").fetchone()[0])

  def bytes_per_listener(self) -> float:
    """Database pages in use (after a WAL checkpoint) per listener, all tables included."""
    conn = self._conn()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    size = conn.execute("PRAGMA page_size").fetchone()[0]
    n = self.listener_count()
    return (pages - free) * size / n if n else 0.0

  def close(self) -> None:
    with self._lock:
      conns, self._all = self._all, []
    for conn in conns:
      conn.close()
    self._local = threading.local()
