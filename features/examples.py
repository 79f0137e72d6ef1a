"""Training examples: events + tracks -> one serialized ``tf.train.Example`` per impression.

This module owns the conversion of the common event schema (``features.events``) into the
raw examples of ``feature_spec.RAW_FEATURES`` and the Beam pipeline that writes them as
sharded, gzip-compressed TFRecords (train/eval split by a hash of the user id).

Every event row is one impression. Its example holds:

* user features and context (hour and weekday of the UTC timestamp; 0 when ts is null),
* the long-term history: the user's previous rows, most recent first, the last
  ``HISTORY_LEN`` (track, artist, completion, skip, seconds from that play to the
  impression), padded with ``PAD_TOKEN`` / 0,
* the session: the previous rows of the same session no older than ``SESSION_WINDOW_S``,
  at most ``SESSION_LEN``, most recent first (looked up among the last ``HISTORY_LEN``
  rows, so interleaved sessions are handled),
* the candidate track (tags padded to ``MAX_TAGS``, duration, popularity, is_promo),
* the labels; a null label becomes value 0 with weight 0, never an invented value.
  In history and session sequences a null completion/skip is written as 0.

A chunk of events must hold whole users sorted by (user_id, ts): the history never
crosses a chunk boundary. The work per chunk is columnar: history and session windows
are index matrices (row - 1 - k) masked by the user's first row, and the examples are
encoded from an Arrow record batch by tfx_bsl's C++ ``RecordBatchToExamples`` — about
an order of magnitude faster than building ``tf.train.Example`` protos in Python
(``bench/data.py`` measures both).
"""

import gzip
import hashlib
import os
import struct
import time
import uuid
from typing import Dict, Iterable, Iterator, List, Sequence, Tuple, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from features import events as events_lib
from features import feature_spec
_WEEKDAY_OF_EPOCH = 3  # 1970-01-01 was a Thursday; Monday = 0 as in datetime.weekday().
DEFAULT_EVAL_PERCENT = 10
# Rows encoded per tfx_bsl call: bounds the temporary Arrow buffers of a large chunk.
_ENCODE_BATCH_ROWS = 32_768
# zlib level of the TFRecord files. Level 1 compresses about twice as fast as the
# default 6 for ~40% larger files; these files are intermediate (TFX ExampleGen
# rewrites them), so speed wins. See docs/examples.md for the measurements.
GZIP_LEVEL = 1


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


def _fixed_list(flat: Union[pa.Array, np.ndarray], n: int, length: int) -> pa.ListArray:
  offsets = pa.array(np.arange(0, n * length + 1, length, dtype=np.int32))
  if isinstance(flat, np.ndarray):
    flat = pa.array(flat)
  return pa.ListArray.from_arrays(offsets, flat)


# --------------------------------------------------------------------- windows
def history_windows(user_codes: np.ndarray, length: int) -> Tuple[np.ndarray, np.ndarray]:
  """Index matrix of each row's previous rows of the same user, most recent first.

  Args:
    user_codes: (n,) user code per row; rows of one user are contiguous.
    length: window length L.

  Returns:
    (idx, valid): (n, L) int64 row indices (0 where invalid) and a bool mask; row i's
    window is i-1, i-2, ... down to the user's first row, truncated to L.
  """
  n = len(user_codes)
  pos = np.arange(n, dtype=np.int64)
  first = np.ones(n, dtype=bool)
  if n:
    first[1:] = user_codes[1:] != user_codes[:-1]
  starts = np.flatnonzero(first)
  user_start = starts[np.cumsum(first) - 1] if n else pos
  steps = np.arange(1, length + 1, dtype=np.int64)
  idx = pos[:, None] - steps[None, :]
  valid = idx >= user_start[:, None]
  return np.where(valid, idx, 0), valid


