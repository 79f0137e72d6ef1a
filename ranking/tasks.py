"""The ranking tasks: which labels each head predicts, their link functions, losses and
metrics, and the interest score that folds the three interest labels into one number.

Tasks, their labels and each label's kind come from ``features.feature_spec``
(``TASKS``, ``LABEL_KINDS``); the kind decides the rest:

* ``BINARY`` (``interest_skip``, ``interest_like``, ``subscription``): sigmoid link,
  sigmoid cross-entropy, AUC.
* ``BOUNDED`` (``interest_completion``, fraction played, 0..1): a bounded regression
  trained with sigmoid cross-entropy on the soft target, which is minimised by the true
  mean and so keeps the prediction calibrated; RMSE and the calibration ratio.
* ``NONNEG`` (``exposure``, promo exposure value >= 0): softplus link, squared error,
  RMSE.

The interest score is explicit and documented (weights in ``ModelConfig``):

    S_int = w_c * p_complete + w_l * p_like - w_s * p_skip

Every label loss is weighted per example by its ``<label>_weight`` feature (0 when the
source does not have the label) and reduced like Keras' ``SUM_OVER_BATCH_SIZE``:
``sum_i w_i * l_i / B``. A task's loss is the sum of its labels' losses.

The optional skip-profile head (``ModelConfig.skip_profile_head``) adds a class label to
the interest task: the interest tower gets one more logit per skip profile
(``feature_spec.CLASS_LABELS``), the output ``skip_profile`` is their softmax, its loss a
sparse softmax cross-entropy reduced the same way with weight 0 where the class is
``feature_spec.UNKNOWN_CLASS``, and its metric the accuracy over known classes.
"""

import dataclasses
from typing import Dict, List, Mapping, Sequence, Tuple

import tensorflow as tf

from features import feature_spec
from ranking import metrics as metrics_lib

INTEREST_SCORE = "interest"   # output key of S_int (the task name it summarises)
SKIP_PROFILE = feature_spec.SKIP_PROFILE   # output key of the optional skip-profile head
# The metric reported for a label (Keras name ``<label>_<metric>``) by kind.
_HEADLINE_METRICS = {feature_spec.BINARY: "auc", feature_spec.BOUNDED: "rmse",
                     feature_spec.NONNEG: "rmse"}


@dataclasses.dataclass(frozen=True)
class LabelSpec:
  """How one label is predicted and scored.

  Attributes:
    label: key in ``feature_spec.LABEL_KEYS``.
    task: the task head that predicts it.
    kind: ``feature_spec.BINARY``, ``BOUNDED`` or ``NONNEG``.
  """
  label: str
  task: str
  kind: str


LABELS: Dict[str, LabelSpec] = {
    lab: LabelSpec(lab, task, feature_spec.LABEL_KINDS[lab])
    for task, labs in feature_spec.TASKS.items() for lab in labs
}


def task_labels(task: str) -> Tuple[str, ...]:
  """Labels predicted by ``task``'s tower, in tower output order."""
  if task not in feature_spec.TASKS:
    raise ValueError(f"unknown task {task!r}; known: {tuple(feature_spec.TASKS)}")
  return feature_spec.TASKS[task]


def skip_profile_classes(task: str, skip_profile_head: bool) -> int:
  """Extra tower outputs of ``task`` for the skip-profile head (0 when it has none)."""
  if skip_profile_head and task == INTEREST_SCORE:
    return len(feature_spec.CLASS_LABELS[SKIP_PROFILE])
  return 0


def class_label_loss(logits: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """Sparse softmax cross-entropy of a class label, ``sum_i known_i * l_i / B``.

  Args:
    logits: ``[B, C]`` raw class scores.
    target: ``[B]`` class ids, ``feature_spec.UNKNOWN_CLASS`` where the source has none.

  Returns:
    Scalar loss; unknown classes weigh 0.
  """
  target = tf.cast(target, tf.int64)
  known = tf.not_equal(target, feature_spec.UNKNOWN_CLASS)
  per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.where(known, target, tf.zeros_like(target)), logits=logits)
  batch = tf.cast(tf.maximum(tf.size(per_example), 1), tf.float32)
  return tf.reduce_sum(tf.cast(known, tf.float32) * per_example) / batch


