"""Retrieval metrics of the intent model against tag-derived relevance.

Owns Recall@k and NDCG@k over a catalog where a request has a *set* of relevant tracks
(every track whose tags satisfy the intent). Such sets are often larger than k, so
recall is capped: ``R@k = |top-k ∩ rel| / min(k, |rel|)`` (1.0 = as many relevant
tracks as the cut-off allows). NDCG@k uses binary gains and the ideal DCG of
``min(k, |rel|)`` relevant tracks. Also the exact numpy top-k used as the latency
baseline and as the reference in tests.
"""

from typing import Dict, Sequence

import numpy as np


def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
  """``[B, k]`` rows of the k largest ``queries @ items.T`` per query, best first."""
  if k < 1:
    raise ValueError(f"k must be positive, got {k}")
  scores = np.asarray(queries, np.float32) @ np.asarray(items, np.float32).T
  k = min(k, scores.shape[1])
  part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
  return np.take_along_axis(part, order, 1)


def retrieval_metrics(top_rows: np.ndarray, relevant: np.ndarray,
                      ks: Sequence[int] = (10, 50), ndcg_k: int = 10) -> Dict[str, float]:
  """Mean capped Recall@k for each k and NDCG@ndcg_k.

  Args:
    top_rows: ``[R, K]`` retrieved catalog rows, best first (K >= max(ks, ndcg_k)).
    relevant: ``[R, N]`` bool relevance.
    ks: recall cut-offs.
    ndcg_k: NDCG cut-off.

  Returns:
    ``{"recall@10": ..., "recall@50": ..., "ndcg@10": ...}``.
  """
  top_rows = np.asarray(top_rows)
  relevant = np.asarray(relevant, bool)
  if top_rows.shape[0] != relevant.shape[0]:
    raise ValueError(f"top_rows has {top_rows.shape[0]} requests, relevant "
                     f"{relevant.shape[0]}")
  need = max(max(ks), ndcg_k)
  if top_rows.shape[1] < need:
    raise ValueError(f"top_rows has {top_rows.shape[1]} columns, need {need}")
  hits = np.take_along_axis(relevant, top_rows, axis=1)
  n_rel = relevant.sum(1)
  ok = n_rel > 0
  out = {}
  for k in ks:
    out[f"recall@{k}"] = float(np.mean(hits[ok, :k].sum(1) / np.minimum(k, n_rel[ok])))
  disc = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
  dcg = (hits[ok, :ndcg_k] * disc).sum(1)
  ideal = np.array([disc[:min(ndcg_k, int(r))].sum() for r in n_rel[ok]])
  out[f"ndcg@{ndcg_k}"] = float(np.mean(dcg / ideal))
  return out