def session_windows(hist_idx: np.ndarray, hist_valid: np.ndarray, session_codes: np.ndarray,
                    ts: np.ndarray, ts_valid: np.ndarray, length: int,
                    window_s: int) -> Tuple[np.ndarray, np.ndarray]:
  """Selects, among each row's history window, the previous rows of its session.

  A history row belongs to the session when it has the impression's session id and its
  timestamp is at most ``window_s`` seconds older; rows without a timestamp never do.
  The selected rows keep their recency order and are packed to the front.

  Returns:
    (idx, valid): (n, length) row indices (0 where invalid) and the mask.
  """
  row_ts = ts[:, None]
  in_session = (hist_valid
                & (session_codes[hist_idx] == session_codes[:, None])
                & ts_valid[hist_idx] & ts_valid[:, None]
                & (ts[hist_idx] >= row_ts - window_s))
  # A stable argsort of "not selected" packs the selected positions to the front in
  # their original (most recent first) order.
  order = np.argsort(~in_session, axis=1, kind="stable")[:, :length]
  idx = np.take_along_axis(hist_idx, order, axis=1)
  valid = np.take_along_axis(in_session, order, axis=1)
  if order.shape[1] < length:  # history window shorter than the session length
    pad = length - order.shape[1]
    idx = np.pad(idx, ((0, 0), (0, pad)))
    valid = np.pad(valid, ((0, 0), (0, pad)))
  return np.where(valid, idx, 0), valid


# -------------------------------------------------------------------- the chunk
def eval_mask(user_ids: Sequence[str], eval_percent: int = DEFAULT_EVAL_PERCENT) -> np.ndarray:
  """True for users of the eval split: a stable hash of the id, ``eval_percent`` in 100."""
  if not 0 <= eval_percent <= 100:
    raise ValueError(f"eval_percent must be in [0, 100], got {eval_percent}")
  out = np.empty(len(user_ids), dtype=bool)
  for i, u in enumerate(user_ids):
    h = hashlib.md5(str(u).encode("utf-8")).digest()
    out[i] = int.from_bytes(h[:4], "little") % 100 < eval_percent
  return out


def subscription_within_window(user_codes: np.ndarray, ts: np.ndarray,
                               ts_valid: np.ndarray, converted: np.ndarray,
                               present: np.ndarray, paid: np.ndarray,
                               window_s: int = feature_spec.SUBSCRIPTION_WINDOW_S
                               ) -> Tuple[np.ndarray, np.ndarray]:
  """The subscription label of each impression: a conversion within the window after it.

  Events carry the conversion on the impression where it happened; the label the model
  learns is whether the listener converts within ``window_s`` seconds from this
  impression on (``feature_spec.SUBSCRIPTION_WINDOW_S``). Rows sorted by (user, ts).

  Args:
    user_codes, ts, ts_valid: per event, grouped by user and sorted by time.
    converted: the event's own conversion (0/1, NaN where unknown).
    present: where ``converted`` is known.
    paid: listeners already paying: not at risk, so their label weighs 0.

  Returns:
    (label values, label present) per event. Without a timestamp the event's own
    conversion is kept.
  """
  conv_pos = np.flatnonzero(present & (np.nan_to_num(converted) > 0))
  label = np.where(present, np.nan_to_num(converted), 0.0).astype(np.float32)
  if conv_pos.size:
    nxt = np.searchsorted(conv_pos, np.arange(len(ts)))   # first conversion at or after i
    has = nxt < conv_pos.size
    j = conv_pos[np.minimum(nxt, conv_pos.size - 1)]
    within = (has & (user_codes[j] == user_codes) & ts_valid & ts_valid[j]
              & (ts[j] - ts <= window_s))
    label = np.where(within & present, 1.0, label).astype(np.float32)
  return label, present & ~paid


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

  hist_idx, hist_valid = history_windows(user_codes, feature_spec.HISTORY_LEN)
  sess_idx, sess_valid = session_windows(hist_idx, hist_valid, session_codes, ts, ts_valid,
                                         feature_spec.SESSION_LEN, feature_spec.SESSION_WINDOW_S)

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
      values, present = subscription_within_window(
          user_codes, ts, ts_valid, values, present,
          seg_codes == _code_of(seg_dict, b"paid"))
    scalar(label, np.where(present, values, 0).astype(np.float32))
    scalar(feature_spec.weight_key(label), present.astype(np.float32))

  names = [f.name for f in feature_spec.RAW_FEATURES]
  return pa.RecordBatch.from_arrays([cols[k] for k in names], names)