def class_label_metrics(label: str) -> List[tf.keras.metrics.Metric]:
  """The Keras metrics of a class label: accuracy over known classes (``<label>_accuracy``)."""
  return [tf.keras.metrics.SparseCategoricalAccuracy(name=f"{label}_accuracy")]


def update_class_label_metrics(metrics: Sequence[tf.keras.metrics.Metric], target: tf.Tensor,
                               probabilities: tf.Tensor) -> None:
  """Updates :func:`class_label_metrics` with ``[B]`` class ids and ``[B, C]`` probabilities."""
  target = tf.cast(target, tf.int64)
  known = tf.not_equal(target, feature_spec.UNKNOWN_CLASS)
  for m in metrics:
    m.update_state(tf.where(known, target, tf.zeros_like(target)), probabilities,
                   sample_weight=tf.cast(known, tf.float32))


def link(label: str, logit: tf.Tensor) -> tf.Tensor:
  """The prediction of ``label`` from its logit (probability, fraction or value)."""
  if LABELS[label].kind in (feature_spec.BINARY, feature_spec.BOUNDED):
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
  if LABELS[label].kind in (feature_spec.BINARY, feature_spec.BOUNDED):
    per_example = tf.nn.sigmoid_cross_entropy_with_logits(labels=target, logits=logit)
  else:
    per_example = tf.square(tf.nn.softplus(logit) - target)
  batch = tf.cast(tf.maximum(tf.size(per_example), 1), tf.float32)
  return tf.reduce_sum(weight * per_example) / batch


# Labels that only a promoted candidate can earn (the exposure value a promo impression
# delivers): an organic candidate's label is 0 by definition.
PROMO_ONLY_LABELS = ("exposure",)
# A logit whose softplus is 0 in float32 (softplus(-120) ~ 1e-52): the prediction of a
# promo-only label on an organic candidate, with no gradient.
_ZERO_LOGIT = -120.0


def gate_promo_only(logits: Mapping[str, tf.Tensor], is_promo: tf.Tensor) -> Dict[str, tf.Tensor]:
  """Sends the logits of :data:`PROMO_ONLY_LABELS` to a prediction of exactly 0 for
  candidates that are not promoted.

  Without the gate the softplus head must push ~94% of its rows (the organic ones) to 0
  through a link whose slope vanishes there (``softplus'(z) = sigmoid(z)``), and the
  residue on those rows costs more RMSE than the promo rows' signal is worth (the
  numbers are in docs/ranking.md). With it the loss and the predictions of the label
  come from promo rows only.

  Args:
    logits: ``{label: [N]}``.
    is_promo: ``[N]`` promo flag (> 0 = promoted).

  Returns:
    The logits with the promo-only labels gated; other labels unchanged.
  """
  promo = tf.reshape(is_promo, [-1]) > 0
  out = dict(logits)
  for lab in PROMO_ONLY_LABELS:
    if lab in out:
      out[lab] = tf.where(promo, out[lab], tf.fill(tf.shape(out[lab]), _ZERO_LOGIT))
  return out


def metric_name(label: str) -> str:
  """Name of the label's headline metric: ``<label>_auc`` or ``<label>_rmse``."""
  return f"{label}_{_HEADLINE_METRICS[LABELS[label].kind]}"


def label_metrics(label: str) -> List[tf.keras.metrics.Metric]:
  """The Keras metrics of one label: its headline metric, plus the calibration ratio
  (``<label>_calibration``) of a bounded regression."""
  kind = LABELS[label].kind
  if kind == feature_spec.BINARY:
    metrics = [tf.keras.metrics.AUC(name=metric_name(label))]
  else:
    metrics = [tf.keras.metrics.RootMeanSquaredError(name=metric_name(label))]
  if kind == feature_spec.BOUNDED:
    metrics.append(metrics_lib.CalibrationRatio(name=f"{label}_calibration"))
  return metrics


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
