"""Tests of melody_testing.synthetic_batches: batches match the transformed-feature contract."""

import numpy as np
import pytest

from features import feature_spec
from melody_testing import synthetic_batches


def test_batch_matches_transformed_features():
  b = synthetic_batches.synthetic_batch(32, seed=4)
  assert set(b) == set(feature_spec.TRANSFORMED_FEATURES) | set(feature_spec.PASSTHROUGH_KEYS)
  for name, (dtype, length, card) in feature_spec.TRANSFORMED_FEATURES.items():
    assert b[name].dtype == (np.int64 if dtype == "int64" else np.float32), name
    assert b[name].shape == ((32,) if length == 1 else (32, length)), name
    if card:
      assert b[name].min() >= 0 and b[name].max() < card, name
  # Padding after the length, ids 0 there (the id-0 = padding convention).
  lens = b[feature_spec.xf("hist_len")]
  ids = b[feature_spec.xf("hist_track_ids")]
  assert all(np.all(ids[i, lens[i]:] == 0) and np.all(ids[i, :lens[i]] > 0)
             for i in range(32))
  assert set(np.unique(b[feature_spec.weight_key("interest_like")])) <= {0.0, 1.0}


def test_batch_is_deterministic_and_has_the_promo_conflict():
  a, b = synthetic_batches.synthetic_batch(16, seed=9), synthetic_batches.synthetic_batch(16,
                                                                                          seed=9)
  assert all(np.array_equal(a[k], b[k]) for k in a)
  big = synthetic_batches.synthetic_batch(4000, seed=1)
  promo = big[feature_spec.xf("cand_is_promo")] == 1
  assert big["interest_completion"][promo].mean() < big["interest_completion"][~promo].mean()
  assert big["exposure"][promo].mean() > 0 and np.all(big["exposure"][~promo] == 0)
  with pytest.raises(ValueError, match="batch_size must be positive, got 0"):
    synthetic_batches.synthetic_batch(0)
