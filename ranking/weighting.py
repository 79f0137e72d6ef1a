"""Loss weighting of the ranking tasks: static weights, a staged schedule, uncertainty
weighting, and the completion-floor constraint.

Policy (from the design card): interest comes first. Static weights must give interest
at least the weight of every commercial task (subscription, exposure); the staged
schedule trains interest alone for ``interest_only_steps`` and then ramps the commercial
weights in linearly over ``ramp_steps``; uncertainty weighting (Kendall, Gal & Cipolla
2018) rescales each task by a learned precision on top of those weights; and the
completion floor is a Lagrangian constraint: the mean predicted completion on organic
(non-promo) candidates must stay above a floor taken from an interest-only model. Its
multiplier follows projected dual ascent,
``lambda <- max(0, lambda + eta * (floor - c_organic))``, so it grows while completion is
under the floor and decays back to 0 above it, and the loss gains
``lambda * (floor - c_organic)``.

:class:`LossCombiner` puts the pieces together for ``RankingModel.compute_loss``.
"""

from typing import Dict, Mapping, Optional

import tensorflow as tf

from features import feature_spec
INTEREST = "interest"
COMMERCIAL = tuple(t for t in feature_spec.TASKS if t != INTEREST)


def validate_static_weights(weights: Mapping[str, float]) -> Dict[str, float]:
  """Checks the static task weights and returns them as a plain dict.

  Args:
    weights: task -> weight.

  Returns:
    ``dict(weights)`` with float values.

  Raises:
    ValueError: unknown task, negative weight, or a commercial task weighted above
      interest (interest must weigh at least as much as each commercial task).
  """
  out = {}
  for task, w in weights.items():
    if task not in feature_spec.TASKS:
      raise ValueError(f"unknown task {task!r} in weights; known: {tuple(feature_spec.TASKS)}")
    w = float(w)
    if w < 0:
      raise ValueError(f"weight of task {task!r} must be >= 0, got {w}")
    out[task] = w
  if INTEREST in out:
    for task in COMMERCIAL:
      if out.get(task, 0.0) > out[INTEREST]:
        raise ValueError(
            f"weight of commercial task {task!r} ({out[task]}) exceeds the interest "
            f"weight ({out[INTEREST]}); interest must weigh at least as much as each "
            "commercial task")
  return out


class StagedSchedule:
  """Task weights as a function of the training step.

  Math: with static weights ``w``, ``N = interest_only_steps`` and ``R = ramp_steps``:
  ``w_interest(s) = w_interest`` and, for a commercial task ``t``,
  ``w_t(s) = w_t * clip((s - N) / R, 0, 1)`` (a step at ``s >= N`` when ``R = 0``).

  Usage:
    sched = StagedSchedule({"interest": 1., "subscription": .5}, 1000, 500)
    sched.weights_at(1250)   # {"interest": 1.0, "subscription": 0.25}

  Args:
    weights: static weights (validated by :func:`validate_static_weights`).
    interest_only_steps: N.
    ramp_steps: R.
  """

  def __init__(self, weights: Mapping[str, float], interest_only_steps: int = 0,
               ramp_steps: int = 0):
    if interest_only_steps < 0:
      raise ValueError(f"interest_only_steps must be >= 0, got {interest_only_steps}")
    if ramp_steps < 0:
      raise ValueError(f"ramp_steps must be >= 0, got {ramp_steps}")
    self.weights = validate_static_weights(weights)
    self.interest_only_steps = int(interest_only_steps)
    self.ramp_steps = int(ramp_steps)

  def commercial_factor(self, step):
    """The ramp factor in [0, 1] at ``step`` (a Python number or a tensor)."""
    step = tf.cast(step, tf.float32)
    start = float(self.interest_only_steps)
    if self.ramp_steps == 0:
      return tf.cast(step >= start, tf.float32)
    return tf.clip_by_value((step - start) / float(self.ramp_steps), 0.0, 1.0)

  def weights_at(self, step) -> Dict[str, tf.Tensor]:
    factor = self.commercial_factor(step)
    return {t: tf.constant(w, tf.float32) if t == INTEREST else w * factor
            for t, w in self.weights.items()}


@tf.keras.utils.register_keras_serializable(package="melody")
class UncertaintyWeighting(tf.keras.layers.Layer):
  """Homoscedastic-uncertainty task weighting (Kendall et al. 2018).

  Math: with a learned ``s_t = log sigma_t^2`` per task and the scheduled weight
  ``w_t``: ``L = sum_t w_t * (0.5 * exp(-s_t) * L_t + 0.5 * s_t)``. Keeping ``w_t`` as
  a factor preserves the interest-first ordering of the static weights.

  Usage:
    uw = UncertaintyWeighting(task_names=("interest", "subscription"))
    loss = uw({"interest": l1, "subscription": l2}, {"interest": 1., "subscription": .5})

  Args:
    task_names: the tasks.

  Inputs: dicts task -> scalar loss and task -> scalar weight.
  Output: scalar loss.
  """

  def __init__(self, task_names, **kwargs):
    super().__init__(**kwargs)
    self.task_names = tuple(task_names)
    if not self.task_names:
      raise ValueError("task_names must name at least one task")
    self.log_vars = {t: self.add_weight(name=f"log_var_{t}", shape=(), initializer="zeros")
                     for t in self.task_names}

  def call(self, losses, weights):
    total = 0.0
    for t in self.task_names:
      s = self.log_vars[t]
      total += weights[t] * (0.5 * tf.exp(-s) * losses[t] + 0.5 * s)
    return total

  def get_config(self):
    config = super().get_config()
    config.update(task_names=list(self.task_names))
    return config


