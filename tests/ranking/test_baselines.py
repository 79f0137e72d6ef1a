"""Tests of the reference rankers of ``ranking.baselines``: the popularity (track mean)
baseline on hand-made arrays with known answers, and the linear baseline's math, its
training and its config round trip.
"""

import numpy as np
import pytest

from features import feature_spec
from ranking import config as config_lib
from ranking import model as model_lib
from ranking.baselines import linear
from ranking.baselines import popularity
from melody_testing import synthetic_batches

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

TRACK = feature_spec.xf("cand_track_id")


def _arrays(tracks, skip, weight):
  return {TRACK: np.asarray(tracks, np.int64),
          "interest_skip": np.asarray(skip, np.float32),
          "interest_skip_weight": np.asarray(weight, np.float32)}


def test_track_mean_shrinks_towards_the_global_mean_and_respects_weights():
  # Track 3: two weighted rows (1, 0) and one row of weight 0; track 5: one row (1).
  train = _arrays([3, 3, 3, 5], [1.0, 0.0, 1.0, 1.0], [1.0, 1.0, 0.0, 1.0])
  base = popularity.TrackMeanBaseline(["interest_skip"], prior_strength=1.0).fit(train)
  ybar = 2.0 / 3.0                                 # weighted global mean
  got = base.predict({TRACK: np.array([3, 5, 9, 10**7])})["interest_skip"]
  np.testing.assert_allclose(got, [(1.0 + ybar) / 3.0, (1.0 + ybar) / 2.0, ybar, ybar],
                             rtol=1e-6)
  raw = popularity.TrackMeanBaseline(["interest_skip"], prior_strength=0.0).fit(train)
  np.testing.assert_allclose(raw.predict({TRACK: np.array([3, 5])})["interest_skip"],
                             [0.5, 1.0])


def test_track_mean_rejects_bad_arguments():
  with pytest.raises(ValueError, match="prior_strength must be >= 0, got -1"):
    popularity.TrackMeanBaseline(prior_strength=-1)
  with pytest.raises(ValueError, match="unknown label 'clicks'"):
    popularity.TrackMeanBaseline(["clicks"])
  with pytest.raises(ValueError, match="before fit"):
    popularity.TrackMeanBaseline().predict({TRACK: np.array([1])})


def test_linear_features_cover_every_transformed_feature_once():
  names = linear.ID_FEATURES + linear.ID_LIST_FEATURES + linear.FLOAT_FEATURES
  assert sorted(names) == sorted(feature_spec.TRANSFORMED_FEATURES)
  assert feature_spec.xf("hist_track_ids") in linear.ID_LIST_FEATURES
  assert feature_spec.xf("sess_skip") in linear.FLOAT_FEATURES


def test_linear_logit_is_the_sum_of_its_weights():
  tf.keras.utils.set_random_seed(0)
  model = linear.LinearRanker(["interest_skip", "exposure"])
  b = synthetic_batches.synthetic_batch(4, seed=1)
  tensors = {k: tf.constant(v) for k, v in b.items()}
  base = model.logits(tensors)
  # One unit on the candidate track's weight for exposure moves only the exposure logit,
  # by exactly one for the rows of that track.
  track = int(b[TRACK][0])
  table = model.id_weights[TRACK].embeddings
  table.assign(tf.tensor_scatter_nd_update(table, [[track, 1]], [1.0]))
  moved = model.logits(tensors)
  rows = (b[TRACK] == track).astype(np.float32)
  np.testing.assert_allclose(moved["exposure"] - base["exposure"], rows, atol=1e-6)
  np.testing.assert_allclose(moved["interest_skip"], base["interest_skip"], atol=1e-6)
  # A history list contributes the mean of its non-padding ids' weights.
  hist = feature_spec.xf("hist_track_ids")
  ids = b[hist][1]
  real = ids[ids != 0]
  hist_table = model.id_weights[hist].embeddings
  hist_table.assign(tf.tensor_scatter_nd_update(hist_table, [[int(real[0]), 0]], [2.0]))
  after = model.logits(tensors)["interest_skip"].numpy()
  assert after[1] - moved["interest_skip"].numpy()[1] == pytest.approx(
      2.0 * np.sum(real == real[0]) / len(real), rel=1e-5)


def test_linear_trains_with_the_ranking_optimizers_and_round_trips():
  tf.keras.utils.set_random_seed(0)
  tc = config_lib.TrainConfig(batch_size=64)
  model = linear.LinearRanker(feature_spec.LABEL_KEYS, tc)
  b = {k: tf.constant(v) for k, v in synthetic_batches.synthetic_batch(64, seed=2).items()}
  model.compile(model_lib.make_optimizer(model, tc))
  first = float(model.compute_loss(b))
  sparse = {id(v) for v in model.sparse_trainable_variables}
  model.fit(tf.data.Dataset.from_tensors(b).repeat(), steps_per_epoch=20, verbose=0)
  assert float(model.compute_loss(b)) < 0.9 * first
  assert len(sparse) == 7      # user, and the track and artist tables of three places
  assert {id(v) for v in model.dense_trainable_variables}.isdisjoint(sparse)
  copy = linear.LinearRanker.from_config(model.get_config())
  assert copy.labels == model.labels and copy.train_config == tc
