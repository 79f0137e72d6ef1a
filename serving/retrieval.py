"""Candidate retrieval for ``recommend``: the catalogue index and the listener query.

This module owns how ``recommend`` finds candidates in the whole catalogue before they
are ranked: the index vectors (the model's normalized item embeddings, i.e. its shared
track + artist tables, with the popularity z-score appended) and the listener's query
(the completion-weighted mean of the item embeddings of the history and session plays,
normalized, with a constant appended), scored by
``tfrs.layers.factorized_top_k.BruteForce`` in the graph.
"""

from typing import Dict

import numpy as np
import tensorflow as tf

from features import feature_spec
from serving import request_schema

X = feature_spec.xf
# Weight of the popularity z-score appended to the retrieval embeddings: enough to order
# a cold-start listener's (zero query) candidates by popularity, small next to a cosine.
RETRIEVAL_POPULARITY_WEIGHT = 0.05


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
