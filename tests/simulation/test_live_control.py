"""The live loop's controller judges segments on the control traffic."""

import json

import pytest

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


def test_the_controllers_base_is_the_served_policys_segment_rows(tmp_path):
  from ranking.fusion import policy_file, spec  # pylint: disable=import-outside-toplevel
  from ranking.layers import mixing  # pylint: disable=import-outside-toplevel
  from simulation import live_loop  # pylint: disable=import-outside-toplevel
  rows = (("new", (0.75, 0.05, 0.2)), ("free", (0.5, 0.15, 0.35)),
          ("free_veteran", (0.45, 0.25, 0.3)), ("trial", (0.5, 0.2, 0.3)),
          ("paid", (0.7, 0.0, 0.2)))
  provenance = {"simulation_run": "test", "world_version": "w", "model_version": "m",
                "metrics": {"completion_rate": 0.5},
                "constraint": {"metric": "completion_rate", "floor": 0.4, "met": True}}
  path = policy_file.from_configs(spec.FusionConfig(segment_weights=rows),
                                  mixing.MixingConfig(), provenance).dump(
                                      str(tmp_path / "policy.json"))
  base = live_loop.base_weights(path)
  assert base["free"] == (0.5, 0.15, 0.35)
  assert base["paid"] == (0.7, 0.0, 0.2)
  assert live_loop.base_weights("") is None
  controller = promo_controller.PromoController(promo_controller.ControllerConfig(
      min_sessions=1), base)
  controller.observe(1, {"free": (10, 0.1)})
  assert controller.override().weights_for("free") == pytest.approx(
      [0.5 + 0.35 * 0.25, 0.15, 0.35 * 0.75])
  bad = tmp_path / "bad.json"
  bad.write_text(open(path, encoding="utf-8").read().replace('"epsilon": 0.02',
                                                             '"epsilon": -1'))
  try:
    live_loop.LiveConfig(policy=str(bad))
  except policy_file.PolicyError as e:
    assert e.field == "epsilon"
  else:
    raise AssertionError("a bad policy file was accepted")
