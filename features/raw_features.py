"""The raw features of every impression: events + tracks -> one Arrow row per event.

This module owns how the common event schema (``features.events``) becomes the columns of
``feature_spec.RAW_FEATURES``, including the labels and their weights, and the candidate
track lookup (``TrackIndex``). Every event row is one impression. Its example holds:

* user features and context (hour and weekday of the UTC timestamp; 0 when ts is null),
* the long-term history: the user's previous rows, most recent first, the last
  ``HISTORY_LEN`` (track, artist, completion, skip, seconds from that play to the
  impression), padded with ``PAD_TOKEN`` / 0,
* the session: the previous rows of the same session no older than ``SESSION_WINDOW_S``,
  at most ``SESSION_LEN``, most recent first (looked up among the last ``HISTORY_LEN``
  rows, so interleaved sessions are handled),
* the candidate track (tags padded to ``MAX_TAGS``, duration, popularity, is_promo),
* the labels; a null label becomes value 0 with weight 0, never an invented value, and a
  null class label (the play's skip profile) becomes ``UNKNOWN_CLASS``.
  In history and session sequences a null completion/skip is written as 0.

A chunk of events must hold whole users sorted by (user_id, ts): the history never
crosses a chunk boundary. The work per chunk is columnar (the windows are index
matrices, ``features.windows``), and the result is an Arrow record batch that
``features.example_io`` serializes with tfx_bsl's C++ encoder.
"""

from typing import Dict, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from features import events as events_lib
from features import feature_spec
from features import windows

_WEEKDAY_OF_EPOCH = 3  # 1970-01-01 was a Thursday; Monday = 0 as in datetime.weekday().


# ------------------------------------------------------------------------ tracks
class TrackIndex:
  """Candidate-side track features, looked up by track id.

  Args:
    tracks: a frame (or Arrow table) with the ``TRACK_SCHEMA`` columns ``track_id``,
      ``artist_id``, ``tags``, ``duration_s``, ``popularity``; other columns are ignored.
  """

  def __init__(self, tracks: Union[pd.DataFrame, pa.Table]):
    if isinstance(tracks, pa.Table):
      tracks = tracks.to_pandas()
    missing = [c for c in ("track_id", "artist_id", "tags", "duration_s", "popularity")
               if c not in tracks.columns]
    if missing:
      raise ValueError(f"tracks table lacks columns {missing}")
    self.ids = pd.Index(tracks["track_id"].astype(str).to_numpy())
    if not self.ids.is_unique:
      raise ValueError("tracks table has duplicate track_id values")
    n = len(tracks)
    self.artist_ids = tracks["artist_id"].fillna("").astype(str).to_numpy(dtype=object)
    self.artist_array = pa.array(self.artist_ids.tolist(), pa.binary())  # for gathers
    self.duration_s = _nan_to_zero(tracks["duration_s"].to_numpy(dtype=np.float32))
    self.popularity = _nan_to_zero(tracks["popularity"].to_numpy(dtype=np.float32))
    # Tags as codes into one tag dictionary whose entry 0 is the padding token.
    tag_vocab: Dict[str, int] = {feature_spec.PAD_TOKEN.decode(): 0}
    self.tag_codes = np.zeros((n, feature_spec.MAX_TAGS), dtype=np.int32)
    self.num_tags = np.zeros(n, dtype=np.int64)
    for row, tags in enumerate(tracks["tags"].to_numpy(dtype=object)):
      if tags is None or (isinstance(tags, float) and np.isnan(tags)):
        continue
      kept = [str(t) for t in tags if t is not None and str(t)][:feature_spec.MAX_TAGS]
      self.num_tags[row] = len(kept)
      for k, tag in enumerate(kept):
        self.tag_codes[row, k] = tag_vocab.setdefault(tag, len(tag_vocab))
    self.tag_dictionary = pa.array(list(tag_vocab), type=pa.binary())

  def __len__(self) -> int:
    return len(self.ids)

  def rows(self, track_ids: np.ndarray) -> np.ndarray:
    """Row of each track id in the table, -1 for unknown ids."""
    return self.ids.get_indexer(track_ids)


def _nan_to_zero(a: np.ndarray) -> np.ndarray:
  return np.where(np.isnan(a), np.float32(0), a).astype(np.float32)


# ------------------------------------------------------------------ column helpers
def _column(table: pa.Table, name: str) -> pa.ChunkedArray:
  return table.column(name)


def _floats(table: pa.Table, name: str) -> np.ndarray:
  """float32 column with nulls as NaN."""
  col = _column(table, name).cast(pa.float32())
  return col.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)


