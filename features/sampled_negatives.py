"""Next-play training examples from a play-only log: each play plus K sampled negatives.

Many logs record what was played but not what was shown (no impressions), and no
feedback beyond the play itself: 30Music has no completion, like or exposure, and its
skip proxy is 0 on every play. Such a log has no negative example of its own. This module
owns the examples such a source trains on: every play is a positive of the next-play
label (``NEXT_PLAY_LABEL``), and beside it stand ``K`` negatives, the same listener,
context, history and session with the candidate replaced by a track drawn from the span's
popularity-smoothed distribution ``q(t) ∝ plays(t) ** 0.75`` (the span's own plays, the
word2vec noise distribution). Every such example carries ``q`` of its candidate
(``feature_spec.SAMPLE_Q``), and the loss subtracts ``log q`` from the next-play logit
(``ranking.sampled_softmax``): without it, popular tracks, drawn often as negatives, would
be pushed down for being popular.

Whether a log is play-only is decided from what it records (:func:`is_play_only`), never
by a flag. The draws are seeded by the chunk's content, so every Beam runner writes the
same examples.
"""

import dataclasses
import zlib
from typing import Dict, Mapping, Optional

import numpy as np
import pandas as pd
import pyarrow as pa

from features import feature_spec

# The label a play-only source trains: 1 on the play, 0 on its sampled negatives. The
# like head is the interest head that stands for "the listener wanted this track"
# (explicit like, repeat listen, or here: chose it next); its prediction ranks.
NEXT_PLAY_LABEL = "interest_like"
DEFAULT_NEGATIVES = 4
DEFAULT_SEED = 17
UNIGRAM_POWER = 0.75
# Interest labels whose presence means the log records feedback beyond the play.
_FEEDBACK_LABELS = ("interest_completion", "interest_skip", "interest_like")
# Candidate columns a negative replaces.
_CANDIDATE = ("cand_track_id", "cand_artist_id", "cand_tags", "cand_num_tags",
              "cand_duration_s", "cand_popularity", "cand_is_promo")


def is_play_only(label_counts: Mapping[str, Mapping[str, int]]) -> bool:
  """True when a log records plays but no interest feedback with two outcomes.

  Args:
    label_counts: label key -> {"present": events with the label, "positive": with a
      positive value} (the manifest's ``label_counts``).

  Returns:
    True when no interest label is recorded with both a positive and a negative value
    (completion: recorded at all): nothing then tells a liked play from a disliked one,
    so training needs sampled negatives.
  """
  for label in _FEEDBACK_LABELS:
    c = label_counts.get(label) or {"present": 0, "positive": 0}
    if not c["present"]:
      continue
    if feature_spec.LABEL_KINDS[label] != feature_spec.BINARY:
      return False
    if 0 < c["positive"] < c["present"]:
      return False
  return True


@dataclasses.dataclass
class NegativeSampling:
  """The per-span noise distributions of a play-only dataset.

  Attributes:
    per_positive: K, negatives per play.
    seed: mixes into each chunk's seed.
    track_ids: UTC day number -> the span's played track ids.
    probs: UTC day number -> ``q`` of each of those tracks (sums to 1).
  """
  per_positive: int
  seed: int
  track_ids: Dict[int, np.ndarray]
  probs: Dict[int, np.ndarray]

  def __post_init__(self):
    if self.per_positive < 1:
      raise ValueError(f"per_positive must be >= 1, got {self.per_positive}")
    if not self.track_ids:
      raise ValueError("NegativeSampling needs at least one span")

  def describe(self) -> Dict[str, object]:
    """What the manifest records about the sampling."""
    return {"per_positive": self.per_positive, "seed": self.seed,
            "distribution": f"span plays ** {UNIGRAM_POWER}",
            "label": NEXT_PLAY_LABEL, "sample_q": feature_spec.SAMPLE_Q}


