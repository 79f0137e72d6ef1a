"""The popularity baseline: every head predicts the candidate track's mean label.

For label ``y`` with weights ``w`` over the training rows of track ``t``,

    yhat(t) = (sum_i w_i y_i + k * ybar) / (sum_i w_i + k)

with ``ybar`` the label's weighted mean over all rows and ``k`` a prior strength, so a
track seen a few times leans on the global mean and a track never seen gets it. No
listener, context or history enters: this is what a ranker knows from the catalogue's
track statistics alone. Track keys are the transformed ids (``cand_track_id_xf``).
"""

from typing import Dict, Mapping, Sequence

import numpy as np

from features import feature_spec

TRACK_KEY = feature_spec.xf("cand_track_id")


class TrackMeanBaseline:
  """Per-track weighted label means, shrunk towards the global mean.

  Usage:
    base = TrackMeanBaseline(feature_spec.LABEL_KEYS).fit(train_arrays)
    preds = base.predict(eval_arrays)      # {label: [N] float32}

  Args:
    labels: the label keys to predict.
    prior_strength: ``k`` above (pseudo-rows at the global mean), >= 0.
  """

  def __init__(self, labels: Sequence[str] = feature_spec.LABEL_KEYS,
               prior_strength: float = 5.0):
    if prior_strength < 0:
      raise ValueError(f"prior_strength must be >= 0, got {prior_strength}")
    for lab in labels:
      if lab not in feature_spec.LABEL_KEYS:
        raise ValueError(f"unknown label {lab!r}; known: {feature_spec.LABEL_KEYS}")
    self.labels = tuple(labels)
    self.prior_strength = float(prior_strength)
    self.tables: Dict[str, np.ndarray] = {}
    self.global_means: Dict[str, float] = {}

  def fit(self, arrays: Mapping[str, np.ndarray]) -> "TrackMeanBaseline":
    """Learns the per-track means from transformed training arrays (labels and weights).

    Returns:
      ``self``.
    """
    tracks = np.asarray(arrays[TRACK_KEY]).reshape(-1).astype(np.int64)
    size = feature_spec.TRANSFORMED_FEATURES[TRACK_KEY][2]
    for lab in self.labels:
      y = np.asarray(arrays[lab], np.float64).reshape(-1)
      w = np.asarray(arrays[feature_spec.weight_key(lab)], np.float64).reshape(-1)
      total = w.sum()
      ybar = float((w * y).sum() / total) if total > 0 else 0.0
      num = np.bincount(tracks, weights=w * y, minlength=size)
      den = np.bincount(tracks, weights=w, minlength=size)
      k = self.prior_strength
      self.tables[lab] = np.where(den + k > 0, (num + k * ybar) / np.maximum(den + k, 1e-12),
                                  ybar)
      self.global_means[lab] = ybar
    return self

  def predict(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """``{label: [N]}`` predictions for transformed candidate arrays."""
    if not self.tables:
      raise ValueError("TrackMeanBaseline.predict called before fit")
    tracks = np.asarray(arrays[TRACK_KEY]).reshape(-1).astype(np.int64)
    out = {}
    for lab, table in self.tables.items():
      known = (tracks >= 0) & (tracks < len(table))
      out[lab] = np.where(known, table[np.clip(tracks, 0, len(table) - 1)],
                          self.global_means[lab]).astype(np.float32)
    return out
