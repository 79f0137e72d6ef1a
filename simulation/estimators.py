"""Off-policy evaluation of ranking policies on logged slates, checked against the world.

This module owns the estimators, the logging they need and their validation. A logging
policy samples each slate by Plackett-Luce over its fused scores, so the probability of
every pick given the earlier picks is known and logged. For a target Plackett-Luce
policy ``e`` and logged slates ``a_1..a_K`` with rewards ``r_1..r_K`` (completions):

* IPS (whole slate): ``mean_i W_iK * sum_k r_ik`` with
  ``W_ik = prod_{j<=k} e(a_ij | a_i<j) / log(a_ij | a_i<j)``;
* SNIPS: the same, divided by ``mean_i W_iK`` instead of 1;
* DR (per position, cascade): ``mean_i sum_k [W_ik (r_ik - q(a_ik, k))
  + W_i,k-1 sum_a e(a | a_i<k) q(a, k)]`` with a reward model ``q`` fitted on the logs;
  unbiased for any ``q`` because a position's reward depends only on the list so far;
* position-based (PBM-IPS): ``mean_i sum_k r_ik m_e(a_ik, k) / m_log(a_ik, k)`` with
  the exact marginal probability ``m(a, k)`` that item ``a`` lands at position ``k``
  (enumerated over prefixes); unbiased when a position's reward depends only on the
  item and the position, which the world's drift and fatigue bend slightly.

The estimator functions take plain arrays so they can be checked by hand;
:func:`validate` computes every estimate for several held-out targets on one log and
compares them with the simulator's ground truth (the target's slates played on fresh
listeners).
"""

import dataclasses
from typing import Dict, Optional

import numpy as np
import pandas as pd

from ranking.fusion import spec as fusion_spec
from simulation import policies
from simulation import slates
from simulation.world import World
from simulation.world_config import DEFAULT_START_TS


def _check(*arrays):
  shape = np.shape(arrays[0])
  for a in arrays:
    if np.shape(a) != shape or len(shape) != 2:
      raise ValueError(f"estimator inputs must all be [n, K], got "
                       f"{[np.shape(x) for x in arrays]}")
  if shape[0] == 0:
    raise ValueError("estimators need at least one logged slate")


def cumulative_weights(p_log: np.ndarray, p_target: np.ndarray) -> np.ndarray:
  """``[n, K]`` ``W_ik = prod_{j<=k} p_target / p_log`` (prefix importance weights)."""
  p_log = np.asarray(p_log, np.float64)
  if (p_log <= 0).any():
    raise ValueError("logging propensities must be > 0")
  return np.cumprod(np.asarray(p_target, np.float64) / p_log, axis=1)


def ips(rewards, p_log, p_target) -> float:
  """Slate-level inverse propensity scoring of the summed reward."""
  _check(rewards, p_log, p_target)
  w = cumulative_weights(p_log, p_target)[:, -1]
  return float(np.mean(w * np.sum(rewards, axis=1)))


def snips(rewards, p_log, p_target) -> float:
  """Self-normalized slate-level IPS."""
  _check(rewards, p_log, p_target)
  w = cumulative_weights(p_log, p_target)[:, -1]
  return float(np.sum(w * np.sum(rewards, axis=1)) / np.sum(w))


def doubly_robust(rewards, p_log, p_target, q_logged, q_expected) -> float:
  """Per-position (cascade) doubly robust estimate of the summed reward.

  Args:
    rewards: ``[n, K]`` logged rewards.
    p_log, p_target: ``[n, K]`` probability of each logged pick given the logged
      prefix, under the logging and the target policy.
    q_logged: ``[n, K]`` reward model at the logged pick.
    q_expected: ``[n, K]`` reward model averaged over the target's pick distribution
      given the logged prefix.

  Returns:
    The estimate.
  """
  _check(rewards, p_log, p_target, q_logged, q_expected)
  w = cumulative_weights(p_log, p_target)
  w_prev = np.concatenate([np.ones((w.shape[0], 1)), w[:, :-1]], axis=1)
  terms = w * (np.asarray(rewards) - q_logged) + w_prev * q_expected
  return float(np.mean(terms.sum(axis=1)))


def position_based(rewards, m_log, m_target) -> float:
  """PBM-IPS: per-position reward weighted by item-position marginal ratios."""
  _check(rewards, m_log, m_target)
  m_log = np.asarray(m_log, np.float64)
  if (m_log <= 0).any():
    raise ValueError("logging marginals must be > 0")
  return float(np.mean(np.sum(np.asarray(rewards) * np.asarray(m_target) / m_log, axis=1)))


