"""The short-term session encoder: what the listener played in the last minutes.

A small pre-LayerNorm Transformer (the same tokens and blocks as the long-term history
encoder, with its own weights and positions) followed by masked mean pooling, so the
session is one vector that reacts to the current mood (skips, completions, gaps).
"""

from typing import Optional

import tensorflow as tf

from ranking.layers import sequence_encoder


@tf.keras.utils.register_keras_serializable(package="melody")
class SessionEncoder(sequence_encoder.PlaySequenceLayer):
  """Encodes the short-term session into one vector.

  Math: ``H = SequenceEncoder(tokens, mask)``;
  ``s = sum_i m_i H_i / max(1, sum_i m_i)`` (zero when the session is empty).

  Usage:
    enc = SessionEncoder(dim=64, num_layers=1, num_heads=4, ff_dim=128, max_len=10,
                         num_gap_buckets=12)
    s = enc(item_emb, completion, skip, gap_bucket, mask)   # [B, 64]

  Args: as :class:`sequence_encoder.PlaySequenceLayer` (``max_len``: session length).

  Input shapes: ``item_emb [B, S, dim]``; ``completion``, ``skip`` ``[B, S]`` float;
    ``gap_bucket [B, S]`` int; ``mask [B, S]`` bool.
  Output shape: ``[B, dim]``.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.encoder = sequence_encoder.SequenceEncoder(**self.encoder_args(), name="encoder")

  def call(self, item_emb, completion, skip, gap_bucket, mask,
           training: Optional[bool] = None):
    h = self.encoder(item_emb, completion, skip, gap_bucket, mask, training=training)
    m = tf.cast(mask, h.dtype)[..., tf.newaxis]
    return tf.reduce_sum(h * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)
