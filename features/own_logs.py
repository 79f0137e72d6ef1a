"""A team's own event logs (or ``melody data import`` output) -> training example spans.

This module owns ``melody data examples``: it finds the event files of a directory or
glob (parquet or CSV in the common schema of ``features.events``, with only the required
columns mandatory), fills the optional columns with their "not recorded" defaults,
derives sessions where the log has none (a gap of more than ``SESSION_GAP_S`` starts a
new one), validates rows and their track references, regroups the events so that every
chunk holds whole listeners sorted by (user_id, ts), and hands the chunks to
``features.dataset_writer`` — the same Beam job and layout as the simulator path. Since
each chunk holds a listener's whole log, the history and session windows of a play on
day N reach back into days before N although its example lands in ``span-<day N>``. A
log that records plays but no feedback (``sampled_negatives.is_play_only``, decided from
its columns, never by a flag) gets each play written with sampled negatives.
"""

import glob
import os
import sys
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import dataset_writer
from features import events as events_lib
from features import sampled_negatives

REQUIRED_COLUMNS = ("user_id", "track_id", "ts")
# A listener's plays further apart than this start a new session (when the log has none).
SESSION_GAP_S = 30 * 60
OWN_SOURCE = "own"
DEFAULT_CHUNK_USERS = 2000
SPAN_BY = ("day", "none")
_EVENT_SUFFIXES = (".parquet", ".csv", ".csv.gz")


def _log(msg: str) -> None:
  print(f"[examples] {msg}", file=sys.stderr, flush=True)


def event_files(spec: str) -> List[str]:
  """The event files a ``--events`` value names: a directory (searched recursively for
  parquet and CSV files) or a glob, sorted.

  Raises:
    FileNotFoundError: nothing matches.
  """
  if os.path.isdir(spec):
    found = [p for p in glob.glob(os.path.join(spec, "**", "*"), recursive=True)
             if os.path.isfile(p) and p.endswith(_EVENT_SUFFIXES)]
  else:
    found = [p for p in glob.glob(spec, recursive=True) if os.path.isfile(p)]
  if not found:
    raise FileNotFoundError(f"no event files (parquet or CSV) match {spec!r}")
  return sorted(found)


def _read_table_file(path: str) -> pd.DataFrame:
  if path.endswith(".parquet"):
    return pq.read_table(path).to_pandas()
  return pd.read_csv(path, dtype={"user_id": str, "track_id": str, "session_id": str,
                                  "artist_id": str})


