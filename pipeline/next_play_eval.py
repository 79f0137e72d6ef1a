"""The Evaluator of a play-only source: next-play Recall@k/NDCG@k against popularity.

For a dataset whose manifest says its examples are next-play examples (``next_play``,
written by ``features.sampled_negatives``), ``create_pipeline`` puts this component where
TFMA's Evaluator stands. It reads the run's examples: the plays of the train split (the
training window) give the popularity baseline and the pool of tracks; the plays of the
eval split (held-out listeners of the newest span) are the next plays to predict. Each
play is ranked among itself and ``CANDIDATES - 1`` tracks drawn uniformly from the pool
(seeded, the same draw for every scorer) by the candidate model, by popularity and by
the previously blessed model when there is one, all through the exported ``rank``
signature's next-play head. ``pipeline.next_play_metrics`` turns the rankings into
metrics and the blessing, which it writes as a ``ModelBlessing`` the Pusher and
``LatestBlessedModelStrategy`` read, and as ``next_play.json`` in a
``ModelEvaluation`` that ``melody pipeline runs`` shows.

Uniformly drawn candidates make the metrics "sampled metrics": higher than over the
whole catalogue, and only comparable between scorers ranked on the same draw, which is
how they are used here.
"""

import json
import os
from typing import Dict, Optional, Tuple

import numpy as np
from tfx import v1 as tfx
from tfx.types import standard_artifacts

from features import feature_spec
from features import sampled_negatives
from pipeline import next_play_metrics

MAX_PLAYS = 2000
_LABEL = sampled_negatives.NEXT_PLAY_LABEL
_BATCH = 32


def _split_files(examples_uri: str, split: str) -> list:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # tf.io.gfile reads remote pipeline roots (gs://) as well as local ones.
  files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, f"Split-{split}", "*")))
  if not files:
    raise FileNotFoundError(f"no {split} examples under {examples_uri}")
  return files


def read_plays(examples_uri: str, split: str, names, limit: int = 0
               ) -> Dict[str, np.ndarray]:
  """The ``names`` features of the plays (next-play label 1) of one split."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  spec = feature_spec.raw_feature_spec()
  wanted = {n: spec[n] for n in set(names) | {_LABEL}}
  parts = {n: [] for n in wanted}
  ds = tf.data.TFRecordDataset(_split_files(examples_uri, split), compression_type="GZIP")
  for batch in ds.batch(4096):
    parsed = tf.io.parse_example(batch, wanted)
    keep = parsed[_LABEL].numpy() == 1
    for n in wanted:
      parts[n].append(parsed[n].numpy()[keep])
  out = {n: np.concatenate(v) if v else np.zeros(0) for n, v in parts.items()}
  if limit and len(out[_LABEL]) > limit:   # a seeded subset keeps the cost bounded
    rows = np.sort(np.random.default_rng(0).choice(len(out[_LABEL]), limit, replace=False))
    out = {n: v[rows] for n, v in out.items()}
  return out


def candidate_sets(played: np.ndarray, pool: np.ndarray, n: int, seed: int = 0
                   ) -> np.ndarray:
  """``[B, n]`` track ids: each play's track, then ``n - 1`` other tracks of the pool.

  Args:
    played: ``[B]`` played track ids.
    pool: distinct track ids to draw from.
    n: candidates per play (at most the pool size + 1).
    seed: the draw's seed.
  """
  others = min(n - 1, len(pool) - 1) if len(pool) else 0
  rng = np.random.default_rng(seed)
  out = np.empty((len(played), 1 + others), dtype=object)
  out[:, 0] = played
  for i, track in enumerate(played):
    picked = pool[rng.choice(len(pool), size=min(others + 1, len(pool)), replace=False)]
    out[i, 1:] = [t for t in picked if t != track][:others]
  return out


def popularity_scores(counts: Dict[bytes, int], candidates: np.ndarray) -> np.ndarray:
  return np.vectorize(lambda t: float(counts.get(t, 0)), otypes=[np.float64])(candidates)


def model_scores(model_dir: str, plays: Dict[str, np.ndarray], candidates: np.ndarray
                 ) -> np.ndarray:
  """``[B, N]`` next-play head of the exported model's ``rank`` signature."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from serving import request_schema  # pylint: disable=g-import-not-at-top
  rank = tf.saved_model.load(model_dir).signatures["rank"]
  out = []
  for start in range(0, len(candidates), _BATCH):
    rows = slice(start, start + _BATCH)
    b = len(candidates[rows])
    inputs = {name: tf.constant(plays[name][rows]) for name in request_schema.LISTENER_INPUTS}
    inputs.update({k: tf.constant(v) for k, v in request_schema.neutral_controls(b).items()})
    inputs["candidate_ids"] = tf.constant(candidates[rows].astype(bytes))
    inputs["candidate_is_promo"] = tf.zeros(candidates[rows].shape, tf.int64)
    out.append(rank(**inputs)[_LABEL].numpy())
  return np.concatenate(out) if out else np.zeros(candidates.shape)


