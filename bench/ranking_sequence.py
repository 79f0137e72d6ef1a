"""The ranking benchmark's ``sequence`` part: sequence-level against per-impression training.

On the same simulator split, in one process, one run after another (same CPU, same
precision, same threads), every seed trains:

* the per-impression reference models of ``ranking_models``: the default Transformer
  MMoE (``mmoe``), the flat MMoE and the linear model, ``examples`` impressions each
  (``steps`` steps of ``batch_size``);
* the causal model sequence-level (``ranking.sequence_training``): chunks of
  ``HISTORY_LEN`` impressions, ``context`` of them read only, about ``batch_size``
  trained impressions a step, first for the same number of impressions seen, then for
  the wall time the default model's steady state took.

Every run is scored per head on the eval split through the per-impression path (what
serving runs). Speeds are steady state (from the end of the first step to the end of the
last); CPU per example is process CPU time over trained impressions.
"""

import json
import math
import time
from typing import Dict, List

from bench import common
from bench import ranking_compare
from bench import ranking_models
from bench import ranking_targets
from features import feature_spec

SEQUENCE_LEVEL = "causal, sequence-level"
SEQUENCE_LEVEL_WALL = "causal, sequence-level, equal wall time"
PER_IMPRESSION = ("mmoe", ranking_models.FLAT_MMOE, ranking_models.LINEAR)


def _stop_after_wall(seconds: float):
  """A callback that ends ``fit`` once the steady state has run ``seconds``."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class StopAfterWall(tf.keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.start = None

    def on_train_batch_end(self, batch, logs=None):
      now = time.perf_counter()
      if self.start is None:
        self.start = now
      elif now - self.start >= seconds:
        self.model.stop_training = True

  return StopAfterWall()


def _sequence_run(name: str, sequences, data, examples_per_step: float, chunks: int,
                  steps: int, seed: int, covered, wall_s: float = 0.0) -> Dict[str, float]:
  """Trains the causal model sequence-level and scores it per impression."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from features import sequence_examples  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  from ranking import sequence_training  # pylint: disable=g-import-not-at-top
  from ranking import tasks  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  train_config = config_lib.TrainConfig(seed=seed, sequence_level=True)
  model = sequence_training.SequenceRankingModel(
      config_lib.ModelConfig(sequence_model="causal"), train_config)
  model.compile(model_lib.make_optimizer(model, train_config))
  ds = sequence_examples.sequence_dataset(sequences, chunks, seed=seed)
  clock = ranking_models.step_clock()
  callbacks = [clock] + ([_stop_after_wall(wall_s)] if wall_s else [])
  model.fit(ds.with_options(ranking_models.fixed_options()),
            steps_per_epoch=steps if not wall_s else 10 ** 6, verbose=0, callbacks=callbacks)
  steady = clock.steady(examples_per_step)
  ev = tf.data.Dataset.from_tensor_slices(data["eval"]).batch(2048)
  metrics = model.evaluate(ev.with_options(ranking_models.fixed_options()),
                           return_dict=True, verbose=0)
  row = {"model": name, "seed": seed, "train_examples_per_s": steady["examples_per_s"],
         "cpu_ms_per_example": 1e3 * steady["cpu_s_per_step"] / examples_per_step,
         "examples_seen": int(round(len(clock.marks) * examples_per_step)),
         "train_wall_s": steady["wall_s_per_step"] * steady["steps"]}
  for head in model.config.labels:
    if covered.get(head):
      row[tasks.metric_name(head)] = float(metrics[tasks.metric_name(head)])
  common.log("ranking", f"{name} seed {seed}: {row['train_examples_per_s']:,.0f} examples/s, "
             f"{row['examples_seen']:,} examples")
  return row


def _impression_run(name: str, data, steps: int, batch_size: int, seed: int, covered):
  row = ranking_models.train_and_eval(name, data, steps, batch_size, seed, covered)
  row["examples_seen"] = steps * batch_size
  return row


