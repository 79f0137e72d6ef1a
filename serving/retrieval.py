"""Candidate retrieval for ``recommend``: the catalogue index and the listener query.

This module owns how ``recommend`` finds candidates in the whole catalogue before they
are ranked: the index vectors (the model's normalized item embeddings, i.e. its shared
track + artist tables, with the popularity z-score appended), the listener's query
(the completion-weighted mean of the item embeddings of the history and session plays,
normalized, with a constant appended), and the two candidate sources that answer it,
each a ``tfrs.layers.factorized_top_k.BruteForce`` in the graph: the regular tracks and
the promoted ones (:class:`CatalogIndex`).

Promoted tracks are their own source because a promotion is a business decision, not a
match: a promoted track is seldom among a listener's nearest neighbours (it is new or
not yet popular), so a single index leaves it out of the pool, and then no fusion weight
on the exposure head (gamma) can place it. With its own source, the pool always holds
the listener's best-matching promoted tracks (``PROMO_POOL_SHARE`` of it), and fusion,
gamma and the mixing rules (promo spacing) decide how many reach the list, as the
policy and the promo controller intend.
"""

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from features import feature_spec
from serving import request_schema

X = feature_spec.xf
# Weight of the popularity z-score appended to the retrieval embeddings: enough to order
# a cold-start listener's (zero query) candidates by popularity, small next to a cosine.
RETRIEVAL_POPULARITY_WEIGHT = 0.05
# Share of a recommend pool taken from the promoted tracks (when the catalogue has any).
PROMO_POOL_SHARE = 0.1


def index_embeddings(model, table: Dict[str, np.ndarray], catalog_size: int) -> tf.Tensor:
  """``[C, d + 1]`` index vectors of the catalogue rows of a transformed catalogue.

  Args:
    model: the ``RankingModel`` (its ``items`` embeddings).
    table: ``serving.catalog.transformed_catalog`` output (``C + 1`` rows, OOV last).
    catalog_size: ``C``; the OOV row is not indexed.
  """
  c = catalog_size
  items = model.items(table[X("cand_track_id")][:c], table[X("cand_artist_id")][:c])
  pop = table[X("cand_popularity")][:c].astype(np.float32)[:, np.newaxis]
  return tf.concat([tf.math.l2_normalize(items, axis=-1), pop], axis=-1)


def listener_query(model, transformed: Dict[str, tf.Tensor]) -> tf.Tensor:
  """``[B, d + 1]`` retrieval query of listeners given their transformed features."""
  parts, weights = [], []
  for prefix in request_schema.SEQUENCES:
    ids = transformed[X(f"{prefix}_track_ids")]
    emb = model.items(ids, transformed[X(f"{prefix}_artist_ids")])              # [B, L, d]
    w = ((0.25 + tf.cast(transformed[X(f"{prefix}_completion")], tf.float32))
         * (1.0 - 0.5 * tf.cast(transformed[X(f"{prefix}_skip")], tf.float32))
         * tf.cast(tf.not_equal(ids, 0), tf.float32))
    parts.append(tf.reduce_sum(emb * w[..., tf.newaxis], axis=1))
    weights.append(tf.reduce_sum(w, axis=1, keepdims=True))
  query = tf.math.l2_normalize(tf.add_n(parts) / tf.maximum(tf.add_n(weights), 1e-6), axis=-1)
  pop = tf.fill(tf.stack([tf.shape(query)[0], 1]), RETRIEVAL_POPULARITY_WEIGHT)
  return tf.concat([query, pop], axis=-1)


class CatalogIndex:
  """The catalogue's regular and promoted rows in two exact top-k indexes.

  ``retrieve(query, pool)`` returns ``pool`` rows (fewer only when the catalogue holds
  fewer): the ``floor(PROMO_POOL_SHARE * pool)`` best promoted rows (more where the
  regular rows run out, at most every promoted track) and the best regular rows for the
  rest, regular first. The two
  sources are disjoint, so no row appears twice. Scores are the same dot product in both.

  Args:
    embeddings: ``[C, d + 1]`` index vectors (:func:`index_embeddings`).
    is_promo: ``[C]`` 0/1 promotion flags of the catalogue rows.
  """

  def __init__(self, embeddings: tf.Tensor, is_promo: np.ndarray):
    flags = np.asarray(is_promo).astype(bool)
    if flags.shape != (int(embeddings.shape[0]),):
      raise ValueError(f"is_promo must have shape [{embeddings.shape[0]}], got {flags.shape}")
    rows = np.arange(flags.size, dtype=np.int32)
    self._sources: List[Tuple[tfrs.layers.factorized_top_k.BruteForce, int]] = []
    for name, members in (("retrieval", rows[~flags]), ("promo_retrieval", rows[flags])):
      layer = tfrs.layers.factorized_top_k.BruteForce(name=name)
      if members.size:
        layer.index(tf.gather(embeddings, members), tf.constant(members))
      self._sources.append((layer, int(members.size)))
    self.regular_size, self.promo_size = (size for _, size in self._sources)

  @property
  def variables(self) -> List[tf.Variable]:
    return [v for layer, size in self._sources if size for v in layer.variables]

  def promo_count(self, pool: tf.Tensor) -> tf.Tensor:
    """How many of a pool of ``pool`` rows come from the promoted tracks: their share,
    or more where the regular tracks cannot fill the rest, at most all of them."""
    pool = tf.cast(pool, tf.int32)
    share = tf.cast(tf.math.floor(PROMO_POOL_SHARE * tf.cast(pool, tf.float32)), tf.int32)
    return tf.minimum(tf.maximum(share, pool - self.regular_size), self.promo_size)

  def retrieve(self, query: tf.Tensor, pool: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    """Scores ``[1, P]`` and catalogue rows ``[1, P]`` int32 of one listener's query."""
    pool = tf.cast(pool, tf.int32)
    promos = self.promo_count(pool)
    counts = (tf.minimum(pool - promos, self.regular_size), promos)
    scores, rows = [], []
    for (layer, size), count in zip(self._sources, counts):
      if size:
        found, ids = layer(query, k=count)
        scores.append(found)
        rows.append(tf.cast(ids, tf.int32))
    return tf.concat(scores, axis=1), tf.concat(rows, axis=1)