def encode_record_batch(batch: pa.RecordBatch) -> List[bytes]:
  """Serializes every row of a raw-feature record batch as a ``tf.train.Example``."""
  from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
  out: List[bytes] = []
  for start in range(0, batch.num_rows, _ENCODE_BATCH_ROWS):
    out.extend(example_coder.RecordBatchToExamples(batch.slice(start, _ENCODE_BATCH_ROWS)))
  return out


def events_to_examples(events: pa.Table,
                       tracks: Union[TrackIndex, pd.DataFrame, pa.Table]) -> List[bytes]:
  """Serialized ``tf.train.Example`` of every event of ``events``, in row order.

  Args:
    events: ``EVENT_SCHEMA`` rows sorted by (user_id, ts), whole users only.
    tracks: ``TRACK_SCHEMA`` frame/table or a prebuilt ``TrackIndex``.
  """
  index = tracks if isinstance(tracks, TrackIndex) else TrackIndex(tracks)
  return encode_record_batch(events_to_record_batch(events, index))


def span_name(day: int) -> str:
  """Span folder of a UTC day number (days since the epoch): ``span-YYYYMMDD``."""
  return "span-" + str(np.datetime64(int(day), "D")).replace("-", "")


def split_examples(events: pa.Table, tracks: TrackIndex,
                   eval_percent: int = DEFAULT_EVAL_PERCENT,
                   span_days: Sequence[int] = ()) -> Dict[str, List[bytes]]:
  """Examples of a chunk grouped by destination.

  Args:
    events: one chunk (whole users, sorted by user and ts).
    tracks: candidate lookup.
    eval_percent: share of users (by id hash) in the eval split.
    span_days: UTC day numbers (days since the epoch); when given, examples are also
      grouped by the day of the impression. A row whose day is not listed (e.g. a null
      timestamp) goes to the first listed day.

  Returns:
    {"train": [...], "eval": [...]} or, with ``span_days``,
    {"span-YYYYMMDD/train": [...], "span-YYYYMMDD/eval": [...], ...}.
  """
  batch = events_to_record_batch(events, tracks)
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
  records = encode_record_batch(batch)
  out = {}
  for day in np.unique(days):
    for split, mask in (("train", ~is_eval), ("eval", is_eval)):
      key = f"{span_name(day)}/{split}" if by_date else split
      out[key] = [records[i] for i in np.flatnonzero(mask & (days == day)).tolist()]
  return out


