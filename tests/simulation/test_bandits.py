"""Tests of simulation.bandits: the simplex grid, LinUCB and Thompson golden updates on
tiny inputs, and the per-segment bandits reaching 95% of the best fixed grid point on a
small fixed-seed rollout."""

import dataclasses

import numpy as np
import pytest

from simulation import bandits
from simulation import policies
from simulation import report
from simulation import rollout as rollout_lib
from simulation.world import World


def test_simplex_grid_golden():
  g = bandits.simplex_grid(0.5)
  np.testing.assert_allclose(g, [[1, 0, 0], [0.5, 0, 0.5], [0.5, 0.5, 0], [0, 0, 1],
                                 [0, 0.5, 0.5], [0, 1, 0]])
  assert len(bandits.simplex_grid(0.25)) == 15
  np.testing.assert_allclose(bandits.simplex_grid(0.1).sum(1), 1.0)
  with pytest.raises(ValueError, match="step=0.3"):
    bandits.simplex_grid(0.3)


def test_context_features_are_segment_and_activity_one_hots():
  x = bandits.context_features(np.array([0, 4]), np.array([3, 1]))
  assert x.shape == (2, 9)
  assert np.flatnonzero(x[0]).tolist() == [0, 8]
  assert np.flatnonzero(x[1]).tolist() == [4, 6]


def test_linucb_golden_updates():
  b = bandits.LinUCB(2, 2, alpha=1.0, ridge=1.0)
  b.update(np.array([[1.0, 0.0]]), np.array([0]), np.array([1.0]))
  np.testing.assert_allclose(b.A[0], [[2, 0], [0, 1]])
  np.testing.assert_allclose(b.b[0], [1, 0])
  np.testing.assert_allclose(b.theta(), [[0.5, 0], [0, 0]])
  # arm 0: 0.5 + sqrt(1/2); arm 1 (untouched): 0 + sqrt(1).
  np.testing.assert_allclose(b.ucb(np.array([[1.0, 0.0]])), [[0.5 + np.sqrt(0.5), 1.0]])
  assert b.select(np.array([[1.0, 0.0], [0.0, 1.0]])).tolist() == [0, 0]   # tie -> lower
  b.update(np.array([[1.0, 1.0]]), np.array([1]), np.array([2.0]))
  # A1 = [[2, 1], [1, 2]], b1 = [2, 2] -> theta1 = [2/3, 2/3], x^T A1^-1 x = 2/3.
  np.testing.assert_allclose(b.theta()[1], [2 / 3, 2 / 3])
  np.testing.assert_allclose(b.ucb(np.array([[1.0, 0.0]]))[0, 1], 2 / 3 + np.sqrt(2 / 3))
  assert b.select(np.array([[1.0, 0.0]])).tolist() == [1]


def test_batched_update_equals_one_by_one():
  rng = np.random.default_rng(0)
  x = rng.random((7, 3))
  arms = rng.integers(0, 2, 7)
  r = rng.random(7)
  batch, single = bandits.LinUCB(2, 3), bandits.LinUCB(2, 3)
  batch.update(x, arms, r)
  for i in range(7):
    single.update(x[i:i + 1], arms[i:i + 1], r[i:i + 1])
  np.testing.assert_allclose(batch.A, single.A)
  np.testing.assert_allclose(batch.b, single.b)


def test_thompson_golden_update_and_draw():
  t = bandits.LinearThompson(2, 2, noise=0.5, ridge=1.0)
  t.update(np.array([[1.0, 0.0], [1.0, 1.0]]), np.array([0, 1]), np.array([1.0, 2.0]))
  np.testing.assert_allclose(t.theta(), [[0.5, 0], [2 / 3, 2 / 3]])
  x = np.array([[1.0, 0.0], [0.0, 1.0]])
  got = t.sample_scores(x, np.random.default_rng(4))
  # The same draw written out: theta~ = theta + v * chol(A^-1) z, score = x . theta~.
  z = np.random.default_rng(4).standard_normal((2, 2, 2))
  want = np.zeros((2, 2))
  for i in range(2):
    for a in range(2):
      chol = np.linalg.cholesky(np.linalg.inv(t.A[a]))
      want[i, a] = x[i] @ (t.theta()[a] + 0.5 * chol @ z[i, a])
  np.testing.assert_allclose(got, want)
  # With no noise Thompson is greedy on the posterior mean: x = [1, 0] scores
  # (0.5, 2/3) and x = [0, 1] scores (0, 2/3), so arm 1 both times; an arm-0-only
  # context [1, -1] scores (0.5, 0).
  greedy = bandits.LinearThompson(2, 2, noise=0.0)
  greedy.A, greedy.b = t.A.copy(), t.b.copy()
  rng = np.random.default_rng(0)
  assert greedy.select(np.vstack([x, [[1.0, -1.0]]]), rng).tolist() == [1, 1, 0]


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="alpha must be >= 0, got -1"):
    bandits.LinUCB(2, 2, alpha=-1)
  with pytest.raises(ValueError, match="arms must be in"):
    bandits.LinUCB(2, 2).update(np.ones((1, 2)), np.array([2]), np.ones(1))
  with pytest.raises(ValueError, match="needs an rng"):
    bandits.LinearThompson(2, 2).select(np.ones((1, 2)))


@pytest.fixture(scope="module")
def problem():
  """Six arms (grid step 0.5), 1,500 listeners x 7 days, rounds of 300 listeners. No
  policy here reads the play history, so the rollouts keep none (same numbers, faster)."""
  world = World(seed=7)
  cfg = rollout_lib.RolloutConfig(users=1500, days=7, seed=2, chunk_users=300,
                                  keep_history=False)
  grid = bandits.simplex_grid(0.5)
  last_day = []
  for g in grid:
    res = rollout_lib.rollout(world, policies.FusionPolicy(fusion=report.uniform_fusion(g)), cfg)
    last_day.append(res.summary(res.cube[-1])["expected_reward_per_session"])
  return world, cfg, grid, np.array(last_day)


@pytest.mark.parametrize("make", [lambda: bandits.LinUCB(6, 9, alpha=1.0),
                                  lambda: bandits.LinearThompson(6, 9, noise=1.0)],
                         ids=["linucb", "thompson"])
def test_bandit_reaches_95_percent_of_best_grid_point(problem, make):
  world, cfg, grid, last_day = problem
  assert last_day.max() > 1.1 * last_day.min()      # the arms really differ
  policy = bandits.BanditPolicy(make(), grid, seed=0)
  res = rollout_lib.rollout(world, policy, cfg)
  bandit_last = res.summary(res.cube[-1])["expected_reward_per_session"]
  assert bandit_last >= 0.95 * last_day.max()
  assert len(res.rounds["day"]) == cfg.days * cfg.users // cfg.chunk_users
  # It learned something: the arms it plays on the last day are mostly good ones.
  good = last_day >= np.quantile(last_day, 0.5)
  final = np.sum(policy.choices[-cfg.users // cfg.chunk_users:], axis=0)
  assert final[good].sum() > final[~good].sum()


def test_bandit_policy_checks_its_arms():
  with pytest.raises(ValueError, match=r"arms must be \[3, 3\]"):
    bandits.BanditPolicy(bandits.LinUCB(3, 9), np.ones((2, 3)))
  assert dataclasses.is_dataclass(rollout_lib.Objective())
