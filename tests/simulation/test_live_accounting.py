"""A live day's accounting balances when every event arrived once, and shows a loss or a
double count when one did not."""

import numpy as np

from online import event_source
from online import nearline
from online import stores
from simulation import live_accounting
from simulation import live_day
from simulation import live_stack
from simulation.world_config import DAY_S

DAY0 = 1_700_000_000 // DAY_S * DAY_S


def _events(n_users=8, per_user=6, seed=3):
  rng = np.random.default_rng(seed)
  out = []
  for u in range(n_users):
    for j in range(per_user):
      out.append({
          "user_id": f"u{u:07d}", "session_id": f"u{u:07d}-d1", "plays": 1,
          # The last plays of a late session fall on the next epoch day.
          "ts": DAY0 + DAY_S - 700 + 200 * j, "track_id": f"t{rng.integers(0, 500):06d}",
          "artist_id": "a1", "source": "sim", "user_segment": "free",
          "user_tenure_days": 10.0, "context_activity": "commute",
          "context_surface": "home", "is_promo": False,
          "completion": float(rng.random()), "skip": 0.0, "like": 0.0,
          "subscription": 0.0, "exposure": 0.0, "shuffle": False, "skip_profile": None,
          "arm": "stable", "model_label": "stable", "model_version": 1})
  return out


def _day(tmp_path, events, written):
  """Writes ``written`` with bad lines, applies the log in process, accounts ``events``."""
  events_dir = tmp_path / "events"
  events_dir.mkdir()
  store_path = str(tmp_path / "state.db")
  users = sorted({e["user_id"] for e in events})
  # A play of each listener the day before, applied first, as the loop's history is.
  history = [dict(e, ts=DAY0 - 1000, session_id=f"{e['user_id']}-d0")
             for e in events[::6]]
  live_day.write_log(live_day.day_log_path(str(events_dir), 0), history, 0.0,
                     np.random.default_rng(0))
  with stores.open_store(store_path) as store:
    nearline.Updater(event_source.DirectorySource(str(events_dir)), store).drain()
  before = live_accounting.plays_by_day(store_path, users)
  log = live_day.day_log_path(str(events_dir), 1)
  bad = live_day.write_log(log, written, 0.3, np.random.default_rng(5))
  with stores.open_store(store_path) as store:
    report = nearline.Updater(event_source.DirectorySource(str(events_dir)), store).drain()
  quarantined = {}
  for q in live_stack.quarantined(store_path, "day-001.jsonl"):
    quarantined[q.reason] = quarantined.get(q.reason, 0) + 1
  by_source = {"model": len(events) - 6, "fallback_popularity": 6}
  requests = [{"source": "model", "code": "OK"}] * 7 + [
      {"source": "fallback_popularity", "code": "OK"}] + [
          {"source": "error", "code": "UNAVAILABLE"}]
  after = live_accounting.plays_by_day(store_path, users)
  return bad, live_accounting.account(
      by_source, requests, bad, quarantined,
      live_accounting.held_events(store_path, events),
      live_accounting.counted_events(before, after, events),
      {"applied": report.applied, "duplicate": report.duplicates})


def test_a_day_whose_events_all_arrived_once_balances(tmp_path):
  events = _events()
  bad, got = _day(tmp_path, events, events)
  assert sum(bad.values()) > 0 and bad["duplicate"] > 0
  assert got["balanced"]
  assert got["lost"] == 0 and got["doubled"] == 0
  assert got["held"] == got["counted"] == len(events) == 48
  assert got["calls"] == {"error": 1, "fallback_popularity": 1, "model": 7}
  assert got["events"] == {"fallback_popularity": 6, "model": 42}
  assert got["lines_written"] == len(events) + sum(bad.values())
  assert got["quarantined"] == {"late": bad["late"], "not JSON": bad["malformed"]}
  assert got["nearline"] == {"applied": 48, "duplicate": bad["duplicate"]}


def test_a_lost_event_is_seen(tmp_path):
  events = _events()
  _, got = _day(tmp_path, events, events[:-1])
  assert not got["balanced"]
  assert got["lost"] == 1 and got["doubled"] == -1


def test_an_event_applied_twice_is_seen(tmp_path):
  events = _events()
  # The same play written again under another session id: the store cannot tell it
  # from a new play, so it is counted twice.
  again = dict(events[0], session_id="u0000000-other")
  _, got = _day(tmp_path, events, events + [again])
  assert not got["balanced"]
  assert got["lost"] == 0 and got["doubled"] == 1
