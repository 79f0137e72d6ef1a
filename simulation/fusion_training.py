"""Training the learned fusion on rollout sessions: a listwise loss with a Lagrangian.

This module owns how ``ranking.fusion.learned`` parameters are fitted: the training
lists (:class:`ListwiseData`, the played part of each logged slate with its features and
the world's responses), the listwise softmax loss toward what was completed, the
constraint surrogates (the completion, promo exposure and conversion hazard a softmax
over the list's learned scores expects), and :func:`train`, which minimises

    L(theta, lambda) = listwise(theta) - sum_j lambda_j * g_j(theta)
                       + l2 * |theta - theta_0|^2

with ``g_j >= 0`` the constraints the policy states (completion >= floor, exposure >=
its target, conversions >= floor) by gradient steps on ``theta`` (Adam, full batch) and
dual ascent on the multipliers, ``lambda_j <- max(0, lambda_j - dual_rate * g_j)``. A
violated constraint (``g_j < 0``) raises its multiplier until the scorer meets it. The
batch is the whole data set and the start is the hand-set table, so a run is
deterministic: the same data and config give the same parameters.
"""

import dataclasses
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from features import feature_spec
from ranking.fusion import learned as learned_lib

CONSTRAINTS = ("completion", "exposure", "conversion")
_N_ACT = len(feature_spec.ACTIVITIES)


@dataclasses.dataclass(frozen=True)
class ListwiseData:
  """Training lists: ``S`` sessions of ``K`` shown tracks.

  Attributes:
    features: ``[S, K, F]`` the learned fusion's features (``learned.FEATURES``) of the
      shown tracks, in slate order.
    cell: ``[S]`` int, ``segment * len(ACTIVITIES) + activity`` (``feature_spec``
      indices).
    mask: ``[S, K]`` bool, the tracks that were played (a listener who gave up never
      heard the rest, so it tells nothing about them).
    completion, exposure, hazard: ``[S, K]`` the world's responses per shown track:
      completion in [0, 1], promo exposure value, conversion hazard.
  """
  features: np.ndarray
  cell: np.ndarray
  mask: np.ndarray
  completion: np.ndarray
  exposure: np.ndarray
  hazard: np.ndarray

  def __post_init__(self):
    s, k, f = np.shape(self.features)
    if f != len(learned_lib.FEATURES):
      raise ValueError(f"features must be [S, K, {len(learned_lib.FEATURES)}], got "
                       f"{np.shape(self.features)}")
    for name in ("mask", "completion", "exposure", "hazard"):
      if np.shape(getattr(self, name)) != (s, k):
        raise ValueError(f"{name} must be [S={s}, K={k}], got {np.shape(getattr(self, name))}")
    if np.shape(self.cell) != (s,):
      raise ValueError(f"cell must be [S={s}], got {np.shape(self.cell)}")

  def __len__(self) -> int:
    return len(self.cell)

  def logged_means(self) -> Dict[str, float]:
    """Per-play means of the responses over played tracks (the logging policies')."""
    m = self.mask.astype(np.float64)
    n = max(m.sum(), 1.0)
    return {"completion": float((self.completion * m).sum() / n),
            "exposure": float((self.exposure * m).sum() / n),
            "conversion": float((self.hazard * m).sum() / n)}


