"""Shared-bottom multi-task baseline: one MLP whose output every task tower reads.

The simplest multi-task architecture and the baseline MMoE/PLE must beat on
conflicting tasks; with a single task it is a plain single-task ranker.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from ranking.layers import experts as experts_lib


@tf.keras.utils.register_keras_serializable(package="melody")
class SharedBottom(tf.keras.layers.Layer):
  """One ReLU MLP shared by all tasks.

  Math: ``h = MLP(x)``; ``y_t = h`` for every task ``t``.

  Usage:
    reps = SharedBottom(task_names=("interest",), units=(128, 64))(x)  # {"interest": [B, 64]}

  Args:
    task_names: the tasks that read the shared output.
    units: hidden widths of the MLP.
    dropout: dropout after each hidden layer.

  Input shape: ``[B, F]`` or a ``(shared, per_row)`` pair (see ``ExpertBank``).
  Output: dict task -> ``[B, units[-1]]``.
  """

  def __init__(self, task_names: Sequence[str], units: Sequence[int], dropout: float = 0.0,
               **kwargs):
    super().__init__(**kwargs)
    task_names = tuple(task_names)
    units = tuple(int(u) for u in units)
    if not task_names:
      raise ValueError("task_names must name at least one task")
    if not units or any(u <= 0 for u in units):
      raise ValueError(f"units must be positive widths, got {units}")
    self.task_names = task_names
    self.units = units
    self.dropout = dropout
    self.hidden = [tf.keras.layers.Dense(u, activation="relu", name=f"bottom_{i}")
                   for i, u in enumerate(units)]
    self.drop = tf.keras.layers.Dropout(dropout)

  def build(self, input_shape):
    self.hidden[0].build((None, experts_lib.input_width(input_shape)))
    super().build(input_shape)

  def call(self, x, training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    first = self.hidden[0]
    x = tf.nn.relu(experts_lib.split_matmul(x, first.kernel, "bf,fu->bu") + first.bias)
    x = self.drop(x, training=training)
    for layer in self.hidden[1:]:
      x = self.drop(layer(x), training=training)
    return {t: x for t in self.task_names}

  def get_config(self):
    config = super().get_config()
    config.update(task_names=list(self.task_names), units=list(self.units),
                  dropout=self.dropout)
    return config