def direct_method(q_target_value) -> float:
  """The reward model's own estimate (for reference in the tables)."""
  return float(np.mean(q_target_value))


def pl_conditionals(scores, valid, chosen, temperature) -> np.ndarray:
  """``[n, K, N]`` Plackett-Luce pick distribution at each position given ``chosen``'s
  earlier picks."""
  logits = np.where(valid, np.asarray(scores, np.float64) / temperature, -np.inf)
  n, k = chosen.shape
  out = np.zeros((n, k, logits.shape[1]))
  rows = np.arange(n)
  for t in range(k):
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    out[:, t] = p / p.sum(axis=1, keepdims=True)
    logits[rows, chosen[:, t]] = -np.inf
  return out


def pl_marginals(scores, valid, k: int, temperature: float,
                 max_states: int = 200_000) -> np.ndarray:
  """Exact ``[n, N, K]`` probability that each candidate lands at each position.

  For ``K <= 3`` a closed form (``O(N^2)`` per row): with ``e = exp(s / T)``,
  ``Z = sum e``, ``m_1(a) = e_a / Z``, ``m_2(a) = e_a (C - c_a)`` with
  ``c_b = e_b / (Z (Z - e_b))`` and ``C = sum c``, and ``m_3(a) = e_a (T - R_a - C_a)``
  where ``D_bc = e_b e_c / (Z (Z - e_b) (Z - e_b - e_c))`` off the diagonal, ``T`` its
  sum and ``R``, ``C`` its row and column sums (prefixes that avoid ``a``). Longer
  slates enumerate every ordered prefix (:func:`pl_marginals_enumerated`).

  Args:
    scores: ``[n, N]`` scores.
    valid: ``[n, N]`` bool.
    k: positions.
    temperature: softmax temperature.
    max_states: for ``K > 3``, refuse when ``N^K`` exceeds this.

  Returns:
    ``[n, N, K]`` marginals; each position's column sums to 1.
  """
  if k > 3:
    return pl_marginals_enumerated(scores, valid, k, temperature, max_states)
  logits = np.where(valid, np.asarray(scores, np.float64) / temperature, -np.inf)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  z = e.sum(axis=1, keepdims=True)
  n, m = e.shape
  out = np.zeros((n, m, k))
  out[:, :, 0] = e / z
  if k >= 2:
    rest = np.maximum(z - e, 1e-300)
    c = np.where(e > 0, e / (z * rest), 0.0)
    out[:, :, 1] = e * (c.sum(1, keepdims=True) - c)
  if k >= 3:
    rest2 = np.maximum(rest[:, :, None] - e[:, None, :], 1e-300)
    d = e[:, :, None] * e[:, None, :] / (z[:, :, None] * rest[:, :, None] * rest2)
    d[:, np.arange(m), np.arange(m)] = 0.0
    d = np.where((e[:, :, None] > 0) & (e[:, None, :] > 0), d, 0.0)
    out[:, :, 2] = e * (d.sum((1, 2))[:, None] - d.sum(2) - d.sum(1))
  return out


def pl_marginals_enumerated(scores, valid, k: int, temperature: float,
                            max_states: int = 200_000) -> np.ndarray:
  """Exact marginals by enumerating every ordered prefix (``N^(K-1)`` of them)."""
  n, m = np.shape(scores)
  if m ** k > max_states:
    raise ValueError(f"N^K = {m}^{k} prefixes exceed max_states={max_states}")
  logits = np.where(valid, np.asarray(scores, np.float64) / temperature, -np.inf)
  e = np.exp(logits - logits.max(axis=1, keepdims=True))
  z = e.sum(axis=1)
  out = np.zeros((n, m, k))
  prob = np.ones((n, 1))
  mass = np.zeros((n, 1))
  used = np.zeros((n, 1, m), bool)
  eye = np.eye(m, dtype=bool)
  for t in range(k):
    avail = ~used & (e[:, None, :] > 0)
    denom = np.maximum(z[:, None] - mass, 1e-300)[..., None]
    p = np.where(avail, e[:, None, :] / denom, 0.0)
    joint = prob[..., None] * p
    out[:, :, t] = joint.sum(axis=1)
    if t + 1 < k:
      p_states = joint.shape[1]
      prob = joint.reshape(n, p_states * m)
      mass = (mass[..., None] + e[:, None, :]).reshape(n, p_states * m)
      used = (used[:, :, None, :] | eye[None, None]).reshape(n, p_states * m, m)
  return out


