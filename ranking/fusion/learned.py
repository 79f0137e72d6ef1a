"""Learned fusion: a per-(segment, activity) linear scorer over the heads and context.

This module owns the learned alternative to the hand-set weight table: its parameters
(:class:`LearnedFusionParams`, one coefficient row per (segment, activity) cell of
``feature_spec.SEGMENTS`` x ``feature_spec.ACTIVITIES``, validated and with a JSON form
for ``policy.json``), and its two kernels with one contract, the numpy
:func:`fuse_learned` (for the simulator) and the TF :class:`LearnedFusion` layer (in the
serving graph). The score of candidate ``n`` for listener ``b`` is

    S = theta[cell_b] . (S_int, S_sub, S_exp, promo, 2 * familiar - 1) + eps

with ``eps`` the exploration bonus of ``ranking.fusion.exploration`` (the same epsilon
and seed semantics as ``ScoreFusion``). The cell's one-hot is the context; the promo flag
and familiarity are per candidate. :meth:`LearnedFusionParams.from_fusion` starts from
the hand-set table (head coefficients = alpha/beta/gamma, familiarity = kappa, promo 0),
where both fusions give the same scores; training (``simulation.fusion_training``) moves
it from there. Zero-beta segments keep a 0 subscription coefficient, as in the table.
"""

import dataclasses
import math
from typing import Dict, Mapping, Tuple, Union

import numpy as np
import tensorflow as tf

from features import feature_spec
from ranking.fusion import exploration
from ranking.fusion import spec

FEATURES: Tuple[str, ...] = spec.HEADS + ("promo", "familiar")
MAX_COEF = 100.0   # far above any useful scale; a bound keeps a corrupt file out
_N_SEG, _N_ACT, _N_F = len(feature_spec.SEGMENTS), len(feature_spec.ACTIVITIES), len(FEATURES)
_SUB = FEATURES.index("subscription")


class LearnedFusionError(ValueError):
  """Invalid learned-fusion parameters; ``field`` is the dotted path of the bad value."""

  def __init__(self, field: str, problem: str):
    super().__init__(f"{field}: {problem}")
    self.field, self.problem = field, problem


