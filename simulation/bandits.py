"""Contextual bandits that learn alpha/beta/gamma per segment or listener state.

This module owns two disjoint linear bandits over a discrete set of weight vectors
(the arms, e.g. a simplex grid of (alpha, beta, gamma)): :class:`LinUCB` and
:class:`LinearThompson`, and the policy that lets them pick the fusion weights of each
listener-session (:class:`BanditPolicy`) from a context (``simulation.bandit_context``:
segment and activity one-hots, optionally with the listener's standardised state) and
plays them through a ranker (``simulation.bandit_arms``: the served model's ``rank``
signature or the oracle). Each arm ``a`` keeps ridge statistics

    A_a = ridge * I + sum x x^T,    b_a = sum r x,    theta_a = A_a^-1 b_a

LinUCB plays ``argmax_a x . theta_a + alpha_ucb * sqrt(x^T A_a^-1 x)``; Thompson plays
``argmax_a x . theta~_a`` with ``theta~_a ~ N(theta_a, noise^2 A_a^-1)`` drawn per
listener. With the segment one-hot in ``x``, ``theta_a`` holds the arm's reward per
segment, so the bandit learns a weight row per segment; the state features let the
row move with the listener's state. Updates are batched: one round is one session of a
chunk of listeners (all rewards arrive together).
"""

import itertools
from typing import Optional

import numpy as np

from simulation import bandit_arms
from simulation import bandit_context
from simulation import policies


def simplex_grid(step: float = 0.25) -> np.ndarray:
  """All (alpha, beta, gamma) >= 0 on a grid of ``step`` that sum to 1.

  Args:
    step: grid step; ``1 / step`` must be a whole number.

  Returns:
    ``[G, 3]`` float array, alpha descending.
  """
  m = round(1.0 / step)
  if m < 1 or abs(m * step - 1.0) > 1e-9:
    raise ValueError(f"1/step must be a positive whole number, got step={step}")
  pts = [(a / m, b / m, (m - a - b) / m)
         for a, b in itertools.product(range(m, -1, -1), range(m + 1)) if a + b <= m]
  return np.array(pts, np.float64)


def context_features(segment: np.ndarray, activity: np.ndarray) -> np.ndarray:
  """``[n, S + A]`` one-hot segment then one-hot activity (see ``bandit_context``)."""
  return bandit_context.one_hots(segment, activity)


