"""Training the learned fusion: the listwise loss improves, the multipliers respond to
violated constraints, runs are deterministic, and logged slates pair with the world's
responses."""

import numpy as np
import pytest

from features import feature_spec
from ranking.fusion import learned
from simulation import fusion_policy
from simulation import fusion_training as training

S, K = 300, 8
CONFIG = training.TrainConfig(steps=60)


@pytest.fixture(scope="module")
def data():
  """Completion rises with interest and the exposure head, falls for promos; a promo's
  exposure value is its exposure head."""
  rng = np.random.default_rng(0)
  x = rng.random((S, K, len(learned.FEATURES)))
  x[..., 3] = rng.random((S, K)) < 0.25
  x[..., 4] = np.where(rng.random((S, K)) < 0.5, 1.0, -1.0)
  completion = np.clip(0.1 + 0.5 * x[..., 0] + 0.4 * x[..., 2] - 0.15 * x[..., 3]
                       + rng.normal(0, 0.05, (S, K)), 0, 1)
  return training.ListwiseData(
      features=x, cell=rng.integers(0, len(feature_spec.SEGMENTS)
                                    * len(feature_spec.ACTIVITIES), S),
      mask=rng.random((S, K)) < 0.9, completion=completion, exposure=x[..., 3] * x[..., 2],
      hazard=0.002 * x[..., 1])


@pytest.fixture(scope="module")
def unconstrained(data):
  return training.train(data, learned.LearnedFusionParams.from_fusion(), config=CONFIG)


def test_training_improves_the_listwise_objective(data, unconstrained):
  start = training.evaluate(data, learned.LearnedFusionParams.from_fusion(), CONFIG)
  end = training.evaluate(data, unconstrained.params, CONFIG)
  assert end["loss"] < 0.8 * start["loss"]
  assert end["completion"] > start["completion"] + 0.01
  assert unconstrained.history[-1]["loss"] < unconstrained.history[0]["loss"]
  # Paid listeners' subscription coefficient never moves from 0.
  paid = feature_spec.SEGMENTS.index("paid")
  assert np.all(unconstrained.params.table()[paid, :, 1] == 0)


def test_multipliers_rise_while_a_constraint_is_violated(data, unconstrained):
  start = training.evaluate(data, learned.LearnedFusionParams.from_fusion(), CONFIG)
  reached = training.evaluate(data, unconstrained.params, CONFIG)["exposure"]
  target = 1.5 * max(start["exposure"], reached)
  result = training.train(data, learned.LearnedFusionParams.from_fusion(),
                          training.Constraints(exposure=target, conversion=0.0), CONFIG)
  lam = [row["lambda_exposure"] for row in result.history]
  violated = [row["exposure"] < target for row in result.history]
  assert violated[0] and lam[0] > 0
  # While violated, the multiplier grows step after step.
  first = violated.index(False) if False in violated else len(violated)
  assert all(b > a for a, b in zip(lam[:first - 1], lam[1:first]))
  assert training.evaluate(data, result.params, CONFIG)["exposure"] > 1.3 * reached
  # A constraint that holds all along leaves its multiplier at 0.
  assert all(row["lambda_conversion"] == 0 for row in result.history)


def test_training_is_deterministic(data, unconstrained):
  again = training.train(data, learned.LearnedFusionParams.from_fusion(), config=CONFIG)
  assert again.params == unconstrained.params


def test_bad_training_data_and_config_are_refused():
  with pytest.raises(ValueError, match="features"):
    training.ListwiseData(features=np.zeros((2, 3, 4)), cell=np.zeros(2), mask=np.zeros((2, 3)),
                          completion=np.zeros((2, 3)), exposure=np.zeros((2, 3)),
                          hazard=np.zeros((2, 3)))
  with pytest.raises(ValueError, match="temperature"):
    training.TrainConfig(temperature=0)


def test_logged_slates_pair_with_the_responses():
  pos = np.array([[2, 0, -1], [1, 2, 0]])
  heads = {h: np.arange(6, dtype=np.float64).reshape(2, 3) + i
           for i, h in enumerate(fusion_policy.HEAD_KEYS)}
  log = [{"pos": pos, **heads, "promo": np.array([[0, 0, 1], [1, 0, 0]]),
          "familiar": np.array([[1, 0, 0], [0, 0, 1]]), "segment": np.array([4, 0]),
          "activity": np.array([2, 1])}]
  resp = [{"played": np.array([[True, True, True], [True, False, False]]),
           "completion": np.full((2, 3), 0.5), "exposure": np.zeros((2, 3)),
           "hazard": np.zeros((2, 3))}]
  data = fusion_policy.listwise_data(log, resp)
  np.testing.assert_array_equal(data.features[0, 0], [2, 3, 4, 1, -1])
  np.testing.assert_array_equal(data.features[1, 1], [5, 6, 7, 0, 1])
  np.testing.assert_array_equal(data.cell, [4 * len(feature_spec.ACTIVITIES) + 2, 1])
  # Unplayed tracks and unfilled positions are masked out.
  np.testing.assert_array_equal(data.mask, [[True, True, False], [True, False, False]])
  with pytest.raises(ValueError, match="ranked batches"):
    fusion_policy.listwise_data(log, resp * 2)
