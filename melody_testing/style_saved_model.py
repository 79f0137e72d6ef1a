"""A small SavedModel with Melody's ``recommend`` signature that follows listening style.

This module owns the test model of the online tests: it takes exactly the inputs of the
exported ranker's ``recommend`` (``serving.request_schema.recommend_input_spec``) and
answers with the same kind of outputs (ranked track ids, per-head scores, fused score,
reasons, effective weights), over a catalogue of ``n_tracks`` tracks ``t000``… whose
style is ``index % n_styles`` (:func:`track_style`). A track's score is the listener's
affinity for its style — the mean of completion x (1 - skip) over the history plays of
that style, shrunk towards 0 for few plays — plus a small prior favouring low indices.
So a listener who completes several tracks of one style gets that style ranked higher
on the next request, which is what the nearline/gateway path must carry through.
"""

import os
from typing import Dict

import tensorflow as tf

from serving import request_schema

PRIOR_SPREAD = 0.05


def track_id(index: int) -> str:
  return f"t{index:03d}"


def track_style(track: str, n_styles: int = 5) -> int:
  """The style of a catalogue track id."""
  return int(track[1:]) % n_styles


class StyleRecommender(tf.Module):
  """``recommend`` over a catalogue with one style per track (module docstring)."""

  def __init__(self, n_tracks: int = 100, n_styles: int = 5):
    super().__init__()
    ids = [track_id(i) for i in range(n_tracks)]
    styles = [i % n_styles for i in range(n_tracks)]
    self.n_styles = n_styles
    self.track_ids = tf.constant(ids)
    self.track_style = tf.constant(styles, tf.int64)
    self.prior = tf.constant([PRIOR_SPREAD * (1 - i / n_tracks) for i in range(n_tracks)],
                             tf.float32)
    self.style_of = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.constant(styles, tf.int64)),
        default_value=-1)
    self.recommend = tf.function(self._recommend, input_signature=[
        request_schema.recommend_input_spec(with_text=False)], autograph=False)

  def _recommend(self, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    ids = inputs["hist_track_ids"]
    style = self.style_of.lookup(ids)
    valid = tf.sequence_mask(inputs["hist_len"], tf.shape(ids)[1]) & (style >= 0)
    weight = inputs["hist_completion"] * (1.0 - inputs["hist_skip"])
    weight = tf.where(valid, weight, 0.0)
    onehot = tf.one_hot(tf.maximum(style, 0), self.n_styles)
    onehot = onehot * tf.cast(valid, tf.float32)[..., tf.newaxis]
    total = tf.einsum("bl,bls->bs", weight, onehot)
    count = tf.reduce_sum(onehot, axis=1)
    affinity = total / (1.0 + count)                                 # [B, S]
    scores = tf.gather(affinity, self.track_style, axis=1) + self.prior  # [B, N]
    k = tf.minimum(tf.cast(inputs["k"], tf.int32), tf.size(self.track_ids))
    top, rows = tf.math.top_k(scores, k=k)
    batch = tf.shape(ids)[0]
    table = tf.constant([[1.0, 0.2, 0.1]])
    given = inputs["alpha_beta_gamma"]
    use = (inputs["override"] != 0)[:, tf.newaxis] & (given >= 0)
    weights = tf.where(use, given, tf.tile(table, [batch, 1]))
    return {"ranked_track_ids": tf.gather(self.track_ids, rows),
            "fused_score": top * weights[:, :1],
            "interest": top,
            "interest_completion": tf.sigmoid(top),
            "reasons": tf.fill(tf.shape(rows), "style_affinity"),
            "weights": weights}


def publish(base_dir: str, version: int = 1, **kwargs) -> str:
  """Saves a :class:`StyleRecommender` as ``base_dir/version`` (written under a temporary
  name, then renamed) and returns that directory."""
  module = StyleRecommender(**kwargs)
  final = os.path.join(base_dir, str(version))
  tmp = os.path.join(base_dir, f".tmp-{version}")
  tf.saved_model.save(module, tmp, signatures={"recommend": module.recommend})
  os.replace(tmp, final)
  return final
