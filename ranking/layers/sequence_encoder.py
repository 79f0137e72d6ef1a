"""The Transformer encoder of the listener's long-term history.

Owns the token construction of a play (shared item embedding + learned position +
time-gap bucket + per-step completion/skip), the pre-LayerNorm Transformer blocks with
a padding mask, and :class:`PlaySequenceLayer`, the hyper-parameters every encoder of a
play sequence shares. The session encoder reuses all three.
"""

from typing import Dict, Optional

import tensorflow as tf

from ranking import config as config_lib
from ranking import hardware


def _check_precision(train_precision: str) -> None:
  if train_precision not in config_lib.TRAIN_PRECISIONS:
    raise ValueError(f"train_precision must be one of {config_lib.TRAIN_PRECISIONS}, "
                     f"got {train_precision!r}")


def layer_norm(ln: tf.keras.layers.LayerNormalization, x: tf.Tensor,
               training: Optional[bool] = None) -> tf.Tensor:
  """``ln(x)`` over the last axis; in training calls with a hand-written gradient.

  Keras' LayerNormalization (unfused for epsilon < 1.001e-5) differentiates through
  ~15 elementwise ops; the closed-form gradient
  ``dx = r * (g*dy - mean(g*dy) - xhat * mean(g*dy * xhat))`` takes less CPU for
  forward + backward, a visible share of a default training step (the timings are in
  docs/benchmarks.md). Same float32 math as Keras (outputs within ~1e-6); inference
  calls use the Keras layer itself.
  """
  if not training:
    return ln(x)
  return _layer_norm_train(tf.cast(x, tf.float32), ln.gamma, ln.beta, ln.epsilon)


def _layer_norm_train(x, gamma, beta, epsilon):
  @tf.custom_gradient
  def norm(x, gamma, beta):
    mean = tf.reduce_mean(x, -1, keepdims=True)
    centred = x - mean
    r = tf.math.rsqrt(tf.reduce_mean(tf.square(centred), -1, keepdims=True) + epsilon)
    xhat = centred * r

    def grad(dy):
      dxhat = dy * gamma
      m1 = tf.reduce_mean(dxhat, -1, keepdims=True)
      m2 = tf.reduce_mean(dxhat * xhat, -1, keepdims=True)
      rows = tf.range(tf.rank(dy) - 1)
      return (r * (dxhat - m1 - xhat * m2), tf.reduce_sum(dy * xhat, rows),
              tf.reduce_sum(dy, rows))

    return xhat * gamma + beta, grad

  return norm(x, gamma, beta)


def _call(dense: tf.keras.layers.Dense, x: tf.Tensor) -> tf.Tensor:
  return dense(x)


def _project(dense: tf.keras.layers.Dense, x: tf.Tensor) -> tf.Tensor:
  """``dense(x)`` computed in ``x``'s dtype with the layer's float32 weights cast to it
  (the weights stay float32; their gradients come back float32 through the casts)."""
  kernel = tf.cast(dense.kernel, x.dtype)
  shape = tf.shape(x)
  y = tf.matmul(tf.reshape(x, [-1, kernel.shape[0]]), kernel)
  y = tf.nn.bias_add(y, tf.cast(dense.bias, x.dtype))
  y = tf.reshape(y, tf.concat([shape[:-1], [kernel.shape[1]]], 0))
  return dense.activation(y)