@dataclasses.dataclass
class LoggedData:
  """Slates logged by a Plackett-Luce policy, with everything targets need.

  Attributes:
    heads: ``[n, N, 3]`` head scores the policies fuse.
    familiar, promo, valid: ``[n, N]`` per candidate.
    segment, activity, seed: ``[n]`` per request.
    tracks: ``[n, N]`` catalog rows of the candidates.
    positions: ``[n, K]`` logged picks (candidate indices).
    rewards: ``[n, K]`` completion of each played pick.
    p_log: ``[n, K]`` logging probability of each pick given the earlier ones.
    logging: the logging policy.
  """
  heads: np.ndarray
  familiar: np.ndarray
  promo: np.ndarray
  valid: np.ndarray
  segment: np.ndarray
  activity: np.ndarray
  seed: np.ndarray
  tracks: np.ndarray
  positions: np.ndarray
  rewards: np.ndarray
  p_log: np.ndarray
  logging: policies.PlackettLucePolicy


OPE_CANDIDATES = slates.CandidateConfig(familiar=6, style=6, popular=5, promo=3)


def _target_scores(policy: policies.PlackettLucePolicy, logs: LoggedData) -> np.ndarray:
  if policy.fixed is not None:
    w = np.broadcast_to(policy.fixed, (len(logs.segment), 3)).copy()
  else:
    w = fusion_spec.segment_table(policy.fusion)[logs.segment]
  return slates.fuse(logs.heads, logs.segment, logs.activity, logs.familiar, policy.fusion,
                 weights=w, seed=logs.seed, candidate_ids=logs.tracks)


