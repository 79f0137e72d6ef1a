"""Next-play ranking metrics and the blessing rule of a play-only source.

A play-only log (``features.sampled_negatives``) has no label a TFMA threshold could
gate: what a model must do is put the track the listener played next near the top. For
every held-out play of the newest span, the played track and ``CANDIDATES - 1`` other
tracks of the training window are ranked by a scorer; this module owns the metrics of
those rankings and the decision:

* **Recall@k** (the played track is in the top k) and **NDCG@k** (``1 / log2(2 +
  position)`` when it is), averaged over the plays. Ties count as their expected value
  under a random order (a popularity count ties often), so no scorer gains from the
  order its ties happen to come in.
* **Blessing**: the candidate must beat the popularity baseline (play counts of the
  training window) on both Recall@k and NDCG@k, and, when there is a previously blessed
  model, must not be worse than it beyond noise: the upper 95% bound of the paired
  bootstrap of its per-play NDCG@k change (Poisson(1) weights, the same draw for both
  models) must stay above ``-NDCG_DROP_TOLERANCE``, the rule ``pipeline.paired_auc``
  applies to AUCs.
"""

import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

K = 10
CANDIDATES = 100
NDCG_DROP_TOLERANCE = 0.002
CONFIDENCE = 0.95
REPLICAS = 200
# What the next-play Evaluator writes into its ModelEvaluation artifact.
RESULT_FILE = "next_play.json"


def per_play(scores: np.ndarray, k: int = K) -> Tuple[np.ndarray, np.ndarray]:
  """Recall@k and NDCG@k of every ranking, the played track in column 0.

  Args:
    scores: ``[B, N]`` scores; column 0 is the played track.
    k: the cut-off.

  Returns:
    (recall, ndcg), each ``[B]``: their expected values when the played track's ties
    are placed in a random order.
  """
  scores = np.asarray(scores, np.float64)
  if scores.ndim != 2 or scores.shape[1] < 1:
    raise ValueError(f"scores must be [B, N] with N >= 1, got shape {scores.shape}")
  if k < 1:
    raise ValueError(f"k must be >= 1, got {k}")
  target = scores[:, :1]
  above = (scores[:, 1:] > target).sum(axis=1)
  tied = (scores[:, 1:] == target).sum(axis=1)
  gains = 1.0 / np.log2(np.arange(k) + 2.0)        # gain of positions 0 .. k-1
  cum = np.concatenate([[0.0], np.cumsum(gains)])  # cum[p] = gains of positions < p
  lo = np.minimum(above, k)
  hi = np.minimum(above + tied + 1, k)             # positions above..above+tied, cut at k
  recall = (hi - lo) / (tied + 1.0)
  ndcg = (cum[hi] - cum[lo]) / (tied + 1.0)
  return recall, ndcg


def upper_bound_of_mean(delta: np.ndarray, replicas: int = REPLICAS,
                        confidence: float = CONFIDENCE, seed: int = 0) -> float:
  """Upper ``confidence`` bound of mean(delta) by a Poisson(1) bootstrap."""
  delta = np.asarray(delta, np.float64)
  if not len(delta):
    raise ValueError("delta is empty")
  weights = np.random.default_rng(seed).poisson(1.0, size=(replicas, len(delta)))
  totals = np.maximum(weights.sum(axis=1), 1)
  return float(np.quantile(weights @ delta / totals, confidence))


def summarize(recall: np.ndarray, ndcg: np.ndarray, k: int = K) -> Dict[str, float]:
  return {f"recall_at_{k}": float(np.mean(recall)), f"ndcg_at_{k}": float(np.mean(ndcg))}


def decide(candidate: Tuple[np.ndarray, np.ndarray], popularity: Tuple[np.ndarray, np.ndarray],
           baseline: Optional[Tuple[np.ndarray, np.ndarray]] = None,
           k: int = K) -> Tuple[bool, List[str], Dict[str, float]]:
  """Whether the candidate is blessed, why not, and the bound it was judged on.

  Args:
    candidate, popularity, baseline: per-play (recall, ndcg) of each scorer on the same
      plays and candidates; ``baseline`` is the previously blessed model, if any.
    k: the cut-off the arrays were computed with.

  Returns:
    (blessed, one sentence per failed rule, {"ndcg_change_upper_bound": ...} when
    compared with a baseline).
  """
  reasons, extra = [], {}
  if not len(candidate[0]):
    return False, ["no held-out next plays in the eval split"], extra
  mine, pop = summarize(*candidate, k=k), summarize(*popularity, k=k)
  for name in (f"recall_at_{k}", f"ndcg_at_{k}"):
    if not mine[name] > pop[name]:
      reasons.append(f"next_play {name}: candidate {mine[name]:.4f} does not beat "
                     f"popularity {pop[name]:.4f}")
  if baseline is not None:
    delta = candidate[1] - baseline[1]
    bound = upper_bound_of_mean(delta)
    extra["ndcg_change_upper_bound"] = bound
    if bound < -NDCG_DROP_TOLERANCE:
      base = summarize(*baseline, k=k)[f"ndcg_at_{k}"]
      reasons.append(
          f"next_play ndcg_at_{k}: candidate {mine[f'ndcg_at_{k}']:.4f}, previous blessed "
          f"{base:.4f}; upper {CONFIDENCE:.0%} bound of the change {bound:.4f} fails "
          f">= {-NDCG_DROP_TOLERANCE:.4f} (worse beyond noise)")
  return not reasons, reasons, extra


def read_result(evaluation_uri: str) -> Optional[Dict[str, object]]:
  """The ``RESULT_FILE`` of an evaluation, or None (a TFMA evaluation)."""
  path = os.path.join(evaluation_uri, RESULT_FILE)
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def describe(result: Dict[str, object]) -> str:
  """One line of a next-play result: each scorer's Recall@k and NDCG@k."""
  k = result["k"]
  parts = []
  for name in ("candidate", "popularity", "previous_blessed"):
    m = result["metrics"].get(name)
    if m:
      parts.append(f"{name} recall@{k} {m[f'recall_at_{k}']:.4f} "
                   f"ndcg@{k} {m[f'ndcg_at_{k}']:.4f}")
  return (f"next-play over {result['plays']} held-out plays, {result['candidates']} "
          f"candidates each: " + "; ".join(parts))