def read_events(path: str) -> pa.Table:
  """Reads one events parquet file (local or any Beam filesystem, e.g. gs://)."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  if os.path.exists(path):
    return pq.read_table(path)
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  with FileSystems.open(path) as f:
    return pq.read_table(pa.BufferReader(f.read()))


# ------------------------------------------------------------------ TFRecord files
def _crc32c_fn():
  try:
    import google_crc32c  # pylint: disable=g-import-not-at-top
    return google_crc32c.value
  except ImportError:  # Beam picks snappy or crcmod then
    from apache_beam.io import tfrecordio  # pylint: disable=g-import-not-at-top
    return tfrecordio._default_crc32c_fn  # pylint: disable=protected-access


def _masked_crc(crc32c, data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frames(records: Sequence[bytes], crc32c=None) -> bytes:
  """The TFRecord encoding of ``records``: per record, little-endian uint64 length,
  masked CRC-32C of the length, the data, masked CRC-32C of the data."""
  crc32c = crc32c or _crc32c_fn()
  pack_len, pack_crc = struct.Struct("<Q").pack, struct.Struct("<I").pack
  parts = []
  for r in records:
    header = pack_len(len(r))
    parts += (header, pack_crc(_masked_crc(crc32c, header)), r,
              pack_crc(_masked_crc(crc32c, r)))
  return b"".join(parts)


def shard_path(out_dir: str, tag: str, shard: int, shards: int) -> str:
  """``out_dir/<tag>-SSSSS-of-NNNNN.tfrecord.gz`` (the layout WriteToTFRecord uses)."""
  return os.path.join(out_dir, f"{tag}-{shard:05d}-of-{shards:05d}.tfrecord.gz")


def gzip_member(records: Sequence[bytes], crc32c=None,
                compresslevel: int = GZIP_LEVEL) -> bytes:
  """``records`` framed as TFRecords and compressed as one gzip member.

  Concatenated gzip members are one valid gzip file (RFC 1952), which TensorFlow's and
  Beam's GZIP TFRecord readers read through, so workers compress in parallel and the
  writer only concatenates.
  """
  return gzip.compress(tfrecord_frames(records, crc32c), compresslevel=compresslevel, mtime=0)


def write_shard(path: str, members: Iterable[Union[bytes, Sequence[bytes]]],
                compresslevel: int = GZIP_LEVEL) -> int:
  """Writes one gzip TFRecord file (any Beam filesystem); returns its size in bytes.

  The file is written under a temporary name and renamed, so a retried bundle replaces
  a complete file and readers never see a partial one.

  Args:
    path: the file.
    members: pieces of the file in order: non-empty gzip members (``gzip_member``) as
      bytes, or sequences of serialized records to frame and compress here; empty
      pieces are skipped.
    compresslevel: zlib level for the record sequences.
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  crc32c = _crc32c_fn()
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"
  n = 0
  with FileSystems.create(tmp, compression_type="uncompressed") as f:
    for member in members:
      if not member:  # TensorFlow's reader stops at an empty gzip member
        continue
      if not isinstance(member, bytes):
        member = gzip_member(member, crc32c, compresslevel)
      f.write(member)
      n += len(member)
    if n == 0:  # no member at all: still a valid (empty) gzip file
      empty = gzip_member([], crc32c, compresslevel)
      f.write(empty)
      n = len(empty)
  if FileSystems.exists(path):
    FileSystems.delete([path])
  FileSystems.rename([tmp], [path])
  return n


# ------------------------------------------------------------------------ Beam
def _beam():
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  return beam


def output_tags(span_days: Sequence[int] = ()) -> List[str]:
  """Output tags (= file prefixes under the examples dir) of the examples pipeline."""
  if not span_days:
    return ["train", "eval"]
  return [f"{span_name(d)}/{split}" for d in sorted(set(span_days)) for split in ("train", "eval")]


