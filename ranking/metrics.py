"""Ranking metrics that Keras does not ship: the calibration ratio of a regression head."""

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="melody")
class CalibrationRatio(tf.keras.metrics.Metric):
  """Weighted mean prediction over weighted mean label (1.0 = calibrated).

  Math: ``r = sum_i w_i yhat_i / max(sum_i w_i y_i, eps)``; above 1 the head
  over-predicts (e.g. completion), below 1 it under-predicts.

  Usage:
    m = CalibrationRatio(name="interest_completion_calibration")
    m.update_state(y_true, y_pred, sample_weight=w)

  Args:
    name: metric name.
  """

  def __init__(self, name: str = "calibration", **kwargs):
    super().__init__(name=name, **kwargs)
    self.pred_sum = self.add_weight(name="pred_sum", initializer="zeros")
    self.label_sum = self.add_weight(name="label_sum", initializer="zeros")

  def update_state(self, y_true, y_pred, sample_weight=None):
    y_true = tf.reshape(tf.cast(y_true, tf.float32), [-1])
    y_pred = tf.reshape(tf.cast(y_pred, tf.float32), [-1])
    w = (tf.ones_like(y_true) if sample_weight is None
         else tf.reshape(tf.cast(sample_weight, tf.float32), [-1]))
    self.pred_sum.assign_add(tf.reduce_sum(w * y_pred))
    self.label_sum.assign_add(tf.reduce_sum(w * y_true))

  def result(self):
    return self.pred_sum / tf.maximum(self.label_sum, 1e-7)

  def reset_state(self):
    self.pred_sum.assign(0.0)
    self.label_sum.assign(0.0)
