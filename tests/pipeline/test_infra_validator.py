"""LocalInfraValidator's check: serve a candidate with Melody's gRPC server and replay
real examples through the Predict API."""

import os

import pytest

import pipeline  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from features import feature_spec
from pipeline import components


def _records(n=10):
  out = []
  for i in range(n):
    ex = tf.train.Example()
    ex.features.feature["context_hour"].int64_list.value.append(i)
    out.append(ex.SerializeToString())
  return out


class _ExampleModel(tf.Module):

  def __init__(self, poison: bool):
    super().__init__()
    self.poison = poison

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
  def score_examples(self, examples):
    parsed = tf.io.parse_example(
        examples, {"context_hour": tf.io.FixedLenFeature([], tf.int64, default_value=0)})
    score = tf.cast(parsed["context_hour"], tf.float32) / 24.0
    if self.poison:
      score = score / 0.0 * 0.0   # NaN everywhere
    return {feature_spec.LABEL_KEYS[0]: score}


def _save(tmp_path, poison):
  module = _ExampleModel(poison)
  path = str(tmp_path / ("bad" if poison else "good"))
  tf.saved_model.save(module, path, signatures={
      "score_examples": module.score_examples.get_concrete_function(),
      "serving_default": module.score_examples.get_concrete_function()})
  return path


def test_a_healthy_model_passes(tmp_path):
  assert components.validate_serving_model(_save(tmp_path, False), _records()) == ""


def test_non_finite_outputs_fail(tmp_path):
  why = components.validate_serving_model(_save(tmp_path, True), _records())
  assert "not finite" in why and feature_spec.LABEL_KEYS[0] in why


def test_an_unloadable_model_fails(tmp_path):
  broken = tmp_path / "broken"
  broken.mkdir()
  (broken / "saved_model.pb").write_bytes(b"not a saved model")
  why = components.validate_serving_model(str(broken), _records())
  assert why, "a broken SavedModel must not be blessed"


def test_a_model_without_the_raw_example_signature_fails(tmp_path):
  module = _ExampleModel(False)
  path = str(tmp_path / "no_score_examples")
  tf.saved_model.save(module, path, signatures={
      "serving_default": module.score_examples.get_concrete_function()})
  why = components.validate_serving_model(path, _records())
  assert "no 'score_examples' signature" in why