@tf.keras.utils.register_keras_serializable(package="melody")
class PlayTokens(tf.keras.layers.Layer):
  """Turns a padded sequence of plays into Transformer tokens.

  Math: for step ``i`` (0 = most recent)
  ``x_i = m_i * (e_i + P[i] + G[g_i] + W [c_i, s_i] + b)``, where ``e_i`` is the shared
  item embedding, ``P`` learned positions, ``G`` the time-gap bucket table, ``c_i`` and
  ``s_i`` the play's completion and skip, and ``m_i`` the padding mask. Without
  ``positional``, ``x_i = m_i * (e_i + W [c_i, s_i] + b)``: a token that does not depend
  on when the sequence is read, which a causal encoder needs to share one encoding
  among every later position.

  Usage:
    tokens = PlayTokens(dim=64, max_len=50, num_gap_buckets=12)(
        item_emb, completion, skip, gap_bucket, mask)

  Args:
    dim: token width (equals the item embedding width).
    max_len: sequence length (rows of the position table).
    num_gap_buckets: rows of the time-gap bucket table.
    positional: add the position and time-gap embeddings (relative to the moment the
      sequence is read); False ignores ``gap_bucket``.

  Input shapes: ``item_emb [B, L, dim]``, ``completion``, ``skip`` ``[B, L]`` float,
    ``gap_bucket [B, L]`` int, ``mask [B, L]`` bool.
  Output shape: ``[B, L, dim]``.
  """

  def __init__(self, dim: int, max_len: int, num_gap_buckets: int, positional: bool = True,
               **kwargs):
    super().__init__(**kwargs)
    for name, v in (("dim", dim), ("max_len", max_len),
                    ("num_gap_buckets", num_gap_buckets)):
      if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    self.dim = dim
    self.max_len = max_len
    self.num_gap_buckets = num_gap_buckets
    self.positional = positional
    if positional:
      self.positions = tf.keras.layers.Embedding(
          max_len, dim, name="position_embedding",
          embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02))
      self.gaps = tf.keras.layers.Embedding(
          num_gap_buckets, dim, name="gap_embedding",
          embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02))
    self.feedback = tf.keras.layers.Dense(dim, name="feedback_projection")

  def call(self, item_emb, completion, skip, gap_bucket, mask):
    x = item_emb
    if self.positional:   # built before the feedback projection: the weights' draw order
      x += self.positions(tf.range(tf.shape(item_emb)[1]))[tf.newaxis]
      x += self.gaps(tf.clip_by_value(tf.cast(gap_bucket, tf.int64), 0,
                                      self.num_gap_buckets - 1))
    fb = self.feedback(tf.stack([tf.cast(completion, tf.float32),
                                 tf.cast(skip, tf.float32)], axis=-1))
    return (x + fb) * tf.cast(mask, item_emb.dtype)[..., tf.newaxis]

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, max_len=self.max_len, num_gap_buckets=self.num_gap_buckets,
                  positional=self.positional)
    return config


