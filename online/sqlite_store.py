"""The embedded listener state store: one SQLite file in WAL mode.

This module owns :class:`SqliteStore`, the default backend of ``online.state_store``:
tables ``listener_profile`` (entity key, newest event time, segment, tenure, play rows
held, the counter ring), ``listener_plays`` (one row per play, keyed by listener, time,
track and session), ``popularity`` (segment, track, plays), ``quarantine`` (file,
line, raw text, reason), ``source_offsets`` (file, byte offset, lines) and
``store_format`` (the layout version; a format 1 file, whole states as JSON in
``listener_state``, is migrated in one transaction when opened). A batch
commits in one ``BEGIN IMMEDIATE`` transaction; WAL lets the gateway read while the
updater writes, and ``synchronous=NORMAL`` keeps every committed batch across a crash of
the process (an OS crash may lose the last batches, never half of one).
"""

import operator
import os
import sqlite3
import threading
from typing import Dict, List, Sequence, Set, Tuple

from features import feature_spec
from online import listener_state
from online import state_store

_SCHEMA = """
CREATE TABLE IF NOT EXISTS listener_profile (
  user_id TEXT PRIMARY KEY, newest_ts INTEGER NOT NULL, segment TEXT NOT NULL,
  tenure_days REAL NOT NULL, tenure_ts INTEGER NOT NULL, play_rows INTEGER NOT NULL,
  counters BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS listener_plays (
  user_id TEXT NOT NULL, ts INTEGER NOT NULL, track_id TEXT NOT NULL,
  session_id TEXT NOT NULL, artist_id TEXT NOT NULL, completion REAL NOT NULL,
  skip REAL NOT NULL, PRIMARY KEY (user_id, ts, track_id, session_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS popularity (
  segment TEXT NOT NULL, track_id TEXT NOT NULL, plays INTEGER NOT NULL,
  PRIMARY KEY (segment, track_id));
CREATE INDEX IF NOT EXISTS popularity_rank ON popularity (segment, plays DESC);
CREATE TABLE IF NOT EXISTS quarantine (
  file TEXT NOT NULL, line INTEGER NOT NULL, raw TEXT NOT NULL, reason TEXT NOT NULL,
  PRIMARY KEY (file, line));
CREATE TABLE IF NOT EXISTS source_offsets (
  file TEXT PRIMARY KEY, byte_offset INTEGER NOT NULL, lines INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS store_format (version INTEGER NOT NULL);
"""
_MAX_VARS = 500   # ids per IN (...) query, below SQLite's variable limit
_CACHE_KIB = 64 << 10
_MMAP_BYTES = 256 << 20
_CHECKPOINT_PAGES = 10_000   # WAL pages (40 MiB at 4 KiB) between automatic checkpoints
_PROFILE = "INSERT OR REPLACE INTO listener_profile VALUES (?, ?, ?, ?, ?, ?, ?)"
# Joins listener k's oldest play row when it holds a HISTORY_LEN-th newest (the last
# variable: HISTORY_LEN - 1).
_FLOOR = ("f.user_id = k.column1 AND (f.ts, f.track_id, f.session_id) = (SELECT ts, track_id, "
          "session_id FROM listener_plays WHERE user_id = k.column1 ORDER BY ts, track_id, "
          "session_id LIMIT 1) AND (SELECT ts FROM listener_plays WHERE user_id = k.column1 "
          "ORDER BY ts DESC, track_id DESC, session_id DESC LIMIT 1 OFFSET ?) IS NOT NULL")
# Deletes a listener's plays older than its newest HISTORY_LEN (by the key order) and
# older than the cutoff ?3.
_TRIM = ("DELETE FROM listener_plays WHERE user_id = ?1 AND ts < ?3 AND "
         "(ts, track_id, session_id) < (SELECT ts, track_id, session_id FROM listener_plays "
         "WHERE user_id = ?1 ORDER BY ts DESC, track_id DESC, session_id DESC LIMIT 1 "
         "OFFSET ?2)")


