"""The ranking benchmark's model variants and one run of one of them: train a fixed number
of steps on in-memory arrays, time the steady state, score every measurable head.

Variants are ``ranking.config.model_config_from_name`` names (single-task, shared-bottom,
MMoE, PLE), ablations (a base name with ``ModelConfig`` overrides: without the listener-id
dropout, without the Transformer) and the two reference rankers of ``ranking.baselines``:
``popularity`` (each track's mean label in training; nothing trained) and ``linear`` (one
linear model per head over every transformed feature, trained like the others).
"""

import time
from typing import Dict, List

from bench import common
from features import feature_spec

# Ablation: MMoE without the listener-id dropout (``ModelConfig.user_id_dropout``). The
# eval split holds out whole listeners, whose ids are OOV; this row shows what training
# those OOV rows is worth.
NO_ID_DROPOUT = "mmoe|user_id_dropout=0"
# Sequence ablations (``ModelConfig.sequence_model``): the same model without the
# Transformer blocks, with target attention over the single-play tokens (DIN-style) or
# with only their masked means (flat MMoE / PLE).
TARGET_ATTENTION_ONLY = "mmoe|sequence_model=target_attention"
FLAT_MMOE = "mmoe|sequence_model=pooled"
FLAT_PLE = "ple|sequence_model=pooled"
# The flat MMoE given the most recent play's token as well (``ModelConfig.recent_play``):
# how much of what the Transformer adds is the last play alone.
FLAT_MMOE_RECENT = "mmoe|sequence_model=pooled|recent_play=1"
ABLATIONS = {NO_ID_DROPOUT: ("mmoe", {"user_id_dropout": 0.0}),
             TARGET_ATTENTION_ONLY: ("mmoe", {"sequence_model": "target_attention"}),
             FLAT_MMOE: ("mmoe", {"sequence_model": "pooled"}),
             FLAT_PLE: ("ple", {"sequence_model": "pooled"}),
             FLAT_MMOE_RECENT: ("mmoe", {"sequence_model": "pooled", "recent_play": True})}
POPULARITY = "popularity"
LINEAR = "linear"
BASELINES = (POPULARITY, LINEAR)
# What the default model is measured against: the reference rankers and the
# sequence-free ablations of the same model.
REFERENCES = BASELINES + (FLAT_MMOE, FLAT_PLE, TARGET_ATTENTION_ONLY, FLAT_MMOE_RECENT)
MODELS = BASELINES + ("single:interest", "single:subscription", "single:exposure",
                      "shared_bottom", "mmoe", "ple", NO_ID_DROPOUT, TARGET_ATTENTION_ONLY,
                      FLAT_MMOE, FLAT_PLE, FLAT_MMOE_RECENT)
HEADS = feature_spec.LABEL_KEYS


def metric_columns() -> List[str]:
  """The metric of every head: ``<head>_auc`` (binary) or ``<head>_rmse`` (regression)."""
  from ranking import tasks  # pylint: disable=g-import-not-at-top
  return [tasks.metric_name(h) for h in HEADS]


def fixed_options():
  """tf.data options of the in-memory pipelines: no autotuning.

  They use no AUTOTUNE parameter, and a live autotuning thread makes the iterator's
  teardown at the end of ``fit``/``evaluate`` wait for its current sleep (its period
  doubles up to seconds), idle time that would count against every run.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  options = tf.data.Options()
  options.autotune.enabled = False
  return options


def dataset(arrays, batch_size: int, seed: int):
  """The shuffled, repeated, batched training dataset of in-memory arrays."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  n = len(next(iter(arrays.values())))
  ds = tf.data.Dataset.from_tensor_slices(arrays).shuffle(min(n, 20000), seed=seed)
  ds = ds.repeat().batch(batch_size, drop_remainder=True).prefetch(2)
  return ds.with_options(fixed_options())