def _encoded(table: pa.Table, name: str) -> Tuple[np.ndarray, pa.Array]:
  """Dictionary codes of a string column plus a dictionary whose last entry is PAD.

  Nulls and empty strings get the code of the padding entry.
  """
  col = _column(table, name).cast(pa.binary()).combine_chunks().dictionary_encode()
  dictionary = col.dictionary
  pad_code = len(dictionary)
  codes = col.indices.to_numpy(zero_copy_only=False)
  codes = np.where(col.indices.is_null().to_numpy(zero_copy_only=False), pad_code,
                   codes).astype(np.int64)
  dictionary = pa.concat_arrays([dictionary, pa.array([feature_spec.PAD_TOKEN], pa.binary())])
  return codes, dictionary


def _code_of(dictionary: pa.Array, value: bytes) -> int:
  """The code of ``value`` in an ``_encoded`` dictionary (-1 when absent)."""
  matches = np.flatnonzero(dictionary.to_numpy(zero_copy_only=False) == value)
  return int(matches[0]) if matches.size else -1


def _class_ids(dictionary: pa.Array, classes: Tuple[str, ...]) -> np.ndarray:
  """Class id of each entry of an ``_encoded`` dictionary (``UNKNOWN_CLASS`` if none)."""
  index = {name.encode(): i for i, name in enumerate(classes)}
  return np.array([index.get(v, feature_spec.UNKNOWN_CLASS)
                   for v in dictionary.to_numpy(zero_copy_only=False)], np.int64)


def _fixed_list(flat: Union[pa.Array, np.ndarray], n: int, length: int) -> pa.ListArray:
  offsets = pa.array(np.arange(0, n * length + 1, length, dtype=np.int32))
  if isinstance(flat, np.ndarray):
    flat = pa.array(flat)
  return pa.ListArray.from_arrays(offsets, flat)