def make_events_to_examples_fn(tracks: Union[pd.DataFrame, str], shards: int,
                               eval_percent: int = DEFAULT_EVAL_PERCENT,
                               span_days: Sequence[int] = (), progress_every_s: float = 0):
  """A ``beam.DoFn``: events chunk (Arrow table or parquet path) -> shard batches.

  Emits ``((tag, shard), member)`` for every output tag of ``output_tags(span_days)``
  and every shard: ``member`` is a gzip member (``gzip_member``) holding a round-robin
  slice of the chunk's examples, possibly empty so that every shard file exists.
  Compressing here, in parallel, and sending one small bytes object per chunk and shard
  keeps the shuffle and the writer cheap. Counters
  ``melody/events`` and ``melody/{train,eval}_examples`` count what it makes.

  Args:
    tracks: the tracks frame, or the path of a tracks parquet file (read in ``setup``).
    shards: files per tag.
    eval_percent: share of users (by id hash) whose examples go to "eval".
    span_days: UTC day numbers; when given, tags are ``span-YYYYMMDD/{train,eval}`` (see
      ``split_examples``).
    progress_every_s: when > 0, each worker prints its events/s and examples/s this often.
  """
  beam = _beam()
  if not 0 <= eval_percent <= 100:
    raise ValueError(f"eval_percent must be in [0, 100], got {eval_percent}")
  if shards < 1:
    raise ValueError(f"shards must be >= 1, got {shards}")
  days = np.array(sorted(set(int(d) for d in span_days)), dtype=np.int64)
  tags = output_tags(span_days)

  class EventsToExamplesFn(beam.DoFn):
    """Events chunk -> serialized examples, batched per output file."""

    def __init__(self):
      super().__init__()
      self._tracks_src = tracks
      self._index = None
      self._events = beam.metrics.Metrics.counter("melody", "events")
      self._counters = {s: beam.metrics.Metrics.counter("melody", f"{s}_examples")
                        for s in ("train", "eval")}
      self._progress = None
      self._crc32c = None

    def setup(self):
      src = self._tracks_src
      if isinstance(src, str):
        src = read_events(src)
      self._index = TrackIndex(src)
      self._crc32c = _crc32c_fn()
      now = time.perf_counter()
      self._progress = [now, now, 0, 0]  # start, last print, events, examples

    def process(self, chunk):
      table = read_events(chunk) if isinstance(chunk, str) else chunk
      self._events.inc(table.num_rows)
      made = split_examples(table, self._index, eval_percent, span_days=days)
      n_out = 0
      for tag in tags:
        records = made.get(tag, [])
        self._counters[tag.rsplit("/", 1)[-1]].inc(len(records))
        n_out += len(records)
        for shard in range(shards):
          part = records[shard::shards]
          # b"" for nothing: an empty gzip member would end TensorFlow's reader early.
          yield (tag, shard), gzip_member(part, self._crc32c) if part else b""
      self._report(table.num_rows, n_out)

    def _report(self, n_events, n_examples):
      p = self._progress
      p[2] += n_events
      p[3] += n_examples
      now = time.perf_counter()
      if progress_every_s > 0 and now - p[1] >= progress_every_s:
        p[1] = now
        dt = max(now - p[0], 1e-9)
        print(f"[examples] worker {os.getpid()}: {p[2]:,} events, {p[3]:,} examples, "
              f"{p[3] / dt:,.0f} examples/s", flush=True)

  return EventsToExamplesFn()


def build_examples_pipeline(pipeline, event_chunks, tracks: Union[pd.DataFrame, str],
                            out_dir: str, shards: int = 4,
                            eval_percent: int = DEFAULT_EVAL_PERCENT,
                            span_days: Sequence[int] = (), progress_every_s: float = 0):
  """Adds events -> examples -> sharded gzip TFRecords to a Beam pipeline.

  Writes ``out_dir/train-SSSSS-of-NNNNN.tfrecord.gz`` and ``out_dir/eval-…``, or with
  ``span_days`` ``out_dir/span-YYYYMMDD/{train,eval}-…`` (one folder per UTC day, the
  layout a TFX ImportExampleGen with ``{SPAN}`` input patterns reads).

  Examples travel through the shuffle in batches (one element per chunk and shard, not
  one per example), which is what makes this several times faster than a per-record
  ``beam.io.WriteToTFRecord`` on the DirectRunner; the files are the same format.

  Args:
    pipeline: the ``beam.Pipeline`` (any runner).
    event_chunks: a PCollection of events chunks (Arrow tables, or paths of parquet
      files each holding whole users sorted by (user_id, ts)), or a list of them.
    tracks: tracks frame or parquet path.
    out_dir: output directory (local or e.g. gs://).
    shards: files per split (per span).
    eval_percent: share of users in the eval split.
    span_days: UTC day numbers for the span layout; empty for the flat layout.
    progress_every_s: worker progress print interval (0: quiet).

  Returns:
    A PCollection of (file path, file size in bytes).
  """
  beam = _beam()
  if isinstance(event_chunks, (list, tuple)):
    event_chunks = pipeline | "EventChunks" >> beam.Create(list(event_chunks))

  def write(keyed):
    (tag, shard), members = keyed
    path = shard_path(out_dir, tag, shard, shards)
    return path, write_shard(path, members)

  return (event_chunks
          | "Reshuffle" >> beam.Reshuffle()
          | "ToExamples" >> beam.ParDo(make_events_to_examples_fn(
              tracks, shards, eval_percent, span_days, progress_every_s))
          | "GroupByShard" >> beam.GroupByKey()
          | "WriteShards" >> beam.Map(write))