def _serving_dir(model_uri: str) -> str:
  path = os.path.join(model_uri, "Format-Serving")
  return path if os.path.isdir(path) else model_uri


def evaluate(examples_uri: str, model_dir: str, baseline_dir: Optional[str] = None,
             k: int = next_play_metrics.K, n: int = next_play_metrics.CANDIDATES
             ) -> Tuple[bool, Dict[str, object]]:
  """Ranks the held-out plays with the candidate, popularity and the baseline.

  Returns:
    (blessed, the result written to ``next_play.json``: metrics per scorer, the
    reasons a model was not blessed, the numbers of plays and candidates).
  """
  from serving import request_schema  # pylint: disable=g-import-not-at-top
  train = read_plays(examples_uri, "train", ["cand_track_id"])
  tracks, counts = np.unique(train["cand_track_id"], return_counts=True)
  plays = read_plays(examples_uri, "eval",
                     list(request_schema.LISTENER_INPUTS) + ["cand_track_id"], MAX_PLAYS)
  candidates = candidate_sets(plays["cand_track_id"], tracks, n)
  per_play = {"candidate": next_play_metrics.per_play(
                  model_scores(model_dir, plays, candidates), k),
              "popularity": next_play_metrics.per_play(
                  popularity_scores(dict(zip(tracks, counts.tolist())), candidates), k)}
  if baseline_dir:
    per_play["previous_blessed"] = next_play_metrics.per_play(
        model_scores(baseline_dir, plays, candidates), k)
  blessed, reasons, extra = next_play_metrics.decide(
      per_play["candidate"], per_play["popularity"], per_play.get("previous_blessed"), k)
  result = {"k": k, "candidates": int(candidates.shape[1]), "plays": int(len(candidates)),
            "train_tracks": int(len(tracks)), "blessed": blessed, "reasons": reasons,
            "metrics": {name: next_play_metrics.summarize(*v, k=k)
                        for name, v in per_play.items()}}
  result["metrics"]["candidate"].update(extra)
  return blessed, result


@tfx.dsl.components.component
def NextPlayEvaluator(  # pylint: disable=invalid-name
    examples: tfx.dsl.components.InputArtifact[standard_artifacts.Examples],
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    evaluation: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelEvaluation],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelBlessing],
    baseline_model: tfx.dsl.components.InputArtifact[standard_artifacts.Model] = None,
    k: tfx.dsl.components.Parameter[int] = next_play_metrics.K):
  """Blesses the candidate when it ranks next plays better than popularity (and not
  worse than the last blessed model beyond noise)."""
  from tensorflow.io import gfile  # pylint: disable=g-import-not-at-top
  baseline_dir = _serving_dir(baseline_model.uri) if baseline_model is not None else None
  blessed, result = evaluate(examples.uri, _serving_dir(model.uri), baseline_dir, k)
  gfile.makedirs(evaluation.uri)
  with gfile.GFile(os.path.join(evaluation.uri, next_play_metrics.RESULT_FILE), "w") as f:
    f.write(json.dumps(result, indent=2, sort_keys=True))
  gfile.makedirs(blessing.uri)
  with gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"),
                   "w") as f:
    f.write("\n".join(result["reasons"]))
  # The properties TFX's Evaluator sets: the Pusher reads `blessed`, the latest-blessed
  # resolver pairs the blessing with its model by `current_model_id`.
  blessing.set_int_custom_property("blessed", int(blessed))
  blessing.set_int_custom_property("current_model_id", model.id)
  blessing.set_string_custom_property("current_model", model.uri)
  if baseline_model is not None:
    blessing.set_int_custom_property("baseline_model_id", baseline_model.id)
  print(f"[next_play] {'blessed' if blessed else 'NOT blessed'}: "
        f"{json.dumps(result['metrics'], sort_keys=True)}")
