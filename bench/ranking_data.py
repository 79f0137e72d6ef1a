"""The ranking benchmark's datasets: the simulator (with its conversion setting) and the
real sources, as transformed arrays per split, and what their labels say.

The simulated world is the calibrated one except for one benchmark setting: the
conversion hazard is scaled (``world_overrides`` of ``datagen.run``), because at the
calibrated rate a few thousand listeners convert only a handful of times and the
subscription head could not be measured at all. The real sources (KKBox, 30Music) go
through ``features.datasets.registry`` and ``features.splits`` like any import.
"""

import glob
import json
import os
from typing import Dict, List

import numpy as np

from features import feature_spec


def _write(path: str, records: List[bytes]) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in records:
      w.write(r)


def _load_transformed(paths: Dict[str, str]) -> Dict[str, Dict[str, np.ndarray]]:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top
  spec = tft.TFTransformOutput(paths["transform_output"]).transformed_feature_spec()
  out = {}
  for split in ("train", "eval"):
    files = sorted(tf.io.gfile.glob(paths[split]))
    parts = []
    for raw in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096):
      parts.append({k: v.numpy() for k, v in tf.io.parse_example(raw, spec).items()})
    out[split] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return out


def conversion_overrides(scale: float) -> Dict[str, object]:
  """``datagen.run`` world overrides that multiply the conversion hazard by ``scale``."""
  from simulation.world_config import WorldConfig  # pylint: disable=g-import-not-at-top
  if scale <= 0:
    raise ValueError(f"conversion scale must be positive, got {scale}")
  if scale == 1:
    return {}
  return {"base_hazard": tuple(float(h) * scale for h in WorldConfig().base_hazard)}


def simulator_data(work: str, users: int, days: int = 10, conversion_scale: float = 1.0,
                   eval_percent: int = 10):
  """Generates and transforms the simulator dataset.

  Returns:
    (arrays per split, the transform paths, the generator manifest).
  """
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from simulation import datagen  # pylint: disable=g-import-not-at-top
  sim = os.path.join(work, "sim")
  datagen.run(users=users, days=days, out=sim, seed=7, shards=2, eval_percent=eval_percent,
              world_overrides=conversion_overrides(conversion_scale))
  paths = preprocessing.transform_dataset(
      os.path.join(sim, "examples", "train-*.tfrecord.gz"), os.path.join(sim, "xf"),
      eval_file_pattern=os.path.join(sim, "examples", "eval-*.tfrecord.gz"))
  with open(os.path.join(sim, "manifest.json")) as f:
    manifest = json.load(f)
  return _load_transformed(paths), paths, manifest


def converters(sim_dir: str, eval_percent: int) -> Dict[str, int]:
  """Listeners of a simulator dataset with a conversion event, in all and in the eval
  split."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  from features import splits  # pylint: disable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(sim_dir, "events", "*.parquet")))
  log = pd.concat([pd.read_parquet(p, columns=["user_id", "subscription"]) for p in files])
  conv = log.loc[log["subscription"] > 0, "user_id"].unique()
  return {"converting_listeners": int(len(conv)),
          "eval_converting_listeners": int(splits.eval_mask(list(conv), eval_percent).sum())}


def real_data(work: str, source: str, data_dir: str,
              max_events: int = 40_000) -> Dict[str, Dict[str, np.ndarray]]:
  """A real source's first listeners as transformed arrays per split.

  Args:
    work: scratch directory for the raw and transformed records.
    source: a ``features.datasets.registry`` name (``kkbox``, ``30music``).
    data_dir: where the shared datasets live.
    max_events: plays kept, in whole listeners taken by id.

  Returns:
    ``{"train": arrays, "eval": arrays}``.
  """
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  from features import events as event_schema  # pylint: disable=g-import-not-at-top
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from features import raw_features  # pylint: disable=g-import-not-at-top
  from features import splits  # pylint: disable=g-import-not-at-top
  from features.datasets import registry  # pylint: disable=g-import-not-at-top
  events, tracks, _ = registry.load(source, data_dir)
  # Whole users, first ones by id, up to ``max_events`` plays: keeps the Beam transform
  # and the per-model training comparable in cost to the simulator run.
  counts = events.groupby("user_id").size().sort_index()
  keep = counts.index[np.cumsum(counts.to_numpy()) <= max_events]
  events = events[events["user_id"].isin(keep)]
  events = events.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
  table = pa.Table.from_pandas(events, schema=event_schema.EVENT_SCHEMA, preserve_index=False)
  split = splits.split_examples(table, raw_features.TrackIndex(tracks))
  root = os.path.join(work, source)
  for name, records in split.items():
    _write(os.path.join(root, "raw", f"{name}-00000-of-00001.tfrecord.gz"), records)
  paths = preprocessing.transform_dataset(
      os.path.join(root, "raw", "train-*.tfrecord.gz"), os.path.join(root, "xf"),
      eval_file_pattern=os.path.join(root, "raw", "eval-*.tfrecord.gz"))
  return _load_transformed(paths)


def label_profile(split: Dict[str, np.ndarray]) -> Dict[str, Dict[str, float]]:
  """What the labels say about promo vs organic candidates (the built-in conflict).

  Returns:
    ``{"organic"|"promo": {label: weighted mean, "rows": n}}`` plus
    ``{"promo": {"corr_exposure_completion": r}}`` (Pearson, promo rows).
  """
  promo = np.asarray(split[feature_spec.xf("cand_is_promo")]).reshape(-1) > 0
  out = {}
  for name, rows in (("organic", ~promo), ("promo", promo)):
    d = {"rows": int(rows.sum())}
    for lab in feature_spec.LABEL_KEYS:
      w = np.asarray(split[feature_spec.weight_key(lab)]).reshape(-1)[rows]
      y = np.asarray(split[lab]).reshape(-1)[rows]
      d[lab] = float((w * y).sum() / w.sum()) if w.sum() > 0 else float("nan")
    out[name] = d
  if promo.sum() > 2:
    c = np.asarray(split["interest_completion"]).reshape(-1)[promo]
    e = np.asarray(split["exposure"]).reshape(-1)[promo]
    out["promo"]["corr_exposure_completion"] = float(np.corrcoef(c, e)[0, 1])
  return out
