"""Tests of ranking.fusion.ordering: the tie-break rule in TF and numpy, on the fusion
kernels' own scores, and the top_k tie order the serving graph's retrieval relies on."""

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs
from hypothesis import given, settings, strategies as st

from ranking.fusion import kernel_np
from ranking.fusion import ordering
from ranking.fusion.kernel_tf import ScoreFusion

N = 16
_NEAR = float(np.nextafter(np.float32(0.5), np.float32(1.0)))   # one float32 ulp above 0.5
# Exact ties (repeats, 0.0 and -0.0), a one-ulp near tie, and the values the rule names.
VALUES = (0.0, -0.0, 0.5, _NEAR, 1.0, -1.0, float("nan"), float("inf"), -float("inf"))


def _definition(scores, valid):
  """The rule, written out: valid first, score desc (NaN = -inf), lower index first."""
  key = lambda i: (not valid[i], -(-np.inf if np.isnan(scores[i]) else scores[i]), i)  # noqa: E731
  return sorted(range(len(scores)), key=key)


@st.composite
def _rows(draw):
  b = draw(st.integers(1, 4))
  scores = draw(st.lists(st.lists(st.sampled_from(VALUES), min_size=N, max_size=N),
                         min_size=b, max_size=b))
  valid = draw(st.lists(st.lists(st.booleans(), min_size=N, max_size=N),
                        min_size=b, max_size=b))
  return np.array(scores, np.float32), np.array(valid, bool)


@settings(max_examples=60, deadline=None)
@given(rows=_rows(), with_valid=st.booleans())
def test_tf_and_numpy_order_follow_the_rule(rows, with_valid):
  scores, valid = rows
  if not with_valid:
    valid = np.ones_like(valid)
  mask = valid if with_valid else None
  want = np.array([_definition(s, v) for s, v in zip(scores, valid)])
  got_tf = ordering.order_tf(tf.constant(scores), None if mask is None else tf.constant(mask))
  np.testing.assert_array_equal(got_tf.numpy(), want)
  np.testing.assert_array_equal(ordering.order_np(scores, mask), want)
  np.testing.assert_array_equal(ordering.order_np(scores.astype(np.float64), mask), want)


def _tied_request(seed: int):
  """Fusion inputs whose candidates are copies of a few originals (same heads, signals
  and id), so fused scores tie exactly within each kernel; B=3, no padding.

  Returns:
    ``(inputs, src)``: the fusion inputs and ``[B, N]`` the original of each candidate.
  """
  rng = np.random.default_rng(seed)
  b, originals = 3, 5
  src = rng.integers(0, originals, (b, N))
  base = {h: rng.random((b, originals)).astype(np.float32)
          for h in ("interest", "subscription", "exposure")}
  base["familiar"] = (rng.random((b, originals)) < 0.5).astype(np.float32)
  base["candidate_ids"] = rng.integers(0, 1000, (b, originals), dtype=np.int64)
  x = {k: np.take_along_axis(v, src, axis=1) for k, v in base.items()}
  x["segment"] = np.array([1, 2, 3], np.int64)
  x["activity"] = np.array([1, 4, 2], np.int64)
  x["seed"] = np.array([5, 9, -1], np.int64)
  # Row 2 overrides every weight with 0 and explores nothing: its scores are the context
  # term alone, so only familiar / unfamiliar tell its candidates apart.
  x["override_weights"] = np.array([[-1, -1, -1], [-1, -1, -1], [0, 0, 0]], np.float32)
  x["override"] = np.array([False, False, True])
  return x, src


def test_both_kernels_give_tied_copies_the_index_order():
  for seed in range(3):
    x, src = _tied_request(seed)
    score_np = kernel_np.fuse(x)["score"]
    score_tf = ScoreFusion()({k: tf.constant(v) for k, v in x.items()})["score"]
    order_np = ordering.order_np(score_np)
    order_tf = ordering.order_tf(score_tf).numpy()
    np.testing.assert_array_equal(order_tf, order_np)
    for s, order, row_src in zip(np.asarray(score_tf), order_tf, src):
      # Copies of one original tie exactly; every set of equal scores is listed
      # consecutively, by index.
      for o in np.unique(row_src):
        assert len(set(s[row_src == o].tolist())) == 1
      for value in np.unique(s):
        tied = np.flatnonzero(s == value)
        at = np.flatnonzero(np.isin(order, tied))
        assert order[at].tolist() == tied.tolist()
        assert at.tolist() == list(range(at[0], at[0] + len(tied)))
    assert len(np.unique(np.asarray(score_tf)[2])) <= 2   # the all-zero-weights row


def test_top_k_and_retrieval_break_ties_to_the_lower_index():
  values = tf.constant([[0.5, 1.0, 0.5, 1.0, 0.2, 1.0]])
  _, idx = tf.math.top_k(values, k=5)
  np.testing.assert_array_equal(idx.numpy(), [[1, 3, 5, 0, 2]])
  # A catalogue with repeated vectors: retrieval scores tie exactly, rows come lowest
  # first (the serving graph's recommend pool and the intent source both use this).
  vectors = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
  index = tfrs.layers.factorized_top_k.BruteForce(k=4)
  index.index(vectors, tf.range(5, dtype=tf.int32))
  _, rows = index(tf.constant([[1.0, 0.0], [0.0, 2.0]]), k=4)
  np.testing.assert_array_equal(rows.numpy(), [[0, 2, 4, 1], [1, 3, 0, 2]])
