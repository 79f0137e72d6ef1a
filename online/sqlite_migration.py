"""Reading the SQLite store's older layouts, to rewrite them in the current one.

This module owns what ``online.sqlite_store`` needs to migrate a file it opens: which
layout the file holds, and that layout's listeners as a ``state_store.Batch`` the store
writes in its own layout (in the same transaction that drops the old tables, so a
migration cut short leaves the old file as it was). Format 1 kept whole states as JSON
in ``listener_state(user_id, state)``; format 2 kept a profile row per listener in
``listener_profile`` and one row per play in ``listener_plays``.
"""

import sqlite3
from typing import Optional

from online import listener_state
from online import state_store

# The tables each older format held, dropped once their rows are rewritten.
OLD_TABLES = {1: ("listener_state",), 2: ("listener_plays", "listener_profile")}


def stored_format(conn: sqlite3.Connection) -> Optional[int]:
  """The layout version ``conn``'s file records (1 for a format 1 file, which recorded
  none; None for a new file)."""
  tables = {name for (name,) in conn.execute(
      "SELECT name FROM sqlite_master WHERE type = 'table'")}
  if "store_format" in tables:
    row = conn.execute("SELECT version FROM store_format").fetchone()
    if row is not None:
      return int(row[0])
  return 1 if "listener_state" in tables else None


def old_batch(conn: sqlite3.Connection, version: int) -> state_store.Batch:
  """The listeners of a format ``version`` file (1 or 2) as a batch of new rows.

  Raises:
    ValueError: ``version`` is not an older format.
  """
  if version == 1:
    return state_store.batch_of_states(
        listener_state.ListenerState.from_json(blob)
        for (blob,) in conn.execute("SELECT state FROM listener_state"))
  if version == 2:
    return _format_2(conn)
  raise ValueError(f"version: {version} is not an older SQLite store format")


def _format_2(conn: sqlite3.Connection) -> state_store.Batch:
  batch = state_store.Batch()
  for user, *values in conn.execute(
      "SELECT user_id, newest_ts, segment, tenure_days, tenure_ts, play_rows, counters "
      "FROM listener_profile"):
    batch.profiles[user] = state_store.Profile(*values)
  # Plays of a listener without a profile were never read: they stay behind.
  batch.plays = [row for row in conn.execute(
      "SELECT user_id, ts, track_id, session_id, artist_id, completion, skip "
      "FROM listener_plays ORDER BY user_id, ts, track_id, session_id")
                 if row[0] in batch.profiles]
  return batch


def drop_old(conn: sqlite3.Connection, version: int) -> None:
  """Drops the tables of format ``version``."""
  for table in OLD_TABLES[version]:
    conn.execute(f"DROP TABLE IF EXISTS {table}")

