"""The causal reading of a listener's plays, shared by serving and sequence-level training.

With ``ModelConfig.sequence_model = "causal"`` the history encoder reads the plays in
time order with causal blocks, so an encoded play depends only on the plays up to it.
This module owns the two forms of that reading and the summaries an impression takes
from the encoded plays (the mean of the plays before it, the most recent one, and the
mean of the current session's plays, taken as its most recent ``sess_len`` plays):

* the per-impression form (:func:`encode_history`, :func:`recent_mean`) reads one padded
  history, most recent first, as serving does;
* the sequence form (:func:`prefix_masks`, :func:`masked_mean`, :func:`previous_step`)
  reads a whole chunk of a listener's plays once and gives every step ``t`` the same
  summaries over the plays before ``t``.

Both compute the same numbers up to float rounding; ``tests/ranking`` holds them to it.
"""

from typing import Optional, Tuple

import tensorflow as tf


def _reverse(x: tf.Tensor) -> tf.Tensor:
  return tf.reverse(x, axis=[1])


def encode_history(encoder: tf.keras.layers.Layer, item_emb: tf.Tensor,
                   completion: tf.Tensor, skip: tf.Tensor, mask: tf.Tensor,
                   training: Optional[bool] = None) -> tf.Tensor:
  """Encodes a most-recent-first history with a causal encoder.

  The encoder reads the plays oldest first (the padding then comes first, and no real
  play attends to it), and the result is turned back to most recent first.

  Args:
    encoder: a causal ``SequenceEncoder``.
    item_emb: ``[B, L, d]`` item vectors, most recent first.
    completion: ``[B, L]`` float.
    skip: ``[B, L]`` float.
    mask: ``[B, L]`` bool, True for a real play.
    training: Keras training flag.

  Returns:
    ``[B, L, d]`` encoded plays, most recent first, padding rows zero.
  """
  gaps = tf.zeros_like(mask, tf.int64)   # a causal encoder's tokens carry no gaps
  encoded = encoder(_reverse(item_emb), _reverse(completion), _reverse(skip), gaps,
                    _reverse(mask), training=training)
  return _reverse(encoded)


def recent_mean(encoded: tf.Tensor, mask: tf.Tensor, count: tf.Tensor) -> tf.Tensor:
  """Mean of the ``count`` most recent encoded plays (zero when there are none).

  Args:
    encoded: ``[B, L, d]``, most recent first.
    mask: ``[B, L]`` bool or float, 1 for a real play.
    count: ``[B]`` or ``[B, 1]`` plays to average (the session length).

  Returns:
    ``[B, d]``.
  """
  length = encoded.shape[1] or tf.shape(encoded)[1]
  window = tf.sequence_mask(tf.reshape(tf.cast(count, tf.int32), [-1]), length, tf.float32)
  m = (window * tf.cast(mask, tf.float32))[..., tf.newaxis]
  return tf.reduce_sum(encoded * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)


def prefix_masks(play_mask: tf.Tensor, session_len: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Which plays each step of a sequence reads: all before it, and its session's.

  Args:
    play_mask: ``[B, T]``, 1 for a real play (time order).
    session_len: ``[B, T]`` plays of the current session before each step.

  Returns:
    ``(history, session)``, each ``[B, T, T]`` float: ``history[b, t, j] = 1`` for a real
    play ``j < t``; ``session`` keeps those with ``t - j <= session_len[b, t]``.
  """
  steps = tf.shape(play_mask)[1]
  position = tf.range(steps)
  distance = position[:, tf.newaxis] - position[tf.newaxis, :]          # t - j
  history = (tf.cast(distance > 0, tf.float32)[tf.newaxis]
             * tf.cast(play_mask, tf.float32)[:, tf.newaxis, :])
  in_session = distance[tf.newaxis] <= tf.cast(session_len, tf.int32)[..., tf.newaxis]
  return history, history * tf.cast(in_session, tf.float32)


def masked_mean(weights: tf.Tensor, encoded: tf.Tensor) -> tf.Tensor:
  """``[B, T, d]``: per step, the mean of the encoded plays its ``[B, T, T]`` row selects."""
  total = tf.reduce_sum(weights, axis=-1, keepdims=True)
  return tf.matmul(weights, encoded) / tf.maximum(total, 1.0)


def previous_step(encoded: tf.Tensor) -> tf.Tensor:
  """``[B, T, d]``: per step the encoded play just before it (zero at the first step)."""
  return tf.pad(encoded[:, :-1], [[0, 0], [1, 0], [0, 0]])
