"""Which fusion a serving request gets: the hand-set weights or the learned scorer.

This module owns the per-request choice between the two fusions in the serving graph
(``ranking.fusion.kernel_tf.ScoreFusion`` over the weight table, and
``ranking.fusion.learned.LearnedFusion`` when the model was exported with a policy that
holds learned parameters). The ``fusion`` input (``serving.request_schema``) says, per
row, ``"weights"``, ``"learned"`` or ``""`` (the model's default: the policy's
``fusion.select``, else ``"weights"``). A row asking for ``"learned"`` from a model
without learned parameters, or any other value, fails an in-graph check naming the
input, so a stock TF Serving answers INVALID_ARGUMENT as ``melody serve`` does.
"""

from typing import Dict, Optional

import tensorflow as tf

from ranking.fusion.kernel_tf import ScoreFusion
from ranking.fusion.learned import LearnedFusion
from ranking.fusion.spec import FusionConfig

FUSION_INPUT = "fusion"
WEIGHTS, LEARNED = "weights", "learned"
CHOICES = ("", WEIGHTS, LEARNED)   # "" = the model's default


class FusionSelector:
  """Both fusions of one exported model and the per-row choice between them.

  Args:
    config: the hand-set fusion's ``FusionConfig``.
    policy: optional ``ranking.fusion.policy_file.PolicyFile``; its ``learned``
      parameters (if any) add the learned fusion and its ``select`` is the default.
  """

  def __init__(self, config: FusionConfig, policy=None):
    self.weights = ScoreFusion(config, name="fusion")
    learned = getattr(policy, "learned", None)
    self.learned: Optional[LearnedFusion] = (
        None if learned is None
        else LearnedFusion(learned, epsilon=config.exploration, name="learned_fusion"))
    self.default = getattr(policy, "select", WEIGHTS) if learned is not None else WEIGHTS

  @property
  def config(self) -> FusionConfig:
    return self.weights.config

  def __call__(self, inputs: Dict[str, tf.Tensor], choice: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Fuses with the fusion each row of ``choice`` ``[B]`` string names.

    Args:
      inputs: ``ScoreFusion``'s inputs plus ``promo`` ``[B, N]`` (for the learned one).
      choice: the ``fusion`` input.

    Returns:
      ``ScoreFusion``'s outputs, row by row from the chosen fusion.
    """
    known = tf.reduce_all(tf.reduce_any(
        tf.equal(choice[:, tf.newaxis], tf.constant(CHOICES)[tf.newaxis, :]), axis=1))
    choice = tf.where(tf.equal(choice, ""), tf.constant(self.default), choice)
    learned = tf.equal(choice, LEARNED)
    checks = [tf.debugging.Assert(known, [f"input '{FUSION_INPUT}' must be one of "
                                          f"{list(CHOICES)}"])]
    if self.learned is None:
      checks.append(tf.debugging.Assert(
          tf.logical_not(tf.reduce_any(learned)),
          [f"input '{FUSION_INPUT}' asks for '{LEARNED}', but this model was exported "
           "without a learned fusion"]))
    with tf.control_dependencies(checks):
      learned = tf.identity(learned)
    hand = self.weights({k: v for k, v in inputs.items() if k != "promo"})
    if self.learned is None:
      return hand
    other = self.learned(inputs)
    return {k: tf.where(tf.reshape(learned, [-1] + [1] * (hand[k].shape.rank - 1)),
                        other[k], hand[k]) for k in hand}
