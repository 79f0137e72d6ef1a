"""The ranking benchmark's ``convergence`` part: every variant trained until it stops
improving on listeners held out of the training split, then scored once on the eval split.

A fixed step budget favours the models that learn fastest per step; this part compares
models at their own convergence under one rule. Listeners of the training split are held
out by id (``ranking_curves.holdout_listeners``, their ids sent to the OOV buckets); every
variant trains on the rest and is checked on them ``checks_per_epoch`` times per pass over
those impressions. The selection score is the same for every model: the sum of the
held-out AUCs of the measured binary heads minus the sum of the held-out RMSEs of the
measured regression heads. Training stops after ``patience`` checks without a better
score (or after ``max_epochs`` passes, rounded up to a whole check), the weights of the
best check are restored, and only those are scored on the eval split, whose listeners no
run ever sees.

The causal model trained sequence-level (``ranking.sequence_training``) is checked the same
way, through the per-impression (serving) path, with the same impressions per check.
"""

import math
import time
from typing import Dict, List, Optional, Sequence

from bench import common
from bench import ranking_compare
from bench import ranking_curves
from bench import ranking_models
from bench import ranking_sequence_report
from bench import ranking_targets
from features import feature_spec

SEQUENCE_LEVEL = "causal|sequence_level"


def selection_score(metrics: Dict[str, float], covered: Dict[str, bool],
                    prefix: str = "") -> float:
  """The early-stopping score: sum of measured AUCs minus sum of measured RMSEs.

  Args:
    metrics: Keras logs (``<prefix><head>_auc`` / ``<prefix><head>_rmse``).
    covered: per head, whether it is measured.
    prefix: ``"val_"`` for the logs of ``fit``'s validation.

  Returns:
    The score (higher is better).
  """
  from ranking import tasks  # pylint: disable=g-import-not-at-top
  score = 0.0
  for head, ok in covered.items():
    key = prefix + tasks.metric_name(head)
    if not ok or key not in metrics:
      continue
    score += -float(metrics[key]) if key.endswith("_rmse") else float(metrics[key])
  return score


class Patience:
  """The stopping rule: stop after ``patience`` checks without a better score.

  Args:
    patience: checks without improvement before stopping.
    min_delta: how much better a score must be to count as an improvement.
  """

  def __init__(self, patience: int, min_delta: float = 1e-4):
    if patience < 1:
      raise ValueError(f"patience must be at least 1, got {patience}")
    self.patience = patience
    self.min_delta = min_delta
    self.best: Optional[float] = None
    self.best_check = -1
    self.checks = 0

  def update(self, score: float) -> bool:
    """Records one check's score; returns whether it is the best so far."""
    self.checks += 1
    if self.best is None or score > self.best + self.min_delta:
      self.best, self.best_check = score, self.checks - 1
      return True
    return False

  @property
  def done(self) -> bool:
    return self.checks - 1 - self.best_check >= self.patience


def _callback(rule: Patience, covered: Dict[str, bool], trace: List[Dict[str, float]],
              examples_per_check: float):
  """A Keras callback applying ``rule`` at every epoch end (one epoch = one check)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  class BestOnHeldOut(tf.keras.callbacks.Callback):

    def __init__(self):
      super().__init__()
      self.best_weights = None

    def on_epoch_end(self, epoch, logs=None):
      logs = logs or {}
      score = selection_score(logs, covered, prefix="val_")
      trace.append({"examples": int(round((epoch + 1) * examples_per_check)),
                    "score": score, **{k[4:]: float(v) for k, v in logs.items()
                                       if k.startswith("val_") and k != "val_loss"}})
      if rule.update(score):
        self.best_weights = self.model.get_weights()
      if rule.done:
        self.model.stop_training = True

  return BestOnHeldOut()


def _sequence_setup(train, batch_size: int, seed: int, context: int = 10):
  """The causal model, compiled, its sequence-level dataset and impressions per step."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from features import sequence_examples  # pylint: disable=g-import-not-at-top
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  from ranking import sequence_training  # pylint: disable=g-import-not-at-top
  sequences = sequence_examples.build(train, feature_spec.HISTORY_LEN, context)
  per_chunk = float(np.mean(sequences[sequence_examples.STEP_WEIGHT].sum(axis=1)))
  chunks = max(1, int(round(batch_size / per_chunk)))
  train_config = config_lib.TrainConfig(seed=seed, sequence_level=True,
                                        sequence_context=context)
  model = sequence_training.SequenceRankingModel(
      config_lib.ModelConfig(sequence_model="causal"), train_config)
  model.compile(model_lib.make_optimizer(model, train_config))
  ds = sequence_examples.sequence_dataset(sequences, chunks, seed=seed)
  return model, ds.with_options(ranking_models.fixed_options()), chunks * per_chunk


