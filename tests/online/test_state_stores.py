"""Tests of both listener state stores (SQLite and a Redis this test session starts)."""

import sqlite3

import pytest
import redis

from features import feature_spec
from online import listener_state
from online import redis_store
from online import sqlite_store
from online import state_store
from online import stores


def _state(user, *tracks):
  state = listener_state.ListenerState(user)
  for i, track in enumerate(tracks):
    state.apply(listener_state.PlayEvent(user, 1_700_000_000 + i, track, session_id="s"))
  return state


def test_commit_then_read_back_states_offsets_popularity_and_quarantine(store):
  assert store.get("u1") is None and store.offsets() == {} and store.listener_count() == 0
  states = [_state("u1", "a", "b"), _state("u2", "c")]
  batch = state_store.batch_of_states(states)
  batch.popularity = {("free", "a"): 2, ("free", "b"): 5, ("all", "a"): 3}
  batch.quarantined = [state_store.Quarantined("log.jsonl", 3, "{bad", "not JSON")]
  batch.offsets = {"log.jsonl": state_store.Offset(120, 4)}
  store.commit(batch)
  got = store.get_many(["u2", "u1", "nobody", "u1"])
  assert got == {"u1": states[0], "u2": states[1]}
  assert store.profiles(["u1", "nobody"]) == {"u1": batch.profiles["u1"]}
  assert store.history_floors(["u1", "u2"]) == {}   # fewer than HISTORY_LEN plays
  assert store.held_plays([("u1", 1_700_000_001, "b", "s"), ("u1", 1_700_000_001, "b", "x"),
                           ("u2", 1_700_000_000, "c", "s")]) == {
                               ("u1", 1_700_000_001, "b", "s"), ("u2", 1_700_000_000, "c", "s")}
  assert store.offsets() == {"log.jsonl": state_store.Offset(120, 4)}
  assert store.top_tracks("free", 5) == [("b", 5.0), ("a", 2.0)]
  assert store.top_tracks("paid", 5) == []
  assert store.quarantined() == batch.quarantined
  store.commit(state_store.Batch(popularity={("free", "a"): 4},
                                 quarantined=batch.quarantined,
                                 offsets={"log.jsonl": state_store.Offset(200, 6)}))
  assert store.top_tracks("free", 1) == [("a", 6.0)]
  assert len(store.quarantined()) == 1   # the same line is quarantined once
  assert store.offsets()["log.jsonl"] == state_store.Offset(200, 6)
  assert store.listener_count() == 2
  assert store.bytes_per_listener() > 0


def test_a_failed_commit_changes_nothing(store, monkeypatch):
  del monkeypatch
  first = state_store.batch_of_states([_state("u1", "a")])
  first.offsets = {"f": state_store.Offset(10, 1)}
  store.commit(first)
  bad = state_store.batch_of_states([_state("u2", "b")])
  bad.offsets = {"f": state_store.Offset(20, 2)}
  # A play row that cannot be written, after the batch's profiles.
  bad.plays.append(("u2", 1_700_000_005, "z", "s", "az", object(), 0.0))
  with pytest.raises((sqlite3.Error, TypeError)):
    store.commit(bad)
  assert store.get("u2") is None and store.get("u1").track_ids() == ["a"]
  assert store.offsets() == {"f": state_store.Offset(10, 1)}


def test_a_trim_cuts_rows_beyond_the_newest_plays_and_older_than_the_cutoff(store):
  n, keep, t0 = state_store.TRIM_AT + 3, feature_spec.HISTORY_LEN, 1_700_000_000
  store.commit(state_store.Batch(
      plays=[(u, t0 + i, f"t{i}", "s", f"at{i}", 0.0, 0.0) for u in ("u1", "u2")
             for i in range(n)],
      profiles={u: state_store.Profile(newest_ts=t0 + n - 1, play_rows=keep)
                for u in ("u1", "u2")},
      trim=[("u1", t0 + n), ("u2", t0 + 10)]))
  assert store.get("u1").track_ids() == [f"t{i}" for i in range(n - keep, n)]
  assert store.held_plays([("u1", t0 + n - keep, f"t{n - keep}", "s"),
                           ("u1", t0 + n - keep - 1, f"t{n - keep - 1}", "s"),
                           ("u2", t0 + 10, "t10", "s"), ("u2", t0 + 9, "t9", "s")]) == {
                               ("u1", t0 + n - keep, f"t{n - keep}", "s"),
                               ("u2", t0 + 10, "t10", "s")}
  assert store.history_floors(["u1", "u2", "nobody"]) == {
      "u1": (t0 + n - keep, f"t{n - keep}", "s"), "u2": (t0 + 10, "t10", "s")}


def test_a_format_1_store_is_migrated_and_a_newer_one_refused(store_url, tmp_path):
  states = [_state("u1", "a", "b"), _state("u2", "c")]
  if store_url.startswith("redis://"):
    client = redis.Redis.from_url(store_url)
    for s in states:
      client.hset(f"melody:listener_state:{s.user_id}", mapping={"state": s.to_json()})
  else:
    conn = sqlite3.connect(store_url[len("sqlite:///"):])
    conn.execute("CREATE TABLE listener_state (user_id TEXT PRIMARY KEY, state BLOB)")
    conn.executemany("INSERT INTO listener_state VALUES (?, ?)",
                     [(s.user_id, s.to_json()) for s in states])
    conn.commit()
    conn.close()
  with stores.open_store(store_url) as store:
    assert store.get_many(["u1", "u2"]) == {s.user_id: s for s in states}
    assert store.listener_count() == 2
  if store_url.startswith("redis://"):
    assert not client.keys("melody:listener_state:*")
    newer = redis_store.FORMAT_VERSION + 1
    client.set("melody:store_format", newer)
  else:
    newer = sqlite_store.FORMAT_VERSION + 1
    conn = sqlite3.connect(store_url[len("sqlite:///"):])
    conn.execute("UPDATE store_format SET version = ?", (newer,))
    conn.commit()
    conn.close()
  with pytest.raises(state_store.FormatError, match=f"format {newer}"):
    stores.open_store(store_url)


def test_open_store_urls(tmp_path):
  with stores.open_store(str(tmp_path / "a.db")) as s:
    assert s.url == f"sqlite:///{tmp_path / 'a.db'}"
  try:
    stores.open_store("mysql://x")
  except ValueError as e:
    assert "redis://" in str(e)
  else:
    raise AssertionError("unknown scheme accepted")
