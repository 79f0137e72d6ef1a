"""Tests of ranking.tasks: label kinds, links, weighted losses and the interest score."""

import numpy as np
import pytest

from features import feature_spec
from ranking import tasks

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order


def test_every_label_has_a_task_and_kind():
  assert set(tasks.LABELS) == set(feature_spec.LABEL_KEYS)
  assert tasks.LABELS["interest_completion"].kind == feature_spec.BOUNDED
  assert tasks.LABELS["subscription"].kind == feature_spec.BINARY
  assert tasks.LABELS["exposure"].kind == feature_spec.NONNEG
  assert tasks.task_labels("interest") == feature_spec.TASKS["interest"]
  with pytest.raises(ValueError, match="unknown task 'promo'"):
    tasks.task_labels("promo")


def test_metrics_follow_the_label_kind():
  assert [tasks.metric_name(k) for k in feature_spec.LABEL_KEYS] == [
      "interest_completion_rmse", "interest_skip_auc", "interest_like_auc",
      "subscription_auc", "exposure_rmse"]
  assert [m.name for m in tasks.label_metrics("interest_completion")] == [
      "interest_completion_rmse", "interest_completion_calibration"]
  assert [m.name for m in tasks.label_metrics("subscription")] == ["subscription_auc"]
  assert [m.name for m in tasks.label_metrics("exposure")] == ["exposure_rmse"]


def test_links():
  z = tf.constant([-3.0, 0.0, 3.0])
  np.testing.assert_allclose(tasks.link("interest_skip", z), 1 / (1 + np.exp(-z.numpy())),
                             rtol=1e-6)
  np.testing.assert_allclose(tasks.link("exposure", z), np.log1p(np.exp(z.numpy())),
                             rtol=1e-5)


def test_label_loss_values_and_missing_labels():
  logit = tf.constant([0.0, 2.0, -1.0, 5.0])
  y = tf.constant([1.0, 0.0, 1.0, 1.0])
  w = tf.constant([1.0, 1.0, 1.0, 0.0])   # the last label is missing
  got = float(tasks.label_loss("subscription", logit, y, w))
  ce = [np.log(2), np.log1p(np.exp(2.0)), np.log1p(np.exp(1.0))]
  assert got == pytest.approx(sum(ce) / 4, rel=1e-5)
  y2 = tf.constant([1.0, 0.0, 1.0, 0.0])  # changing a weight-0 label changes nothing
  assert float(tasks.label_loss("subscription", logit, y2, w)) == pytest.approx(got)
  mse = float(tasks.label_loss("exposure", tf.constant([0.0]), tf.constant([1.0]),
                               tf.constant([2.0])))
  assert mse == pytest.approx(2.0 * (1.0 - np.log(2.0)) ** 2, rel=1e-5)


def test_completion_loss_is_minimised_at_the_true_mean():
  # Soft-label cross-entropy on a 0..1 target: the best constant prediction is the mean.
  y = tf.constant([0.2, 0.9, 0.7])
  w = tf.ones(3)
  grid = np.linspace(-3, 3, 601)
  losses = [float(tasks.label_loss("interest_completion", tf.fill([3], float(g)), y, w))
            for g in grid]
  best = 1 / (1 + np.exp(-grid[int(np.argmin(losses))]))
  assert best == pytest.approx(0.6, abs=0.01)


def test_interest_score_formula():
  preds = {"interest_completion": tf.constant([0.8, 0.1]),
           "interest_like": tf.constant([0.5, 0.0]),
           "interest_skip": tf.constant([0.1, 0.9])}
  s = tasks.interest_score(preds, (0.5, 0.3, 0.2)).numpy()
  np.testing.assert_allclose(s, [0.5 * 0.8 + 0.3 * 0.5 - 0.2 * 0.1, 0.05 - 0.18], rtol=1e-6)