def train_to_convergence(name: str, data, batch_size: int, seed: int,
                         covered: Dict[str, bool], check_examples: int, patience: int,
                         max_examples: int) -> Dict[str, object]:
  """Trains ``name`` under the stopping rule and scores its best check on the eval split.

  Args:
    name: a trainable variant of ``ranking_models.MODELS`` or :data:`SEQUENCE_LEVEL`.
    data: ``{"fit", "holdout", "eval"}`` arrays.
    batch_size, seed: the per-impression batch and the seed.
    covered: per head, whether it is measured.
    check_examples: trained impressions between two checks.
    patience: checks without improvement before stopping.
    max_examples: the most impressions any run trains.

  Returns:
    ``model``, ``seed``, the eval metrics, ``best_examples`` (impressions trained at the
    best check), ``stopped_examples``, ``train_wall_s`` and the held-out ``trace``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.keras.utils.set_random_seed(seed)
  if name == SEQUENCE_LEVEL:
    model, ds, per_step = _sequence_setup(data["fit"], batch_size, seed)
  else:
    model, _ = ranking_models.build(name, batch_size, seed)
    ds, per_step = ranking_models.dataset(data["fit"], batch_size, seed), float(batch_size)
  steps = max(1, int(round(check_examples / per_step)))
  checks = max(1, int(math.ceil(max_examples / (steps * per_step))))
  batched = lambda a: tf.data.Dataset.from_tensor_slices(a).batch(4096).with_options(
      ranking_models.fixed_options())
  rule, trace = Patience(patience), []
  best = _callback(rule, covered, trace, steps * per_step)
  t0, c0 = time.perf_counter(), time.process_time()
  model.fit(ds, epochs=checks, steps_per_epoch=steps, validation_data=batched(data["holdout"]),
            verbose=0, callbacks=[best])
  wall, cpu = time.perf_counter() - t0, time.process_time() - c0
  model.set_weights(best.best_weights)
  metrics = model.evaluate(batched(data["eval"]), return_dict=True, verbose=0)
  row = {"model": name, "seed": seed, "best_examples": trace[rule.best_check]["examples"],
         "stopped_examples": trace[-1]["examples"], "train_wall_s": wall, "train_cpu_s": cpu,
         "trace": trace}
  row.update({k: float(metrics[k]) for k in ranking_models.metric_columns() if k in metrics
              and covered.get(k.rsplit("_", 1)[0])})
  common.log("ranking", f"convergence {name} seed {seed}: best at {row['best_examples']:,} "
             f"impressions, stopped at {row['stopped_examples']:,}, {wall:.0f}s wall, "
             + ", ".join(f"{k}={v:.4f}" for k, v in row.items()
                         if k.endswith(("_auc", "_rmse"))))
  return row


def split_for_convergence(data, max_holdout: int = 10_000, seed: int = 0):
  """``{"fit", "holdout", "eval"}``: the training split less 15% of its listeners, up to
  ``max_holdout`` impressions of those listeners (drawn with ``seed``), the eval split."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  held = ranking_curves.holdout_listeners(data["train"])
  hold = held["eval"]
  n = len(hold[feature_spec.LABEL_KEYS[0]])
  if n > max_holdout:   # the checks' cost grows with it; the final score uses all of eval
    rows = np.sort(np.random.default_rng(seed).choice(n, max_holdout, replace=False))
    hold = {k: np.asarray(v)[rows] for k, v in hold.items()}
  return {"fit": held["train"], "holdout": hold, "eval": data["eval"]}


