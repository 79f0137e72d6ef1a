"""The short-term session encoder: what the listener played in the last minutes.

A small pre-LayerNorm Transformer (the same tokens and blocks as the long-term history
encoder, with its own weights and positions) followed by masked mean pooling, so the
session is one vector that reacts to the current mood (skips, completions, gaps).
"""

from typing import Optional

import tensorflow as tf

from ranking.layers import sequence_encoder


@tf.keras.utils.register_keras_serializable(package="melody")
class SessionEncoder(tf.keras.layers.Layer):
  """Encodes the short-term session into one vector.

  Math: ``H = SequenceEncoder(tokens, mask)``;
  ``s = sum_i m_i H_i / max(1, sum_i m_i)`` (zero when the session is empty).

  Usage:
    enc = SessionEncoder(dim=64, num_layers=1, num_heads=4, ff_dim=128, max_len=10,
                         num_gap_buckets=12)
    s = enc(item_emb, completion, skip, gap_bucket, mask)   # [B, 64]

  Args:
    dim: model width.
    num_layers: Transformer blocks.
    num_heads: attention heads.
    ff_dim: feed-forward width.
    max_len: session length.
    num_gap_buckets: time-gap buckets.
    dropout: dropout rate.
    activation: feed-forward activation of the blocks.
    train_precision: the blocks' precision in training calls (see
      :class:`sequence_encoder.TransformerBlock`).

  Input shapes: ``item_emb [B, S, dim]``; ``completion``, ``skip`` ``[B, S]`` float;
    ``gap_bucket [B, S]`` int; ``mask [B, S]`` bool.
  Output shape: ``[B, dim]``.
  """

  def __init__(self, dim: int, num_layers: int, num_heads: int, ff_dim: int, max_len: int,
               num_gap_buckets: int, dropout: float = 0.0, activation: str = "relu",
               train_precision: str = "float32", **kwargs):
    super().__init__(**kwargs)
    self.dim = dim
    self.num_layers = num_layers
    self.num_heads = num_heads
    self.ff_dim = ff_dim
    self.max_len = max_len
    self.num_gap_buckets = num_gap_buckets
    self.dropout = dropout
    self.activation = activation
    self.train_precision = train_precision
    self.encoder = sequence_encoder.SequenceEncoder(
        dim, num_layers, num_heads, ff_dim, max_len, num_gap_buckets, dropout, activation,
        train_precision, name="encoder")

  def call(self, item_emb, completion, skip, gap_bucket, mask,
           training: Optional[bool] = None):
    h = self.encoder(item_emb, completion, skip, gap_bucket, mask, training=training)
    m = tf.cast(mask, h.dtype)[..., tf.newaxis]
    return tf.reduce_sum(h * m, axis=1) / tf.maximum(tf.reduce_sum(m, axis=1), 1.0)

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, num_layers=self.num_layers, num_heads=self.num_heads,
                  ff_dim=self.ff_dim, max_len=self.max_len,
                  num_gap_buckets=self.num_gap_buckets, dropout=self.dropout,
                  activation=self.activation, train_precision=self.train_precision)
    return config
