"""The embedded listener state store: one SQLite file in WAL mode.

This module owns :class:`SqliteStore`, the default backend of ``online.state_store``
(format ``FORMAT_VERSION``): table ``listener``, one row per listener (entity key, newest
event time, segment, tenure, play rows held, the counter ring, and ``plays``: its play
rows as one ``online.play_records`` value, new plays appended to it inside SQLite),
``popularity`` (segment, track, plays), ``quarantine`` (file, line, raw text, reason),
``source_offsets`` (file, byte offset, lines) and ``store_format`` (the layout version;
a format 1 or 2 file is migrated in one transaction when opened, ``online.
sqlite_migration``). Writing a listener is one upsert of one row whatever the batch
added, so a batch costs one B-tree write per listener it touched, not one per play. A
batch commits in one ``BEGIN IMMEDIATE`` transaction; WAL lets the gateway read while the
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
from online import play_records
from online import sqlite_migration
from online import state_store

FORMAT_VERSION = 3
_SCHEMA = """
CREATE TABLE IF NOT EXISTS listener (
  user_id TEXT PRIMARY KEY, newest_ts INTEGER NOT NULL, segment TEXT NOT NULL,
  tenure_days REAL NOT NULL, tenure_ts INTEGER NOT NULL, play_rows INTEGER NOT NULL,
  counters BLOB NOT NULL, plays BLOB NOT NULL);
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
_CHECKPOINT_PAGES = 5_000   # WAL pages (40 MiB at 8 KiB) between automatic checkpoints
# A listener row holds up to some hundred plays: 8 KiB pages keep it on its page (past
# about 4 KiB a row spills into overflow pages, each rewritten with it).
_PAGE_SIZE = 8192
_PROFILE_COLUMNS = "user_id, newest_ts, segment, tenure_days, tenure_ts, play_rows, counters"
# Sets the profile and appends the batch's plays of the listener; the rowid table keeps
# the listener's row where it is (the key index is not rewritten).
_UPSERT = ("INSERT INTO listener VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (user_id) DO "
           "UPDATE SET newest_ts = excluded.newest_ts, segment = excluded.segment, "
           "tenure_days = excluded.tenure_days, tenure_ts = excluded.tenure_ts, "
           "play_rows = excluded.play_rows, counters = excluded.counters, "
           "plays = CAST(plays || excluded.plays AS BLOB)")
