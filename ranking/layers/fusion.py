"""Score fusion: one ranking score per candidate from the task heads, inside the graph.

This module owns how Melody trades listener interest against subscription conversion and
promotion exposure: the per-segment weight table (:class:`FusionConfig`), the activity
context term, the seeded exploration bonus, per-request weight overrides for online
experiments and bandits, and the Keras layer :class:`ScoreFusion` that applies them.
Everything is a graph op on graph constants, so the exported SavedModel fuses scores by
itself and a request carries only indices, signals and (optionally) override weights.

The score of candidate ``n`` for listener ``b`` is

    S = alpha * S_int + beta * S_sub + gamma * S_exp + ctx + eps
    ctx = kappa[activity] * (2 * familiar - 1)
    eps = epsilon * novelty * u(seed, candidate_id)

The default weight rows sum to 1, so when the heads live in [0, 1] the weighted part
does too and ``ctx`` and ``eps`` (a few hundredths) mean the same thing in every
segment: enough to reorder near-ties, never enough to bury a clearly better track.
"""

import dataclasses
import math
from typing import Dict, Mapping, Tuple, Union

import tensorflow as tf

from features import feature_spec
HEADS: Tuple[str, ...] = ("interest", "subscription", "exposure")   # alpha, beta, gamma

# Weights per listener segment (alpha, beta, gamma); every row sums to 1.
#  new           interest first: early sessions decide whether a listener stays, and
#                the conversion head knows little about a brand-new listener, so a
#                sales push would cost relevance for a noisy signal.
#  free          habits are forming: conversion gets a real share, interest still leads.
#  free_veteran  the largest beta: long-tenure free listeners are the best-calibrated
#                and most likely converters, and their taste is well known, so interest
#                can give up the most here without hurting the list.
#  trial         between free and free_veteran: the trial converts when it feels worth
#                paying for, so interest stays above the veteran's while beta is high.
#  paid          beta = 0 (nothing left to convert; the head would only add noise);
#                gamma is spent on exposure, i.e. promoted and new artists, which for
#                a paying listener is catalogue diversity rather than an ad.
DEFAULT_SEGMENT_WEIGHTS: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
    ("new", (0.85, 0.10, 0.05)),
    ("free", (0.70, 0.22, 0.08)),
    ("free_veteran", (0.55, 0.35, 0.10)),
    ("trial", (0.62, 0.30, 0.08)),
    ("paid", (0.80, 0.00, 0.20)),
)

# kappa per activity: > 0 favours tracks the listener knows, < 0 favours new ones.
#  commute  short attention, often hands-off: familiar tracks get skipped less.
#  workout  steady familiar energy; skipping mid-set is costly.
#  focus    familiar music is less distracting, mildly.
#  explore  the listener asked for discovery: novel tracks go up, known ones down.
#  unknown  no context, no adjustment.
DEFAULT_ACTIVITY_FAMILIARITY: Tuple[Tuple[str, float], ...] = (
    ("unknown", 0.0),
    ("commute", 0.06),
    ("workout", 0.04),
    ("focus", 0.03),
    ("explore", -0.08),
)

# Integer hash of (seed, candidate id) -> u in [0, 1): exact int64 arithmetic, so the
# same request gives the same bonus on any machine and TF version, and the simulator
# can recompute it in plain Python (see ``exploration_uniform``).
_HASH_MOD = (1 << 31) - 1
_HASH_MULT = 48271
_HASH_SEED_MULT = 69621
_HASH_ROUNDS = 3


def _as_pairs(value, names: Tuple[str, ...], what: str) -> Tuple[Tuple[str, object], ...]:
  """Normalizes a mapping or pairs keyed by ``names`` to pairs in ``names`` order."""
  items = dict(value.items() if isinstance(value, Mapping) else value)
  if set(items) != set(names) or len(items) != len(names):
    raise ValueError(f"{what} must have exactly the keys {names}, got {tuple(items)}")
  return tuple((name, items[name]) for name in names)


