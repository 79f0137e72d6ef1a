"""Tests of simulation.estimators: golden numbers on a tiny hand-computable log for IPS,
SNIPS, DR and the position-based estimator, exact Plackett-Luce marginals, a plain-Python
reference for DR (``obp`` is not in the locked environment, so no cross-check against it),
and DR within 5% of the simulator's truth on three held-out target policies."""

import numpy as np
import pytest

from simulation import estimators
from simulation import policies
from simulation.world import World

# Two logged slates of two positions (see each test for the arithmetic).
REWARDS = np.array([[1.0, 0.0], [0.5, 1.0]])
P_LOG = np.array([[0.5, 0.5], [0.25, 1.0]])
P_TGT = np.array([[1.0, 0.25], [0.5, 1.0]])   # W = [[2, 1], [2, 2]]


def test_ips_golden():
  # (W_2 * sum r) per row: 1 * 1 = 1 and 2 * 1.5 = 3; mean 2.
  assert estimators.ips(REWARDS, P_LOG, P_TGT) == pytest.approx(2.0)


def test_snips_golden():
  # (1 * 1 + 2 * 1.5) / (1 + 2).
  assert estimators.snips(REWARDS, P_LOG, P_TGT) == pytest.approx(4.0 / 3.0)


def test_dr_golden():
  q_logged = np.full((2, 2), 0.5)
  q_expected = np.array([[0.6, 0.4], [0.3, 0.7]])
  # row 0: 2*(1-.5) + 1*.6 = 1.6; 1*(0-.5) + 2*.4 = 0.3  -> 1.9
  # row 1: 2*(.5-.5) + 1*.3 = 0.3; 2*(1-.5) + 2*.7 = 2.4 -> 2.7; mean 2.3
  assert estimators.doubly_robust(REWARDS, P_LOG, P_TGT, q_logged, q_expected) == pytest.approx(2.3)


def test_dr_with_a_perfect_model_of_zero_rewards_is_the_model():
  zeros = np.zeros((2, 2))
  q_exp = np.array([[0.2, 0.1], [0.4, 0.3]])
  # r = q_logged = 0: only the model terms remain, weighted by W_{k-1} = [1, W_1].
  want = np.mean([0.2 + 2 * 0.1, 0.4 + 2 * 0.3])
  assert estimators.doubly_robust(zeros, P_LOG, P_TGT, zeros, q_exp) == pytest.approx(want)


def test_position_based_golden():
  m_log = np.array([[0.5, 0.25], [0.5, 0.5]])
  m_tgt = np.array([[0.25, 0.5], [1.0, 0.25]])
  # row 0: 1 * .25/.5 + 0 = 0.5; row 1: .5 * 1/.5 + 1 * .25/.5 = 1.5; mean 1.0
  assert estimators.position_based(REWARDS, m_log, m_tgt) == pytest.approx(1.0)


def test_estimators_name_bad_inputs():
  with pytest.raises(ValueError, match="> 0"):
    estimators.ips(REWARDS, np.zeros((2, 2)), P_TGT)
  with pytest.raises(ValueError, match=r"\[n, K\]"):
    estimators.snips(REWARDS, P_LOG[:1], P_TGT)
  with pytest.raises(ValueError, match="marginals"):
    estimators.position_based(REWARDS, np.zeros((2, 2)), P_TGT)


def test_plackett_luce_marginals_golden():
  # e = (1, 2, 3), Z = 6: m1 = e/6; m2(0) = 2/6 * 1/4 + 3/6 * 1/3 = 1/4,
  # m2(1) = 1/6 * 2/5 + 3/6 * 2/3 = 2/5, m2(2) = 1/6 * 3/5 + 2/6 * 3/4 = 7/20.
  scores = np.log([[1.0, 2.0, 3.0]])
  m = estimators.pl_marginals(scores, np.ones((1, 3), bool), 3, 1.0)[0]
  np.testing.assert_allclose(m[:, 0], [1 / 6, 2 / 6, 3 / 6])
  np.testing.assert_allclose(m[:, 1], [0.25, 0.4, 0.35])
  np.testing.assert_allclose(m[:, 2], [1 - 1 / 6 - 0.25, 1 - 2 / 6 - 0.4, 1 - 0.5 - 0.35])


