"""The trained next-track scorers of the ranking benchmark's 30Music comparison.

Both read a listener's last ``max_len`` plays (oldest first, left-padded with track 0),
predict the next track at every position, and train sequence-level with the same loss,
optimiser and budget: at every real position a softmax over the played next track and
``negatives`` tracks drawn uniformly from the training vocabulary (shared by the batch;
uniform draws need no log-q correction). A candidate's score is the dot product of the
last position's output with the candidate's vector.

* ``melody``: Melody's own layers, ``ranking.layers.embeddings.ItemEmbedding`` (track +
  artist vectors, the same tables for history and candidates) and the causal
  ``ranking.layers.sequence_encoder.SequenceEncoder`` (2 blocks, d 64, the tokens of
  ``ModelConfig.sequence_model = "causal"``; completion and skip are 0, 30Music has
  neither).
* ``sasrec``: a SASRec-style model written here with plain TF ops: a track table with
  learned positions, 2 pre-LayerNorm causal self-attention blocks, the same track table
  scoring candidates; no artist.
"""

from typing import Dict

import numpy as np

D_MODEL = 64
NUM_HEADS = 2
NUM_LAYERS = 2
DROPOUT = 0.2


def _sasrec(tf, vocab: int, max_len: int):
  """The SASRec-style model: ``(tracks [B, L]) -> [B, L, d]`` and its item table."""

  class SasRec(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.items = tf.keras.layers.Embedding(vocab, D_MODEL, name="items")
      self.positions = tf.keras.layers.Embedding(max_len, D_MODEL, name="positions")
      self.attn = [tf.keras.layers.MultiHeadAttention(NUM_HEADS, D_MODEL // NUM_HEADS,
                                                      dropout=DROPOUT)
                   for _ in range(NUM_LAYERS)]
      self.ff = [tf.keras.Sequential([tf.keras.layers.Dense(D_MODEL, activation="relu"),
                                      tf.keras.layers.Dense(D_MODEL)])
                 for _ in range(NUM_LAYERS)]
      self.ln = [tf.keras.layers.LayerNormalization(epsilon=1e-6)
                 for _ in range(2 * NUM_LAYERS + 1)]
      self.drop = tf.keras.layers.Dropout(DROPOUT)

    def item_vectors(self, tracks, artists):
      del artists   # SASRec reads track ids only
      return self.items(tracks)

    def call(self, tracks, artists, training=False):
      del artists
      mask = tf.not_equal(tracks, 0)
      x = self.items(tracks) * (D_MODEL ** 0.5) + self.positions(tf.range(max_len))
      x = self.drop(x, training=training) * tf.cast(mask, tf.float32)[..., None]
      causal = tf.linalg.band_part(tf.ones([max_len, max_len], tf.bool), -1, 0)
      attend = tf.logical_and(causal[None], mask[:, None, :])
      for i in range(NUM_LAYERS):
        h = self.ln[2 * i](x)
        x = x + self.attn[i](h, h, attention_mask=attend, training=training)
        x = x + self.drop(self.ff[i](self.ln[2 * i + 1](x)), training=training)
        x = x * tf.cast(mask, tf.float32)[..., None]
      return self.ln[-1](x)

  return SasRec()


def _melody(tf, vocab: int, artist_vocab: int, max_len: int):
  """Melody's item embedding and causal sequence encoder, as a next-track model."""
  from ranking.layers import embeddings  # pylint: disable=g-import-not-at-top
  from ranking.layers import sequence_encoder  # pylint: disable=g-import-not-at-top

  class MelodyNextTrack(tf.keras.Model):

    def __init__(self):
      super().__init__()
      self.items = embeddings.ItemEmbedding(D_MODEL, track_vocab=vocab,
                                            artist_vocab=artist_vocab)
      self.encoder = sequence_encoder.SequenceEncoder(
          dim=D_MODEL, num_layers=NUM_LAYERS, num_heads=NUM_HEADS, ff_dim=2 * D_MODEL,
          max_len=max_len, num_gap_buckets=2, dropout=DROPOUT, causal=True)

    def item_vectors(self, tracks, artists):
      return self.items(tracks, artists)

    def call(self, tracks, artists, training=False):
      mask = tf.not_equal(tracks, 0)
      zeros = tf.zeros(tf.shape(tracks), tf.float32)
      return self.encoder(self.items(tracks, artists), zeros, zeros,
                          tf.zeros(tf.shape(tracks), tf.int64), mask, training=training)

  return MelodyNextTrack()


MODELS = ("melody", "sasrec")


def train_and_score(name: str, train: Dict[str, np.ndarray], cases: Dict[str, np.ndarray],
                    vocab: int, artist_vocab: int, steps: int, batch_size: int,
                    negatives: int, seed: int) -> np.ndarray:
  """Trains model ``name`` sequence-level and scores the evaluation cases.

  Args:
    name: one of :data:`MODELS`.
    train: ``tracks``, ``artists`` ``[S, L + 1]`` int windows, left-padded with 0.
    cases: ``tracks``, ``artists`` ``[C, L]`` histories and ``cand_tracks``,
      ``cand_artists`` ``[C, N]`` candidates.
    vocab: track ids are ``1 .. vocab - 1``.
    artist_vocab: artist ids are ``0 .. artist_vocab - 1``.
    steps: optimiser steps.
    batch_size: windows per step.
    negatives: uniform negatives per step, shared by its positions.
    seed: seed of the weights, the batches and the negatives.

  Returns:
    ``[C, N]`` scores.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  max_len = train["tracks"].shape[1] - 1
  if name == "melody":
    model = _melody(tf, vocab, artist_vocab, max_len)
  elif name == "sasrec":
    model = _sasrec(tf, vocab, max_len)
  else:
    raise ValueError(f"unknown next-track model {name!r}; known: {MODELS}")
  optimizer = tf.keras.optimizers.Adam(1e-3)
  track_artist = np.zeros(vocab, np.int64)
  track_artist[train["tracks"].ravel()] = train["artists"].ravel()
  track_artist = tf.constant(track_artist)

  @tf.function
  def step(tracks, artists, neg):
    x_t, x_a, y = tracks[:, :-1], artists[:, :-1], tracks[:, 1:]
    weight = tf.cast(tf.logical_and(tf.not_equal(x_t, 0), tf.not_equal(y, 0)), tf.float32)
    with tf.GradientTape() as tape:
      h = model(x_t, x_a, training=True)                                  # [B, L, d]
      pos = tf.reduce_sum(h * model.item_vectors(y, artists[:, 1:]), -1)  # [B, L]
      neg_logits = tf.einsum("bld,nd->bln", h,
                             model.item_vectors(neg, tf.gather(track_artist, neg)))
      # A drawn negative that is the played track is not a negative.
      neg_logits += tf.where(tf.equal(y[..., None], neg[None, None]), -1e9, 0.0)
      logits = tf.concat([pos[..., None], neg_logits], -1)
      loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
          tf.zeros(tf.shape(pos), tf.int32), logits)
      loss = tf.reduce_sum(loss * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
    grads = tape.gradient(loss, model.trainable_variables)
    optimizer.apply_gradients(zip(grads, model.trainable_variables))
    return loss

  rng = np.random.default_rng(seed)
  for _ in range(steps):
    rows = rng.integers(0, len(train["tracks"]), batch_size)
    neg = rng.integers(1, vocab, negatives)
    step(tf.constant(train["tracks"][rows]), tf.constant(train["artists"][rows]),
         tf.constant(neg))
  scores = []
  for lo in range(0, len(cases["tracks"]), 512):
    sl = slice(lo, lo + 512)
    h = model(tf.constant(cases["tracks"][sl]), tf.constant(cases["artists"][sl]))[:, -1]
    c = model.item_vectors(tf.constant(cases["cand_tracks"][sl]),
                           tf.constant(cases["cand_artists"][sl]))
    scores.append(tf.einsum("bd,bnd->bn", h, c).numpy())
  return np.concatenate(scores)