def _finite(x) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclasses.dataclass(frozen=True)
class FusionConfig:
  """Fusion weights and adjustments (module docstring has the formula and the why).

  Attributes:
    segment_weights: ``(segment, (alpha, beta, gamma))`` for every segment of
      ``feature_spec.SEGMENTS`` (a mapping is accepted too); weights are finite and
      >= 0.
    activity_familiarity: ``(activity, kappa)`` for every activity of
      ``feature_spec.ACTIVITIES``; finite, ``|kappa| <= 1``.
    exploration: epsilon, the largest exploration bonus (finite, >= 0).
    zero_beta_segments: segments whose beta is 0 whatever the table or a request
      override says (paid listeners have nothing to convert to).
  """
  segment_weights: Tuple[Tuple[str, Tuple[float, float, float]], ...] = (
      DEFAULT_SEGMENT_WEIGHTS)
  activity_familiarity: Tuple[Tuple[str, float], ...] = DEFAULT_ACTIVITY_FAMILIARITY
  exploration: float = 0.02
  zero_beta_segments: Tuple[str, ...] = ("paid",)

  def __post_init__(self):
    weights = _as_pairs(self.segment_weights, feature_spec.SEGMENTS, "segment_weights")
    rows = []
    for name, row in weights:
      row = tuple(row)
      if len(row) != 3 or not all(_finite(x) and x >= 0 for x in row):
        raise ValueError(
            f"segment_weights[{name!r}] must be 3 finite weights >= 0, got {row!r}")
      rows.append((name, tuple(float(x) for x in row)))
    object.__setattr__(self, "segment_weights", tuple(rows))

    kappas = _as_pairs(self.activity_familiarity, feature_spec.ACTIVITIES, "activity_familiarity")
    for name, kappa in kappas:
      if not (_finite(kappa) and abs(kappa) <= 1.0):
        raise ValueError(
            f"activity_familiarity[{name!r}] must be finite with |kappa| <= 1, "
            f"got {kappa!r}")
    object.__setattr__(self, "activity_familiarity",
                       tuple((name, float(k)) for name, k in kappas))

    if not (_finite(self.exploration) and self.exploration >= 0):
      raise ValueError(f"exploration must be finite and >= 0, got {self.exploration!r}")
    zero = tuple(self.zero_beta_segments)
    for name in zero:
      if name not in feature_spec.SEGMENTS:
        raise ValueError(f"zero_beta_segments has unknown segment {name!r}; "
                         f"known: {fs.SEGMENTS}")
      if dict(rows)[name][1] != 0.0:
        raise ValueError(f"segment {name!r} is in zero_beta_segments but its beta is "
                         f"{dict(rows)[name][1]}")
    object.__setattr__(self, "zero_beta_segments", zero)

  def weights_for(self, segment: str) -> Tuple[float, float, float]:
    """(alpha, beta, gamma) of a segment name."""
    table = dict(self.segment_weights)
    if segment not in table:
      raise ValueError(f"unknown segment {segment!r}; known: {fs.SEGMENTS}")
    return table[segment]

  def kappa_for(self, activity: str) -> float:
    """Familiarity coefficient of an activity name."""
    table = dict(self.activity_familiarity)
    if activity not in table:
      raise ValueError(f"unknown activity {activity!r}; known: {fs.ACTIVITIES}")
    return table[activity]

  def to_dict(self) -> Dict[str, object]:
    """JSON-friendly form (for ``get_config``)."""
    return {
        "segment_weights": {name: list(row) for name, row in self.segment_weights},
        "activity_familiarity": dict(self.activity_familiarity),
        "exploration": self.exploration,
        "zero_beta_segments": list(self.zero_beta_segments),
    }

  @classmethod
  def from_dict(cls, d: Mapping[str, object]) -> "FusionConfig":
    return cls(segment_weights=d["segment_weights"],
               activity_familiarity=d["activity_familiarity"],
               exploration=d["exploration"],
               zero_beta_segments=tuple(d["zero_beta_segments"]))


