"""A live day of the twin's listeners through the real gateway and model server, and the
experiment the loop runs on it: arms and versions logged with every play, bad lines
caught by the nearline quarantine, the canary rolled back or promoted on the server, the
controller's override written."""

import collections
import json
import os

import numpy as np
import pytest

from melody_testing import canary_stack
from online import event_source
from online import experiment_split
from online import nearline
from online import stores
from simulation import live_day
from simulation import live_experiment
from simulation import live_stack
from simulation import world as world_lib
from simulation import world_config

LISTENERS = 40


@pytest.fixture(scope="module")
def world():
  return world_lib.World(world_config.WorldConfig(n_tracks=300), seed=3)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
  root = tmp_path_factory.mktemp("live")
  split = experiment_split.ExperimentSplit("live-test", 0.5, "s")
  with canary_stack.canary_stack(str(root), {"stable": 1, "canary": 2}, split) as running:
    yield running


@pytest.fixture(scope="module")
def day(world, stack, tmp_path_factory):
  events_dir = tmp_path_factory.mktemp("events")
  rng = np.random.default_rng(11)
  listeners = world.sample_users(LISTENERS, rng)
  log = live_day.day_log_path(str(events_dir), 1)
  options = live_day.DayOptions(k=5, concurrency=2, bad_fraction=0.2)
  result = live_day.run_day(world, listeners, np.ones(LISTENERS, bool), 1,
                            world_config.DEFAULT_START_TS, stack.gateway.grpc_target, log,
                            rng, options)
  return result, str(events_dir), log


def test_every_play_carries_its_arm_and_the_version_that_answered(day):
  result, _, _ = day
  assert result.sessions == LISTENERS and len(result.requests) == LISTENERS
  assert all(r["code"] == "OK" and r["source"] == "model" for r in result.requests)
  assert result.events and len(result.tomorrow) == LISTENERS
  versions = {event["arm"]: set() for event in result.events}
  for event in result.events:
    versions[event["arm"]].add(event["model_version"])
  assert versions == {"stable": {1}, "canary": {2}}
  sessions = {event["session_id"] for event in result.events}
  assert len(sessions) == LISTENERS


def _earlier_plays(result, directory):
  """One play per listener the day before: the state a late line is late against."""
  os.makedirs(directory)
  firsts = {e["user_id"]: dict(e, ts=e["ts"] - world_config.DAY_S, session_id="earlier")
            for e in reversed(result.events)}
  with open(os.path.join(directory, "earlier.jsonl"), "w", encoding="utf-8") as f:
    f.write("".join(json.dumps(e) + "\n" for e in firsts.values()))
  return directory


def test_bad_lines_are_quarantined_and_duplicates_applied_once(day, tmp_path):
  result, events_dir, log = day
  bad = result.bad_lines
  assert sum(bad.values()) > 0 and all(bad[kind] > 0 for kind in live_day.BAD_KINDS)
  with open(log, encoding="utf-8") as f:
    assert sum(1 for _ in f) == len(result.events) + sum(bad.values())
  options = nearline.NearlineOptions(interval_s=0.1)
  with stores.open_store(str(tmp_path / "state.db")) as store:
    earlier = event_source.DirectorySource(_earlier_plays(result, str(tmp_path / "earlier")))
    nearline.Updater(earlier, store, options).drain()
    total = nearline.Updater(event_source.DirectorySource(events_dir), store,
                             options).drain()
    reasons = [q.reason for q in store.quarantined()]
  assert total.applied == len(result.events)
  assert total.duplicates == bad["duplicate"]
  assert len(reasons) == bad["malformed"] + bad["late"]
  kinds = collections.Counter(map(live_stack.reason_kind, reasons))
  assert kinds == {"not JSON": bad["malformed"], "late": bad["late"]}


def _sessions(arm, n, completion, skip, rng):
  return [{"user_id": f"{arm}-{i}", "session_id": "s", "arm": arm, "user_segment": "free",
           "completion": float(np.clip(rng.normal(completion, 0.1), 0, 1)),
           "skip": float(rng.random() < skip), "like": 0.0, "subscription": 0.0}
          for i in range(n)]


def test_the_experiment_rolls_back_a_bad_canary_and_promotes_a_good_one(stack, tmp_path):
  rng = np.random.default_rng(5)
  entry = live_experiment.stable_entry(stack.entry.base_path, 1)
  experiment = live_experiment.Experiment(
      entry, str(tmp_path / "models.config"), stack.server.target,
      live_experiment.TestSettings(min_samples=50))
  assert experiment.observe_day(1, [], []) is None
  assert experiment.push_canary(2) and not experiment.push_canary(3)
  skips = (_sessions("stable", 200, 0.5, 0.2, rng) + _sessions("canary", 200, 0.5, 0.6, rng))
  decision = experiment.observe_day(1, skips, [])
  assert (decision["action"], decision["failed_guardrail"]) == ("rollback", "skip_rate")
  assert experiment.entry.labels == {"stable": 1}
  assert stack.server.loaded_versions("melody") == (1,)
  assert experiment.push_canary(3)
  better = (_sessions("stable", 200, 0.5, 0.2, rng) + _sessions("canary", 200, 0.65, 0.2, rng))
  decision = experiment.observe_day(2, better, [])
  assert decision["action"] == "promote" and decision["canary"] == 3
  assert experiment.entry.labels == {"stable": 3}
  assert [d["day"] for d in experiment.decisions] == [1, 2]


def test_the_controller_lowers_promotion_for_a_segment_below_its_floor(tmp_path):
  rng = np.random.default_rng(6)
  experiment = live_experiment.Experiment(live_experiment.stable_entry("/unused", 1),
                                          str(tmp_path / "models.config"), None)
  events = (_sessions("stable", 80, 0.2, 0.5, rng)
            + [dict(e, user_segment="paid") for e in _sessions("stable", 80, 0.8, 0.1, rng)])
  path = str(tmp_path / "override.json")
  actions = experiment.control(1, events, path)
  assert [(a["segment"], a["kind"]) for a in actions] == [("free", "lower")]
  with open(path, encoding="utf-8") as f:
    override = json.load(f)
  assert "free" in json.dumps(override) and "paid" not in json.dumps(override)
  assert os.path.getsize(path) > 0


def test_a_day_of_several_sessions_runs_them_in_rounds(world, stack, tmp_path):
  rng = np.random.default_rng(12)
  listeners = world.sample_users(10, rng)
  log = live_day.day_log_path(str(tmp_path), 2)
  result = live_day.run_day(world, listeners, np.ones(10, bool), 2,
                            world_config.DEFAULT_START_TS, stack.gateway.grpc_target, log,
                            rng, live_day.DayOptions(k=3, concurrency=2, sessions=3))
  assert result.sessions == 30 and len(result.requests) == 30
  by_round = collections.defaultdict(list)
  for event in result.events:
    by_round[event["session_id"].rsplit("s", 1)[1]].append(event["ts"])
  assert sorted(by_round) == ["0", "1", "2"]
  third = world_config.DAY_S // 3
  for r, times in by_round.items():
    start = world_config.DEFAULT_START_TS + int(r) * third
    assert all(start <= ts < start + third + 3 * 200 for ts in times)
  with pytest.raises(ValueError, match="sessions"):
    live_day.DayOptions(sessions=0)