@tf.keras.utils.register_keras_serializable(package="melody")
class TransformerBlock(tf.keras.layers.Layer):
  """One pre-LayerNorm Transformer encoder block with a key padding mask.

  Math: ``h = x + W_o MHA(LN(x), mask)`` with ``Q, K, V = LN(x) W_{q,k,v}`` and
  ``MHA = concat_h softmax(Q_h K_h^T / sqrt(d_h) + (1 - m) * -1e9) V_h``;
  ``y = h + W2 act(W1 LN(h))`` (``act`` relu by default: a cheaper training step on
  CPU than gelu, see docs/benchmarks.md). Padding keys get no attention weight; a fully
  padded sequence attends uniformly to padding, which is finite and later masked out by
  the callers. A ``causal`` block reads the sequence in time order (oldest first) and
  lets step ``i`` attend only to steps ``j <= i``, so no step sees a later one.

  Usage:
    y = TransformerBlock(dim=64, num_heads=4, ff_dim=128)(x, mask)

  Args:
    dim: model width.
    num_heads: attention heads; ``dim`` must be divisible by it.
    ff_dim: hidden width of the feed-forward sub-layer.
    dropout: dropout rate on the attention weights and sub-layer outputs.
    activation: feed-forward activation, "relu" or "gelu".
    train_precision: "float32", or "mixed_bfloat16": in training calls the projections,
      the attention and the feed-forward run in bfloat16 (float32 weights, LayerNorms
      and residual stream); inference calls are float32 either way, so serving scores
      do not depend on it. On CPUs with AVX512-BF16 training steps run faster (the
      ratio is in docs/benchmarks.md), on AVX2-only CPUs slower. "auto" picks one of
      the two for this host's hardware when the layer is constructed
      (:func:`ranking.hardware.resolve_train_precision`); the config keeps "auto".
    causal: attend only to the same or earlier steps (time order, oldest first).

  Input shapes: ``x [B, L, dim]``, ``mask [B, L]`` bool (True = real step).
  Output shape: ``[B, L, dim]``.
  """

  def __init__(self, dim: int, num_heads: int, ff_dim: int, dropout: float = 0.0,
               activation: str = "relu", train_precision: str = "float32",
               causal: bool = False, **kwargs):
    super().__init__(**kwargs)
    _check_precision(train_precision)
    if activation not in config_lib.FFN_ACTIVATIONS:
      raise ValueError(f"activation must be one of {config_lib.FFN_ACTIVATIONS}, "
                       f"got {activation!r}")
    for name, v in (("dim", dim), ("num_heads", num_heads), ("ff_dim", ff_dim)):
      if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    if dim % num_heads:
      raise ValueError(f"dim must be divisible by num_heads, got {dim} and {num_heads}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.dim = dim
    self.num_heads = num_heads
    self.ff_dim = ff_dim
    self.dropout = dropout
    self.activation = activation
    self.train_precision = train_precision
    self.causal = causal
    self.trains_in_bfloat16 = (
        hardware.resolve_train_precision(train_precision) == "mixed_bfloat16")
    self.head_dim = dim // num_heads
    self.ln_attention = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="ln_attention")
    # Plain projections + one 4-D transpose each: cheaper forward + backward on CPU than
    # Keras' MultiHeadAttention einsums or a fused 5-D QKV transpose (docs/benchmarks.md).
    self.query = tf.keras.layers.Dense(dim, name="query")
    self.key = tf.keras.layers.Dense(dim, name="key")
    self.value = tf.keras.layers.Dense(dim, name="value")
    self.attention_output = tf.keras.layers.Dense(dim, name="attention_output")
    self.ln_ffn = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="ln_ffn")
    self.ffn_in = tf.keras.layers.Dense(ff_dim, activation=activation, name="ffn_in")
    self.ffn_out = tf.keras.layers.Dense(dim, name="ffn_out")
    self.drop = tf.keras.layers.Dropout(dropout)

  def build(self, input_shape):
    # The sublayers are built here, in their call order (so the random initial weights
    # are the ones a lazy build gives), because the bfloat16 path reads their weights
    # without calling them.
    shape = tf.TensorShape(input_shape)
    self.ln_attention.build(shape)
    for dense in (self.query, self.key, self.value, self.attention_output):
      dense.build(shape)
    self.ln_ffn.build(shape)
    self.ffn_in.build(shape)
    self.ffn_out.build(shape[:-1].concatenate([self.ff_dim]))
    super().build(input_shape)

  def _drop(self, t, training):
    """Dropout in ``t``'s dtype (the Keras layer would cast bfloat16 to float32)."""
    if not self.dropout:
      return t
    return tf.cast(self.drop(t, training=training), t.dtype)

  def _self_attention(self, x, mask, training, project=None):
    project = project or _call
    batch, length = tf.shape(x)[0], tf.shape(x)[1]

    def heads(t):   # [B, L, dim] -> [B, H, L, dh]
      return tf.transpose(tf.reshape(t, [batch, length, self.num_heads, self.head_dim]),
                          [0, 2, 1, 3])

    q = heads(project(self.query, x) * tf.constant(self.head_dim ** -0.5, x.dtype))
    k, v = heads(project(self.key, x)), heads(project(self.value, x))
    logits = tf.matmul(q, k, transpose_b=True)   # [B, H, L, L]
    allowed = tf.cast(mask, x.dtype)[:, tf.newaxis, tf.newaxis, :]
    if self.causal:
      allowed *= tf.linalg.band_part(tf.ones([length, length], x.dtype), -1, 0)
    logits += (1.0 - allowed) * -1e9
    weights = self._drop(tf.nn.softmax(logits, axis=-1), training)
    out = tf.transpose(tf.matmul(weights, v), [0, 2, 1, 3])   # [B, L, H, dh]
    return project(self.attention_output, tf.reshape(out, [batch, length, self.dim]))

  def call(self, x, mask, training: Optional[bool] = None):
    if training and self.trains_in_bfloat16:
      low = lambda t: tf.cast(t, tf.bfloat16)   # noqa: E731
      project = _project
    else:
      low = lambda t: t   # noqa: E731
      project = _call
    a = self._self_attention(low(layer_norm(self.ln_attention, x, training)), mask,
                             training, project)
    x = x + tf.cast(self._drop(a, training), x.dtype)
    h = project(self.ffn_out, project(self.ffn_in, low(layer_norm(self.ln_ffn, x, training))))
    return x + tf.cast(self._drop(h, training), x.dtype)

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, num_heads=self.num_heads, ff_dim=self.ff_dim,
                  dropout=self.dropout, activation=self.activation,
                  train_precision=self.train_precision, causal=self.causal)
    return config


