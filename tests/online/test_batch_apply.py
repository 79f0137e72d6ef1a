"""Tests of online.batch_apply: a batch decided with numpy against the stored profiles
gives the states ``ListenerState.apply`` gives one event at a time."""

import json
import random

import pytest

from features import feature_spec
from online import batch_apply
from online import event_batch
from online import event_source
from online import listener_state
from online import nearline
from online import state_store
from melody_testing import online_events

T0 = 1_700_000_000
DAY = listener_state.DAY_S


def _hard_plays(seed: int, users: int):
  """Plays with everything the rules care about: late and out-of-order events, repeats
  in and across batches, plays at the same second, days leaving the counter window,
  segments and tenures given or left out, histories past TRIM_AT."""
  rng = random.Random(seed)
  docs = []
  for u in range(users):
    ts = T0 + rng.randrange(3600)
    for _ in range(rng.choice([3, 40, state_store.TRIM_AT + 30])):
      ts += rng.choice([0, 30, 400, 2 * DAY if rng.random() < 0.05 else 60])
      doc = online_events.play(
          f"u{u:03d}", ts, f"t{rng.randrange(30):02d}", session=f"s{ts // 3600}",
          completion=round(rng.random(), 2), skip=float(rng.random() < 0.3),
          segment=rng.choice(["free", "paid", "trial"]), like=float(rng.random() < 0.2),
          subscription=float(rng.random() < 0.1))
      if rng.random() < 0.2:
        del doc["user_segment"]
      if rng.random() < 0.3:
        doc["user_tenure_days"] = None
      # A fifth of the lines arrive out of time order, some later than the limit (a
      # delay within the held history: see listener_state.ListenerState.apply).
      delay = rng.randrange(1, 1800) if rng.random() < 0.2 else 0
      docs.append((ts + delay, doc))
      if rng.random() < 0.05:
        docs.append((ts + delay, dict(doc, completion=0.5)))   # logged twice
  rng.shuffle(docs)
  docs.sort(key=lambda pair: pair[0])
  return [doc for _, doc in docs]


def _in_batches(docs, max_batch, max_lateness_s):
  """Each listener's state from the valid events applied one by one: per batch of
  ``max_batch`` lines, in time order (equal times in log order), as the updater does."""
  states = {}
  for start in range(0, len(docs), max_batch):
    chunk = [event_source.parse_event(json.dumps(d)) for d in docs[start:start + max_batch]]
    for event in sorted(chunk, key=lambda e: e.ts):
      state = states.setdefault(event.user_id, listener_state.ListenerState(event.user_id))
      if state.newest_ts - event.ts <= max_lateness_s:
        state.apply(event)
  return states


@pytest.mark.parametrize("max_batch", [97, 100_000])
def test_batches_give_the_states_of_applying_events_one_by_one(tmp_path, store, max_batch):
  docs = _hard_plays(seed=7, users=12)
  online_events.append(tmp_path / "a.jsonl", docs)
  updater = nearline.Updater(event_source.DirectorySource(str(tmp_path)), store,
                             nearline.NearlineOptions(max_batch=max_batch,
                                                      max_lateness_s=1200))
  total = updater.drain()
  want = _in_batches(docs, max_batch, 1200)
  got = store.get_many(list(want))
  assert got.keys() == want.keys()
  for user, state in want.items():
    assert got[user] == state, user
  # In one batch every event is in time order: none is late.
  assert total.duplicates > 0 and (total.quarantined > 0) == (max_batch < len(docs))
  assert any(len(s.counters) > 1 for s in got.values())
  assert max(len(s.plays) for s in got.values()) == feature_spec.HISTORY_LEN


def test_an_all_late_batch_writes_no_listener():
  columns, _ = event_batch.parse_lines([json.dumps(online_events.play("u1", T0, "t1"))
                                        .encode()])
  stored = {"u1": state_store.Profile(newest_ts=T0 + 10 * DAY)}
  applied = batch_apply.apply_events(columns, lambda users: stored, lambda keys: set(),
                                     lambda users: {}, DAY)
  assert (applied.applied, applied.batch.profiles, applied.batch.plays) == (0, {}, [])
  assert applied.late == [(0, f"late by {10 * DAY} s (limit {DAY} s)")]
