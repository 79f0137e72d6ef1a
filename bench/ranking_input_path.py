"""The ranking benchmark's input path: what reading transformed TFRecords costs training.

Two measurements, in the ``throughput`` part, on the simulator's transformed training
records (the files ``melody train`` and the TFX Trainer read):

* **Stages alone** (no model): examples/s of the pipeline of
  ``pipeline.trainer.input_fn`` built up one stage at a time, each stage including the
  ones before it: ``read`` (gzip TFRecord records, the file interleave), ``parse``
  (batched ``tf.io.parse_example`` to the transformed feature spec), ``shuffle`` (the
  file and record shuffles), ``prefetch`` (the whole ``input_fn``), next to ``in_memory``
  (``ranking_models.dataset`` over the same examples as arrays: slicing, shuffle, batch).
  There is no transform stage at training time: TFT materialises the transformed
  features before training, and ``parse`` reads them as they are.
* **Training**: the default model's steady-state examples/s fed by ``input_fn`` against
  the same model fed in memory, in the same process one after the other; their ratio is
  the Trainer path's share of the in-memory speed.
"""

import time
from typing import Dict

from bench import ranking_models

STAGES = ("read", "parse", "shuffle", "prefetch", "in_memory")


def _stage_dataset(stage: str, files, spec, batch_size: int, arrays, seed: int = 7):
  """The dataset of one stage (see the module docstring)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from pipeline import trainer  # pylint: disable=g-import-not-at-top
  if stage == "in_memory":
    return ranking_models.dataset(arrays, batch_size, seed)
  if stage == "prefetch":
    return trainer.input_fn(files, spec, batch_size, seed=seed)
  ds = tf.data.Dataset.from_tensor_slices(files)
  if stage == "shuffle":
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                     cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
  if stage == "shuffle":
    ds = ds.shuffle(max(4 * batch_size, 2048), seed=seed, reshuffle_each_iteration=True)
  ds = ds.repeat().batch(batch_size, drop_remainder=True)
  if stage in ("parse", "shuffle"):
    ds = ds.map(lambda x: tf.io.parse_example(x, spec), num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True)
  return ds


def stage_throughput(files, spec, arrays, batch_size: int = 512,
                     batches: int = 60) -> Dict[str, Dict[str, float]]:
  """Examples/s (wall) and CPU microseconds per example of every stage of :data:`STAGES`.

  Args:
    files: the transformed training TFRecord files.
    spec: the transformed feature spec.
    arrays: the same examples in memory (``{name: array}``).
    batch_size: examples per batch.
    batches: timed batches (after 5 untimed ones, which fill buffers).

  Returns:
    ``{stage: {"examples_per_s", "cpu_us_per_example"}}``.
  """
  out = {}
  for stage in STAGES:
    it = iter(_stage_dataset(stage, files, spec, batch_size, arrays))
    for _ in range(5):
      next(it)
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(batches):
      next(it)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = batches * batch_size
    out[stage] = {"examples_per_s": n / wall, "cpu_us_per_example": 1e6 * cpu / n}
  return out


def training_ratio(files, spec, arrays, steps: int = 40,
                   batch_size: int = 512) -> Dict[str, float]:
  """The default model's steady-state examples/s fed by ``input_fn`` and in memory.

  Returns:
    ``trainer_path_examples_per_s``, ``in_memory_examples_per_s`` and their ratio
    ``trainer_path_over_in_memory``.
  """
  from pipeline import trainer  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  speeds = {}
  for name in ("trainer_path", "in_memory"):
    tc = config_lib.TrainConfig(batch_size=batch_size)
    model = trainer.build_model(config_lib.ModelConfig(), tc)
    ds = (trainer.input_fn(files, spec, batch_size, seed=tc.seed) if name == "trainer_path"
          else ranking_models.dataset(arrays, batch_size, tc.seed))
    clock = ranking_models.step_clock()
    model.fit(ds, steps_per_epoch=steps + 1, verbose=0, callbacks=[clock])
    speeds[f"{name}_examples_per_s"] = clock.steady(batch_size)["examples_per_s"]
  speeds["trainer_path_over_in_memory"] = (speeds["trainer_path_examples_per_s"]
                                           / speeds["in_memory_examples_per_s"])
  speeds["steps"] = steps
  return speeds


def measure(paths: Dict[str, str], arrays) -> Dict[str, object]:
  """The ``input_path`` block of the throughput results (both measurements)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  spec = tft.TFTransformOutput(paths["transform_output"]).transformed_feature_spec()
  files = sorted(tf.io.gfile.glob(paths["train"]))
  arrays = {k: v for k, v in arrays.items() if k in spec}
  return {"stages": stage_throughput(files, spec, arrays),
          "training": training_ratio(files, spec, arrays)}


def lines(block) -> list:
  """The docs lines of the input path (nothing when it has not run)."""
  if not block:
    return []
  rows = [f"| {s} | {v['examples_per_s']:,.0f} | {v['cpu_us_per_example']:.1f} |"
          for s, v in block["stages"].items()]
  t = block["training"]
  return ["", "Input path, batch 512 (`bench/ranking_input_path.py`; each stage includes "
          "the ones above it; no transform stage at training time: TFT materialises the "
          "features):", "", "| stage | examples/s | CPU us/example |", "|---|---|---|",
          *rows, "",
          f"- training, default model, {t['steps']} steady steps: Trainer path "
          f"{t['trainer_path_examples_per_s']:,.0f} examples/s, in memory "
          f"{t['in_memory_examples_per_s']:,.0f}: **ratio "
          f"{t['trainer_path_over_in_memory']:.2f}** (target >= 0.80)"]
