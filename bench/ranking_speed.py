"""The ranking benchmark's training speed: steady-state examples/s of the default config
on the path ``melody train`` and the TFX Trainer use, its float32 baseline measured right
after in the same process, and a per-part CPU profile of one step.
"""

import os
import time
from typing import Dict

from bench import common
from bench import ranking_models


def _cpu_ms(fn, reps: int = 8, warmup: int = 2) -> Dict[str, float]:
  for _ in range(warmup):
    fn()
  t0, c0 = time.perf_counter(), time.process_time()
  for _ in range(reps):
    fn()
  return {"wall_ms": (time.perf_counter() - t0) / reps * 1e3,
          "cpu_ms": (time.process_time() - c0) / reps * 1e3}


def step_profile(model, ds, batches: int = 8) -> Dict[str, Dict[str, float]]:
  """Wall and CPU milliseconds of the parts of one training step of ``model``.

  ``input``: one batch from ``ds``; ``forward``: ``compute_loss`` in training mode;
  ``gradients``: forward and backward; ``optimizer``: ``apply_gradients`` of those
  gradients (changes the weights: call it after the model is no longer trained);
  ``metrics``: one update of every per-head metric.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  it = iter(ds)
  batch = next(it)
  out = {"input": _cpu_ms(lambda: next(it), reps=batches)}
  # training=True: the training path (the blocks' train_precision, the id dropout).
  forward = tf.function(lambda b: model.compute_loss(b, training=True))

  @tf.function
  def gradients(b):
    with tf.GradientTape() as tape:
      loss = model.compute_loss(b, training=True)
    return tape.gradient(loss, model.trainable_variables)

  @tf.function
  def gradients_done(b):   # one scalar that needs every gradient, so none is pruned
    return tf.add_n([tf.reduce_sum(g.values if isinstance(g, tf.IndexedSlices) else g)
                     for g in gradients(b)])

  grads = gradients(batch)

  @tf.function
  def apply(g):
    model.optimizer.apply_gradients(zip(g, model.trainable_variables))
    return tf.constant(0)

  y = tf.reshape(tf.cast(batch["interest_skip"], tf.float32), [-1])

  @tf.function
  def metrics():
    for ms in model.label_metrics.values():
      for m in ms:
        m.update_state(y, tf.fill(tf.shape(y), 0.5), sample_weight=tf.ones_like(y))
    return tf.constant(0)

  out["forward"] = _cpu_ms(lambda: forward(batch).numpy(), reps=batches)
  out["gradients"] = _cpu_ms(lambda: gradients_done(batch).numpy(), reps=batches)
  out["optimizer"] = _cpu_ms(lambda: apply(grads).numpy(), reps=batches)
  out["metrics"] = _cpu_ms(lambda: metrics().numpy(), reps=batches)
  for m in model.metrics:
    m.reset_state()
  return out


def _fit_speed(paths: Dict[str, str], model_config, steps: int, batch_size: int):
  """One ``fit()`` of ``steps + 1`` steps on the ``melody train`` path; its steady state."""
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  from pipeline import trainer  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  spec = tft.TFTransformOutput(paths["transform_output"]).transformed_feature_spec()
  tc = config_lib.TrainConfig(batch_size=batch_size)
  model = trainer.build_model(model_config, tc)
  ds = trainer.input_fn([paths["train"]], spec, batch_size, seed=tc.seed)
  clock = ranking_models.step_clock()
  t0, c0 = time.perf_counter(), time.process_time()
  model.fit(ds, steps_per_epoch=steps + 1, verbose=0, callbacks=[clock])
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  return model, ds, clock, wall, cpu, t0


def training_throughput(paths: Dict[str, str], steps: int = 40,
                        batch_size: int = 512) -> Dict[str, object]:
  """Training speed of the default config on the ``melody train`` / TFX Trainer path,
  with the same config in float32 (``train_precision="float32"``) as the baseline,
  measured in the same process right after it.

  Args:
    paths: ``preprocessing.transform_dataset`` paths (``train``, ``transform_output``).
    steps: timed steps (one more runs first, for tracing).
    batch_size: the training batch.

  Returns:
    The speeds and the step profile (the ``throughput`` block of the results), and under
    ``"model"`` the trained default-config model.
  """
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import hardware  # pylint: disable=g-import-not-at-top
  model, ds, clock, wall, cpu, t0 = _fit_speed(paths, config_lib.ModelConfig(), steps,
                                               batch_size)
  load = os.getloadavg()[0]
  s = clock.steady(batch_size)
  profile = step_profile(model, ds)
  _, _, base_clock, _, _, _ = _fit_speed(
      paths, config_lib.ModelConfig(train_precision="float32"), steps, batch_size)
  base = base_clock.steady(batch_size)
  return {"examples_per_s": s["examples_per_s"], "batch_size": batch_size,
          "steps": s["steps"], "cpu_s_per_step": s["cpu_s_per_step"],
          "wall_s_per_step": s["wall_s_per_step"],
          "train_precision": hardware.resolve_train_precision(
              config_lib.ModelConfig().train_precision),
          # What 2 dedicated cores would do: CPU time per step spread over both.
          "examples_per_s_2_dedicated_cores_est": 2 * batch_size / s["cpu_s_per_step"],
          # The whole fit() call: graph tracing, steps + 1 steps and the teardown.
          "fit_call_examples_per_s": (steps + 1) * batch_size / wall,
          "fit_call_cpu_s": cpu, "fit_teardown_s": t0 + wall - clock.marks[-1][0],
          "float32_baseline": {
              "examples_per_s": base["examples_per_s"],
              "cpu_s_per_step": base["cpu_s_per_step"],
              "examples_per_s_2_dedicated_cores_est": 2 * batch_size / base["cpu_s_per_step"]},
          "speedup_vs_float32": s["examples_per_s"] / base["examples_per_s"],
          "step_profile_ms": profile, "load_average_1m": load, "model": model}


def log_throughput(thr: Dict[str, object]) -> None:
  """The training speed as one progress line."""
  common.log("ranking",
             f"training: {thr['examples_per_s']:,.0f} examples/s steady state "
             f"({thr['examples_per_s_2_dedicated_cores_est']:,.0f} est. on 2 dedicated cores); "
             f"float32 baseline {thr['float32_baseline']['examples_per_s']:,.0f} examples/s, "
             f"ratio {thr['speedup_vs_float32']:.2f}x")