# ------------------------------------------------------------------- the chunk
def events_to_record_batch(events: pa.Table, tracks: TrackIndex) -> pa.RecordBatch:
  """Builds the raw features of every event of a chunk as one Arrow record batch.

  Args:
    events: ``EVENT_SCHEMA`` rows sorted by (user_id, ts), whole users only.
    tracks: the candidate track lookup.

  Returns:
    A record batch with one list column per ``feature_spec.RAW_FEATURES`` entry (in
    that order), each list exactly ``Feature.length`` long.

  Raises:
    ValueError: a column is missing or the rows are not grouped by user.
  """
  missing = [c for c in events_lib.EVENT_SCHEMA.names if c not in events.column_names]
  if missing:
    raise ValueError(f"events table lacks columns {missing}")
  n = events.num_rows
  user_codes, user_dict = _encoded(events, "user_id")
  if n > 1:
    changes = int(np.count_nonzero(user_codes[1:] != user_codes[:-1])) + 1
    if changes != len(np.unique(user_codes)):
      raise ValueError("events are not grouped by user_id (sort by user_id, ts)")
  session_codes, _ = _encoded(events, "session_id")
  track_codes, track_dict = _encoded(events, "track_id")
  artist_codes, artist_dict = _encoded(events, "artist_id")

  ts_col = _column(events, "ts")
  ts_valid = ~ts_col.is_null().to_numpy(zero_copy_only=False)
  ts = ts_col.fill_null(0).to_numpy().astype(np.int64)
  if n > 1:
    same_user = user_codes[1:] == user_codes[:-1]
    both = ts_valid[1:] & ts_valid[:-1]
    if np.any(same_user & both & (ts[1:] < ts[:-1])):
      raise ValueError("events of a user are not sorted by ts")

  completion = _floats(events, "completion")
  skip = _floats(events, "skip")
  step_completion = _nan_to_zero(completion)
  step_skip = _nan_to_zero(skip)

  hist_idx, hist_valid = windows.history_windows(user_codes, feature_spec.HISTORY_LEN)
  sess_idx, sess_valid = windows.session_windows(hist_idx, hist_valid, session_codes, ts,
                                                 ts_valid, feature_spec.SESSION_LEN,
                                                 feature_spec.SESSION_WINDOW_S)

  def gaps(idx, valid):
    g = (ts[:, None] - ts[idx]).astype(np.float32)
    ok = valid & ts_valid[idx] & ts_valid[:, None]
    return np.where(ok, np.maximum(g, 0), 0).astype(np.float32)

  cols: Dict[str, pa.Array] = {}

  def scalar(name, values):
    cols[name] = _fixed_list(values, n, 1)

  def strings(name, codes, dictionary, length=1):
    cols[name] = _fixed_list(dictionary.take(pa.array(codes.ravel())), n, length)

  def sequence(name, values, valid, dtype):
    cols[name] = _fixed_list(np.where(valid, values, 0).astype(dtype).ravel(), n,
                             valid.shape[1])

  # user + context
  strings("user_id", user_codes, user_dict)
  seg_codes, seg_dict = _encoded(events, "user_segment")
  strings("user_segment", seg_codes, seg_dict)
  scalar("user_tenure_days", _nan_to_zero(_floats(events, "user_tenure_days")))
  act_codes, act_dict = _encoded(events, "context_activity")
  strings("context_activity", act_codes, act_dict)
  surf_codes, surf_dict = _encoded(events, "context_surface")
  strings("context_surface", surf_codes, surf_dict)
  scalar("context_hour",
         np.where(ts_valid, (ts // 3600) % feature_spec.NUM_HOURS, 0).astype(np.int64))
  scalar("context_weekday",
         np.where(ts_valid, (ts // 86400 + _WEEKDAY_OF_EPOCH) % 7, 0).astype(np.int64))

  # long-term history and session
  track_pad, artist_pad = len(track_dict) - 1, len(artist_dict) - 1
  for prefix, idx, valid in (("hist", hist_idx, hist_valid), ("sess", sess_idx, sess_valid)):
    length = valid.shape[1]
    strings(f"{prefix}_track_ids", np.where(valid, track_codes[idx], track_pad), track_dict,
            length)
    strings(f"{prefix}_artist_ids", np.where(valid, artist_codes[idx], artist_pad),
            artist_dict, length)
    sequence(f"{prefix}_completion", step_completion[idx], valid, np.float32)
    sequence(f"{prefix}_skip", step_skip[idx], valid, np.float32)
    sequence(f"{prefix}_gap_s", gaps(idx, valid), valid, np.float32)
    scalar(f"{prefix}_len", valid.sum(axis=1).astype(np.int64))

  # candidate
  event_track_ids = track_dict.to_numpy(zero_copy_only=False)
  track_rows_of_code = tracks.rows(np.array([t.decode() if isinstance(t, bytes) else str(t)
                                             for t in event_track_ids], dtype=object))
  rows = track_rows_of_code[track_codes]
  known = rows >= 0
  safe_rows = np.where(known, rows, 0)
  strings("cand_track_id", track_codes, track_dict)
  # The event's artist wins; the track table fills a missing one. Codes past the
  # event dictionary point into the track table's artist column.
  fill = (artist_codes == artist_pad) & known
  cand_artist_codes = np.where(fill, len(artist_dict) + safe_rows, artist_codes)
  strings("cand_artist_id", cand_artist_codes,
          pa.concat_arrays([artist_dict, tracks.artist_array]))
  if len(tracks):
    tag_codes = np.where(known[:, None], tracks.tag_codes[safe_rows], 0)
    num_tags = np.where(known, tracks.num_tags[safe_rows], 0)
    duration = np.where(known, tracks.duration_s[safe_rows], 0)
    popularity = np.where(known, tracks.popularity[safe_rows], 0)
  else:
    tag_codes = np.zeros((n, feature_spec.MAX_TAGS), np.int32)
    num_tags = np.zeros(n, np.int64)
    duration = popularity = np.zeros(n, np.float32)
  strings("cand_tags", tag_codes, tracks.tag_dictionary, feature_spec.MAX_TAGS)
  scalar("cand_num_tags", num_tags.astype(np.int64))
  scalar("cand_duration_s", duration.astype(np.float32))
  scalar("cand_popularity", popularity.astype(np.float32))
  promo = _column(events, "is_promo").fill_null(False).to_numpy(zero_copy_only=False)
  scalar("cand_is_promo", promo.astype(np.int64))

  # meta
  src_codes, src_dict = _encoded(events, "source")
  strings("source", src_codes, src_dict)
  scalar("impression_ts", ts)

  # labels: null -> value 0, weight 0
  for column, label in events_lib.EVENT_LABELS.items():
    values = completion if column == "completion" else (
        skip if column == "skip" else _floats(events, column))
    present = ~np.isnan(values)
    if column == "subscription":
      values, present = windows.subscription_within_window(
          user_codes, ts, ts_valid, values, present,
          seg_codes == _code_of(seg_dict, b"paid"))
    scalar(label, np.where(present, values, 0).astype(np.float32))
    scalar(feature_spec.weight_key(label), present.astype(np.float32))

  # class labels: the class id of a known name, UNKNOWN_CLASS for null or unknown names
  for label, classes in feature_spec.CLASS_LABELS.items():
    codes, dictionary = _encoded(events, label)
    scalar(label, _class_ids(dictionary, classes)[codes])

  # Not a sampled example (features.sampled_negatives sets q on those).
  scalar(feature_spec.SAMPLE_Q, np.zeros(n, np.float32))

  names = [f.name for f in feature_spec.RAW_FEATURES]
  return pa.RecordBatch.from_arrays([cols[k] for k in names], names)