def exploration_uniform_py(seed: int, candidate_id: int) -> float:
  """Plain-Python twin of the in-graph hash: ``u(seed, candidate_id)`` in [0, 1)."""
  x = ((seed % _HASH_MOD) * _HASH_SEED_MULT + candidate_id % _HASH_MOD) % _HASH_MOD
  for _ in range(_HASH_ROUNDS):
    x = (x * _HASH_MULT + 11) % _HASH_MOD
    x ^= x >> 13
  return (x >> 7) / float(1 << 24)


def exploration_uniform(seed: tf.Tensor, candidate_ids: tf.Tensor) -> tf.Tensor:
  """Deterministic ``u`` in [0, 1) per (request seed, candidate id), as graph ops.

  Args:
    seed: ``[B]`` int per-request seed.
    candidate_ids: ``[B, N]`` int candidate ids.

  Returns:
    ``[B, N]`` float32; a row depends only on its own seed and ids, so batching
    requests together (TF Serving does) never changes a request's bonus.
  """
  mod = tf.constant(_HASH_MOD, tf.int64)
  seed = tf.math.floormod(tf.cast(seed, tf.int64), mod)[:, tf.newaxis]
  ids = tf.math.floormod(tf.cast(candidate_ids, tf.int64), mod)
  x = tf.math.floormod(seed * _HASH_SEED_MULT + ids, mod)   # < 2**48, no overflow
  for _ in range(_HASH_ROUNDS):
    x = tf.math.floormod(x * _HASH_MULT + 11, mod)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 13))
  return tf.cast(tf.bitwise.right_shift(x, 7), tf.float32) / float(1 << 24)


def _index(x: tf.Tensor, size: int) -> tf.Tensor:
  """``[B]`` int index; ``[B, 1]`` is squeezed; out-of-range maps to 0 (the unknown)."""
  x = tf.cast(x, tf.int64)
  if x.shape.rank == 2:
    x = tf.squeeze(x, axis=1)
  return tf.where((x >= 0) & (x < size), x, tf.zeros_like(x))