def _play(world: World, policy: policies.PlackettLucePolicy, n: int, k: int, seed: int,
          candidates: slates.CandidateConfig):
  """Fresh listeners and contexts, one sampled slate each, played in the world."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 77]))
  L = world.sample_users(n, rng)
  raw = world.sample_context(n, rng, DEFAULT_START_TS)
  ctx = policies.Context(activity=raw["activity"], hour=raw["hour"], weekday=raw["weekday"],
                    ts=raw["ts"], seed=rng.integers(0, 2**31 - 1, n))
  tracks, valid = slates.CandidatePool(world, candidates).draw(L, rng)
  state = policies.ListenerState(world=world, listeners=L, history={}, day=0)
  heads = policy.scorer.heads(state, tracks, ctx.activity, rng)
  fam = world.is_familiar(L, np.arange(n)[:, None], tracks)
  logs = LoggedData(heads=heads, familiar=fam, promo=world.track_promo[tracks],
                    valid=valid, segment=L.segment.astype(np.int64),
                    activity=ctx.activity, seed=ctx.seed, tracks=tracks, positions=None,
                    rewards=None, p_log=None, logging=policy)
  scores = _target_scores(policy, logs)
  pos, prop = policies.plackett_luce(scores, valid, k, policy.temperature, rng)
  out = world.play_slate(L, np.take_along_axis(tracks, pos, 1), ctx.activity, rng)
  logs.positions, logs.rewards, logs.p_log = pos, out["completion"], prop
  return logs


def collect_logs(world: World, logging: policies.PlackettLucePolicy, n: int, k: int = 3,
                 seed: int = 0, candidates: slates.CandidateConfig = OPE_CANDIDATES
                 ) -> LoggedData:
  """Logs ``n`` slates of length ``k`` of the logging policy on fresh listeners."""
  if n < 1 or k < 1:
    raise ValueError(f"need n >= 1 and k >= 1, got n={n}, k={k}")
  return _play(world, logging, n, k, seed, candidates)


def ground_truth(world: World, target: policies.PlackettLucePolicy, n: int, k: int = 3,
                 seed: int = 1, candidates: slates.CandidateConfig = OPE_CANDIDATES) -> float:
  """The target's true value: mean summed completion of its slates played in the world
  on ``n`` fresh listeners (an independent seed from the logs)."""
  return float(_play(world, target, n, k, seed, candidates).rewards.sum(1).mean())


class RewardModel:
  """Ridge regression of a position's reward on (heads, familiar, promo, position).

  Args:
    ridge: L2 penalty.
  """

  def __init__(self, ridge: float = 1.0):
    self.ridge = ridge
    self.coef = None

  @staticmethod
  def features(heads, familiar, promo, k: int) -> np.ndarray:
    """``[n, N, K, F]`` features of every candidate at every position."""
    n, m = familiar.shape
    base = np.concatenate([heads, familiar[..., None], promo[..., None],
                           heads[..., :1] * familiar[..., None]], axis=-1)   # [n, N, 6]
    pos = np.broadcast_to(np.eye(k)[None, None], (n, m, k, k))
    return np.concatenate([np.broadcast_to(base[:, :, None, :], (n, m, k, base.shape[-1])),
                           pos], axis=-1)

  def fit(self, logs: LoggedData) -> "RewardModel":
    n, k = logs.positions.shape
    f = self.features(logs.heads, logs.familiar.astype(float), logs.promo.astype(float), k)
    rows = np.arange(n)[:, None]
    x = f[rows, logs.positions, np.arange(k)[None, :]].reshape(n * k, -1)
    y = logs.rewards.reshape(-1)
    a = x.T @ x + self.ridge * np.eye(x.shape[1])
    self.coef = np.linalg.solve(a, x.T @ y)
    return self

  def predict(self, logs: LoggedData) -> np.ndarray:
    """``[n, N, K]`` predicted reward of each candidate at each position."""
    k = logs.positions.shape[1]
    f = self.features(logs.heads, logs.familiar.astype(float), logs.promo.astype(float), k)
    return f @ self.coef


def estimate(logs: LoggedData, target: policies.PlackettLucePolicy,
             model: Optional[RewardModel] = None) -> Dict[str, float]:
  """IPS, SNIPS, DR, position-based and direct-method estimates of ``target``."""
  n, k = logs.positions.shape
  model = model or RewardModel().fit(logs)
  s_t = _target_scores(target, logs)
  cond_t = pl_conditionals(s_t, logs.valid, logs.positions, target.temperature)
  rows = np.arange(n)[:, None]
  cols = np.arange(k)[None, :]
  p_t = cond_t[rows, cols, logs.positions]
  q = model.predict(logs)                                     # [n, N, K]
  q_logged = q[rows, logs.positions, cols]
  q_expected = np.einsum("nkm,nmk->nk", cond_t, q)
  m_t = pl_marginals(s_t, logs.valid, k, target.temperature)
  m_l = pl_marginals(_target_scores(logs.logging, logs), logs.valid, k,
                     logs.logging.temperature)
  dm = np.einsum("nmk,nmk->n", m_t, q)
  return {
      "ips": ips(logs.rewards, logs.p_log, p_t),
      "snips": snips(logs.rewards, logs.p_log, p_t),
      "dr": doubly_robust(logs.rewards, logs.p_log, p_t, q_logged, q_expected),
      "pbm": position_based(logs.rewards, m_l[rows, logs.positions, cols],
                            m_t[rows, logs.positions, cols]),
      "dm": direct_method(dm),
  }


def default_targets(scorer: policies.HeadScorer = policies.HeadScorer()) -> Dict[
    str, policies.PlackettLucePolicy]:
  """Three held-out target policies (none is the logging policy)."""
  return {
      "interest_only": policies.PlackettLucePolicy(0.06, weights=(1.0, 0.0, 0.0),
                                              scorer=scorer, slate_len=3),
      "promo_heavy": policies.PlackettLucePolicy(0.1, weights=(0.4, 0.2, 0.4),
                                            scorer=scorer, slate_len=3),
      "subscription_push": policies.PlackettLucePolicy(0.12, weights=(0.5, 0.5, 0.0),
                                                  scorer=scorer, slate_len=3),
  }


def default_logging(scorer: policies.HeadScorer = policies.HeadScorer()
                   ) -> policies.PlackettLucePolicy:
  """The logging policy: the production fusion table, softened to temperature 0.15."""
  return policies.PlackettLucePolicy(0.15, scorer=scorer, slate_len=3)


def validate(world: World, n_logs: int = 20_000, n_truth: int = 100_000, k: int = 3,
             seed: int = 0, targets: Optional[Dict[str, policies.PlackettLucePolicy]] = None,
             logging: Optional[policies.PlackettLucePolicy] = None) -> pd.DataFrame:
  """Relative-error table of every estimator on held-out targets vs ground truth.

  Returns:
    One row per target: ``truth``, each estimate and its relative error
    ``|estimate - truth| / truth`` (columns ``<name>_rel_err``).
  """
  targets = targets or default_targets()
  logging = logging or default_logging()
  logs = collect_logs(world, logging, n_logs, k, seed=seed)
  model = RewardModel().fit(logs)
  rows = []
  for i, (name, target) in enumerate(targets.items()):
    truth = ground_truth(world, target, n_truth, k, seed=seed + 1000 + i)
    est = estimate(logs, target, model)
    row = {"target": name, "truth": truth}
    for key, v in est.items():
      row[key] = v
      row[f"{key}_rel_err"] = abs(v - truth) / abs(truth)
    rows.append(row)
  return pd.DataFrame(rows)