@dataclasses.dataclass(frozen=True)
class Constraints:
  """Lower bounds on the softmax-expected response per play (None: no constraint).

  Attributes:
    completion: the completion floor.
    exposure: the promo exposure target.
    conversion: the conversion hazard floor.
  """
  completion: Optional[float] = None
  exposure: Optional[float] = None
  conversion: Optional[float] = None

  def active(self) -> Dict[str, float]:
    return {name: float(getattr(self, name)) for name in CONSTRAINTS
            if getattr(self, name) is not None}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Optimiser settings.

  Attributes:
    steps: full-batch gradient steps.
    learning_rate: Adam's step on the coefficients.
    dual_rate: the multipliers' ascent step per unit of constraint violation.
    temperature: the softmax temperature over the learned scores (fused scores differ
      by hundredths, so a plain softmax over them would be nearly uniform).
    l2: pull toward the starting table (the hand-set weights).
    completed_at: the completion from which a play counts as completed, the listwise
      loss' label (a softmax fitted to graded completions would only match their
      spread; fitted to completed plays it puts them first).
  """
  steps: int = 300
  learning_rate: float = 0.02
  dual_rate: float = 5.0
  temperature: float = 0.05
  l2: float = 1e-3
  completed_at: float = 0.8

  def __post_init__(self):
    for name in ("steps", "learning_rate", "temperature"):
      if not getattr(self, name) > 0:
        raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
    for name in ("dual_rate", "l2"):
      if not getattr(self, name) >= 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclasses.dataclass
class TrainResult:
  """What :func:`train` returns.

  Attributes:
    params: the fitted coefficients.
    history: per step, ``loss`` (listwise), the surrogates and the multipliers
      (``lambda_<constraint>``).
  """
  params: learned_lib.LearnedFusionParams
  history: List[Dict[str, float]]


def _objective(theta, data: Dict[str, tf.Tensor], temperature: float, completed_at: float):
  """``(listwise loss, {constraint: softmax-expected response per play})``."""
  coef = tf.gather(theta, data["cell"])                                         # [S, F]
  scores = tf.reduce_sum(data["features"] * coef[:, tf.newaxis, :], -1) / temperature
  scores = tf.where(data["mask"], scores, -1e9)
  logp = tf.nn.log_softmax(scores, axis=-1)
  p = tf.exp(logp) * tf.cast(data["mask"], tf.float64)
  y = tf.cast(data["mask"] & (data["completion"] >= completed_at), tf.float64)
  total = tf.reduce_sum(y, -1)
  has = total > 0
  target = y / tf.where(has, total, 1.0)[:, tf.newaxis]
  per_list = -tf.reduce_sum(target * tf.where(data["mask"], logp, 0.0), -1)
  listwise = (tf.reduce_sum(tf.where(has, per_list, 0.0))
              / tf.maximum(tf.reduce_sum(tf.cast(has, tf.float64)), 1.0))
  surrogate = {name: tf.reduce_mean(tf.reduce_sum(p * data[key], -1))
               for name, key in (("completion", "completion"), ("exposure", "exposure"),
                                 ("conversion", "hazard"))}
  return listwise, surrogate


def _tensors(data: ListwiseData) -> Dict[str, tf.Tensor]:
  return {"features": tf.constant(data.features, tf.float64),
          "cell": tf.constant(data.cell, tf.int64), "mask": tf.constant(data.mask, tf.bool),
          "completion": tf.constant(data.completion, tf.float64),
          "exposure": tf.constant(data.exposure, tf.float64),
          "hazard": tf.constant(data.hazard, tf.float64)}


def evaluate(data: ListwiseData, params: learned_lib.LearnedFusionParams,
             config: TrainConfig = TrainConfig()) -> Dict[str, float]:
  """The listwise loss and the constraint surrogates of ``params`` on ``data``."""
  theta = tf.constant(params.table().reshape(-1, len(learned_lib.FEATURES)), tf.float64)
  loss, surrogate = _objective(theta, _tensors(data), config.temperature,
                               config.completed_at)
  return {"loss": float(loss), **{k: float(v) for k, v in surrogate.items()}}


def train(data: ListwiseData, init: learned_lib.LearnedFusionParams,
          constraints: Constraints = Constraints(),
          config: TrainConfig = TrainConfig()) -> TrainResult:
  """Fits the learned fusion to ``data`` under ``constraints``, from ``init``.

  Args:
    data: the training lists.
    init: the starting coefficients (usually ``LearnedFusionParams.from_fusion``).
    constraints: the floors and targets (``Constraints``).
    config: optimiser settings.

  Returns:
    The fitted parameters (zero-beta segments keep a 0 subscription coefficient) and
    the per-step history.
  """
  if not len(data):
    raise ValueError("no training sessions")
  tensors = _tensors(data)
  n_f = len(learned_lib.FEATURES)
  theta0 = tf.constant(init.table().reshape(-1, n_f), tf.float64)
  # Zero-beta segments' subscription coefficient never moves from 0.
  free = np.ones((len(feature_spec.SEGMENTS), _N_ACT, n_f))
  for s, name in enumerate(feature_spec.SEGMENTS):
    if name in init.zero_beta_segments:
      free[s, :, learned_lib.FEATURES.index("subscription")] = 0.0
  free = tf.constant(free.reshape(-1, n_f), tf.float64)
  theta = tf.Variable(theta0)
  optimizer = tf.keras.optimizers.Adam(config.learning_rate)
  bounds = constraints.active()
  lam = {name: 0.0 for name in bounds}

  @tf.function(autograph=False)
  def step(multipliers):
    with tf.GradientTape() as tape:
      loss, surrogate = _objective(theta, tensors, config.temperature, config.completed_at)
      lagrangian = loss + config.l2 * tf.reduce_sum(tf.square(theta - theta0))
      for name, bound in bounds.items():
        lagrangian -= multipliers[name] * (surrogate[name] - bound)
    optimizer.apply_gradients([(tape.gradient(lagrangian, theta) * free, theta)])
    return loss, surrogate

  history = []
  for _ in range(config.steps):
    loss, surrogate = step({k: tf.constant(v, tf.float64) for k, v in lam.items()})
    row = {"loss": float(loss), **{k: float(v) for k, v in surrogate.items()}}
    for name, bound in bounds.items():
      lam[name] = max(0.0, lam[name] - config.dual_rate * (row[name] - bound))
      row[f"lambda_{name}"] = lam[name]
    history.append(row)
  table = np.clip(theta.numpy(), -learned_lib.MAX_COEF, learned_lib.MAX_COEF)
  params = learned_lib.LearnedFusionParams.from_table(
      table.reshape(init.table().shape), init.zero_beta_segments)
  return TrainResult(params=params, history=history)
