"""Tests of opening SQLite stores written in the older layouts (format 2: a profile row
and one row per play)."""

import sqlite3
import struct

import pytest

from features import feature_spec
from online import listener_state
from online import play_records
from online import sqlite_store
from online import state_store

_FORMAT_2 = """
CREATE TABLE listener_profile (
  user_id TEXT PRIMARY KEY, newest_ts INTEGER NOT NULL, segment TEXT NOT NULL,
  tenure_days REAL NOT NULL, tenure_ts INTEGER NOT NULL, play_rows INTEGER NOT NULL,
  counters BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE listener_plays (
  user_id TEXT NOT NULL, ts INTEGER NOT NULL, track_id TEXT NOT NULL,
  session_id TEXT NOT NULL, artist_id TEXT NOT NULL, completion REAL NOT NULL,
  skip REAL NOT NULL, PRIMARY KEY (user_id, ts, track_id, session_id)) WITHOUT ROWID;
CREATE TABLE popularity (
  segment TEXT NOT NULL, track_id TEXT NOT NULL, plays INTEGER NOT NULL,
  PRIMARY KEY (segment, track_id));
CREATE TABLE source_offsets (
  file TEXT PRIMARY KEY, byte_offset INTEGER NOT NULL, lines INTEGER NOT NULL);
CREATE TABLE store_format (version INTEGER NOT NULL);
INSERT INTO store_format VALUES (2);
"""
T0 = 1_700_000_000


def _states():
  heavy = listener_state.ListenerState("u1")
  # More plays than a history keeps, some on other days, segment and tenure given.
  for i in range(feature_spec.HISTORY_LEN + 7):
    heavy.apply(listener_state.PlayEvent(
        "u1", T0 + 9000 * i, f"t{i % 13}", f"a{i % 5}", f"s{i // 10}",
        completion=0.125 * (i % 8), skip=float(i % 3 == 0), like=float(i % 4 == 0),
        user_segment="paid" if i > 20 else "free", user_tenure_days=3.5 + i))
  light = listener_state.ListenerState("u2")
  light.apply(listener_state.PlayEvent("u2", T0, "é-track", "artist", "s", 0.5, 0.0))
  return [heavy, light]


def _write_format_2(path, batch):
  conn = sqlite3.connect(path)
  conn.executescript(_FORMAT_2)
  conn.executemany("INSERT INTO listener_profile VALUES (?, ?, ?, ?, ?, ?, ?)",
                   [(u, *p) for u, p in batch.profiles.items()])
  conn.executemany("INSERT INTO listener_plays VALUES (?, ?, ?, ?, ?, ?, ?)", batch.plays)
  conn.execute("INSERT INTO popularity VALUES ('free', 't1', 4)")
  conn.execute("INSERT INTO source_offsets VALUES ('log.jsonl', 900, 12)")
  conn.commit()
  conn.close()


def test_a_format_2_file_is_migrated_to_the_same_states(tmp_path):
  path = str(tmp_path / "state.db")
  states = _states()
  batch = state_store.batch_of_states(states)
  # A format 2 store held every play row not yet trimmed: one older than the history.
  old = ("u1", T0 - 50, "old", "s", "a", 1.0, 0.0)
  batch.plays.insert(0, old)
  _write_format_2(path, batch)

  with sqlite_store.SqliteStore(path) as store:
    assert store.get_many(["u1", "u2", "nobody"]) == {s.user_id: s for s in states}
    assert store.profiles(["u1", "u2"]) == batch.profiles
    assert store.held_plays([old[:4], ("u1", T0 - 50, "old", "x")]) == {old[:4]}
    assert store.history_floors(["u1", "u2"]) == {"u1": (T0 - 50, "old", "s")}
    assert store.top_tracks("free", 3) == [("t1", 4.0)]
    assert store.offsets() == {"log.jsonl": state_store.Offset(900, 12)}

  conn = sqlite3.connect(path)
  tables = {name for (name,) in conn.execute(
      "SELECT name FROM sqlite_master WHERE type = 'table'")}
  assert conn.execute("SELECT version FROM store_format").fetchall() == [
      (sqlite_store.FORMAT_VERSION,)]
  conn.close()
  assert "listener" in tables
  assert not tables & {"listener_profile", "listener_plays"}


def test_play_records_round_trip_and_order_by_history_key():
  plays = [(T0 + 5, "b", "s", "ab", 0.25, 1.0), (T0, "z" * 300, "", "ä", 1.0, 0.0),
           (T0 + 5, "a", "s", "aa", 0.1, 0.0), (T0 + 5, "a", "s", "again", 0.9, 0.0)]
  data = play_records.pack(plays)
  assert play_records.unpack(data) == plays
  # A key added twice keeps its first record.
  assert play_records.ordered(data) == [plays[1], plays[2], plays[0]]
  assert play_records.keys(data) == {(T0 + 5, "b", "s"), (T0, "z" * 300, ""),
                                     (T0 + 5, "a", "s")}
  assert play_records.held(data, [(T0 + 5, "b", "s"), (T0 + 5, "b", "x"), (T0, "z" * 300, ""),
                                  (T0 + 6, "a", "s")]) == {(T0 + 5, "b", "s"),
                                                            (T0, "z" * 300, "")}
  # An artist id whose bytes spell another play's key holds no play of that key.
  fake_ts = int.from_bytes(b"ABCDEFGH", "little")
  tricky = play_records.pack([(T0, "t", "s", "ABCDEFGH\x01\x00\x00\x00z", 0.0, 0.0)])
  assert (struct.pack("<qHH", fake_ts, 1, 0) + b"z") in tricky
  assert play_records.held(tricky, [(fake_ts, "z", ""), (T0, "t", "s")]) == {(T0, "t", "s")}
  with pytest.raises(ValueError, match="session_id"):
    play_records.pack([(T0, "t", "s" * 70_000, "a", 0.0, 0.0)])
  with pytest.raises(TypeError, match="completion"):
    play_records.pack([(T0, "t", "s", "a", "x", 0.0)])


def test_packing_by_user_lays_out_each_users_rows_as_its_plays_records():
  rows = [("u1", T0, "t", "s", "a", 0.5, 1.0), ("u1", T0 + 1, "tä", "", "aa", 0.25, 0.0),
          ("u2", T0, "x" * 300, "ss", "", 1.0, 0.0), ("u1", T0 + 9, "q", "s", "a", 0.0, 0.0)]
  got = list(play_records.pack_by_user(rows))
  assert [user for user, _ in got] == ["u1", "u2"]
  for (_, data), user_rows in zip(got, ([*rows[:2], rows[3]], rows[2:3])):
    assert data == play_records.pack(r[1:] for r in user_rows)
  with pytest.raises(ValueError, match="artist_id"):
    list(play_records.pack_by_user([("u", T0, "t", "s", "a" * 70_000, 0.0, 0.0)]))
  with pytest.raises(TypeError, match="completion"):
    list(play_records.pack_by_user([("u", T0, "t", "s", "a", object(), 0.0)]))
