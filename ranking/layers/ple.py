"""Progressive Layered Extraction (PLE, Tang et al. 2020) built from CGC levels.

Each level has experts private to each task plus experts shared by all tasks; a task's
gate mixes only its own and the shared experts, which stops a dominant task from
taking over the experts another task needs (the "seesaw" MMoE can show).
"""

from typing import Dict, Optional, Sequence

import tensorflow as tf

from ranking.layers import experts as experts_lib


@tf.keras.utils.register_keras_serializable(package="melody")
class PLE(tf.keras.layers.Layer):
  """Stacked Customized Gate Control (CGC) levels.

  Math: at level ``l`` with task inputs ``x_t`` and shared input ``x_s`` (all ``x`` at
  level 1): ``E_t = experts_t(x_t)`` (``task_experts`` each), ``E_s = experts_s(x_s)``;
  ``y_t = sum softmax(W_t x_t) * [E_t; E_s]`` (gate ``gate_<t>``); below the last level
  the shared path continues with ``y_s = sum softmax(W_s x_s) * [E_1; ...; E_T; E_s]``.
  ``levels=1`` is CGC.

  Usage:
    mix = PLE(task_names=("interest", "exposure"), shared_experts=2, task_experts=1,
              units=(128, 64), levels=1)
    reps = mix(x)   # {"interest": [B, 64], "exposure": [B, 64]}

  Args:
    task_names: the tasks.
    shared_experts: shared experts per level.
    task_experts: task-specific experts per task and level.
    units: widths of each expert MLP.
    levels: stacked CGC levels.
    dropout: dropout inside the experts.

  Input shape: ``[B, F]`` or a ``(shared, per_row)`` pair (see ``ExpertBank``).
  Output: dict task -> ``[B, units[-1]]``.
  """

  def __init__(self, task_names: Sequence[str], shared_experts: int, task_experts: int,
               units: Sequence[int], levels: int = 1, dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    task_names = tuple(task_names)
    if not task_names:
      raise ValueError("task_names must name at least one task")
    for name, v in (("shared_experts", shared_experts), ("task_experts", task_experts),
                    ("levels", levels)):
      if v <= 0:
        raise ValueError(f"{name} must be positive, got {v}")
    self.task_names = task_names
    self.shared_experts = shared_experts
    self.task_experts = task_experts
    self.units = tuple(units)
    self.levels = levels
    self.dropout = dropout
    n_task_gate = task_experts + shared_experts
    n_shared_gate = task_experts * len(task_names) + shared_experts
    self.level_layers = []
    for lvl in range(levels):
      last = lvl == levels - 1
      self.level_layers.append({
          "task_experts": {t: experts_lib.ExpertBank(task_experts, units, dropout,
                                                     name=f"experts_{t}_{lvl}")
                           for t in task_names},
          "shared_experts": experts_lib.ExpertBank(shared_experts, units, dropout,
                                                   name=f"experts_shared_{lvl}"),
          "gates": {t: tf.keras.layers.Dense(n_task_gate, activation="softmax",
                                             name=f"gate_{t}" if last else f"gate_{t}_{lvl}")
                    for t in task_names},
          "shared_gate": None if last else tf.keras.layers.Dense(
              n_shared_gate, activation="softmax", name=f"gate_shared_{lvl}"),
      })

  def call(self, x, training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    # Level 1 reads the (possibly split) input in its experts and the full rows in its
    # gates; deeper levels read the previous level's per-task / shared outputs.
    task_in = {t: x for t in self.task_names}
    shared_in = x
    for lv in self.level_layers:
      e_shared = lv["shared_experts"](shared_in, training=training)
      e_task = {t: lv["task_experts"][t](task_in[t], training=training)
                for t in self.task_names}
      full = {t: experts_lib.concat_input(task_in[t]) for t in self.task_names}
      out = {}
      for t in self.task_names:
        e = tf.concat([e_task[t], e_shared], axis=1)
        out[t] = tf.einsum("bk,bku->bu", lv["gates"][t](full[t]), e)
      if lv["shared_gate"] is not None:
        e = tf.concat([e_task[t] for t in self.task_names] + [e_shared], axis=1)
        shared_in = tf.einsum("bk,bku->bu",
                              lv["shared_gate"](experts_lib.concat_input(shared_in)), e)
      task_in = out
    return task_in

  def get_config(self):
    config = super().get_config()
    config.update(task_names=list(self.task_names), shared_experts=self.shared_experts,
                  task_experts=self.task_experts, units=list(self.units),
                  levels=self.levels, dropout=self.dropout)
    return config
