"""The order fused scores give a candidate list: Melody's one tie-break rule.

This module owns how scores become an order wherever Melody sorts candidates (the
mixing layer in the serving graph, the simulator's numpy twin): valid candidates first,
by score, highest first, with NaN counting as -inf; equal scores go to the lower
candidate index; invalid (padding) candidates follow in index order. The rule is a total
order on ``(score, index)``, so the same scores always give the same order, in TF
(:func:`order_tf`) and in numpy (:func:`order_np`) alike.

A total order makes a list reproducible only if the scores are reproducible to the bit.
The serving graph sees to that (``serving.signatures`` scores each listener at shapes
that do not depend on the rest of the batch), so a request gets the same list alone and
inside any server-side batch. Rounding the scores to a grid before sorting would not do
it: two scores that differ by float noise still round apart whenever a grid boundary
falls between them, so a grid only makes a swap rarer (and turns distinct scores into
ties), it does not rule one out.
"""

from typing import Optional

import numpy as np
import tensorflow as tf


def order_tf(scores: tf.Tensor, valid: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Candidate indices ``[B, N]`` int32 in rule order (module docstring).

  Args:
    scores: ``[B, N]`` float scores.
    valid: ``[B, N]`` bool, False for padding; all valid if None.

  Returns:
    ``[B, N]`` int32: the candidate at each rank.
  """
  scores = tf.convert_to_tensor(scores)
  scores = tf.where(tf.math.is_nan(scores), tf.constant(-float("inf"), scores.dtype), scores)
  # tf.argsort sorts with top_k, which breaks ties to the lower index.
  by_score = tf.argsort(-scores, axis=-1, stable=True)
  if valid is None:
    return by_score
  invalid = tf.logical_not(tf.gather(tf.cast(valid, tf.bool), by_score, batch_dims=1))
  by_valid = tf.argsort(tf.cast(invalid, tf.int32), axis=-1, stable=True)
  return tf.gather(by_score, by_valid, batch_dims=1)


def order_np(scores: np.ndarray, valid: Optional[np.ndarray] = None) -> np.ndarray:
  """:func:`order_tf` in numpy: candidate indices ``[B, N]`` int64 in rule order.

  Args:
    scores: ``[B, N]`` float scores.
    valid: ``[B, N]`` bool, False for padding; all valid if None.
  """
  scores = np.asarray(scores)
  s = np.where(np.isnan(scores), -np.inf, scores)
  index = np.broadcast_to(np.arange(s.shape[-1]), s.shape)
  invalid = (np.zeros(s.shape, bool) if valid is None
             else ~np.broadcast_to(np.asarray(valid, bool), s.shape))
  # lexsort sorts by the last key first: validity, then score (desc), then index.
  return np.lexsort((index, -s, invalid), axis=-1)