class PlaySequenceLayer(tf.keras.layers.Layer):
  """Base of the encoders of a padded play sequence: their hyper-parameters and config.

  Subclasses build their sub-layers in ``__init__`` after calling this one, from the
  attributes it sets (``encoder_args()`` passes them all on).

  Args:
    dim: model width.
    num_layers: Transformer blocks; 0 leaves the tokens unmixed (each play encoded
      alone, the sequence-free ablations of ``ModelConfig.sequence_model``).
    num_heads: attention heads per block.
    ff_dim: feed-forward width.
    max_len: sequence length.
    num_gap_buckets: time-gap buckets.
    dropout: dropout rate.
    activation: feed-forward activation of the blocks.
    train_precision: the blocks' precision in training calls (see
      :class:`TransformerBlock`).
    causal: read the sequence in time order (oldest first) with causal blocks and
      tokens without positions or gaps, so step ``i``'s output depends only on steps
      ``<= i`` and is the same whichever later moment the sequence is read at.
  """

  def __init__(self, dim: int, num_layers: int, num_heads: int, ff_dim: int, max_len: int,
               num_gap_buckets: int, dropout: float = 0.0, activation: str = "relu",
               train_precision: str = "float32", causal: bool = False, **kwargs):
    super().__init__(**kwargs)
    if num_layers < 0:
      raise ValueError(f"num_layers must be >= 0, got {num_layers}")
    _check_precision(train_precision)
    self.dim = dim
    self.num_layers = num_layers
    self.num_heads = num_heads
    self.ff_dim = ff_dim
    self.max_len = max_len
    self.num_gap_buckets = num_gap_buckets
    self.dropout = dropout
    self.activation = activation
    self.train_precision = train_precision
    self.causal = causal

  def encoder_args(self) -> Dict[str, object]:
    """The constructor arguments above, by name."""
    return dict(dim=self.dim, num_layers=self.num_layers, num_heads=self.num_heads,
                ff_dim=self.ff_dim, max_len=self.max_len,
                num_gap_buckets=self.num_gap_buckets, dropout=self.dropout,
                activation=self.activation, train_precision=self.train_precision,
                causal=self.causal)

  def get_config(self):
    config = super().get_config()
    config.update(self.encoder_args())
    return config


@tf.keras.utils.register_keras_serializable(package="melody")
class SequenceEncoder(PlaySequenceLayer):
  """Pre-LayerNorm Transformer encoder of the long-term play history.

  Math: ``X_0 = PlayTokens(...)``; ``X_k = Block_k(X_{k-1}, mask)`` for
  ``k = 1..num_layers``; output ``H = m * LN(X_K)`` (padding rows are zero). With
  ``num_layers = 0`` no play sees another: ``H = m * LN(X_0)``.

  Usage:
    enc = SequenceEncoder(dim=64, num_layers=2, num_heads=4, ff_dim=128, max_len=50,
                          num_gap_buckets=12)
    h = enc(item_emb, completion, skip, gap_bucket, mask)   # [B, 50, 64]

  Args: as :class:`PlaySequenceLayer`.

  Input shapes: as :class:`PlayTokens`.
  Output shape: ``[B, L, dim]`` float32.
  """

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    self.tokens = PlayTokens(self.dim, self.max_len, self.num_gap_buckets,
                             positional=not self.causal, name="tokens")
    self.blocks = [TransformerBlock(self.dim, self.num_heads, self.ff_dim, self.dropout,
                                    self.activation, self.train_precision, self.causal,
                                    name=f"block_{i}")
                   for i in range(self.num_layers)]
    self.ln_out = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="ln_out")

  def call(self, item_emb, completion, skip, gap_bucket, mask,
           training: Optional[bool] = None):
    x = self.tokens(item_emb, completion, skip, gap_bucket, mask)
    for block in self.blocks:
      x = block(x, mask, training=training)
    if not self.ln_out.built:   # the training path reads its weights without calling it
      self.ln_out.build(x.shape)
    return layer_norm(self.ln_out, x, training) * tf.cast(mask, x.dtype)[..., tf.newaxis]


def length_mask(length, max_len: int):
  """``[B, max_len]`` bool mask of the first ``length`` steps (most recent first)."""
  length = tf.reshape(tf.cast(length, tf.int32), [-1])
  return tf.sequence_mask(tf.clip_by_value(length, 0, max_len), max_len)
