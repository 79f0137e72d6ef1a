"""Shared id embeddings: one track table and one artist table for every place ids occur.

The long-term history, the short-term session and the candidate all look up their
track and artist ids in the *same* tables, so what the model learns about a track from
the listener's plays transfers to the track as a candidate. Row 0 is padding (the
transformed-id convention of ``features.feature_spec``) and embeds to zeros.
"""

import tensorflow as tf

from features import feature_spec
@tf.keras.utils.register_keras_serializable(package="melody")
class ItemEmbedding(tf.keras.layers.Layer):
  """Embeds (track id, artist id) pairs as the sum of a track and an artist vector.

  Math: ``e(t, a) = m(t) * (T[t] + A[a])`` with ``m(t) = 1[t != 0]``, where ``T`` and
  ``A`` are the shared track and artist tables of width ``dim``; padding (id 0) maps
  to the zero vector whatever the table holds.

  Usage:
    emb = ItemEmbedding(dim=64)
    hist = emb(hist_track_ids, hist_artist_ids)   # [B, L, 64]
    cand = emb(cand_track_id, cand_artist_id)     # [B, 64] (same tables)

  Args:
    dim: embedding width.
    track_vocab: rows of the track table (padding + vocabulary + OOV buckets).
    artist_vocab: rows of the artist table.
    initializer_stddev: stddev of the truncated-normal initializer.

  Input shapes: two int tensors of any equal shape ``S``.
  Output shape: ``S + [dim]``.
  """

  def __init__(self, dim: int, track_vocab: int = feature_spec.vocab_size("track"),
               artist_vocab: int = feature_spec.vocab_size("artist"),
               initializer_stddev: float = 0.05, **kwargs):
    super().__init__(**kwargs)
    for name, v in (("dim", dim), ("track_vocab", track_vocab),
                    ("artist_vocab", artist_vocab)):
      if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    if initializer_stddev <= 0:
      raise ValueError(f"initializer_stddev must be positive, got {initializer_stddev}")
    self.dim = dim
    self.track_vocab = track_vocab
    self.artist_vocab = artist_vocab
    self.initializer_stddev = initializer_stddev
    self.track_table = tf.keras.layers.Embedding(
        track_vocab, dim, name="track_embedding",
        embeddings_initializer=tf.keras.initializers.TruncatedNormal(
            stddev=initializer_stddev))
    self.artist_table = tf.keras.layers.Embedding(
        artist_vocab, dim, name="artist_embedding",
        embeddings_initializer=tf.keras.initializers.TruncatedNormal(
            stddev=initializer_stddev))

  def call(self, track_ids, artist_ids):
    track_ids = tf.cast(track_ids, tf.int64)
    artist_ids = tf.cast(artist_ids, tf.int64)
    e = self.track_table(track_ids) + self.artist_table(artist_ids)
    mask = tf.cast(tf.not_equal(track_ids, 0), e.dtype)[..., tf.newaxis]
    return e * mask

  def get_config(self):
    config = super().get_config()
    config.update(dim=self.dim, track_vocab=self.track_vocab,
                  artist_vocab=self.artist_vocab,
                  initializer_stddev=self.initializer_stddev)
    return config


@tf.keras.utils.register_keras_serializable(package="melody")
class MaskedMeanEmbedding(tf.keras.layers.Layer):
  """Mean of the embeddings of a padded id list (e.g. a track's tags).

  Math: ``e = sum_j 1[x_j != 0] E[x_j] / max(1, sum_j 1[x_j != 0])``.

  Usage:
    tags = MaskedMeanEmbedding(vocab=feature_spec.vocab_size("tag"), dim=64)(cand_tags)  # [B, 64]

  Args:
    vocab: rows of the table (row 0 is padding).
    dim: embedding width.

  Input shape: ``[B, T]`` int ids, 0 = padding.
  Output shape: ``[B, dim]``.
  """

  def __init__(self, vocab: int, dim: int, **kwargs):
    super().__init__(**kwargs)
    if vocab <= 0:
      raise ValueError(f"vocab must be positive, got {vocab}")
    if dim <= 0:
      raise ValueError(f"dim must be positive, got {dim}")
    self.vocab = vocab
    self.dim = dim
    self.table = tf.keras.layers.Embedding(
        vocab, dim, embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.05),
        name="table")

  def call(self, ids):
    ids = tf.cast(ids, tf.int64)
    mask = tf.cast(tf.not_equal(ids, 0), tf.float32)[..., tf.newaxis]
    total = tf.reduce_sum(self.table(ids) * mask, axis=-2)
    return total / tf.maximum(tf.reduce_sum(mask, axis=-2), 1.0)

  def get_config(self):
    config = super().get_config()
    config.update(vocab=self.vocab, dim=self.dim)
    return config


@tf.keras.utils.register_keras_serializable(package="melody")
class OovDropout(tf.keras.layers.Layer):
  """During training, sends a random share of known ids to the OOV buckets.

  Listeners the vocabulary has never seen (every listener of a new cohort, and the eval
  split, which holds out whole listeners) map to OOV buckets whose rows no training
  example ever reaches, so they keep their random initial values and feed noise into
  every layer that reads the id. Sending a fraction ``rate`` of the known ids to the
  OOV rows while training teaches those rows "a listener we know nothing about" (the
  id dropout of cold-start recommenders, e.g. DropoutNet, Volkovs et al. 2017).

  Math: for a known id ``x`` (``1 <= x <= top_k``) in training,
  ``x' = top_k + 1 + (x mod num_oov)`` with probability ``rate``, else ``x``; padding
  (0) and ids already in the OOV range are kept; outside training ``x' = x``.

  Usage:
    user_ids = OovDropout(0.25, top_k=50_000, num_oov=50)(user_ids, training=True)

  Args:
    rate: probability of replacing a known id, in ``[0, 1)``.
    top_k: vocabulary entries (ids ``1..top_k``).
    num_oov: OOV buckets (ids ``top_k + 1 .. top_k + num_oov``).

  Input shape: int ids of any shape. Output: int64 ids of the same shape.
  """

  def __init__(self, rate: float, top_k: int, num_oov: int, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"rate must be in [0, 1), got {rate}")
    if top_k <= 0 or num_oov <= 0:
      raise ValueError(f"top_k and num_oov must be positive, got {top_k} and {num_oov}")
    self.rate = float(rate)
    self.top_k = int(top_k)
    self.num_oov = int(num_oov)

  def call(self, ids, training=None):
    ids = tf.cast(ids, tf.int64)
    if training is None or training is False or self.rate == 0.0:
      return ids
    known = tf.logical_and(ids > 0, ids <= self.top_k)
    drop = tf.logical_and(known, tf.random.uniform(tf.shape(ids)) < self.rate)
    if isinstance(training, tf.Tensor):   # a symbolic learning phase
      drop = tf.logical_and(drop, tf.cast(training, tf.bool))
    return tf.where(drop, self.top_k + 1 + ids % self.num_oov, ids)

  def get_config(self):
    config = super().get_config()
    config.update(rate=self.rate, top_k=self.top_k, num_oov=self.num_oov)
    return config
