"""Tests of the logQ correction (ranking.sampled_softmax): the arithmetic, that only the
next-play label of a sampled batch is corrected, and that with it a score fitted on
plays and popularity-sampled negatives recovers the play distribution, while without it
the score is biased against popular tracks."""

import numpy as np
import tensorflow as tf

from features import feature_spec
from ranking import sampled_softmax
from ranking import tasks as tasks_lib

LABEL = sampled_softmax.NEXT_PLAY_LABEL


def test_logq_corrected_subtracts_centred_log_q_where_sampled():
  logit = tf.constant([1.0, 1.0, -2.0])
  q = tf.constant([0.5, 0.0, 0.01])
  center = (np.log(0.5) + np.log(0.01)) / 2   # over the sampled rows only
  np.testing.assert_allclose(
      sampled_softmax.logq_corrected(logit, q).numpy(),
      [1.0 - np.log(0.5) + center, 1.0, -2.0 - np.log(0.01) + center], rtol=1e-6)


def test_a_batch_without_sampled_rows_is_unchanged():
  logit = tf.constant([0.4, -1.0])
  np.testing.assert_array_equal(
      sampled_softmax.logq_corrected(logit, tf.zeros(2)).numpy(), logit.numpy())


def test_only_the_next_play_label_of_a_sampled_batch_is_corrected():
  logit = tf.constant([0.3, -0.2])
  features = {feature_spec.SAMPLE_Q: tf.constant([[0.25], [0.5]])}
  corrected = sampled_softmax.training_logit(LABEL, logit, features)
  center = (np.log(0.25) + np.log(0.5)) / 2
  np.testing.assert_allclose(corrected.numpy(),
                             [0.3 - np.log(0.25) + center, -0.2 - np.log(0.5) + center],
                             rtol=1e-6)
  assert sampled_softmax.training_logit("interest_skip", logit, features) is logit
  assert sampled_softmax.training_logit(LABEL, logit, {}) is logit


def _fit(correct: bool, steps: int = 400) -> np.ndarray:
  """One free score per track fitted by the next-play loss on expected counts: plays
  from ``p``, K=4 negatives per play from ``q``."""
  p = np.array([0.6, 0.3, 0.1])
  q = np.array([0.7, 0.2, 0.1])
  k = 4
  # Each track appears as a play (weight p) and as a negative (weight K q).
  target = tf.constant([1.0] * 3 + [0.0] * 3)
  weight = tf.constant(np.concatenate([p, k * q]), tf.float32)
  sample_q = tf.constant(np.concatenate([q, q]), tf.float32)
  score = tf.Variable(tf.zeros(3))

  @tf.function
  def fit():
    for _ in tf.range(steps):
      with tf.GradientTape() as tape:
        logit = tf.concat([score, score], 0)
        if correct:
          logit = sampled_softmax.training_logit(
              LABEL, logit, {feature_spec.SAMPLE_Q: sample_q})
        loss = tasks_lib.label_loss(LABEL, logit, target, weight)
      score.assign_sub(2.0 * tape.gradient(loss, score))

  fit()
  return score.numpy()


def test_corrected_scores_recover_the_play_distribution():
  p, q, k = np.array([0.6, 0.3, 0.1]), np.array([0.7, 0.2, 0.1]), 4
  corrected = _fit(correct=True)
  # NCE's optimum: s = log p - log K - c, with c the batch's mean log q (the centring),
  # so softmax(s) = p.
  center = np.log(q).mean()
  np.testing.assert_allclose(corrected, np.log(p) - np.log(k) - center, atol=0.02)
  plain = _fit(correct=False)
  np.testing.assert_allclose(plain, np.log(p / (k * q)), atol=0.02)
  # Without the correction the most played track, drawn most often as a negative, is
  # ranked below a less played one; with it, the ranking follows the plays.
  assert np.argsort(-corrected).tolist() == [0, 1, 2]
  assert np.argmax(plain) == 1
