"""Warm start from a SavedModel that tracks the ranking weights as ``model_variables``
(what ``serving.export`` writes): copied when every variable matches, a cold start with
the reason when the model config changed."""

import numpy as np
import pytest

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

from pipeline import trainer
from pipeline import warm_start


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
  """A trained-looking model (weights moved off their init) saved as an export does."""
  model = trainer.build_model(*trainer.configs_from_custom({"seed": 1}))
  model.build_variables()
  for v in model.variables:
    if v.dtype.is_floating:
      v.assign(v + 0.5)
  module = tf.Module()
  module.model_variables = list(model.variables)
  path = str(tmp_path_factory.mktemp("pushed") / "1")
  tf.saved_model.save(module, path)
  return path, [v.numpy() for v in model.variables]


def test_matching_model_starts_from_the_pushed_weights(pushed):
  path, weights = pushed
  model = trainer.build_model(*trainer.configs_from_custom({"seed": 2}))
  result = warm_start.maybe_warm_start(model, {warm_start.WARM_START_KEY: path})
  assert result.warm and result.variables == len(weights)
  for v, w in zip(model.variables, weights):
    np.testing.assert_array_equal(v.numpy(), w)


def test_a_changed_model_config_starts_cold_with_the_reason(pushed):
  path, _ = pushed
  model = trainer.build_model(*trainer.configs_from_custom({"model_config": "ple"}))
  model.build_variables()
  before = [v.numpy() for v in model.variables]
  result = warm_start.warm_start(model, path)
  assert not result.warm
  assert result.reason.startswith("model config changed: ")
  for v, w in zip(model.variables, before):
    np.testing.assert_array_equal(v.numpy(), w)
