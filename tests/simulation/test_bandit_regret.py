"""Tests of simulation.bandit_regret, bandit_arms and bandit_study: the best fixed grid
point per segment and the regret arithmetic on tiny hand-computed problems, the served
ranker sending each listener's arm as the ``rank`` signature's override, and
``melody simulate --bandit`` writing its study on a tiny oracle rollout."""

import argparse
import json
import os

import numpy as np
import pytest

from features import feature_spec
from simulation import bandit_arms
from simulation import bandit_regret
from simulation import cli
from simulation import policies
from simulation import rollout as rollout_lib
from simulation.world import World
from simulation.world_config import WorldConfig

_R = rollout_lib.METRICS.index("expected_reward")
_S = rollout_lib.METRICS.index("sessions")


def test_best_fixed_per_segment_golden():
  rewards = np.array([[10.0, 6.0, 0.0, 4.0], [12.0, 4.0, 0.0, 4.0], [9.0, 6.0, 0.0, 4.0]])
  sessions = np.array([[2.0, 2.0, 0.0, 1.0], [3.0, 1.0, 0.0, 1.0], [1.0, 2.0, 0.0, 1.0]])
  # Per session: segment 0 earns 5 / 4 / 9, segment 1 3 / 4 / 3; segment 2 has no
  # sessions (index 0) and segment 3 ties (the lower index).
  best = bandit_regret.best_fixed_per_segment(rewards, sessions)
  assert best.tolist() == [2, 1, 0, 0]
  grid = np.array([[1.0, 0, 0], [0.5, 0.5, 0], [0, 0, 1.0]])
  np.testing.assert_array_equal(bandit_regret.best_table(grid, best),
                                [[0, 0, 1], [0.5, 0.5, 0], [1, 0, 0], [1, 0, 0]])
  with pytest.raises(ValueError, match="both be"):
    bandit_regret.best_fixed_per_segment(rewards, sessions[:, :2])


def test_round_regret_golden():
  base = {"day": np.array([0, 0, 1]), "sessions": np.array([10.0, 10.0, 5.0]),
          "expected_reward": np.array([50.0, 60.0, 20.0])}
  band = {"day": np.array([0, 0, 1]), "sessions": np.array([10.0, 8.0, 6.0]),
          "expected_reward": np.array([40.0, 50.0, 30.0])}
  # The baseline earns 5, 6 and 4 per session: 10*5-40, 8*6-50, 6*4-30.
  np.testing.assert_allclose(bandit_regret.round_regret(base, band), [10, 8, 2])
  with pytest.raises(ValueError, match="rounds do not line up"):
    bandit_regret.round_regret(base, {k: v[:2] for k, v in band.items()})


def _result(cells):
  """A 2-day rollout result from ``{(day, segment): (sessions, expected_reward)}``."""
  cube = np.zeros((2, policies.N_SEG, policies.N_ACT, len(rollout_lib.METRICS)))
  for (day, seg), (ses, rew) in cells.items():
    cube[day, seg, 1, _S], cube[day, seg, 1, _R] = ses, rew
  rounds = {"day": np.array([0, 1]), "sessions": cube[..., _S].sum((1, 2)),
            "expected_reward": cube[..., _R].sum((1, 2))}
  return rollout_lib.RolloutResult(cube=cube, rounds=rounds)


def test_segment_regret_and_summary_golden():
  base = _result({(0, 0): (10, 50), (1, 0): (10, 70), (0, 4): (4, 8), (1, 4): (2, 4)})
  band = _result({(0, 0): (8, 30), (1, 0): (12, 70), (0, 4): (5, 10), (1, 4): (2, 6)})
  seg = bandit_regret.segment_regret(base, band)
  # Segment 0: 8*5-30 = 10, then 12*7-70 = 14; segment 4: 5*2-10 = 0, then 2*2-6 = -2.
  np.testing.assert_allclose(seg[:, 0], [10, 24])
  np.testing.assert_allclose(seg[:, 4], [0, -2])
  np.testing.assert_allclose(seg[:, 1:4], 0)
  out = bandit_regret.summarize(base, band, worst_last_day=5.0)
  # Last day: the baseline earns 74/12, the bandit 76/14.
  np.testing.assert_allclose(out["ratio_to_baseline_last_day"], (76 / 14) / (74 / 12))
  np.testing.assert_allclose(out["gap_closed_last_day"], (76 / 14 - 5) / (74 / 12 - 5))
  # Rounds: 13*(58/14) - 40, then 14*(74/12) - 76, cumulated.
  r0 = 13 * 58 / 14 - 40
  np.testing.assert_allclose(out["cumulative_regret"], [r0, r0 + 14 * 74 / 12 - 76])
  assert out["segment_regret"][feature_spec.SEGMENTS[0]] == pytest.approx(24)
  assert out["segment_regret_per_1k_sessions"][feature_spec.SEGMENTS[4]] == pytest.approx(
      -2000 / 7)