def pipeline_options(runner: str = "DirectRunner", beam_args: Iterable[str] = (),
                     large: bool = False):
  """Beam options for ``runner``; DirectRunner gets a running mode unless one is given.

  Args:
    runner: DirectRunner, DataflowRunner, FlinkRunner, ... .
    beam_args: extra flags passed as-is (``--project``, ``--region``, ``--temp_location``,
      ``--flink_master`` ...).
    large: for DirectRunner, use ``multi_processing`` over all cores instead of
      ``in_memory``.
  """
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  args = [f"--runner={runner}"] + list(beam_args)
  if runner == "DirectRunner" and not any(a.startswith("--direct_running_mode") for a in args):
    if large:
      args += ["--direct_running_mode=multi_processing",
               f"--direct_num_workers={os.cpu_count() or 1}"]
    else:
      args += ["--direct_running_mode=in_memory"]
  return PipelineOptions(args)


def write_examples(event_chunks: Sequence[Union[str, pa.Table]],
                   tracks: Union[pd.DataFrame, str], out_dir: str, shards: int = 4,
                   runner: str = "DirectRunner", beam_args: Iterable[str] = (),
                   eval_percent: int = DEFAULT_EVAL_PERCENT, large: bool = False,
                   span_days: Sequence[int] = (),
                   progress_every_s: float = 0) -> Dict[str, int]:
  """Runs the examples pipeline; returns counts {"events", "train", "eval"}.

  The counts come from Beam metrics; a runner that reports none gives -1.
  """
  beam = _beam()
  if not event_chunks:
    raise ValueError("event_chunks is empty")
  options = pipeline_options(runner, beam_args, large)
  p = beam.Pipeline(options=options)
  build_examples_pipeline(p, list(event_chunks), tracks, out_dir, shards, eval_percent,
                          span_days, progress_every_s)
  result = p.run()
  result.wait_until_finish()
  counts = {"events": -1, "train": -1, "eval": -1}
  try:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("melody"))
  except (NotImplementedError, AttributeError):
    return counts
  for c in query["counters"]:
    key = c.key.metric.name.replace("_examples", "")
    if key in counts:
      value = c.committed if c.committed is not None else c.attempted
      counts[key] = max(counts[key], 0) + int(value)
  for key in counts:
    counts[key] = max(counts[key], 0) if query["counters"] else counts[key]
  return counts


def iter_records(file_pattern: str) -> Iterator[bytes]:
  """Serialized records of gzip TFRecord files matching ``file_pattern`` (sorted)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for path in sorted(tf.io.gfile.glob(file_pattern)):
    for r in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
      yield r


def canonical(record: bytes) -> bytes:
  """A serialized example with its features in key order.

  The C++ encoder writes the feature map in no fixed order (protobuf maps are unordered),
  so equal examples can differ byte-wise; compare ``canonical`` forms instead.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Example.FromString(record).SerializeToString(deterministic=True)


def reference_example(features: Dict[str, Sequence]) -> bytes:
  """Builds one example with the tf.train.Example protos, the slow straightforward way.

  Used by tests and the benchmark baseline to check the fast encoder byte-for-byte
  semantics (parsed values), not for production.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  feats = {}
  for f in feature_spec.RAW_FEATURES:
    v = features[f.name]
    v = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
    if f.dtype == "string":
      feats[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[x if isinstance(x, bytes) else str(x).encode() for x in v]))
    elif f.dtype == "int64":
      feats[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))
    else:
      feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))
  return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()