def step_clock():
  """A Keras callback recording (wall, CPU) at the end of every training batch.

  ``Model.fit`` runs each step synchronously, so a mark is taken when the step is done.
  Timing from the first mark (tracing is over) to the last one leaves out the one-off
  cost of building the graph and of tearing down ``fit`` (the iterator teardown after
  the last step can sit idle for seconds).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class StepClock(tf.keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.marks = []

    def on_train_batch_end(self, batch, logs=None):
      self.marks.append((time.perf_counter(), time.process_time()))

    def steady(self, batch_size: int) -> Dict[str, float]:
      if len(self.marks) < 2:
        raise ValueError("need at least two steps to time the steady state")
      (w0, c0), (w1, c1) = self.marks[0], self.marks[-1]
      n = len(self.marks) - 1
      return {"steps": n, "wall_s_per_step": (w1 - w0) / n, "cpu_s_per_step": (c1 - c0) / n,
              "examples_per_s": n * batch_size / (w1 - w0)}

  return StepClock()


def _score_popularity(data, covered: Dict[str, bool]) -> Dict[str, float]:
  """The popularity baseline's headline metric on every covered head."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import tasks  # pylint: disable=g-import-not-at-top
  from ranking.baselines import popularity  # pylint: disable=g-import-not-at-top
  heads = [h for h in HEADS if covered.get(h)]
  preds = popularity.TrackMeanBaseline(heads).fit(data["train"]).predict(data["eval"])
  out = {}
  for head in heads:
    metric = tasks.label_metrics(head)[0]
    metric.update_state(tf.constant(data["eval"][head].reshape(-1), tf.float32),
                        tf.constant(preds[head]),
                        sample_weight=data["eval"][feature_spec.weight_key(head)].reshape(-1))
    out[tasks.metric_name(head)] = float(metric.result())
  return out


def build(name: str, batch_size: int, seed: int):
  """The trainable variant ``name``, compiled with the default optimisers.

  Returns:
    (the model, the labels it predicts).
  """
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  from ranking.baselines import linear  # pylint: disable=g-import-not-at-top
  train_config = config_lib.TrainConfig(batch_size=batch_size, seed=seed)
  if name == LINEAR:
    model = linear.LinearRanker(HEADS, train_config)
    labels = model.labels
  else:
    base, overrides = ABLATIONS.get(name, (name, {}))
    model_config = config_lib.model_config_from_name(base, **overrides)
    model = model_lib.RankingModel(model_config, train_config)
    labels = model_config.labels
  model.compile(model_lib.make_optimizer(model, train_config))
  return model, labels


def train_and_eval(name: str, data, steps: int, batch_size: int, seed: int,
                   covered: Dict[str, bool]) -> Dict[str, float]:
  """Trains variant ``name`` for ``steps`` steps and scores it on the eval split.

  Args:
    name: a variant of :data:`MODELS`.
    data: ``{"train": arrays, "eval": arrays}`` (transformed features and labels).
    steps, batch_size, seed: the run's training budget and seed.
    covered: per head, whether it is measured on this dataset.

  Returns:
    ``{"model", "seed", "train_examples_per_s", "cpu_ms_per_example"}`` and the metric of every covered head
    the variant has.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from ranking import tasks  # pylint: disable=g-import-not-at-top
  if name == POPULARITY:   # nothing to train: the same numbers for every seed
    return {"model": name, "seed": seed, **_score_popularity(data, covered)}
  tf.keras.utils.set_random_seed(seed)
  model, labels = build(name, batch_size, seed)
  clock = step_clock()
  t0 = time.perf_counter()
  model.fit(dataset(data["train"], batch_size, seed), steps_per_epoch=steps, verbose=0,
            callbacks=[clock])
  t1 = time.perf_counter()
  ev = tf.data.Dataset.from_tensor_slices(data["eval"]).batch(2048)
  metrics = model.evaluate(ev.with_options(fixed_options()), return_dict=True, verbose=0)
  common.log("ranking", f"{name} seed {seed}: first step after {clock.marks[0][0] - t0:.1f}s, "
             f"fit {t1 - t0:.1f}s, evaluate {time.perf_counter() - t1:.1f}s")
  steady = clock.steady(batch_size)
  row = {"model": name, "seed": seed, "train_examples_per_s": steady["examples_per_s"],
         "cpu_ms_per_example": 1e3 * steady["cpu_s_per_step"] / batch_size}
  for head in labels:
    if not covered.get(head):
      continue
    key = tasks.metric_name(head)
    row[key] = float(metrics[key])
  return row