@dataclasses.dataclass(frozen=True)
class LearnedFusionParams:
  """The coefficients of the learned fusion.

  Attributes:
    coefficients: ``[SEGMENTS, ACTIVITIES, FEATURES]`` nested tuples of finite floats
      with ``|c| <= MAX_COEF`` (an array is accepted); the subscription coefficient is 0
      for ``zero_beta_segments``.
    zero_beta_segments: segments whose subscription coefficient must be 0.
  """
  coefficients: Tuple[Tuple[Tuple[float, ...], ...], ...]
  zero_beta_segments: Tuple[str, ...] = spec.FusionConfig().zero_beta_segments

  def __post_init__(self):
    table = np.asarray(self.coefficients, np.float64)
    if table.shape != (_N_SEG, _N_ACT, _N_F):
      raise LearnedFusionError("coefficients", f"must have shape {(_N_SEG, _N_ACT, _N_F)}, "
                               f"got {table.shape}")
    for (s, a, f), value in np.ndenumerate(table):
      field = f"cells.{feature_spec.SEGMENTS[s]}.{feature_spec.ACTIVITIES[a]}.{FEATURES[f]}"
      if not math.isfinite(value) or abs(value) > MAX_COEF:
        raise LearnedFusionError(field, f"must be finite with |c| <= {MAX_COEF}, got {value}")
      if f == _SUB and feature_spec.SEGMENTS[s] in self.zero_beta_segments and value != 0:
        raise LearnedFusionError(field, f"must be 0 for a zero-beta segment, got {value}")
    object.__setattr__(self, "coefficients", tuple(
        tuple(tuple(float(x) for x in cell) for cell in seg) for seg in table))
    object.__setattr__(self, "zero_beta_segments", tuple(self.zero_beta_segments))

  def table(self) -> np.ndarray:
    """``[SEGMENTS, ACTIVITIES, FEATURES]`` float64."""
    return np.array(self.coefficients, np.float64)

  @classmethod
  def from_table(cls, table: np.ndarray,
                 zero_beta_segments=spec.FusionConfig().zero_beta_segments
                 ) -> "LearnedFusionParams":
    """From a ``[SEGMENTS, ACTIVITIES, FEATURES]`` array; zero-beta cells are zeroed."""
    table = np.array(table, np.float64)
    for s, name in enumerate(feature_spec.SEGMENTS):
      if name in zero_beta_segments and table.ndim == 3:
        table[s, :, _SUB] = 0.0
    return cls(coefficients=table, zero_beta_segments=tuple(zero_beta_segments))

  @classmethod
  def from_fusion(cls, config: spec.FusionConfig = spec.FusionConfig()
                  ) -> "LearnedFusionParams":
    """The parameters that score exactly as the hand-set ``config`` does."""
    table = np.zeros((_N_SEG, _N_ACT, _N_F))
    table[..., :3] = spec.cell_table(config)
    table[..., FEATURES.index("familiar")] = spec.kappa_table(config)[None, :]
    return cls.from_table(table, config.zero_beta_segments)

  def to_dict(self) -> Dict[str, object]:
    """JSON form: ``{"features": [...], "cells": {segment: {activity: [c, ...]}}}``."""
    return {"features": list(FEATURES),
            "cells": {seg: {act: list(self.coefficients[s][a])
                            for a, act in enumerate(feature_spec.ACTIVITIES)}
                      for s, seg in enumerate(feature_spec.SEGMENTS)}}

  @classmethod
  def from_dict(cls, d: object) -> "LearnedFusionParams":
    """Parses :meth:`to_dict`'s form strictly.

    Raises:
      LearnedFusionError: naming the first bad field (e.g. ``cells.free.focus``).
    """
    _object(d, "", ("features", "cells"))
    if d["features"] != list(FEATURES):
      raise LearnedFusionError("features", f"must be {list(FEATURES)}, got {d['features']!r}")
    _object(d["cells"], "cells", feature_spec.SEGMENTS)
    table = np.zeros((_N_SEG, _N_ACT, _N_F))
    for s, seg in enumerate(feature_spec.SEGMENTS):
      _object(d["cells"][seg], f"cells.{seg}", feature_spec.ACTIVITIES)
      for a, act in enumerate(feature_spec.ACTIVITIES):
        row = d["cells"][seg][act]
        field = f"cells.{seg}.{act}"
        if not isinstance(row, list) or len(row) != _N_F:
          raise LearnedFusionError(field, f"must be a list of {_N_F} numbers, got {row!r}")
        for f, x in enumerate(row):
          if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise LearnedFusionError(f"{field}.{FEATURES[f]}", f"must be a number, got {x!r}")
        table[s, a] = row
    return cls(coefficients=table)


def _object(value: object, where: str, keys) -> None:
  if not isinstance(value, dict):
    raise LearnedFusionError(where, f"must be a JSON object, got "
                             f"{type(value).__name__}")
  for problem, names in (("is not a known field", sorted(set(value) - set(keys))),
                         ("is missing", [k for k in keys if k not in value])):
    if names:
      raise LearnedFusionError(f"{where}.{names[0]}" if where else names[0], problem)


def _features_np(inputs: Mapping[str, np.ndarray]):
  heads = [np.asarray(inputs[h], np.float64) for h in spec.HEADS]
  shape = heads[0].shape
  promo = np.asarray(inputs["promo"], np.float64) if "promo" in inputs else np.zeros(shape)
  familiar = (np.asarray(inputs["familiar"], np.float64) if "familiar" in inputs
              else np.full(shape, 0.5))
  return np.stack(heads + [promo, 2.0 * familiar - 1.0], axis=-1), familiar


def _index_np(x, size: int) -> np.ndarray:
  x = np.asarray(x, np.int64)
  x = x[:, 0] if x.ndim == 2 else x
  return np.where((x >= 0) & (x < size), x, 0)