def sequence_comparison(data, steps: int, batch_size: int, seeds,
                        context: int = 10, equal_wall: bool = True) -> Dict[str, object]:
  """The ``sequence`` block of the results (see the module docstring).

  Args:
    data: ``{"train": arrays, "eval": arrays}`` of the simulator.
    steps: per-impression steps (the examples budget is ``steps * batch_size``).
    batch_size: per-impression batch; the sequence-level batch trains about as many.
    seeds: training seeds.
    context: ``TrainConfig.sequence_context``.
    equal_wall: also train sequence-level for the default model's wall time.

  Returns:
    ``rows`` (one per model and seed), ``mean``, ``paired`` (sequence-level minus each
    per-impression model) and the speed ratios.
  """
  import numpy as np  # pylint: disable=g-import-not-at-top
  from features import sequence_examples  # pylint: disable=g-import-not-at-top
  covered = {h: bool(ranking_compare.head_coverage(data, h)["covered"])
             for h in ranking_models.HEADS}
  t0 = time.perf_counter()
  sequences = sequence_examples.build(data["train"], feature_spec.HISTORY_LEN, context)
  build_s = time.perf_counter() - t0
  per_chunk = float(np.mean(sequences[sequence_examples.STEP_WEIGHT].sum(axis=1)))
  chunks = max(1, int(round(batch_size / per_chunk)))
  per_step = chunks * per_chunk
  seq_steps = int(math.ceil(steps * batch_size / per_step))
  rows: List[Dict[str, float]] = []
  for seed in seeds:
    for name in PER_IMPRESSION:
      rows.append(_impression_run(name, data, steps, batch_size, seed, covered))
    rows.append(_sequence_run(SEQUENCE_LEVEL, sequences, data, per_step, chunks, seq_steps,
                              seed, covered))
    if equal_wall:
      default_wall = (steps * batch_size
                      / rows[-len(PER_IMPRESSION) - 1]["train_examples_per_s"])
      rows.append(_sequence_run(SEQUENCE_LEVEL_WALL, sequences, data, per_step, chunks, 0,
                                seed, covered, wall_s=default_wall))
    seed_rows = len(PER_IMPRESSION) + 1 + int(equal_wall)
    for row in rows[-seed_rows:]:   # kept in the log if a later seed fails
      common.log("ranking", "sequence part row " + json.dumps(row, sort_keys=True))
  sequence_names = [SEQUENCE_LEVEL] + ([SEQUENCE_LEVEL_WALL] if equal_wall else [])
  names = list(PER_IMPRESSION) + sequence_names
  mean = ranking_targets.mean_rows(rows, names)
  keys = ranking_models.metric_columns()
  speed = {r["model"]: r["train_examples_per_s"] for r in mean}
  return {"rows": rows, "mean": mean, "context": context, "chunks_per_step": chunks,
          "examples_per_step": per_step, "chunks": int(len(sequences[
              sequence_examples.STEP_VALID])), "sequence_build_s": build_s,
          "examples_budget": steps * batch_size, "steps": steps, "batch_size": batch_size,
          "seeds": list(seeds),
          "paired": {f"{seq} minus {other}": ranking_targets.paired_diffs(rows, seq, other,
                                                                          keys)
                     for seq in sequence_names
                     for other in PER_IMPRESSION},
          "speedup_vs_default": speed[SEQUENCE_LEVEL] / speed["mmoe"],
          "cpu_per_example_vs_flat_mmoe": _cpu_ratio(rows)}


def _cpu_ratio(rows) -> float:
  """Mean CPU per example of sequence-level training over the flat MMoE's."""
  def mean_cpu(name):
    vals = [r["cpu_ms_per_example"] for r in rows if r["model"] == name]
    return sum(vals) / len(vals)
  return mean_cpu(SEQUENCE_LEVEL) / mean_cpu(ranking_models.FLAT_MMOE)