class _Linear:
  """Shared ridge statistics of the disjoint linear bandits."""

  def __init__(self, n_arms: int, dim: int, ridge: float = 1.0):
    if n_arms < 1:
      raise ValueError(f"n_arms must be >= 1, got {n_arms}")
    if dim < 1:
      raise ValueError(f"dim must be >= 1, got {dim}")
    if not ridge > 0:
      raise ValueError(f"ridge must be > 0, got {ridge}")
    self.n_arms, self.dim = n_arms, dim
    self.A = np.repeat(np.eye(dim)[None] * ridge, n_arms, axis=0)
    self.b = np.zeros((n_arms, dim))

  def theta(self) -> np.ndarray:
    """``[arms, dim]`` ridge estimates."""
    return np.linalg.solve(self.A, self.b[..., None])[..., 0]

  def update(self, x: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
    """Adds a batch of (context, arm, reward) observations."""
    x = np.asarray(x, np.float64)
    arms = np.asarray(arms, np.int64)
    r = np.asarray(rewards, np.float64)
    if x.shape != (len(arms), self.dim) or r.shape != arms.shape:
      raise ValueError(f"need x [n, {self.dim}], arms [n], rewards [n]; got "
                       f"{x.shape}, {arms.shape}, {r.shape}")
    if len(arms) and (arms.min() < 0 or arms.max() >= self.n_arms):
      raise ValueError(f"arms must be in [0, {self.n_arms}), got {arms.min()}..{arms.max()}")
    np.add.at(self.A, arms, x[:, :, None] * x[:, None, :])
    np.add.at(self.b, arms, r[:, None] * x)


class LinUCB(_Linear):
  """Disjoint LinUCB (Li et al., 2010) with batched updates.

  Args:
    n_arms: number of arms.
    dim: context dimension.
    alpha: width of the confidence bonus.
    ridge: prior precision of every arm.
  """

  def __init__(self, n_arms: int, dim: int, alpha: float = 1.0, ridge: float = 1.0):
    super().__init__(n_arms, dim, ridge)
    if not alpha >= 0:
      raise ValueError(f"alpha must be >= 0, got {alpha}")
    self.alpha = alpha

  def ucb(self, x: np.ndarray) -> np.ndarray:
    """``[n, arms]`` upper confidence bounds."""
    x = np.asarray(x, np.float64)
    a_inv = np.linalg.inv(self.A)
    mean = x @ self.theta().T
    width = np.sqrt(np.maximum(np.einsum("nd,ade,ne->na", x, a_inv, x), 0.0))
    return mean + self.alpha * width

  def select(self, x: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Arm per row (ties to the lower arm index)."""
    del rng
    return np.argmax(self.ucb(x), axis=1)


class LinearThompson(_Linear):
  """Linear Thompson sampling with a Gaussian posterior per arm.

  Args:
    n_arms: number of arms.
    dim: context dimension.
    noise: reward noise scale ``v`` of the posterior ``N(theta, v^2 A^-1)``.
    ridge: prior precision of every arm.
  """

  def __init__(self, n_arms: int, dim: int, noise: float = 1.0, ridge: float = 1.0):
    super().__init__(n_arms, dim, ridge)
    if not noise >= 0:
      raise ValueError(f"noise must be >= 0, got {noise}")
    self.noise = noise

  def sample_scores(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``[n, arms]`` sampled rewards, one posterior draw per row and arm."""
    x = np.asarray(x, np.float64)
    chol = np.linalg.cholesky(np.linalg.inv(self.A))            # [arms, d, d]
    z = rng.standard_normal((len(x), self.n_arms, self.dim))
    # x . (theta + v L z) = x . theta + v (L^T x) . z
    lt_x = np.einsum("ade,nd->nae", chol, x)
    return x @ self.theta().T + self.noise * np.einsum("nae,nae->na", lt_x, z)

  def select(self, x: np.ndarray, rng: Optional[np.random.Generator] = None) -> np.ndarray:
    if rng is None:
      raise ValueError("LinearThompson.select needs an rng")
    return np.argmax(self.sample_scores(x, rng), axis=1)


class RandomArms:
  """Uniform random arm per row: the no-learning baseline of the regret curves."""

  def __init__(self, n_arms: int, dim: int):
    self.n_arms, self.dim = n_arms, dim

  def select(self, x, rng=None):
    return rng.integers(0, self.n_arms, len(x))

  def update(self, x, arms, rewards):
    del x, arms, rewards


class BanditPolicy(policies.Policy):
  """Fusion + mixing whose (alpha, beta, gamma) a bandit picks per listener-session.

  Rewards are centred on ``reward_offset`` before the bandit sees them (default: the
  mean reward of the first round), so the zero prior mean of an untried arm sits at a
  typical reward instead of far below every tried arm, which would make LinUCB
  greedy on the first arms it happens to play.

  Args:
    bandit: a :class:`LinUCB`, :class:`LinearThompson` or :class:`RandomArms`.
    arms: ``[G, 3]`` weight vectors.
    seed: seed of the Thompson draws and random arms.
    reward_offset: subtracted from every reward; None = first round's mean.
    context: a ``bandit_context`` builder (default: segment and activity one-hots);
      its ``dim`` must be the bandit's.
    ranker: a ``bandit_arms`` ranker (``ServedArms`` plays the arms through a served
      model); default an ``OracleArms`` built from ``**kwargs``.
    name: label in reports (default: the bandit's class name).
    **kwargs: as ``policies.FusionPolicy``, for the default ranker.
  """

  stateful = True

  def __init__(self, bandit, arms: np.ndarray, seed: int = 0,
               reward_offset: Optional[float] = None, context=None, ranker=None,
               name: Optional[str] = None, **kwargs):
    arms = np.asarray(arms, np.float64)
    if arms.ndim != 2 or arms.shape[1] != 3 or arms.shape[0] != bandit.n_arms:
      raise ValueError(f"arms must be [{bandit.n_arms}, 3], got shape {arms.shape}")
    self.context = bandit_context.SegmentContext() if context is None else context
    if self.context.dim != bandit.dim:
      raise ValueError(f"the {self.context.name} context has {self.context.dim} features, "
                       f"the bandit expects {bandit.dim}")
    if ranker is not None and kwargs:
      raise ValueError(f"fusion arguments {sorted(kwargs)} apply to the default ranker only")
    self.ranker = bandit_arms.OracleArms(**kwargs) if ranker is None else ranker
    self.name = name or type(bandit).__name__
    self.bandit, self.arms = bandit, arms
    self.rng = np.random.default_rng(seed)
    self.reward_offset = reward_offset
    self.choices = []   # arm counts per round
    self._pending = None

  def rank(self, state, candidates, context):
    x = self.context.features(state, context)
    arm = self.bandit.select(x, self.rng)
    self._pending = (x, arm)
    out = self.ranker.rank_rows(state, candidates, context, self.arms[arm])
    out.info["arm"] = arm
    self.choices.append(np.bincount(arm, minlength=len(self.arms)))
    return out

  def feedback(self, state, context, slates, reward):
    x, arm = self._pending
    reward = np.asarray(reward, np.float64)
    if self.reward_offset is None:
      self.reward_offset = float(reward.mean()) if len(reward) else 0.0
    self.bandit.update(x, arm, reward - self.reward_offset)

  def segment_choice(self) -> np.ndarray:
    """``[segments, 3]`` the greedy arm's weights per segment (average activity, and
    the average listener state, which standardises to 0)."""
    theta = self.bandit.theta() if hasattr(self.bandit, "theta") else None
    if theta is None:
      return np.full((policies.N_SEG, 3), np.nan)
    act = theta[:, policies.N_SEG:policies.N_SEG + policies.N_ACT]
    seg_value = theta[:, :policies.N_SEG] + act.mean(1, keepdims=True)
    return self.arms[np.argmax(seg_value, axis=0)]