class SqliteStore(state_store.StateStore):
  """Listener states in one SQLite file (created when missing).

  Args:
    path: The database file.
    timeout: Seconds a writer waits for the lock.

  One connection per thread: the gateway's handler threads each get their own.

  Raises:
    state_store.FormatError: the file holds a newer layout.
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
    conn.execute("BEGIN IMMEDIATE")
    try:
      for statement in _SCHEMA.split(";"):
        if statement.strip():
          conn.execute(statement)
      self._check_format(conn)
      conn.execute("COMMIT")
    except BaseException:
      conn.execute("ROLLBACK")
      raise

  def _check_format(self, conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT version FROM store_format").fetchone()
    if row is not None and row[0] != state_store.FORMAT_VERSION:
      raise state_store.FormatError(
          f"{self.path} holds listener state format {row[0]}; this Melody reads format "
          f"{state_store.FORMAT_VERSION} (and migrates format 1)")
    if row is None:
      old = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                         "AND name = 'listener_state'").fetchone()
      if old is not None:   # format 1: whole states as JSON
        states = [listener_state.ListenerState.from_json(blob) for (blob,) in
                  conn.execute("SELECT state FROM listener_state")]
        self._write(conn, state_store.batch_of_states(states))
        conn.execute("DROP TABLE listener_state")
      conn.execute("INSERT INTO store_format VALUES (?)", (state_store.FORMAT_VERSION,))

  def _conn(self) -> sqlite3.Connection:
    conn = getattr(self._local, "conn", None)
    if conn is None:
      conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                             check_same_thread=False)
      conn.execute("PRAGMA journal_mode=WAL")
      conn.execute("PRAGMA synchronous=NORMAL")
      # A batch dirties thousands of pages: checkpointing every few batches, not after
      # each, copies a page rewritten by several batches into the file once.
      conn.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
      # A batch writes rows spread over the whole table: a page cache and a memory map
      # that hold it make that CPU work instead of page reads (memory is taken only as
      # the file grows).
      conn.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
      conn.execute(f"PRAGMA mmap_size={_MMAP_BYTES}")
      self._local.conn = conn
      with self._lock:
        self._all.append(conn)
    return conn

  def _chunks(self, user_ids: Sequence[str]):
    ids = list(dict.fromkeys(user_ids))
    for i in range(0, len(ids), _MAX_VARS):
      chunk = ids[i:i + _MAX_VARS]
      yield chunk, ",".join("?" * len(chunk))

  def profiles(self, user_ids: Sequence[str]) -> Dict[str, state_store.Profile]:
    out = {}
    conn = self._conn()
    for chunk, marks in self._chunks(user_ids):
      for user, *values in conn.execute(
          f"SELECT * FROM listener_profile WHERE user_id IN ({marks})", chunk):
        out[user] = state_store.Profile(*values)
    return out

  def held_plays(self, keys: Sequence[state_store.PlayKey]) -> Set[state_store.PlayKey]:
    out: Set[state_store.PlayKey] = set()
    conn = self._conn()
    keys = list(keys)
    per = _MAX_VARS // 4
    for i in range(0, len(keys), per):
      chunk = keys[i:i + per]
      marks = ",".join(["(?, ?, ?, ?)"] * len(chunk))
      # A join from the keys (not "IN (VALUES ...)", which scans the table) looks each
      # key up in the primary key.
      out.update(conn.execute(
          f"SELECT p.user_id, p.ts, p.track_id, p.session_id FROM (VALUES {marks}) AS k "
          "CROSS JOIN listener_plays AS p ON p.user_id = k.column1 AND p.ts = k.column2 "
          "AND p.track_id = k.column3 AND p.session_id = k.column4",
          [v for key in chunk for v in key]))
    return out

  def history_floors(self, user_ids: Sequence[str]
                     ) -> Dict[str, state_store.HistoryKey]:
    out = {}
    conn = self._conn()
    for chunk, marks in self._chunks(user_ids):
      values = ",".join(f"({m})" for m in marks.split(","))
      out.update((user, (ts, track, session)) for user, ts, track, session in conn.execute(
          f"SELECT k.column1, f.ts, f.track_id, f.session_id FROM (VALUES {values}) AS k "
          f"CROSS JOIN listener_plays AS f ON {_FLOOR}", [*chunk, feature_spec.HISTORY_LEN - 1]
          ).fetchall())
    return out

  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    out = {}
    conn = self._conn()
    for chunk, marks in self._chunks(user_ids):
      # One read transaction: the two tables agree with each other.
      conn.execute("BEGIN")
      try:
        found = {user: state_store.Profile(*values) for user, *values in conn.execute(
            f"SELECT * FROM listener_profile WHERE user_id IN ({marks})", chunk)}
        plays: Dict[str, List[Tuple]] = {user: [] for user in found}
        for user, *row in conn.execute(
            f"SELECT * FROM listener_plays WHERE user_id IN ({marks}) "
            "ORDER BY user_id, ts, track_id, session_id", chunk):
          plays[user].append(row)
      finally:
        conn.execute("COMMIT")
      out.update((user, state_store.materialise(user, profile, plays[user]))
                 for user, profile in found.items())
    return out

  def commit(self, batch: state_store.Batch) -> None:
    conn = self._conn()
    conn.execute("BEGIN IMMEDIATE")
    try:
      self._write(conn, batch)
      conn.execute("COMMIT")
    except BaseException:
      conn.execute("ROLLBACK")
      raise

  @staticmethod
  def _write(conn: sqlite3.Connection, batch: state_store.Batch) -> None:
    """The statements of ``batch`` inside the caller's transaction."""
    # Rows go in as they come: a batch dirties most pages of the tables either way (the
    # page cache holds them), and sorting the rows costs more than it saves.
    # (user,) + profile, joined in C.
    conn.executemany(_PROFILE, map(operator.add, zip(batch.profiles),
                                   batch.profiles.values()))
    conn.executemany("INSERT OR IGNORE INTO listener_plays VALUES (?, ?, ?, ?, ?, ?, ?)",
                     batch.plays)
    conn.executemany(_TRIM, [(u, feature_spec.HISTORY_LEN - 1, cutoff)
                             for u, cutoff in batch.trim])
    conn.executemany(
        "INSERT INTO popularity VALUES (?, ?, ?) ON CONFLICT (segment, track_id) "
        "DO UPDATE SET plays = plays + excluded.plays",
        [(seg, track, n) for (seg, track), n in batch.popularity.items()])
    conn.executemany("INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?)",
                     [(q.file, q.line, q.raw, q.reason) for q in batch.quarantined])
    conn.executemany("INSERT OR REPLACE INTO source_offsets VALUES (?, ?, ?)",
                     [(f, o.offset, o.lines) for f, o in batch.offsets.items()])

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
    return int(self._conn().execute("SELECT COUNT(*) FROM listener_profile").fetchone()[0])

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