def from_events(events: pd.DataFrame, per_positive: int = DEFAULT_NEGATIVES,
                seed: int = DEFAULT_SEED) -> NegativeSampling:
  """The noise distribution of every UTC day of ``events`` (``track_id``, ``ts``,
  ``plays``); events without a timestamp count towards the first day."""
  ts = pd.to_numeric(events["ts"], errors="coerce")
  days = (ts // 86400).astype("float64")
  first = days.min() if days.notna().any() else 0.0
  days = days.fillna(first).astype(np.int64)
  plays = pd.to_numeric(events.get("plays", 1), errors="coerce")
  weight = (plays.fillna(1).clip(lower=1) if isinstance(plays, pd.Series)
            else pd.Series(1, index=events.index))
  counts = pd.DataFrame({"day": days.to_numpy(), "track": events["track_id"].astype(str),
                         "n": weight.to_numpy(np.float64)}).groupby(["day", "track"])["n"].sum()
  ids, probs = {}, {}
  for day, per_track in counts.groupby(level=0):
    names = per_track.index.get_level_values(1).to_numpy(object)
    order = np.argsort(names, kind="stable")   # independent of the log's row order
    q = per_track.to_numpy(np.float64)[order] ** UNIGRAM_POWER
    ids[int(day)] = names[order]
    probs[int(day)] = q / q.sum()
  return NegativeSampling(per_positive, seed, ids, probs)


def _chunk_rng(sampling: NegativeSampling, batch: pa.RecordBatch) -> np.random.Generator:
  users = batch.column(batch.schema.get_field_index("user_id")).flatten()
  first = users[0].as_py() if len(users) else b""
  key = zlib.crc32(first if isinstance(first, bytes) else str(first).encode())
  return np.random.default_rng([sampling.seed, key, batch.num_rows])


def _scalar_column(batch: pa.RecordBatch, name: str) -> np.ndarray:
  return batch.column(batch.schema.get_field_index(name)).flatten().to_numpy(
      zero_copy_only=False)


def _fixed(values: pa.Array, n: int, length: int) -> pa.ListArray:
  return pa.ListArray.from_arrays(
      pa.array(np.arange(0, n * length + 1, length, dtype=np.int32)), values)


def _candidate_columns(tracks, rows: np.ndarray) -> Dict[str, pa.Array]:
  """The candidate features of catalogue rows ``rows`` (a ``raw_features.TrackIndex``)."""
  n = len(rows)
  ids = pa.array([str(t).encode() for t in tracks.ids[rows]], pa.binary())
  tags = tracks.tag_dictionary.take(pa.array(tracks.tag_codes[rows].ravel()))
  return {
      "cand_track_id": _fixed(ids, n, 1),
      "cand_artist_id": _fixed(tracks.artist_array.take(pa.array(rows)), n, 1),
      "cand_tags": _fixed(tags, n, feature_spec.MAX_TAGS),
      "cand_num_tags": _fixed(pa.array(tracks.num_tags[rows].astype(np.int64)), n, 1),
      "cand_duration_s": _fixed(pa.array(tracks.duration_s[rows]), n, 1),
      "cand_popularity": _fixed(pa.array(tracks.popularity[rows]), n, 1),
      "cand_is_promo": _fixed(pa.array(np.zeros(n, np.int64)), n, 1),
  }


def _labels(n: int, next_play: float, q: np.ndarray,
            keep: Optional[pa.RecordBatch] = None) -> Dict[str, pa.Array]:
  """Label columns: the next-play label (weight 1) and ``q``; the other interest labels
  weigh 0 (a play-only log has none worth learning). ``keep`` keeps the play's own
  subscription and exposure labels; a negative (``keep`` None) has none."""
  floats = lambda v: _fixed(pa.array(np.asarray(v, np.float32)), n, 1)  # noqa: E731
  zeros = np.zeros(n, np.float32)
  out = {}
  for label in feature_spec.LABEL_KEYS:
    wkey = feature_spec.weight_key(label)
    if label == NEXT_PLAY_LABEL:
      out[label], out[wkey] = floats(np.full(n, next_play)), floats(np.ones(n))
    elif keep is not None and label not in _FEEDBACK_LABELS:
      continue
    else:
      out[label], out[wkey] = floats(zeros), floats(zeros)
  if keep is None:
    for label in feature_spec.CLASS_LABELS:
      out[label] = _fixed(pa.array(np.full(n, feature_spec.UNKNOWN_CLASS, np.int64)), n, 1)
  out[feature_spec.SAMPLE_Q] = floats(q)
  return out


def _replace(batch: pa.RecordBatch, columns: Mapping[str, pa.Array]) -> pa.RecordBatch:
  arrays = [columns.get(name, batch.column(i)) for i, name in enumerate(batch.schema.names)]
  return pa.RecordBatch.from_arrays(arrays, batch.schema.names)


def with_negatives(batch: pa.RecordBatch, tracks, sampling: NegativeSampling
                   ) -> pa.RecordBatch:
  """A chunk's play examples, each followed by its sampled negatives.

  Args:
    batch: the chunk's raw features (``raw_features.events_to_record_batch``), one row
      per play.
    tracks: the ``raw_features.TrackIndex`` the candidates come from.
    sampling: the noise distributions.

  Returns:
    The plays (next-play label 1) interleaved with up to K negatives each (label 0); a
    draw that hits the played track is drawn again once and dropped if it hits again.
  """
  n, k = batch.num_rows, sampling.per_positive
  if n == 0:
    return batch
  rng = _chunk_rng(sampling, batch)
  known = np.array(sorted(sampling.track_ids), np.int64)
  days = _scalar_column(batch, "impression_ts").astype(np.int64) // 86400
  days = np.where(np.isin(days, known), days, known[0])
  played = np.array([t.decode() if isinstance(t, bytes) else str(t)
                     for t in _scalar_column(batch, "cand_track_id")], object)
  played_q = np.zeros(n, np.float64)
  drawn = np.empty((n, k), object)
  drawn_q = np.zeros((n, k), np.float64)
  for day in np.unique(days):
    rows = np.flatnonzero(days == day)
    ids, q = sampling.track_ids[int(day)], sampling.probs[int(day)]
    where = pd.Index(ids).get_indexer(played[rows])
    played_q[rows] = np.where(where >= 0, q[np.maximum(where, 0)], 0.0)
    pick = rng.choice(len(ids), size=(len(rows), k), p=q)
    hit = ids[pick] == played[rows][:, None]
    pick[hit] = rng.choice(len(ids), size=int(hit.sum()), p=q)
    drawn[rows], drawn_q[rows] = ids[pick], q[pick]
  valid = drawn != played[:, None]
  catalogue_rows = tracks.rows(drawn.ravel()).reshape(n, k)
  valid &= catalogue_rows >= 0
  src, slot = np.nonzero(valid)   # row-major: each play's negatives in draw order
  m = len(src)
  negatives = batch.take(pa.array(src))
  negatives = _replace(negatives, {
      **_candidate_columns(tracks, catalogue_rows[src, slot]),
      **_labels(m, 0.0, drawn_q[src, slot])})
  positives = _replace(batch, _labels(n, 1.0, played_q, keep=batch))
  both = pa.Table.from_batches([positives, negatives]).combine_chunks()
  # Each play, then its negatives: position of every output row in ``both``.
  order = np.argsort(np.concatenate([np.arange(n) * (k + 1),
                                     src * (k + 1) + 1 + slot]), kind="stable")
  return both.take(pa.array(order)).combine_chunks().to_batches()[0]