def read_events(paths: Sequence[str]) -> pd.DataFrame:
  """The events of ``paths`` with every ``EVENT_SCHEMA`` column.

  Columns the log lacks get their "not recorded" defaults (``events.make_events``):
  null labels, ``unknown`` context, ``source`` ``own``; a log without ``session_id``
  gets sessions from the gaps between a listener's plays. Columns outside the schema
  are ignored.

  Raises:
    ValueError: a required column is missing from a file.
  """
  frames = []
  for path in paths:
    df = _read_table_file(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
      raise ValueError(f"{path}: required column(s) {missing} missing; an events file needs "
                       f"{list(REQUIRED_COLUMNS)} (see docs/own_logs.md)")
    frames.append(df)
  raw = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
  raw = raw.reset_index(drop=True)
  if pd.api.types.is_datetime64_any_dtype(raw["ts"]):
    raw["ts"] = raw["ts"].astype("int64") // 10**9
  given = {c: raw[c] for c in events_lib.EVENT_SCHEMA.names if c in raw.columns}
  logged_source = given.pop("source", None)
  frame = events_lib.make_events(OWN_SOURCE, len(raw), **given)
  if logged_source is not None:  # e.g. "30music" in `melody data import` output
    frame["source"] = logged_source.fillna(OWN_SOURCE).to_numpy(object)
  if "session_id" not in raw.columns:
    frame["session_id"] = gap_sessions(
        frame["user_id"].to_numpy(object),
        pd.to_numeric(frame["ts"], errors="coerce").to_numpy("float64", na_value=np.nan))
  return frame


def gap_sessions(user_ids: np.ndarray, ts: np.ndarray,
                 gap_s: int = SESSION_GAP_S) -> np.ndarray:
  """Session ids from time gaps: a listener's next play more than ``gap_s`` seconds
  after the previous one starts a new session; rows without a time get one session per
  listener.

  Args:
    user_ids: per row (any order).
    ts: epoch seconds per row, NaN where unknown.
    gap_s: the gap that ends a session.

  Returns:
    ``<user>:<n>`` per row, in the rows' order.
  """
  n = len(user_ids)
  order = np.lexsort((np.nan_to_num(ts, nan=-1.0), user_ids.astype(str)))
  u, t = user_ids[order].astype(str), ts[order]
  new_user = np.ones(n, dtype=bool)
  new_user[1:] = u[1:] != u[:-1]
  gap = np.zeros(n, dtype=bool)
  gap[1:] = (t[1:] - t[:-1]) > gap_s
  number = np.empty(n, dtype=np.int64)
  counter = 0
  for i in range(n):  # a running count per listener
    counter = 0 if new_user[i] else counter + int(gap[i])
    number[i] = counter
  out = np.empty(n, dtype=object)
  out[order] = [f"{user}:{k}" for user, k in zip(u, number)]
  return out


def read_tracks(path: str) -> pd.DataFrame:
  """The catalogue (``TRACK_SCHEMA``; ``track_id`` required), from parquet or CSV.

  In CSV, ``tags`` is one string with tags separated by ``|``.
  """
  raw = _read_table_file(path)
  if "track_id" not in raw.columns:
    raise ValueError(f"{path}: the tracks file needs a track_id column")
  if "tags" in raw.columns:
    raw["tags"] = raw["tags"].map(_tag_list)
  given = {c: raw[c] for c in events_lib.TRACK_SCHEMA.names if c in raw.columns}
  return events_lib.make_tracks(len(raw), **given)


def _tag_list(value) -> list:
  if value is None or (isinstance(value, float) and np.isnan(value)):
    return []
  if isinstance(value, str):
    return [t for t in value.split("|") if t]
  return [str(t) for t in value]


def user_chunks(events: pd.DataFrame, chunk_users: int = DEFAULT_CHUNK_USERS
                ) -> Iterator[pa.Table]:
  """``EVENT_SCHEMA`` tables of whole listeners, sorted by (user_id, ts).

  The example builder looks back only inside a chunk, so a listener split across two
  chunks would lose history; this keeps each listener's whole log together.
  """
  if chunk_users < 1:
    raise ValueError(f"chunk_users must be >= 1, got {chunk_users}")
  ordered = events.assign(_ts=pd.to_numeric(events["ts"], errors="coerce")).sort_values(
      ["user_id", "_ts"], kind="stable", na_position="first").drop(columns="_ts")
  users = ordered["user_id"].to_numpy(object)
  starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
  bounds = list(starts[::chunk_users]) + [len(ordered)]
  for lo, hi in zip(bounds[:-1], bounds[1:]):
    yield events_lib.to_arrow(ordered.iloc[lo:hi], events_lib.EVENT_SCHEMA)


def build_examples(events_spec: str, tracks_path: str, out: str, span_by: str = "day",
                   shards: int = 2, runner: str = "DirectRunner",
                   beam_args: Sequence[str] = (), eval_percent: int = 10,
                   max_bad_fraction: float = 0.01,
                   chunk_users: int = DEFAULT_CHUNK_USERS,
                   negatives_per_positive: int = sampled_negatives.DEFAULT_NEGATIVES
                   ) -> Dict[str, object]:
  """Events -> ``out/examples/span-YYYYMMDD/{train,eval}-*.tfrecord.gz`` (or flat).

  Also writes ``out/events/``, ``out/tracks.parquet``, ``out/manifest.json`` (as
  ``melody data generate`` does) and, when rows were rejected,
  ``out/quarantine/events.quarantine.csv``.

  Args:
    events_spec: a directory or glob of event files.
    tracks_path: the catalogue file.
    out: the dataset directory.
    span_by: ``day`` (one span folder per UTC day) or ``none`` (flat train/eval).
    shards: files per split and span.
    runner: Beam runner of the examples stage (e.g. DirectRunner, DaskRunner).
    beam_args: extra Beam flags.
    eval_percent: share of listeners in the eval split.
    max_bad_fraction: fail when more rows than this are invalid.
    chunk_users: listeners per events chunk.
    negatives_per_positive: K, sampled negatives per play when the log is play-only.

  Returns:
    The manifest.

  Raises:
    BadDataError: too many invalid rows.
    ValueError: bad arguments, no valid events, or ``span_by=day`` without timestamps.
  """
  if span_by not in SPAN_BY:
    raise ValueError(f"span_by must be one of {SPAN_BY}, got {span_by!r}")
  paths = event_files(events_spec)
  os.makedirs(out, exist_ok=True)
  quarantine = os.path.join(out, "quarantine")
  events, report = events_lib.validate_events(read_events(paths), quarantine,
                                              max_bad_fraction)
  tracks, track_report = events_lib.validate_tracks(read_tracks(tracks_path), quarantine,
                                                    max_bad_fraction)
  known = events["track_id"].isin(set(tracks["track_id"]))
  unknown_tracks = int((~known).sum())
  events = events[known].reset_index(drop=True)
  if not len(events):
    raise ValueError(f"no valid events in {events_spec} (see {quarantine})")
  _log(f"{len(paths)} event files: {report.total:,} rows, {len(events):,} used, "
       f"{report.bad:,} invalid, {unknown_tracks:,} with a track_id not in {tracks_path}")
  if span_by == "day" and events["ts"].isna().all():
    raise ValueError("--span-by day needs timestamps, but every event has a null ts")
  negatives = None
  if sampled_negatives.is_play_only(label_counts(events)):
    negatives = sampled_negatives.from_events(events, negatives_per_positive)
    _log(f"play-only log (no completion, like or two-valued skip): each play gets "
         f"{negatives_per_positive} sampled negatives (next-play examples)")
  return dataset_writer.write_dataset(
      user_chunks(events, chunk_users), tracks, out, shards=shards, runner=runner,
      beam_args=beam_args, eval_percent=eval_percent, span_layout=span_by == "day",
      manifest_extra={"inputs": {"events": paths, "tracks": tracks_path},
                      "rows": {"read": report.total, "invalid": report.bad,
                               "unknown_track": unknown_tracks,
                               "tracks_invalid": track_report.bad}},
      negatives=negatives)


def label_counts(events: pd.DataFrame) -> Dict[str, Dict[str, int]]:
  """Label key -> events with the label and with a positive value."""
  out = {}
  for column, label in events_lib.EVENT_LABELS.items():
    values = pd.to_numeric(events[column], errors="coerce")
    out[label] = {"present": int(values.notna().sum()), "positive": int((values > 0).sum())}
  return out
