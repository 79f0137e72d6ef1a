"""Tests of the ``done:`` line ``melody train`` and the Trainer log: an AUC over labels of
one class reads as words, not as the 0 Keras computes."""

import numpy as np

from pipeline import trainer

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order


def _auc(name, labels, weights=None):
  m = tf.keras.metrics.AUC(name=name)
  m.update_state(np.array(labels, np.float32), np.linspace(0.1, 0.9, len(labels)),
                 sample_weight=weights)
  return m


def test_auc_class_counts_are_weighted_positives_and_negatives():
  both = _auc("interest_skip_auc", [1, 0, 0, 1, 0], [1.0, 2.0, 1.0, 0.5, 1.0])
  no_pos = _auc("subscription_auc", [0, 0, 0])
  rmse = tf.keras.metrics.RootMeanSquaredError(name="exposure_rmse")
  counts = trainer.auc_class_counts([both, no_pos, rmse])
  assert counts == {"interest_skip_auc": (1.5, 4.0), "subscription_auc": (0.0, 3.0)}


def test_summary_words_an_auc_without_positives_negatives_or_examples():
  result = {"loss": 0.51234, "eval_subscription_auc": 0.0, "eval_interest_skip_auc": 0.61237,
            "eval_interest_like_auc": 0.0, "eval_exposure_auc": 0.0}
  classes = {"eval_subscription_auc": (0.0, 40.0), "eval_interest_skip_auc": (9.0, 31.0),
             "eval_interest_like_auc": (40.0, 0.0), "eval_exposure_auc": (0.0, 0.0)}
  assert trainer.summary(result, classes) == (
      "eval_exposure_auc=not measurable, eval_interest_like_auc=n/a (no negatives), "
      "eval_interest_skip_auc=0.6124, eval_subscription_auc=n/a (no positives), loss=0.5123")