@tf.keras.utils.register_keras_serializable(package="melody")
class ScoreFusion(tf.keras.layers.Layer):
  """Fuses the task heads into one score with per-segment, overridable weights.

  Math (per listener ``b`` and candidate ``n``):
    ``w_b = table[segment_b]``, replaced component-wise by ``override_weights_b``
    where ``override_b`` is set and the override is finite and >= 0; beta forced to 0
    for ``zero_beta_segments``;
    ``S = w_b . (S_int, S_sub, S_exp) + kappa[activity_b] * (2 * familiar - 1)
    + epsilon * novelty * u``, with ``u = hash(seed_b, candidate_id)`` in [0, 1) when
    a seed is given and ``u = 1`` otherwise.

  Missing optional inputs: ``familiar`` = 0.5 (unknown, so no context term),
  ``novelty`` = ``1 - familiar``, ``candidate_ids`` = the candidate position,
  no ``seed`` = a plain novelty bonus, no override = the table. Out-of-range segment or
  activity indices count as index 0 ("new", "unknown"), as in the preprocessing.

  Usage:
    fusion = ScoreFusion(FusionConfig())
    out = fusion({"interest": s_int, "subscription": s_sub, "exposure": s_exp,
                  "segment": segment_xf, "activity": activity_xf,
                  "familiar": familiar, "seed": request_seed})
    out["score"]     # [B, N] fused scores, into Mixing
    out["weights"]   # [B, 3] effective (alpha, beta, gamma), for logging

  Args:
    config: a :class:`FusionConfig` (or its dict form, as ``from_config`` passes it).

  Input: a dict with
    ``interest``, ``subscription``, ``exposure``: ``[B, N]`` float head scores;
    ``segment``: ``[B]`` (or ``[B, 1]``) int index into ``feature_spec.SEGMENTS``;
    ``activity``: ``[B]`` (or ``[B, 1]``) int index into ``feature_spec.ACTIVITIES``;
    optional ``familiar``, ``novelty``: ``[B, N]`` float in [0, 1];
    optional ``candidate_ids``: ``[B, N]`` int; ``seed``: ``[B]`` int;
    optional ``override_weights``: ``[B, 3]`` float with ``override``: ``[B]`` bool.
  Output: a dict with ``score`` ``[B, N]``, ``weights`` ``[B, 3]``, and the two
    additive terms ``context`` and ``exploration`` ``[B, N]`` (for reason codes).
  """

  def __init__(self, config: Union[FusionConfig, Mapping] = FusionConfig(), **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, Mapping):
      config = FusionConfig.from_dict(config)
    if not isinstance(config, FusionConfig):
      raise ValueError(f"config must be a FusionConfig, got {config!r}")
    self.config = config

  def call(self, inputs):
    missing = {*HEADS, "segment", "activity"} - set(inputs)
    if missing:
      raise ValueError(f"ScoreFusion inputs lack {sorted(missing)}, got {sorted(inputs)}")
    if ("override_weights" in inputs) != ("override" in inputs):
      raise ValueError("override_weights and override must be given together")
    cfg = self.config
    heads = tf.stack([tf.cast(inputs[h], tf.float32) for h in HEADS], axis=-1)  # [B,N,3]
    segment = _index(inputs["segment"], len(feature_spec.SEGMENTS))
    activity = _index(inputs["activity"], len(feature_spec.ACTIVITIES))

    table = tf.constant([row for _, row in cfg.segment_weights], tf.float32)   # [S, 3]
    weights = tf.gather(table, segment)                                          # [B, 3]
    if "override_weights" in inputs:
      override = tf.cast(inputs["override_weights"], tf.float32)
      use = (tf.cast(inputs["override"], tf.bool)[:, tf.newaxis]
             & tf.math.is_finite(override) & (override >= 0))
      weights = tf.where(use, override, weights)
    zero_beta = tf.constant([name in cfg.zero_beta_segments for name in feature_spec.SEGMENTS])
    keep = tf.logical_not(tf.gather(zero_beta, segment))
    weights = weights * tf.stack(
        [tf.ones_like(weights[:, 0]), tf.cast(keep, tf.float32), tf.ones_like(weights[:, 0])],
        axis=1)

    base = tf.reduce_sum(heads * weights[:, tf.newaxis, :], axis=-1)            # [B, N]
    familiar = (tf.cast(inputs["familiar"], tf.float32) if "familiar" in inputs
                else tf.fill(tf.shape(base), 0.5))
    kappa = tf.gather(tf.constant([k for _, k in cfg.activity_familiarity], tf.float32),
                      activity)
    context = kappa[:, tf.newaxis] * (2.0 * familiar - 1.0)

    novelty = (tf.cast(inputs["novelty"], tf.float32) if "novelty" in inputs
               else 1.0 - familiar)
    exploration = cfg.exploration * novelty
    if "seed" in inputs:
      ids = (inputs["candidate_ids"] if "candidate_ids" in inputs else tf.broadcast_to(
          tf.range(tf.shape(base)[1], dtype=tf.int64)[tf.newaxis, :], tf.shape(base)))
      seed = tf.convert_to_tensor(inputs["seed"])
      if seed.shape.rank == 2:
        seed = tf.squeeze(seed, axis=1)
      exploration = exploration * exploration_uniform(seed, ids)
    return {
        "score": base + context + exploration,
        "weights": weights,
        "context": context,
        "exploration": exploration,
    }

  def get_config(self):
    config = super().get_config()
    config.update(config=self.config.to_dict())
    return config
