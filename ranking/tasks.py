"""The ranking tasks: which labels each head predicts, their link functions and losses,
and the interest score that folds the three interest labels into one number.

Tasks and their labels come from ``features.feature_spec.TASKS``:

* ``interest`` -> ``interest_completion`` (fraction played, 0..1, a bounded regression
  trained with sigmoid cross-entropy on the soft target, which is minimised by the true
  mean and so keeps the prediction calibrated), ``interest_skip`` and ``interest_like``
  (binary, sigmoid cross-entropy).
* ``subscription`` -> ``subscription`` (binary).
* ``exposure`` -> ``exposure`` (promo exposure value >= 0: softplus link, squared error).

The interest score is explicit and documented (weights in ``ModelConfig``):

    S_int = w_c * p_complete + w_l * p_like - w_s * p_skip

Every label loss is weighted per example by its ``<label>_weight`` feature (0 when the
source does not have the label) and reduced like Keras' ``SUM_OVER_BATCH_SIZE``:
``sum_i w_i * l_i / B``. A task's loss is the sum of its labels' losses.
"""

import dataclasses
from typing import Dict, Mapping, Sequence, Tuple

import tensorflow as tf

from features import feature_spec
BINARY = "binary"        # sigmoid link, cross-entropy
BOUNDED = "bounded"      # 0..1 regression: sigmoid link, soft-label cross-entropy
NONNEG = "nonneg"        # >= 0 regression: softplus link, squared error

INTEREST_SCORE = "interest"   # output key of S_int (the task name it summarises)


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """How one label is predicted and scored.

  Attributes:
    label: key in ``feature_spec.LABEL_KEYS``.
    task: the task head that predicts it.
    kind: ``BINARY``, ``BOUNDED`` or ``NONNEG``.
  """
  label: str
  task: str
  kind: str


def _kind(label: str) -> str:
  if label in feature_spec.BINARY_LABELS:
    return BINARY
  if label == "interest_completion":
    return BOUNDED
  return NONNEG


LABELS: Dict[str, LabelSpec] = {
    lab: LabelSpec(lab, task, _kind(lab)) for task, labs in feature_spec.TASKS.items()
    for lab in labs
}


def task_labels(task: str) -> Tuple[str, ...]:
  """Labels predicted by ``task``'s tower, in tower output order."""
  if task not in feature_spec.TASKS:
    raise ValueError(f"unknown task {task!r}; known: {tuple(fs.TASKS)}")
  return feature_spec.TASKS[task]


def link(label: str, logit: tf.Tensor) -> tf.Tensor:
  """The prediction of ``label`` from its logit (probability, fraction or value)."""
  kind = LABELS[label].kind
  if kind in (BINARY, BOUNDED):
    return tf.sigmoid(logit)
  return tf.nn.softplus(logit)


def label_loss(label: str, logit: tf.Tensor, target: tf.Tensor,
               weight: tf.Tensor) -> tf.Tensor:
  """Weighted loss of one label, ``sum_i w_i * l_i / B``.

  Args:
    label: the label key.
    logit: ``[B]`` raw tower output.
    target: ``[B]`` label values.
    weight: ``[B]`` per-example weights (0 = label missing).

  Returns:
    Scalar loss.
  """
  target = tf.cast(target, tf.float32)
  weight = tf.cast(weight, tf.float32)
  kind = LABELS[label].kind
  if kind in (BINARY, BOUNDED):
    per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logit)
  else:
    per_example = tf.square(tf.nn.softplus(logit) - target)
  batch = tf.cast(tf.maximum(tf.size(per_example), 1), tf.float32)
  return tf.reduce_sum(weight * per_example) / batch


def interest_score(predictions: Mapping[str, tf.Tensor],
                   weights: Sequence[float]) -> tf.Tensor:
  """``S_int = w_c * p_complete + w_l * p_like - w_s * p_skip``.

  Args:
    predictions: dict with ``interest_completion``, ``interest_like``, ``interest_skip``.
    weights: ``(w_c, w_l, w_s)``, non-negative.

  Returns:
    The interest score, same shape as the predictions; in ``[-w_s, w_c + w_l]``.
  """
  w_c, w_l, w_s = weights
  return (w_c * predictions["interest_completion"] + w_l * predictions["interest_like"]
          - w_s * predictions["interest_skip"])