def floor_from_reference(reference_completion: float, tolerance: float = 0.02) -> float:
  """The completion floor from an interest-only model's mean organic completion.

  Args:
    reference_completion: mean predicted completion on organic items of the
      interest-only model, in [0, 1].
    tolerance: relative drop allowed, in [0, 1).

  Returns:
    ``reference_completion * (1 - tolerance)``.
  """
  if not 0.0 <= reference_completion <= 1.0:
    raise ValueError(f"reference_completion must be in [0, 1], got {reference_completion}")
  if not 0.0 <= tolerance < 1.0:
    raise ValueError(f"tolerance must be in [0, 1), got {tolerance}")
  return reference_completion * (1.0 - tolerance)


@tf.keras.utils.register_keras_serializable(package="melody")
class CompletionFloor(tf.keras.layers.Layer):
  """Lagrangian completion-floor constraint with a dual-ascent multiplier.

  Math: violation ``v = floor - c``, where ``c`` is the mean predicted completion on
  organic candidates; penalty ``lambda * v`` (``lambda`` is a constant for the
  gradient); update ``lambda <- max(0, lambda + lr * v)``.

  Usage:
    cf = CompletionFloor(floor=0.6, lr=0.05)
    loss += cf.penalty(c)
    cf.update(c)       # once per training step

  Args:
    floor: the floor in [0, 1].
    lr: dual-ascent step, >= 0.
  """

  def __init__(self, floor: float, lr: float = 0.05, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= floor <= 1.0:
      raise ValueError(f"floor must be in [0, 1], got {floor}")
    if lr < 0:
      raise ValueError(f"lr must be >= 0, got {lr}")
    self.floor = float(floor)
    self.lr = float(lr)
    self.multiplier = self.add_weight(name="multiplier", shape=(), initializer="zeros",
                                      trainable=False)

  def penalty(self, organic_completion):
    return tf.stop_gradient(self.multiplier) * (self.floor - organic_completion)

  def update(self, organic_completion):
    """One dual-ascent step; returns the new multiplier."""
    v = self.floor - tf.stop_gradient(tf.cast(organic_completion, tf.float32))
    return self.multiplier.assign(tf.maximum(0.0, self.multiplier + self.lr * v))

  def call(self, organic_completion):
    return self.penalty(organic_completion)

  def get_config(self):
    config = super().get_config()
    config.update(floor=self.floor, lr=self.lr)
    return config


def organic_mean_completion(p_complete, is_promo, default: float = 0.0):
  """Mean predicted completion over organic (non-promo) candidates.

  Args:
    p_complete: ``[B]`` predicted completion.
    is_promo: ``[B]`` 0/1 promo flags.
    default: the value when the batch has no organic candidate (no violation when it is
      the floor itself).

  Returns:
    Scalar ``sum (1 - promo) p / sum (1 - promo)``, or ``default``.
  """
  organic = 1.0 - tf.clip_by_value(tf.cast(tf.reshape(is_promo, [-1]), tf.float32), 0.0, 1.0)
  n = tf.reduce_sum(organic)
  mean = tf.reduce_sum(organic * tf.reshape(p_complete, [-1])) / tf.maximum(n, 1.0)
  return tf.where(n > 0, mean, tf.cast(default, tf.float32))


class LossCombiner:
  """Turns per-task losses into the training loss: schedule, uncertainty, floor.

  Math: ``L = sum_t w_t(step) L_t`` (or its uncertainty-weighted form) plus, when a
  floor is set, ``lambda * (floor - c_organic)``.

  A plain object, not a layer: the model owns (and tracks) its ``uncertainty`` and
  ``floor`` layers so their variables train, checkpoint and save with the model.

  Args:
    task_names: the model's tasks.
    train_config: a ``ranking.config.TrainConfig``.
  """

  def __init__(self, task_names, train_config):
    weights = train_config.weights
    missing = [t for t in task_names if t not in weights]
    if missing:
      raise ValueError(f"task_weights has no weight for tasks {missing}")
    self.task_names = tuple(task_names)
    self.schedule = StagedSchedule({t: weights[t] for t in task_names},
                                   train_config.interest_only_steps, train_config.ramp_steps)
    self.uncertainty = (UncertaintyWeighting(task_names, name="uncertainty_weighting")
                        if train_config.dynamic_weighting == "uncertainty" else None)
    self.floor = (CompletionFloor(train_config.completion_floor, train_config.floor_lr,
                                  name="completion_floor")
                  if train_config.completion_floor is not None
                  and "interest" in task_names else None)

  def __call__(self, losses: Mapping[str, tf.Tensor], step,
               organic_completion: Optional[tf.Tensor] = None,
               training: bool = False) -> tf.Tensor:
    weights = self.schedule.weights_at(step)
    if self.uncertainty is not None:
      total = self.uncertainty(losses, weights)
    else:
      total = tf.add_n([weights[t] * losses[t] for t in self.task_names])
    if self.floor is not None and organic_completion is not None:
      total += self.floor.penalty(organic_completion)
      if training:
        self.floor.update(organic_completion)
    return total
