"""The two candidate sources of recommend's retrieval: regular and promoted tracks."""

import numpy as np
import tensorflow as tf

from serving import retrieval


def _index(c=40, promos=(3, 11, 17, 25, 31), d=4, seed=0):
  rng = np.random.default_rng(seed)
  emb = tf.constant(rng.normal(size=(c, d)).astype(np.float32))
  flags = np.zeros(c, np.int64)
  flags[list(promos)] = 1
  return emb, flags, retrieval.CatalogIndex(emb, flags)


def test_a_pool_holds_the_best_promoted_rows_and_the_best_regular_rows():
  emb, flags, index = _index()
  query = tf.constant([[1.0, -0.5, 0.25, 2.0]])
  scores, rows = index.retrieve(query, tf.constant(20))
  rows, scores = rows.numpy()[0], scores.numpy()[0]
  # 10% of 20 from the promoted tracks, regular first, no row twice.
  assert rows.size == 20 and len(set(rows)) == 20
  assert flags[rows[:18]].sum() == 0 and flags[rows[18:]].sum() == 2
  dots = emb.numpy() @ query.numpy()[0]
  regular = np.flatnonzero(flags == 0)
  promoted = np.flatnonzero(flags == 1)
  assert list(rows[:18]) == list(regular[np.argsort(-dots[regular])][:18])
  assert list(rows[18:]) == list(promoted[np.argsort(-dots[promoted])][:2])
  np.testing.assert_allclose(scores, dots[rows], rtol=1e-5)


def test_small_pools_and_catalogues_without_promotions():
  emb, _, index = _index()
  _, rows = index.retrieve(tf.ones([1, 4]), tf.constant(9))   # floor(0.9): no promo
  assert rows.shape == (1, 9) and index.promo_count(tf.constant(9)).numpy() == 0
  # Fewer regular tracks than the pool's regular part: promoted ones fill the rest, so
  # a pool as large as the catalogue is the whole catalogue.
  assert index.promo_count(tf.constant(38)).numpy() == 3
  assert index.promo_count(tf.constant(80)).numpy() == 5
  _, rows = index.retrieve(tf.ones([1, 4]), tf.constant(40))
  assert sorted(rows.numpy()[0]) == list(range(40))
  plain = retrieval.CatalogIndex(emb, np.zeros(40, np.int64))
  assert plain.promo_size == 0 and len(plain.variables) == len(index.variables) // 2
  _, rows = plain.retrieve(tf.ones([1, 4]), tf.constant(30))
  assert rows.shape == (1, 30)


def test_flags_must_match_the_catalogue():
  emb, _, _ = _index()
  try:
    retrieval.CatalogIndex(emb, np.zeros(39))
  except ValueError as e:
    assert "is_promo must have shape [40]" in str(e)
  else:
    raise AssertionError("a wrong-length flag array was accepted")
