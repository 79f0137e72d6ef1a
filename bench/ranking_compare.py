"""The ranking benchmark's comparison on one dataset: which heads its labels can measure,
and every (variant, seed) run, one at a time or in single-threaded worker processes.
"""

import os
import time
from typing import Dict, Optional, Sequence

import numpy as np

from bench import common
from bench import ranking_models
from bench import ranking_targets
from features import feature_spec

MIN_POSITIVES = 10


def head_coverage(data, head: str, min_positives: int = MIN_POSITIVES) -> Dict[str, object]:
  """Whether a head can be measured, with the counts behind the answer.

  A head is measured when both splits carry its label (weight > 0) and, for a binary
  head, the eval split has at least ``min_positives`` positives and as many negatives.
  """
  info = {}
  for split in ("train", "eval"):
    info[f"{split}_rows"] = int((np.asarray(data[split][feature_spec.weight_key(head)]) > 0).sum())
  w = np.asarray(data["eval"][feature_spec.weight_key(head)]).reshape(-1) > 0
  y = np.asarray(data["eval"][head]).reshape(-1)[w]
  if head in feature_spec.BINARY_LABELS:
    info["eval_positives"] = int((y > 0.5).sum())
    info["eval_negatives"] = int((y <= 0.5).sum())
  if not info["train_rows"] or not info["eval_rows"]:
    info["covered"] = False
    info["reason"] = ("label absent from the source"
                      if not info["train_rows"] and not info["eval_rows"] else
                      f"label absent from the {'train' if not info['train_rows'] else 'eval'} "
                      "split")
  elif head in feature_spec.BINARY_LABELS and min(info["eval_positives"],
                                                  info["eval_negatives"]) < min_positives:
    info["covered"] = False
    info["reason"] = (f"{info['eval_positives']:,} positives / {info['eval_negatives']:,} "
                      f"negatives among {info['eval_rows']:,} labelled eval rows "
                      f"(< {min_positives})")
  else:
    info["covered"] = True
    info["reason"] = ""
  return info


def _worker_init() -> None:
  """A training worker: one intra-op and one inter-op thread (set before any op runs)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_inter_op_parallelism_threads(1)
  tf.config.threading.set_intra_op_parallelism_threads(1)


_WORKER_DATA: Dict[str, Dict[str, Dict[str, np.ndarray]]] = {}


def save_splits(data, path: str) -> str:
  """Writes ``{"train": arrays, "eval": arrays}`` to one ``.npz`` file for the workers."""
  np.savez(path, **{f"{split}/{k}": v for split in ("train", "eval")
                    for k, v in data[split].items()})
  return path


def load_splits(path: str) -> Dict[str, Dict[str, np.ndarray]]:
  """Reads a :func:`save_splits` file back, dtypes and shapes unchanged."""
  data = {"train": {}, "eval": {}}
  with np.load(path) as z:
    for key in z.files:
      split, k = key.split("/", 1)
      data[split][k] = z[key]
  return data


def _worker_job(job):
  """Runs one (model, seed) in a worker; the data file is read once per worker."""
  name, data_file, steps, batch_size, seed, covered = job
  if data_file not in _WORKER_DATA:
    _WORKER_DATA.clear()
    _WORKER_DATA[data_file] = load_splits(data_file)
  t0 = time.perf_counter()
  row = ranking_models.train_and_eval(name, _WORKER_DATA[data_file], steps, batch_size, seed,
                                      covered)
  row["run_s"] = time.perf_counter() - t0
  return row


def compare_models(data, steps, batch_size, seeds,
                   models: Sequence[str] = ranking_models.MODELS, workers: int = 1,
                   work_dir: Optional[str] = None) -> Dict[str, object]:
  """Trains and scores every (model, seed) on ``data``.

  Args:
    data: ``{"train": arrays, "eval": arrays}``.
    steps, batch_size: the training budget of every run.
    seeds: the seeds every model runs.
    models: model names (``ranking.config.model_config_from_name``).
    workers: runs at a time. With 2 (on 2 cores) every run is a single-threaded process
      and two run side by side, which trains faster in all than one two-threaded run at
      a time (docs/benchmarks.md gives the ratio) and gives the same numbers up to float
      rounding.
    work_dir: where the workers' data file goes (needed when ``workers > 1``).

  Returns:
    The runs, their means, the head coverage and the settings.
  """
  coverage = {h: head_coverage(data, h) for h in ranking_models.HEADS}
  covered = {h: bool(c["covered"]) for h, c in coverage.items()}
  jobs = []
  for name in models:
    tasks = (name.split(":")[1],) if name.startswith("single:") else tuple(feature_spec.TASKS)
    if not any(covered[h] for t in tasks for h in feature_spec.TASKS[t]):
      continue
    jobs += [(name, seed) for seed in seeds]

  def done(row):
    common.log("ranking", f"{row['model']} seed {row['seed']} ({row.pop('run_s', 0.0):.0f}s): "
               + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    return row

  if workers > 1 and len(jobs) > 1:
    import concurrent.futures  # pylint: disable=g-import-not-at-top
    import multiprocessing  # pylint: disable=g-import-not-at-top
    if work_dir is None:
      raise ValueError("compare_models with workers > 1 needs a work_dir")
    data_file = save_splits(data, os.path.join(work_dir,
                                               f"splits-{len(os.listdir(work_dir))}.npz"))
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init) as pool:
      futures = [pool.submit(_worker_job, (name, data_file, steps, batch_size, seed, covered))
                 for name, seed in jobs]
      rows = [done(f.result()) for f in futures]
    os.remove(data_file)
  else:
    rows = []
    for name, seed in jobs:
      t0 = time.perf_counter()
      row = ranking_models.train_and_eval(name, data, steps, batch_size, seed, covered)
      row["run_s"] = time.perf_counter() - t0
      rows.append(done(row))
  return {"runs": rows, "mean": ranking_targets.mean_rows(rows), "covered_heads": covered,
          "coverage": coverage, "steps": steps, "batch_size": batch_size,
          "seeds": list(seeds), "workers": workers,
          "train_examples": int(len(data["train"][feature_spec.LABEL_KEYS[0]])),
          "eval_examples": int(len(data["eval"][feature_spec.LABEL_KEYS[0]]))}