def fuse_learned(inputs: Mapping[str, np.ndarray], params: LearnedFusionParams,
                 epsilon: float = spec.FusionConfig().exploration) -> Dict[str, np.ndarray]:
  """Learned fused scores of ``[B, N]`` candidates in numpy (float64).

  Args:
    inputs: ``ScoreFusion``'s inputs (heads, ``segment``, ``activity``, optional
      ``familiar``, ``novelty``, ``candidate_ids``, ``seed``) plus an optional
      ``promo`` ``[B, N]`` 0/1 (default 0); override inputs are ignored.
    params: the coefficients.
    epsilon: the exploration bonus' size (the model's ``FusionConfig.exploration``).

  Returns:
    ``score`` ``[B, N]``, ``weights`` ``[B, 3]`` (the cell's head coefficients),
    ``context`` (the familiarity term) and ``exploration`` ``[B, N]``.
  """
  x, familiar = _features_np(inputs)
  seg = _index_np(inputs["segment"], _N_SEG)
  act = _index_np(inputs["activity"], _N_ACT)
  coef = params.table()[seg, act]                                               # [B, F]
  novelty = (np.asarray(inputs["novelty"], np.float64) if "novelty" in inputs
             else 1.0 - familiar)
  bonus = exploration.bonus_np(epsilon, novelty, inputs.get("seed"),
                               inputs.get("candidate_ids"))
  return {"score": np.einsum("bnf,bf->bn", x, coef) + bonus, "weights": coef[:, :3],
          "context": coef[:, -1:] * x[..., -1], "exploration": bonus}


@tf.keras.utils.register_keras_serializable(package="melody")
class LearnedFusion(tf.keras.layers.Layer):
  """The learned fusion as graph ops on graph constants (:func:`fuse_learned`'s twin).

  Usage:
    layer = LearnedFusion(params, epsilon=0.02)
    out = layer({"interest": s_int, "subscription": s_sub, "exposure": s_exp,
                 "promo": promo, "segment": seg_xf, "activity": act_xf,
                 "familiar": familiar, "seed": seed, "candidate_ids": rows})
    out["score"]   # [B, N]

  Args:
    params: ``LearnedFusionParams`` (or its dict form, as ``from_config`` passes it).
    epsilon: exploration bonus size, finite and >= 0.

  Input/output: as :func:`fuse_learned` (float32 outputs).
  """

  def __init__(self, params: Union[LearnedFusionParams, Mapping],
               epsilon: float = spec.FusionConfig().exploration, **kwargs):
    super().__init__(**kwargs)
    if isinstance(params, Mapping):
      params = LearnedFusionParams.from_dict(dict(params))
    if not isinstance(params, LearnedFusionParams):
      raise ValueError(f"params must be LearnedFusionParams, got {params!r}")
    if not (math.isfinite(epsilon) and epsilon >= 0):
      raise ValueError(f"epsilon must be finite and >= 0, got {epsilon!r}")
    self.params, self.epsilon = params, float(epsilon)

  def call(self, inputs):
    heads = [tf.cast(inputs[h], tf.float32) for h in spec.HEADS]
    promo = (tf.cast(inputs["promo"], tf.float32) if "promo" in inputs
             else tf.zeros_like(heads[0]))
    familiar = (tf.cast(inputs["familiar"], tf.float32) if "familiar" in inputs
                else tf.fill(tf.shape(heads[0]), 0.5))
    x = tf.stack(heads + [promo, 2.0 * familiar - 1.0], axis=-1)               # [B, N, F]
    seg = _index_tf(inputs["segment"], _N_SEG)
    act = _index_tf(inputs["activity"], _N_ACT)
    table = tf.constant(self.params.table().reshape(-1, _N_F), tf.float32)
    coef = tf.gather(table, seg * _N_ACT + act)                                 # [B, F]
    novelty = (tf.cast(inputs["novelty"], tf.float32) if "novelty" in inputs
               else 1.0 - familiar)
    bonus = exploration.bonus_tf(self.epsilon, novelty, inputs.get("seed"),
                                 inputs.get("candidate_ids"))
    return {"score": tf.reduce_sum(x * coef[:, tf.newaxis, :], axis=-1) + bonus,
            "weights": coef[:, :3], "context": coef[:, -1:] * x[..., -1],
            "exploration": bonus}

  def get_config(self):
    config = super().get_config()
    config.update(params=self.params.to_dict(), epsilon=self.epsilon)
    return config


def _index_tf(x: tf.Tensor, size: int) -> tf.Tensor:
  x = tf.cast(x, tf.int64)
  if x.shape.rank == 2:
    x = tf.squeeze(x, axis=1)
  return tf.where((x >= 0) & (x < size), x, tf.zeros_like(x))
