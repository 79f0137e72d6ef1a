"""The live loop's controller judges segments on the control traffic."""

import json

from online import promo_controller
from simulation import live_experiment


def _sessions(arm, segment, completion, n, start=0):
  """``n`` one-play sessions of ``segment`` on ``arm`` with the given completion."""
  return [{"user_id": f"u{arm}{segment}{i}", "session_id": f"s{i}", "arm": arm,
           "user_segment": segment, "completion": completion, "skip": 0.0,
           "subscription": 0.0, "like": 0.0} for i in range(start, start + n)]


def _experiment(tmp_path):
  entry = live_experiment.stable_entry(str(tmp_path / "serving"), 1)
  controller = promo_controller.PromoController(promo_controller.ControllerConfig(
      completion_floor=0.45, min_sessions=10, cooldown_windows=0))
  return live_experiment.Experiment(entry, str(tmp_path / "models.config"), None,
                                    controller=controller)


def test_a_bad_canary_does_not_move_the_stable_arms_promotion(tmp_path):
  experiment = _experiment(tmp_path)
  override = str(tmp_path / "override.json")
  # Pooled, free's completion is 0.35 (below the floor); the stable arm's is 0.60.
  events = _sessions("stable", "free", 0.6, 40) + _sessions("canary", "free", 0.1, 60)
  assert experiment.control(1, events, override) == []
  assert json.loads(open(override, encoding="utf-8").read()) == {}
  assert experiment.controller.scale("free") == 1.0


def test_the_stable_arm_below_the_floor_is_lowered_whatever_the_canary_does(tmp_path):
  experiment = _experiment(tmp_path)
  override = str(tmp_path / "override.json")
  events = _sessions("stable", "free", 0.3, 40) + _sessions("canary", "free", 0.9, 60)
  actions = experiment.control(1, events, override)
  assert [(a["segment"], a["kind"], a["sessions"]) for a in actions] == [
      ("free", "lower", 40)]
  assert actions[0]["completion"] == 0.3
  assert json.loads(open(override, encoding="utf-8").read())["free"]["scale"] == 0.75


def test_without_a_canary_every_session_counts(tmp_path):
  experiment = _experiment(tmp_path)
  override = str(tmp_path / "override.json")
  events = _sessions("stable", "free", 0.6, 40) + _sessions("none", "free", 0.1, 60)
  actions = experiment.control(1, events, override)
  assert [(a["segment"], a["sessions"]) for a in actions] == [("free", 100)]
  assert abs(actions[0]["completion"] - 0.3) < 1e-9
