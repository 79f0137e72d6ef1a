"""Synthetic transformed batches for tests, benchmarks and development.

Builds feature dicts exactly shaped like ``features.feature_spec.TRANSFORMED_FEATURES``
(plus labels and weights) from a seed, with planted structure so models can learn:
completion and like rise when the candidate's artist is in the listener's history,
promoted candidates complete less but deliver exposure, and subscription depends on the
segment and on promotion. That builds in the interest-vs-promotion conflict the
multi-task benchmark needs when no simulator data is at hand. Reads no files.
"""

from typing import Dict, Optional

import numpy as np

from features import feature_spec
X = feature_spec.xf


def synthetic_batch(batch_size: int, seed: int = 0, num_tracks: int = 2000,
                    num_artists: int = 200, num_users: int = 500,
                    promo_rate: float = 0.3) -> Dict[str, np.ndarray]:
  """One batch of transformed features, labels and weights as numpy arrays.

  Args:
    batch_size: examples.
    seed: numpy seed; the same seed gives the same batch.
    num_tracks: distinct track ids used (1..num_tracks).
    num_artists: distinct artist ids used.
    num_users: distinct user ids used.
    promo_rate: share of promoted candidates.

  Returns:
    dict name -> array; scalars ``[B]``, sequences ``[B, L]``.
  """
  if batch_size <= 0:
    raise ValueError(f"batch_size must be positive, got {batch_size}")
  rng = np.random.default_rng(seed)
  B, L, S = batch_size, feature_spec.HISTORY_LEN, feature_spec.SESSION_LEN
  track_artist = 1 + (np.arange(num_tracks + 1) * 7919) % num_artists   # fixed mapping
  out: Dict[str, np.ndarray] = {}
  out[X("user_id")] = rng.integers(1, num_users + 1, B)
  segment = rng.integers(0, len(feature_spec.SEGMENTS), B)
  out[X("user_segment")] = segment
  out[X("user_tenure_days")] = rng.normal(size=B).astype(np.float32)
  out[X("context_activity")] = rng.integers(0, len(feature_spec.ACTIVITIES), B)
  out[X("context_surface")] = rng.integers(0, len(feature_spec.SURFACES), B)
  out[X("context_hour")] = rng.integers(0, feature_spec.NUM_HOURS, B)
  out[X("context_weekday")] = rng.integers(0, 7, B)

  # Each listener prefers a small set of artists; history draws mostly from them.
  fav = rng.integers(1, num_artists + 1, (B, 5))

  def plays(n, length):
    lens = rng.integers(0, length + 1, B)
    tracks = rng.integers(1, num_tracks + 1, (B, length))
    artists = track_artist[tracks]
    liked = rng.random((B, length)) < 0.7
    artists = np.where(liked, fav[np.arange(B)[:, None], rng.integers(0, 5, (B, length))],
                       artists)
    valid = np.arange(length)[None, :] < lens[:, None]
    completion = np.clip(rng.beta(2, 2, (B, length)) + 0.3 * liked, 0, 1)
    skip = (completion < 0.3).astype(np.float32)
    gaps = np.sort(rng.integers(0, feature_spec.NUM_GAP_BUCKETS, (B, length)), axis=1)
    return {
        "track_ids": np.where(valid, tracks, 0), "artist_ids": np.where(valid, artists, 0),
        "completion": np.where(valid, completion, 0).astype(np.float32),
        "skip": np.where(valid, skip, 0).astype(np.float32),
        "gap_s": np.where(valid, gaps, 0), "len": lens,
    }

  for prefix, length in (("hist", L), ("sess", S)):
    p = plays(B, length)
    for k, v in p.items():
      out[X(f"{prefix}_{k}")] = v

  cand_track = rng.integers(1, num_tracks + 1, B)
  in_taste = rng.random(B) < 0.5
  cand_artist = np.where(in_taste, fav[np.arange(B), rng.integers(0, 5, B)],
                         track_artist[cand_track])
  num_tags = rng.integers(0, feature_spec.MAX_TAGS + 1, B)
  tags = rng.integers(1, 200, (B, feature_spec.MAX_TAGS))
  out[X("cand_track_id")] = cand_track
  out[X("cand_artist_id")] = cand_artist
  out[X("cand_tags")] = np.where(
      np.arange(feature_spec.MAX_TAGS)[None] < num_tags[:, None], tags, 0)
  out[X("cand_num_tags")] = num_tags
  out[X("cand_duration_s")] = rng.integers(0, feature_spec.NUM_DURATION_BUCKETS, B)
  out[X("cand_popularity")] = rng.normal(size=B).astype(np.float32)
  promo = (rng.random(B) < promo_rate).astype(np.int64)
  out[X("cand_is_promo")] = promo

  match = np.any(fav == cand_artist[:, None], axis=1).astype(np.float32)
  logit_c = -0.3 + 1.6 * match - 0.9 * promo + 0.2 * out[X("cand_popularity")]
  completion = np.clip(1 / (1 + np.exp(-logit_c)) + rng.normal(0, 0.1, B), 0, 1)
  skip = (rng.random(B) < 1 / (1 + np.exp(3 * (completion - 0.35)))).astype(np.float32)
  like = (rng.random(B) < 0.6 * completion * match + 0.03).astype(np.float32)
  sub_logit = -2.5 + 1.4 * promo + 0.4 * (segment >= 1) + 0.5 * (segment == 3)
  subscription = (rng.random(B) < 1 / (1 + np.exp(-sub_logit))).astype(np.float32)
  exposure = (promo * (0.5 + 1.5 * (1 - completion)) * rng.gamma(2.0, 0.5, B)).astype(
      np.float32)
  labels = {"interest_completion": completion.astype(np.float32), "interest_skip": skip,
            "interest_like": like, "subscription": subscription, "exposure": exposure}
  for k, v in labels.items():
    out[k] = v
    out[feature_spec.weight_key(k)] = np.ones(B, np.float32)
  # Likes are missing for a quarter of the examples: present with weight 0.
  missing = rng.random(B) < 0.25
  out["interest_like"] = np.where(missing, 0.0, like).astype(np.float32)
  out[feature_spec.weight_key("interest_like")] = np.where(missing, 0.0, 1.0).astype(np.float32)

  # The skip profile follows the completion; no random draw, so the other columns keep
  # their values whatever the class labels are.
  out[feature_spec.SKIP_PROFILE] = np.digitize(completion, (0.1, 0.5, 0.95)).astype(np.int64)
  # Impression examples carry no sampled negatives: q = 0 leaves every logit uncorrected.
  out[feature_spec.SAMPLE_Q] = np.zeros(B, np.float32)

  for name, (dtype, _, _) in feature_spec.TRANSFORMED_FEATURES.items():
    out[name] = out[name].astype(np.int64 if dtype == "int64" else np.float32)
  return out


def take(batch: Dict[str, np.ndarray], index, keys: Optional[tuple] = None):
  """Rows ``index`` (int array or slice) of a batch, optionally only ``keys``."""
  keys = keys or tuple(batch)
  return {k: batch[k][index] for k in keys}