def compare_at_convergence(data, models: Sequence[str], batch_size: int, seeds,
                           checks_per_epoch: int = 2, patience: int = 2,
                           max_epochs: float = 3.0,
                           default: str = SEQUENCE_LEVEL) -> Dict[str, object]:
  """The ``convergence`` block: every (model, seed) run, means, and ``default`` minus each
  other model, paired by seed.

  Args:
    data: ``{"train": arrays, "eval": arrays}``.
    models: variants of ``ranking_models.MODELS`` (not popularity) or
      :data:`SEQUENCE_LEVEL`.
    batch_size, seeds: per-impression batch and the training seeds.
    checks_per_epoch: checks per pass over the training listeners' impressions.
    patience: checks without improvement before stopping.
    max_epochs: the most passes any run trains.
    default: the model the paired differences are taken from.

  Returns:
    ``rows``, ``mean``, ``paired``, the rule and the split sizes.
  """
  split = split_for_convergence(data)
  covered = {h: bool(ranking_compare.head_coverage(data, h)["covered"])
             for h in ranking_models.HEADS}
  rule = convergence_rule(split, batch_size, checks_per_epoch, patience, max_epochs)
  rows = [train_to_convergence(name, split, batch_size, seed, covered,
                               rule["check_examples"], patience, rule["max_examples"])
          for seed in seeds for name in models]
  return summarise(rows, models, default, rule, split, batch_size)


def convergence_rule(split, batch_size: int, checks_per_epoch: int, patience: int,
                     max_epochs: float) -> Dict[str, object]:
  """The stopping rule in impressions, from the training listeners' impressions."""
  epoch = len(split["fit"][feature_spec.LABEL_KEYS[0]])
  return {"check_examples": max(batch_size, epoch // checks_per_epoch), "patience": patience,
          "checks_per_epoch": checks_per_epoch, "max_epochs": max_epochs,
          "max_examples": int(max_epochs * epoch), "holdout_percent": 15,
          "score": "sum of held-out AUCs minus sum of held-out RMSEs"}


def summarise(rows, models: Sequence[str], default: str, rule, split,
              batch_size: int) -> Dict[str, object]:
  """The block of :func:`compare_at_convergence` from its runs (possibly run apart)."""
  keys = ranking_models.metric_columns() + ["best_examples", "train_wall_s", "train_cpu_s"]
  flat = [{k: v for k, v in r.items() if k != "trace"} for r in rows]
  return {"rows": rows, "mean": ranking_targets.mean_rows(flat, list(models)),
          "paired": {f"{default} minus {other}": ranking_targets.paired_diffs(flat, default,
                                                                              other, keys)
                     for other in models if other != default and default in models},
          "rule": rule, "seeds": sorted({r["seed"] for r in rows}), "batch_size": batch_size,
          "fit_examples": int(len(split["fit"][feature_spec.LABEL_KEYS[0]])),
          "holdout_examples": int(len(split["holdout"][feature_spec.LABEL_KEYS[0]]))}


def lines(block: Optional[Dict[str, object]], part: Optional[Dict[str, object]]) -> List[str]:
  """The part's lines in the ranking section of ``docs/benchmarks.md`` (none before it ran)."""
  if not block:
    return []
  heads, rows = ranking_sequence_report.metric_cells(block["mean"])
  for r, row in zip(block["mean"], rows):
    row["impressions at best check"] = f"{r['best_examples']:,.0f}"
    row["train CPU s"] = f"{r['train_cpu_s']:,.0f}"
  rule = block["rule"]
  when = ""
  if part:
    when = (f" Measured {part['measured_at']} ({part['runtime_s']:,.0f} s, load average "
            f"{part['load_average_before'][0]:.1f} before, "
            f"{part['load_average_after'][0]:.1f} after"
            + (f"; {part['note']}" if part.get("note") else "") + ").")
  out = ["", "### At convergence (`MELODY_BENCH_RANKING_ONLY=convergence`)", "",
         f"Same simulator split. {rule['holdout_percent']}% of the training split's listeners "
         f"are held out ({block['fit_examples']:,} training / {block['holdout_examples']:,} "
         f"held-out impressions); every model is checked on them every "
         f"{rule['check_examples']:,} trained impressions and stops after "
         f"{rule['patience']} checks without a better score ({rule['score']}), at most "
         f"{rule['max_examples']:,} impressions ({rule['max_epochs']:g} passes, rounded up "
         "to a whole check); the best "
         f"check's weights are scored on the eval split. Seeds {block['seeds']}, batch "
         f"{block['batch_size']} (sequence-level: "
         "about as many trained impressions a step)." + when, "",
         common.table(rows, ["model", "seeds"] + heads
                      + ["impressions at best check", "train CPU s"]), ""]
  for name, per_head in block["paired"].items():
    out.append(f"- `{name}` (paired over seeds): " + "; ".join(
        f"{k} {p['mean']:+.4f} (se {p['se']:.4f})" for k, p in per_head.items()
        if k in heads))
  return out