def _echo_model(path):
  """A ``rank`` signature over three of the real inputs (a policy feeds a signature the
  inputs it declares) that keeps the candidate order and returns the weights it was
  sent."""
  import tensorflow as tf  # pylint: disable=import-outside-toplevel

  class Echo(tf.Module):

    @tf.function(input_signature=[{
        "candidate_ids": tf.TensorSpec([None, None], tf.string, name="candidate_ids"),
        "alpha_beta_gamma": tf.TensorSpec([None, 3], tf.float32, name="alpha_beta_gamma"),
        "override": tf.TensorSpec([None], tf.int64, name="override")}])
    def rank(self, inputs):
      ids = inputs["candidate_ids"]
      order = tf.tile(tf.range(tf.shape(ids)[1])[None, :], [tf.shape(ids)[0], 1])
      weights = inputs["alpha_beta_gamma"] * tf.cast(inputs["override"], tf.float32)[:, None]
      return {"order": order, "weights": weights}

  m = Echo()
  tf.saved_model.save(m, path, signatures={"rank": m.rank})
  return path


def test_served_arms_send_each_listeners_row_as_the_override(tmp_path):
  world = World(WorldConfig(n_tracks=300), seed=3)
  ranker = bandit_arms.ServedArms(_echo_model(str(tmp_path / "echo")), slate_len=4)
  rng = np.random.default_rng(0)
  L = world.sample_users(3, rng)
  state = policies.ListenerState(world, L, {})
  ctx = policies.Context(activity=np.zeros(3, int), hour=np.zeros(3, int),
                         weekday=np.zeros(3, int), ts=np.full(3, 10_000), seed=np.arange(3))
  cands = policies.Candidates(np.tile(np.arange(20, 28), (3, 1)), np.ones((3, 8), bool))
  rows = np.array([[1.0, 0, 0], [0.25, 0.25, 0.5], [0, 1.0, 0]])
  slates = ranker.rank_rows(state, cands, ctx, rows)
  np.testing.assert_allclose(slates.weights, rows)
  assert slates.tracks.tolist() == [[20, 21, 22, 23]] * 3
  # Outside rank_rows the ranker sends no override.
  assert ranker.requests(state, cands, ctx)["override"].tolist() == [0, 0, 0]
  with pytest.raises(ValueError, match=r"weights must be \[3, 3\]"):
    ranker.rank_rows(state, cands, ctx, rows[:2])


def test_cli_bandit_study_on_the_oracle(tmp_path, capsys):
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command"))
  out = tmp_path / "study"
  args = parser.parse_args(
      ["simulate", "--bandit", "linucb", "--bandit-context", "state", "--scorer", "oracle",
       "--users", "80", "--days", "2", "--bandit-chunk", "40", "--tracks", "300",
       "--grid-step", "1", "--out", str(out)])
  assert args.handler(args) == 0
  assert "lowest regret" in capsys.readouterr().out
  for name in ("bandits.json", "bandits.md", "bandit_regret.png"):
    assert os.path.getsize(out / name) > 0
  with open(out / "bandit_regret.png", "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  def strict(name):
    raise AssertionError(f"bandits.json holds {name}, which is not JSON")

  with open(out / "bandits.json", encoding="utf-8") as f:
    result = json.load(f, parse_constant=strict)
  assert result["bandits"]["random arms"]["segment_weights"]["new"] is None
  assert sorted(result["bandits"]) == ["linucb/state", "random arms"]
  for b in result["bandits"].values():
    assert len(b["cumulative_regret"]) == 2 * 2          # days x rounds per day
    assert np.isfinite(b["cumulative_regret"]).all()
  # The baseline's row per segment is that segment's best grid point.
  for seg, per_point in result["grid_reward_per_session_by_segment"].items():
    assert result["best_per_segment"][seg] == result["grid"][int(np.argmax(per_point))]
  assert result["scorer"]["name"] == "oracle"

  bad = parser.parse_args(["simulate", "--bandit", "all", "--scorer", "both",
                           "--out", str(tmp_path / "bad")])
  assert bad.handler(bad) == 2
  assert "model or oracle" in capsys.readouterr().err
