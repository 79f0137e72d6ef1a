"""Tests of both listener state stores (SQLite and a Redis this test session starts)."""

from online import listener_state
from online import state_store
from online import stores


def _state(user, *tracks):
  state = listener_state.ListenerState(user)
  for i, track in enumerate(tracks):
    state.apply(listener_state.PlayEvent(user, 1_700_000_000 + i, track, session_id="s"))
  return state


def test_commit_then_read_back_states_offsets_popularity_and_quarantine(store):
  assert store.get("u1") is None and store.offsets() == {} and store.listener_count() == 0
  batch = state_store.Batch(
      states=[_state("u1", "a", "b"), _state("u2", "c")],
      popularity={("free", "a"): 2, ("free", "b"): 5, ("all", "a"): 3},
      quarantined=[state_store.Quarantined("log.jsonl", 3, "{bad", "not JSON")],
      offsets={"log.jsonl": state_store.Offset(120, 4)})
  store.commit(batch)
  got = store.get_many(["u2", "u1", "nobody", "u1"])
  assert got == {"u1": batch.states[0], "u2": batch.states[1]}
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
  store.commit(state_store.Batch(states=[_state("u1", "a")],
                                 offsets={"f": state_store.Offset(10, 1)}))
  bad = state_store.Batch(states=[_state("u1", "a", "b")],
                          offsets={"f": state_store.Offset(20, 2)})
  # A state whose encoding fails half-way through the batch's writes.
  broken = _state("u9", "z")
  monkeypatch.setattr(broken, "to_json", lambda: (_ for _ in ()).throw(RuntimeError("x")))
  bad.states.append(broken)
  try:
    store.commit(bad)
  except RuntimeError:
    pass
  assert store.get("u1").track_ids()[-1] == "a"
  assert store.offsets() == {"f": state_store.Offset(10, 1)}


def test_open_store_urls(tmp_path):
  with stores.open_store(str(tmp_path / "a.db")) as s:
    assert s.url == f"sqlite:///{tmp_path / 'a.db'}"
  try:
    stores.open_store("mysql://x")
  except ValueError as e:
    assert "redis://" in str(e)
  else:
    raise AssertionError("unknown scheme accepted")
