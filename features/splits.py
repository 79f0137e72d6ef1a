"""Where each training example goes: train/eval by listener, span folders by day.

This module owns the split of the examples: a listener's examples all go to "eval" or all
to "train" by a stable hash of the user id (``eval_percent`` in 100), and with the span
layout they are also grouped by the UTC day of the impression into ``span-YYYYMMDD``
folders (the layout a TFX ImportExampleGen with ``{SPAN}`` input patterns reads). The
output tags it names are the file prefixes under the examples directory.
"""

import hashlib
from typing import Dict, List, Optional, Sequence

import numpy as np
import pyarrow as pa

from features import example_io
from features import feature_spec
from features import raw_features
from features import sampled_negatives

DEFAULT_EVAL_PERCENT = 10


def eval_mask(user_ids: Sequence[str], eval_percent: int = DEFAULT_EVAL_PERCENT) -> np.ndarray:
  """True for users of the eval split: a stable hash of the id, ``eval_percent`` in 100."""
  if not 0 <= eval_percent <= 100:
    raise ValueError(f"eval_percent must be in [0, 100], got {eval_percent}")
  out = np.empty(len(user_ids), dtype=bool)
  for i, u in enumerate(user_ids):
    h = hashlib.md5(str(u).encode("utf-8")).digest()
    out[i] = int.from_bytes(h[:4], "little") % 100 < eval_percent
  return out


def span_name(day: int) -> str:
  """Span folder of a UTC day number (days since the epoch): ``span-YYYYMMDD``."""
  return "span-" + str(np.datetime64(int(day), "D")).replace("-", "")


def split_examples(events: pa.Table, tracks: raw_features.TrackIndex,
                   eval_percent: int = DEFAULT_EVAL_PERCENT,
                   span_days: Sequence[int] = (),
                   negatives: Optional[sampled_negatives.NegativeSampling] = None
                   ) -> Dict[str, List[bytes]]:
  """Examples of a chunk grouped by destination.

  Args:
    events: one chunk (whole users, sorted by user and ts).
    tracks: candidate lookup.
    eval_percent: share of users (by id hash) in the eval split.
    span_days: UTC day numbers (days since the epoch); when given, examples are also
      grouped by the day of the impression. A row whose day is not listed (e.g. a null
      timestamp) goes to the first listed day.
    negatives: for a play-only log, each play is followed by its sampled negatives
      (``features.sampled_negatives``); they go where their play goes.

  Returns:
    {"train": [...], "eval": [...]} or, with ``span_days``,
    {"span-YYYYMMDD/train": [...], "span-YYYYMMDD/eval": [...], ...}.
  """
  batch = raw_features.events_to_record_batch(events, tracks)
  if negatives is not None:
    batch = sampled_negatives.with_negatives(batch, tracks, negatives)
  users = batch.column(0).flatten()
  unique_users, inverse = np.unique(users.to_numpy(zero_copy_only=False), return_inverse=True)
  is_eval = eval_mask([u.decode() if isinstance(u, bytes) else u for u in unique_users],
                      eval_percent)[inverse]
  by_date = len(span_days) > 0
  if by_date:
    known = np.array(sorted(set(int(d) for d in span_days)), dtype=np.int64)
    days = batch.column(feature_spec.RAW_FEATURES.index(
        feature_spec.RAW_BY_NAME["impression_ts"])).flatten()
    days = days.to_numpy(zero_copy_only=False) // 86400
    days = np.where(np.isin(days, known), days, known[0])
  else:
    days = np.zeros(batch.num_rows, dtype=np.int64)
  records = example_io.encode_record_batch(batch)
  out = {}
  for day in np.unique(days):
    for split, mask in (("train", ~is_eval), ("eval", is_eval)):
      key = f"{span_name(day)}/{split}" if by_date else split
      out[key] = [records[i] for i in np.flatnonzero(mask & (days == day)).tolist()]
  return out


def output_tags(span_days: Sequence[int] = ()) -> List[str]:
  """Output tags (= file prefixes under the examples dir) of the examples pipeline."""
  if not span_days:
    return ["train", "eval"]
  return [f"{span_name(d)}/{split}" for d in sorted(set(span_days)) for split in ("train", "eval")]