_NO_PLAYS = (b"",)


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
      version = sqlite_migration.stored_format(conn)
      if version is not None and version > FORMAT_VERSION:
        raise state_store.FormatError(
            f"{self.path} holds listener state format {version}; this Melody reads "
            f"format {FORMAT_VERSION} (and migrates formats 1 and 2)")
      for statement in _SCHEMA.split(";"):
        if statement.strip():
          conn.execute(statement)
      if version != FORMAT_VERSION:
        if version is not None:
          self._write(conn, sqlite_migration.old_batch(conn, version))
          sqlite_migration.drop_old(conn, version)
        conn.execute("DELETE FROM store_format")
        conn.execute("INSERT INTO store_format VALUES (?)", (FORMAT_VERSION,))
      conn.execute("COMMIT")
    except BaseException:
      conn.execute("ROLLBACK")
      raise

  def _conn(self) -> sqlite3.Connection:
    conn = getattr(self._local, "conn", None)
    if conn is None:
      conn = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                             check_same_thread=False)
      # Takes effect only when the file is created (before WAL is switched on).
      conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
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

  def _select(self, columns: str, user_ids: Sequence[str]):
    """Rows of ``columns`` of the listeners among ``user_ids`` that have one."""
    conn = self._conn()
    for chunk, marks in self._chunks(user_ids):
      yield from conn.execute(
          f"SELECT {columns} FROM listener WHERE user_id IN ({marks})", chunk)

  def profiles(self, user_ids: Sequence[str]) -> Dict[str, state_store.Profile]:
    return {user: state_store.Profile(*values)
            for user, *values in self._select(_PROFILE_COLUMNS, user_ids)}

  def held_plays(self, keys: Sequence[state_store.PlayKey]) -> Set[state_store.PlayKey]:
    wanted: Dict[str, List[state_store.HistoryKey]] = {}
    for key in keys:
      wanted.setdefault(key[0], []).append(key[1:])
    return {(user, *key) for user, plays in self._select("user_id, plays", list(wanted))
            for key in play_records.held(plays, wanted[user])}

  def history_floors(self, user_ids: Sequence[str]
                     ) -> Dict[str, state_store.HistoryKey]:
    out = {}
    for user, plays in self._select("user_id, plays", user_ids):
      held = play_records.ordered(plays)
      if len(held) >= feature_spec.HISTORY_LEN:
        out[user] = held[0][:3]
    return out

  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    # One statement per chunk reads a listener's profile and plays from one row: they
    # agree with each other without a read transaction.
    return {user: state_store.materialise(user, state_store.Profile(*values),
                                          play_records.ordered(plays))
            for user, *values, plays in self._select(f"{_PROFILE_COLUMNS}, plays",
                                                      user_ids)}

  def commit(self, batch: state_store.Batch) -> None:
    conn = self._conn()
    conn.execute("BEGIN IMMEDIATE")
    try:
      self._write(conn, batch)
      conn.execute("COMMIT")
    except BaseException:
      conn.execute("ROLLBACK")
      raise

  def _write(self, conn: sqlite3.Connection, batch: state_store.Batch) -> None:
    """The statements of ``batch`` inside the caller's transaction.

    Raises:
      ValueError: play rows of a listener the batch gives no profile.
    """
    plays = dict(play_records.pack_by_user(batch.plays))
    orphans = plays.keys() - batch.profiles.keys()
    if orphans:
      raise ValueError(f"plays: rows of listeners without a profile in the batch: "
                       f"{sorted(orphans)[:5]}")
    # (user,) + profile + (plays,), joined in C.
    conn.executemany(_UPSERT, map(
        operator.add, map(operator.add, zip(batch.profiles), batch.profiles.values()),
        [(plays[u],) if u in plays else _NO_PLAYS for u in batch.profiles]))
    self._trim(conn, batch.trim)
    conn.executemany(
        "INSERT INTO popularity VALUES (?, ?, ?) ON CONFLICT (segment, track_id) "
        "DO UPDATE SET plays = plays + excluded.plays",
        [(seg, track, n) for (seg, track), n in batch.popularity.items()])
    conn.executemany("INSERT OR IGNORE INTO quarantine VALUES (?, ?, ?, ?)",
                     [(q.file, q.line, q.raw, q.reason) for q in batch.quarantined])
    conn.executemany("INSERT OR REPLACE INTO source_offsets VALUES (?, ?, ?)",
                     [(f, o.offset, o.lines) for f, o in batch.offsets.items()])

  def _trim(self, conn: sqlite3.Connection, trim: Sequence[Tuple[str, int]]) -> None:
    """Cuts each listener's plays older than its newest ``HISTORY_LEN`` and older than
    its cutoff, rewriting its ``plays`` in key order."""
    cutoffs = dict(trim)
    kept = []
    for chunk, marks in self._chunks(list(cutoffs)):
      for user, blob in conn.execute(
          f"SELECT user_id, plays FROM listener WHERE user_id IN ({marks})", chunk):
        held = play_records.ordered(blob)
        if len(held) <= feature_spec.HISTORY_LEN:
          continue
        floor, cutoff = held[-feature_spec.HISTORY_LEN][:3], cutoffs[user]
        kept.append((play_records.pack(p for p in held if p[:3] >= floor or p[0] >= cutoff),
                     user))
    conn.executemany("UPDATE listener SET plays = ? WHERE user_id = ?", kept)

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
    return int(self._conn().execute("SELECT COUNT(*) FROM listener").fetchone()[0])

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
