"""Multi-gate Mixture-of-Experts (MMoE, Ma et al. 2018): K shared experts, one gate per task.

Each task mixes the same experts with its own softmax gate, so conflicting tasks (what
the listener enjoys vs what the business promotes) can lean on different experts
instead of fighting over one shared representation.
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from ranking.layers import experts as experts_lib


@tf.keras.utils.register_keras_serializable(package="melody")
class MMoE(tf.keras.layers.Layer):
  """K shared experts mixed by a per-task softmax gate.

  Math: ``E = [f_1(x), ..., f_K(x)]``; for task ``t``:
  ``g_t = softmax(W_t x + b_t)`` (layer ``gate_<t>``), ``y_t = sum_k g_{t,k} f_k(x)``.

  Usage:
    mix = MMoE(task_names=("interest", "subscription"), num_experts=4, units=(128, 64))
    reps = mix(x)   # {"interest": [B, 64], "subscription": [B, 64]}

  Args:
    task_names: the tasks, one gate each.
    num_experts: K.
    units: widths of each expert MLP.
    dropout: dropout inside the experts.

  Input shape: ``[B, F]`` or a ``(shared, per_row)`` pair (see ``ExpertBank``).
  Output: dict task -> ``[B, units[-1]]``.
  """

  def __init__(self, task_names: Sequence[str], num_experts: int, units: Sequence[int],
               dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    task_names = tuple(task_names)
    if not task_names:
      raise ValueError("task_names must name at least one task")
    self.task_names = task_names
    self.num_experts = num_experts
    self.units = tuple(units)
    self.dropout = dropout
    self.experts = experts_lib.ExpertBank(num_experts, units, dropout, name="experts")
    self.gates = {t: tf.keras.layers.Dense(num_experts, activation="softmax",
                                           name=f"gate_{t}") for t in task_names}

  def build(self, input_shape):
    # Experts first, then the gates in task order: the variable creation order (hence
    # the seeded initial values) of building them lazily in ``call``.
    self.experts.build(input_shape)
    width = experts_lib.input_width(input_shape)
    for t in self.task_names:
      self.gates[t].build(tf.TensorShape([None, width]))
    super().build(input_shape)

  def call(self, x, training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    e = self.experts(x, training=training)                       # [B, K, U]
    # All gates in one matmul on the (split) input: no [B, F] concat of the broadcast
    # listener part, one [F, T*K] product instead of T narrow ones.
    tasks, k = self.task_names, self.num_experts
    kernel = tf.concat([self.gates[t].kernel for t in tasks], axis=1)
    bias = tf.concat([self.gates[t].bias for t in tasks], axis=0)
    logits = tf.reshape(experts_lib.split_dense(x, kernel) + bias, [-1, len(tasks), k])
    mixed = tf.matmul(tf.nn.softmax(logits, axis=-1), e)        # [B, T, U]
    return {t: mixed[:, i] for i, t in enumerate(tasks)}

  def get_config(self):
    config = super().get_config()
    config.update(task_names=list(self.task_names), num_experts=self.num_experts,
                  units=list(self.units), dropout=self.dropout)
    return config
