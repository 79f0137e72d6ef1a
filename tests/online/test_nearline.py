"""Tests of the nearline updater: micro-batches, quarantine, lateness, exactly-once."""

import json

from features import feature_spec
from online import batch_apply
from online import event_source
from online import nearline
from online import state_store
from online import stores
from melody_testing import online_events

T0 = 1_700_000_000


def _updater(events_dir, store, **options):
  return nearline.Updater(event_source.DirectorySource(str(events_dir)), store,
                          nearline.NearlineOptions(**options), clock=lambda: T0 + 10_000)


def test_applies_events_quarantines_bad_lines_and_waits_for_unfinished_lines(tmp_path, store):
  log = tmp_path / "a.jsonl"
  good = [online_events.play("u1", T0 + 100, "t1"), online_events.play("u1", T0 + 50, "t0"),
          online_events.play("u2", T0 + 10, "t1", segment="paid")]
  online_events.append(log, good[:2] + ["{not json", json.dumps({"user_id": "u3", "ts": 5}),
                                        json.dumps(online_events.play("u1", T0, "t9",
                                                                      completion=1.5))]
                       + good[2:] + [json.dumps(good[0])])
  with open(log, "a") as f:
    f.write('{"user_id": "u4", "ts": ')    # a writer caught mid-line
  updater = _updater(tmp_path, store, max_batch=3)
  total = updater.drain()
  assert (total.applied, total.duplicates, total.quarantined) == (3, 1, 3)
  assert [(q.line, q.reason) for q in store.quarantined()] == [
      (3, "not JSON: unexpected character, expected a string key at column 2"),
      (4, "missing track_id"), (5, "completion outside [0, 1]")]
  assert store.quarantined()[0].raw == "{not json" and store.quarantined()[0].file == "a.jsonl"
  assert store.get("u1").track_ids() == ["t0", "t1"]
  assert store.get("u2").segment == "paid"
  assert store.top_tracks("all", 2) == [("t1", 2.0), ("t0", 1.0)]
  with open(log, "a") as f:
    f.write(' %d, "track_id": "t5"}\n' % (T0 + 5))
  assert updater.step().applied == 1
  assert store.get("u4").track_ids()[0] == "t5"
  assert store.offsets()["a.jsonl"].lines == 8
  assert updater.step().lines == 0


def test_events_later_than_the_limit_are_quarantined(tmp_path, store):
  online_events.append(tmp_path / "a.jsonl", [online_events.play("u1", T0 + 5000, "t1"),
                                              online_events.play("u1", T0, "t0"),
                                              online_events.play("u1", T0 + 4500, "t2")])
  total = _updater(tmp_path, store, max_lateness_s=1000, max_batch=1).drain()
  assert (total.applied, total.quarantined) == (2, 1)
  assert store.quarantined()[0].reason == "late by 5000 s (limit 1000 s)"
  assert store.get("u1").track_ids() == ["t2", "t1"]


def test_batches_of_any_size_give_the_same_states(tmp_path):
  docs = online_events.random_plays(seed=3, users=20, per_user=30)
  online_events.append(tmp_path / "b.jsonl", docs)
  results = []
  for max_batch in (7, 10_000):
    with stores.open_store(str(tmp_path / f"s{max_batch}.db")) as store:
      _updater(tmp_path, store, max_batch=max_batch).drain()
      states = store.get_many([f"u{u:04d}" for u in range(20)])
      results.append({u: s.to_json() for u, s in states.items()})
  assert len(results[0]) == 20 and results[0] == results[1]


def test_a_failed_commit_drops_the_cached_states_and_the_retry_applies_once(tmp_path,
                                                                             monkeypatch):
  online_events.append(tmp_path / "a.jsonl", [online_events.play("u1", T0, "t0")])
  with stores.open_store(str(tmp_path / "s.db")) as store:
    updater = _updater(tmp_path, store)
    updater.step()
    online_events.append(tmp_path / "a.jsonl", [online_events.play("u1", T0 + 60, "t1")])
    commit = store.commit
    monkeypatch.setattr(store, "commit", lambda batch: (_ for _ in ()).throw(OSError("x")))
    try:
      updater.step()
    except OSError:
      pass
    monkeypatch.setattr(store, "commit", commit)
    assert updater.step().applied == 1
    assert store.get("u1").track_ids() == ["t0", "t1"]
    assert store.get("u1").counter_totals()["plays"] == 2


def test_repeats_of_old_plays_count_once_whatever_the_lateness_limit(tmp_path, store):
  n = state_store.TRIM_AT + 10   # enough plays for a trim
  plays = [online_events.play("u1", T0 + 60 * i, f"t{i}", session="s") for i in range(n)]
  log = tmp_path / "a.jsonl"
  online_events.append(log, plays)
  assert _updater(tmp_path, store, max_batch=40).drain().applied == n
  # A repeat of a play older than the history but within the lateness limit: its row is
  # still held.
  online_events.append(log, [plays[3]])
  assert _updater(tmp_path, store).drain().duplicates == 1
  # A run with a short lateness limit adds enough plays for a trim, which cuts every row
  # older than the limit and the newest HISTORY_LEN.
  more = [online_events.play("u1", T0 + 60 * (n + j), f"n{j}", session="s")
          for j in range(state_store.TRIM_AT - feature_spec.HISTORY_LEN + 1)]
  online_events.append(log, more)
  assert _updater(tmp_path, store, max_lateness_s=600).drain().applied == len(more)
  assert store.history_floors(["u1"]) == {"u1": (T0 + 60 * (n + 1), "n1", "s")}
  # Back to a long limit: a repeat of a cut play is quarantined, a repeat of a held one
  # is a duplicate, a new late play above the oldest row is applied.
  online_events.append(log, [more[0], more[1],
                             online_events.play("u1", T0 + 60 * (n + 1) + 1, "late")])
  total = _updater(tmp_path, store).drain()
  assert (total.applied, total.duplicates, total.quarantined) == (1, 1, 1)
  assert [(q.line, q.reason) for q in store.quarantined()] == [
      (n + 2 + len(more), batch_apply.BELOW_HISTORY)]
  assert store.get("u1").counter_totals()["plays"] == n + len(more) + 1