def test_plackett_luce_pick_propensities_golden():
  scores = np.log([[1.0, 2.0, 3.0]])
  pos, prop = policies.plackett_luce(scores, np.ones((1, 3), bool), 3, 1.0,
                                chosen=np.array([[2, 0, 1]]))
  np.testing.assert_array_equal(pos, [[2, 0, 1]])
  np.testing.assert_allclose(prop, [[0.5, 1 / 3, 1.0]])


def test_closed_form_marginals_match_enumeration_and_sampling():
  rng = np.random.default_rng(3)
  scores = rng.normal(size=(40, 6))
  valid = rng.random((40, 6)) > 0.25
  valid[:, :3] = True
  closed = estimators.pl_marginals(scores, valid, 3, 0.7)
  np.testing.assert_allclose(closed, estimators.pl_marginals_enumerated(scores, valid, 3, 0.7),
                             atol=1e-12)
  np.testing.assert_allclose(closed.sum(1), 1.0)
  assert (closed[~valid] == 0).all()
  # Monte Carlo frequencies of sampled slates agree with the exact marginals.
  row = np.repeat(scores[:1], 20_000, 0)
  pos, _ = policies.plackett_luce(row, np.repeat(valid[:1], 20_000, 0), 3, 0.7, rng)
  freq = np.stack([np.bincount(pos[:, k], minlength=6) / 20_000 for k in range(3)], 1)
  np.testing.assert_allclose(freq, closed[0], atol=0.015)


def _dr_reference(rewards, p_log, p_tgt, q_logged, q_expected):
  """The cascade DR written one slate and one position at a time."""
  total = 0.0
  for i in range(len(rewards)):
    w_prev, value = 1.0, 0.0
    for k in range(len(rewards[i])):
      w = w_prev * p_tgt[i][k] / p_log[i][k]
      value += w * (rewards[i][k] - q_logged[i][k]) + w_prev * q_expected[i][k]
      w_prev = w
    total += value
  return total / len(rewards)


def test_vectorized_estimators_match_plain_python_reference():
  rng = np.random.default_rng(11)
  for _ in range(20):
    n, k = rng.integers(1, 30), rng.integers(1, 5)
    r, q1, q2 = rng.random((3, n, k))
    pl, pt = rng.uniform(0.05, 1, (2, n, k))
    assert estimators.doubly_robust(r, pl, pt, q1, q2) == pytest.approx(
        _dr_reference(r, pl, pt, q1, q2))
    w = [np.prod(pt[i] / pl[i]) for i in range(n)]
    ref_ips = sum(w[i] * sum(r[i]) for i in range(n)) / n
    assert estimators.ips(r, pl, pt) == pytest.approx(ref_ips)
    assert estimators.snips(r, pl, pt) == pytest.approx(ref_ips * n / sum(w))


@pytest.fixture(scope="module")
def table():
  return estimators.validate(World(seed=7), n_logs=5000, n_truth=30_000, seed=0)


def test_dr_within_five_percent_on_three_held_out_targets(table):
  assert len(table) == 3
  logging = estimators.default_logging()
  assert all(t.fixed is not None and t.temperature != logging.temperature
             for t in estimators.default_targets().values())
  # The targets are genuinely different policies: their true values are spread out.
  assert table["truth"].max() / table["truth"].min() > 1.1
  assert (table["dr_rel_err"] <= 0.05).all(), table[["target", "truth", "dr", "dr_rel_err"]]


def test_every_estimator_lands_near_the_truth(table):
  for name in ("ips", "snips", "pbm", "dm"):
    assert (table[f"{name}_rel_err"] <= 0.1).all(), name
