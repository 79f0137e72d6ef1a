"""The TF fusion kernel: the :class:`ScoreFusion` Keras layer the serving graph runs.

This module owns the in-graph form of the fused score (``ranking.fusion`` states the
formula and the input contract; ``kernel_np`` is its numpy twin, and
``tests/ranking/test_fusion_parity.py`` holds the two to the same numbers). Everything
is a graph op on graph constants, so an exported SavedModel fuses scores by itself and a
request carries only indices, signals, a seed and (optionally) override weights.
"""

from typing import Mapping, Union

import tensorflow as tf

from features import feature_spec
from ranking.fusion import exploration
from ranking.fusion import spec


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
    ``w_b = table[segment_b, activity_b]`` (the segment's row unless the config has
    a row for that activity), replaced component-wise by ``override_weights_b``
    where ``override_b`` is set and the override is finite and >= 0; beta forced to 0
    for ``zero_beta_segments``;
    ``S = w_b . (S_int, S_sub, S_exp) + kappa[activity_b] * (2 * familiar - 1)
    + bonus``, with the exploration bonus of ``ranking.fusion.exploration`` (no seed:
    ``epsilon * novelty``; seed >= 0: ``epsilon * novelty * u(seed_b, candidate_id)``;
    seed < 0: 0).

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
    config: a ``FusionConfig`` (or its dict form, as ``from_config`` passes it).

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

  def __init__(self, config: Union[spec.FusionConfig, Mapping] = spec.FusionConfig(),
               **kwargs):
    super().__init__(**kwargs)
    if isinstance(config, Mapping):
      config = spec.FusionConfig.from_dict(config)
    if not isinstance(config, spec.FusionConfig):
      raise ValueError(f"config must be a FusionConfig, got {config!r}")
    self.config = config

  def call(self, inputs):
    missing = {*spec.HEADS, "segment", "activity"} - set(inputs)
    if missing:
      raise ValueError(f"ScoreFusion inputs lack {sorted(missing)}, got {sorted(inputs)}")
    if ("override_weights" in inputs) != ("override" in inputs):
      raise ValueError("override_weights and override must be given together")
    cfg = self.config
    heads = tf.stack([tf.cast(inputs[h], tf.float32) for h in spec.HEADS], axis=-1)
    segment = _index(inputs["segment"], len(feature_spec.SEGMENTS))
    activity = _index(inputs["activity"], len(feature_spec.ACTIVITIES))

    # The (segment, activity) cells flattened, so one gather finds a listener's row.
    n_act = len(feature_spec.ACTIVITIES)
    table = tf.constant(spec.cell_table(cfg).reshape(-1, 3), tf.float32)       # [S*A, 3]
    weights = tf.gather(table, segment * n_act + activity)                      # [B, 3]
    if "override_weights" in inputs:
      override = tf.cast(inputs["override_weights"], tf.float32)
      use = (tf.cast(inputs["override"], tf.bool)[:, tf.newaxis]
             & tf.math.is_finite(override) & (override >= 0))
      weights = tf.where(use, override, weights)
    keep = tf.logical_not(tf.gather(tf.constant(spec.zero_beta_mask(cfg)), segment))
    weights = weights * tf.stack(
        [tf.ones_like(weights[:, 0]), tf.cast(keep, tf.float32), tf.ones_like(weights[:, 0])],
        axis=1)

    base = tf.reduce_sum(heads * weights[:, tf.newaxis, :], axis=-1)            # [B, N]
    familiar = (tf.cast(inputs["familiar"], tf.float32) if "familiar" in inputs
                else tf.fill(tf.shape(base), 0.5))
    kappa = tf.gather(tf.constant(spec.kappa_table(cfg), tf.float32), activity)
    context = kappa[:, tf.newaxis] * (2.0 * familiar - 1.0)

    novelty = (tf.cast(inputs["novelty"], tf.float32) if "novelty" in inputs
               else 1.0 - familiar)
    bonus = exploration.bonus_tf(cfg.exploration, novelty, inputs.get("seed"),
                                 inputs.get("candidate_ids"))
    return {
        "score": base + context + bonus,
        "weights": weights,
        "context": context,
        "exploration": bonus,
    }

  def get_config(self):
    config = super().get_config()
    config.update(config=self.config.to_dict())
    return config
