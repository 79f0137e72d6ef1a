"""The numpy fusion kernel: :func:`fuse`, the same fused score without TensorFlow.

This module owns the numpy form of the fused score, for callers that score far more
listeners than one TensorFlow call per session allows (the simulator's rollouts over
100k listeners). Its contract is :class:`~ranking.fusion.kernel_tf.ScoreFusion`'s: the
same input dict (activity indices into ``feature_spec.ACTIVITIES``, the same defaults
for missing inputs, component-wise overrides where finite and >= 0, zero-beta
segments, seed semantics), the same output dict, computed in float64.
``tests/ranking/test_fusion_parity.py`` holds the two kernels to the same numbers.
"""

from typing import Dict, Mapping

import numpy as np

from features import feature_spec
from ranking.fusion import exploration
from ranking.fusion import spec


def _index(x, size: int) -> np.ndarray:
  """``[B]`` int index; ``[B, 1]`` is flattened; out-of-range maps to 0 (the unknown)."""
  x = np.asarray(x, np.int64)
  if x.ndim == 2:
    x = x[:, 0]
  return np.where((x >= 0) & (x < size), x, 0)


def fuse(inputs: Mapping[str, np.ndarray], config: spec.FusionConfig = spec.FusionConfig()
         ) -> Dict[str, np.ndarray]:
  """Fused scores of ``[B, N]`` candidates (``ScoreFusion`` has the math and inputs).

  Args:
    inputs: ``interest``, ``subscription``, ``exposure`` ``[B, N]``; ``segment`` and
      ``activity`` ``[B]`` (or ``[B, 1]``) indices into ``feature_spec.SEGMENTS`` and
      ``feature_spec.ACTIVITIES``; optional ``familiar``, ``novelty``,
      ``candidate_ids`` ``[B, N]``, ``seed`` ``[B]``, and ``override_weights``
      ``[B, 3]`` together with ``override`` ``[B]`` bool.
    config: the fusion spec.

  Returns:
    ``score`` ``[B, N]``, ``weights`` ``[B, 3]``, ``context`` and ``exploration``
    ``[B, N]``, all float64.

  Raises:
    ValueError: a required input is missing, or ``override_weights`` comes without
      ``override`` (or the other way round).
  """
  missing = {*spec.HEADS, "segment", "activity"} - set(inputs)
  if missing:
    raise ValueError(f"fuse inputs lack {sorted(missing)}, got {sorted(inputs)}")
  if ("override_weights" in inputs) != ("override" in inputs):
    raise ValueError("override_weights and override must be given together")
  heads = np.stack([np.asarray(inputs[h], np.float64) for h in spec.HEADS], axis=-1)
  segment = _index(inputs["segment"], len(feature_spec.SEGMENTS))
  activity = _index(inputs["activity"], len(feature_spec.ACTIVITIES))

  weights = spec.cell_table(config)[segment, activity]                           # [B, 3]
  if "override_weights" in inputs:
    override = np.asarray(inputs["override_weights"], np.float64)
    with np.errstate(invalid="ignore"):
      use = (np.asarray(inputs["override"], bool)[:, None]
             & np.isfinite(override) & (override >= 0))
    weights = np.where(use, override, weights)
  weights[:, 1] = np.where(spec.zero_beta_mask(config)[segment], 0.0, weights[:, 1])

  familiar = (np.asarray(inputs["familiar"], np.float64) if "familiar" in inputs
              else np.full(heads.shape[:2], 0.5))
  context = spec.kappa_table(config)[activity][:, None] * (2.0 * familiar - 1.0)
  novelty = (np.asarray(inputs["novelty"], np.float64) if "novelty" in inputs
             else 1.0 - familiar)
  bonus = exploration.bonus_np(config.exploration, novelty, inputs.get("seed"),
                               inputs.get("candidate_ids"))
  return {
      "score": np.einsum("bnh,bh->bn", heads, weights) + context + bonus,
      "weights": weights,
      "context": context,
      "exploration": bonus,
  }
