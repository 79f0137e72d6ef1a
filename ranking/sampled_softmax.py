"""The logQ correction of a label trained on sampled negatives.

A play-only log has no negatives of its own; ``features.sampled_negatives`` stands ``K``
tracks drawn from ``q(t) ∝ plays(t) ** 0.75`` beside every play, and each example carries
``q`` of its candidate (``feature_spec.SAMPLE_Q``). A binary loss on those examples is
noise-contrastive estimation: the classifier that tells the play from the noise is

    P(play | x, t) = sigmoid(s(x, t) - log(K * q(t)))

so the model's score ``s`` has to be corrected by ``log q`` of the candidate — on the
play and on its negatives alike — before the loss. Then ``s(x, t)`` estimates
``log P(t played next | x)`` up to a constant (the sampled-softmax correction of Bengio &
Senecal, 2008, and Yi et al., 2019, "Sampling-bias-corrected neural modeling"). Without
it the classifier would learn ``log P(t | x) - log q(t)``: a popular track, often drawn
as a negative, would be pushed down for being popular.

A constant added to the correction changes no ranking, but it decides where the head's
output has to sit. ``-log q`` of a track in a catalogue of tens of thousands is 8 to 12
nats; subtracted as is, the head would first have to move its output that far down,
which costs Adam (a step of about the learning rate per weight) many of its first
steps, and leaves every prediction near 0 (a training AUC of the predictions reads
0.5: they all fall below its lowest threshold). The correction
therefore subtracts ``log q - mean(log q)``, the mean over the batch's sampled
examples: the score of a track drawn about as often as it is played sits near
``-log K``, and ``log K`` and that mean are constants of the batch the head's bias
absorbs.

Serving and evaluation use ``s`` itself (the uncorrected logit). Examples not drawn by a
sampler have ``q = 0`` and keep their logit.
"""

from typing import Mapping

import tensorflow as tf

from features import feature_spec
from features import sampled_negatives

NEXT_PLAY_LABEL = sampled_negatives.NEXT_PLAY_LABEL


def logq_corrected(logit: tf.Tensor, sample_q: tf.Tensor) -> tf.Tensor:
  """``logit - (log q - mean log q)`` where ``q > 0``; ``logit`` unchanged where ``q`` is 0.

  Args:
    logit: ``[B]`` raw scores.
    sample_q: ``[B]`` (or ``[B, 1]``) sampling probabilities of the candidates, 0 for
      examples that were not sampled.

  Returns:
    ``[B]`` the corrected logits; the mean runs over the rows with ``q > 0``.
  """
  q = tf.reshape(tf.cast(sample_q, logit.dtype), tf.shape(logit))
  sampled = q > 0
  log_q = tf.math.log(tf.where(sampled, q, tf.ones_like(q)))
  weight = tf.cast(sampled, logit.dtype)
  center = tf.reduce_sum(log_q * weight) / tf.maximum(tf.reduce_sum(weight), 1.0)
  return tf.where(sampled, logit - (log_q - center), logit)


def training_logit(label: str, logit: tf.Tensor, features: Mapping[str, tf.Tensor]
                   ) -> tf.Tensor:
  """The logit the loss of ``label`` sees: logQ-corrected for the next-play label when
  the batch carries ``feature_spec.SAMPLE_Q``, else ``logit``."""
  if label != NEXT_PLAY_LABEL or feature_spec.SAMPLE_Q not in features:
    return logit
  return logq_corrected(logit, features[feature_spec.SAMPLE_Q])
