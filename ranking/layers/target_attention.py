"""Candidate-aware (target) attention over the encoded history.

The candidate asks the listener's encoded history "which of your plays are like me?":
the answer is a candidate-specific summary of the history. The layer broadcasts one
listener's history against N candidates, so serving encodes the history once per
request and never copies the sequence per candidate.
"""

import math

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="melody")
class TargetAttention(tf.keras.layers.Layer):
  """Multi-head attention with the candidate as the single query.

  Math: per head ``h`` with width ``d_h = dim / num_heads``:
  ``q = W_q c``, ``K = H W_k``, ``V = H W_v``,
  ``a = softmax(q K^T / sqrt(d_h) + (1 - m) * -1e9)``, ``o_h = a V``;
  output ``y = 1[sum m > 0] * W_o [o_1; ...; o_H]`` (zero for an empty history).

  Usage:
    att = TargetAttention(dim=64, num_heads=4)
    y = att(candidates, history, mask)        # training: [B, 64] vs [B, L, 64]
    y = att(candidates, history[:1], mask[:1])  # serving: N candidates vs one listener

  Args:
    dim: width of the candidate and of the history tokens.
    num_heads: attention heads; ``dim`` must be divisible by it.

  Input shapes: ``query [N, dim]``, ``memory [M, L, dim]``, ``mask [M, L]`` bool with
    ``M == N`` or ``M == 1`` (broadcast).
  Output shape: ``[N, dim]``.
  """

  def __init__(self, dim: int, num_heads: int, **kwargs):
    super().__init__(**kwargs)
    if dim <= 0:
      raise ValueError(f"dim must be positive, got {dim}")
    if num_heads <= 0 or dim % num_heads:
      raise ValueError(
          f"num_heads must be positive and divide dim, got {num_heads} for dim {dim}")
    self.dim = dim
    self.num_heads = num_heads
    self.head_dim = dim // num_heads
    self.query = tf.keras.layers.Dense(dim, use_bias=False, name="query")
    self.key = tf.keras.layers.Dense(dim, use_bias=False, name="key")
    self.value = tf.keras.layers.Dense(dim, use_bias=False, name="value")
    self.output_projection = tf.keras.layers.Dense(dim, name="output")

  def _heads(self, x):
    # [..., T, dim] -> [..., heads, T, head_dim]
    shape = tf.concat([tf.shape(x)[:-1], [self.num_heads, self.head_dim]], axis=0)
    x = tf.reshape(x, shape)
    return tf.transpose(x, [0, 2, 1, 3])

  def call(self, query, memory, mask):
    if memory.shape.rank is not None and memory.shape[0] == 1:
      return self._one_memory(query, memory, mask)
    q = self._heads(self.query(query)[:, tf.newaxis, :])    # [N, H, 1, dh]
    k = self._heads(self.key(memory))                       # [M, H, L, dh]
    v = self._heads(self.value(memory))                     # [M, H, L, dh]
    m = tf.cast(mask, tf.float32)
    logits = tf.matmul(q, k, transpose_b=True) / math.sqrt(self.head_dim)   # [N, H, 1, L]
    logits += (1.0 - m[:, tf.newaxis, tf.newaxis, :]) * -1e9
    out = tf.matmul(tf.nn.softmax(logits, axis=-1), v)      # [N, H, 1, dh]
    out = tf.reshape(out, [-1, self.dim])
    has_history = tf.cast(tf.reduce_any(tf.cast(mask, tf.bool), axis=-1), out.dtype)
    return self.output_projection(out) * has_history[:, tf.newaxis]

  def _one_memory(self, query, memory, mask):
    """The serving case (one listener's history, N candidate queries): per head, the N
    queries against the L keys are ONE ``[N, dh] x [dh, L]`` matmul, not N tiny ones."""
    h, dh = self.num_heads, self.head_dim
    q = tf.transpose(tf.reshape(self.query(query), [-1, h, dh]), [1, 0, 2])      # [H, N, dh]
    k = tf.transpose(tf.reshape(self.key(memory[0]), [-1, h, dh]), [1, 0, 2])    # [H, L, dh]
    v = tf.transpose(tf.reshape(self.value(memory[0]), [-1, h, dh]), [1, 0, 2])  # [H, L, dh]
    m = tf.cast(mask[0], tf.float32)
    logits = tf.matmul(q, k, transpose_b=True) / math.sqrt(dh)                    # [H, N, L]
    logits += (1.0 - m) * -1e9
    out = tf.matmul(tf.nn.softmax(logits, axis=-1), v)                           # [H, N, dh]
    out = tf.reshape(tf.transpose(out, [1, 0, 2]), [-1, self.dim])
    has_history = tf.cast(tf.reduce_any(tf.cast(mask[0], tf.bool)), out.dtype)
    return self.output_projection(out) * has_history

  def attend_prefix(self, query, memory, mask):
    """Every step of a sequence as a candidate against the steps before it.

    The sequence-level training form of :meth:`call`: row ``t`` of ``query`` attends to
    the rows ``j`` of ``memory`` that ``mask[:, t, j]`` allows (the plays before ``t``),
    with the same weights, so row ``t`` equals ``call`` on that one candidate and those
    plays.

    Args:
      query: ``[B, T, dim]`` candidate vectors, one per step.
      memory: ``[B, T, dim]`` encoded plays.
      mask: ``[B, T, T]``, 1 where step ``t`` may read play ``j``.

    Returns:
      ``[B, T, dim]`` (zero for a step with no play to read).
    """
    batch, steps = tf.shape(query)[0], tf.shape(query)[1]

    def heads(x):   # [B, T, dim] -> [B, H, T, dh]
      return tf.transpose(tf.reshape(x, [batch, steps, self.num_heads, self.head_dim]),
                          [0, 2, 1, 3])

    m = tf.cast(mask, tf.float32)
    q, k, v = heads(self.query(query)), heads(self.key(memory)), heads(self.value(memory))
    logits = tf.matmul(q, k, transpose_b=True) / math.sqrt(self.head_dim)   # [B, H, T, T]
    logits += (1.0 - m[:, tf.newaxis]) * -1e9
    out = tf.matmul(tf.nn.softmax(logits, axis=-1), v)                     # [B, H, T, dh]
    out = tf.reshape(tf.transpose(out, [0, 2, 1, 3]), [batch, steps, self.dim])
    has_history = tf.cast(tf.reduce_any(m > 0, axis=-1), out.dtype)
    return self.output_projection(out) * has_history[..., tf.newaxis]

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, num_heads=self.num_heads)
    return config
