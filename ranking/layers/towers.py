"""Task towers: one small MLP per task, named ``tower_<task>``, producing its logits."""

from typing import Sequence

import tensorflow as tf


@tf.keras.utils.register_keras_serializable(package="melody")
class TaskTower(tf.keras.layers.Layer):
  """The head of one task: a ReLU MLP ending in one linear output per label.

  Math: ``z = W_out relu(... relu(W_1 h + b_1) ...) + b_out``; the caller applies each
  label's link function (sigmoid, softplus) to ``z``.

  Usage:
    tower = TaskTower("interest", units=(64,), num_outputs=3)   # named "tower_interest"
    logits = tower(reps["interest"])                            # [B, 3]

  Args:
    task: task name; the layer is named ``tower_<task>`` unless ``name`` is given.
    units: hidden widths (may be empty).
    num_outputs: labels of the task.

  Input shape: ``[B, F]``.
  Output shape: ``[B, num_outputs]``.
  """

  def __init__(self, task: str, units: Sequence[int], num_outputs: int, **kwargs):
    kwargs.setdefault("name", f"tower_{task}")
    super().__init__(**kwargs)
    if not task:
      raise ValueError("task must be a non-empty name")
    units = tuple(int(u) for u in units)
    if any(u <= 0 for u in units):
      raise ValueError(f"units must be positive widths, got {units}")
    if num_outputs <= 0:
      raise ValueError(f"num_outputs must be positive, got {num_outputs}")
    self.task = task
    self.units = units
    self.num_outputs = num_outputs
    self.hidden = [tf.keras.layers.Dense(u, activation="relu", name=f"{task}_hidden_{i}")
                   for i, u in enumerate(units)]
    self.out = tf.keras.layers.Dense(num_outputs, name=f"{task}_logits")

  def call(self, x):
    for layer in self.hidden:
      x = layer(x)
    return self.out(x)

  def get_config(self):
    config = super().get_config()
    config.update(task=self.task, units=list(self.units), num_outputs=self.num_outputs)
    return config
