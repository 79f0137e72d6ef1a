"""Adapter for MTG-Jamendo (split-0 autotagging) plus the Jamendo track statistics.

Owns the mapping of ``mtg_jamendo/`` to the common schema. MTG-Jamendo is a track
catalogue, not a listening log:

* tracks: every row of ``autotagging-{train,validation,test}.tsv`` (in that order):
  ``track_id`` = ``TRACK_ID`` (``track_0001234``), ``artist_id`` = ``ARTIST_ID``,
  ``duration_s`` = ``DURATION``, ``tags`` = the ``category---tag`` fields as they are
  (genre, instrument, mood/theme). Those files have a variable number of tab fields
  (one per tag) and CRLF line endings.
  ``popularity`` = log1p(``rate_listened_total``) from ``jamendo_stats.tsv`` (9,858
  split-0 test tracks; null for the rest). ``title`` = the ``"<title> by <artist>"``
  attribution text of ``split_0_test_tracks.tsv`` (test tracks only; empty otherwise).
* events: **none**. The dataset records no listener, so there is no user, play or
  label to map and the events table is empty (with the schema's columns). Per-track
  engagement (listens, likes, favorites, ...) and a like rate are in ``load_stats``.

Quarantined, each line with its reason: malformed lines of any file, lines with fewer
than the five fixed autotagging fields, track ids that are not ``track_<digits>`` (or
integers in the stats and attribution files) and, after validation, tracks with an
unreadable or non-positive duration. Stats and titles of tracks outside the catalogue
are unused.
"""

import os
from typing import Optional

import numpy as np
import pandas as pd

from features import events
from features.datasets import line_reader, quarantine, source_tables

SOURCE = "jamendo"
SPLITS = ("train", "validation", "test")
_HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION", "TAGS"]


def _path(data_dir: str, name: str) -> str:
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"Jamendo file not found: {path}")
  return path


_TAGGING = line_reader.Format(sep="\t", quoted=False, encoding="utf-8", repeated_last=True)
_STATS = line_reader.Format(sep="\t", quoted=False, encoding="utf-8")
# split_0_test_tracks.tsv quotes attributions that hold a tab or a quote.
_TITLES = line_reader.Format(sep="\t", quoted=True, encoding="utf-8")


def _reject_bad_ids(q: quarantine.Quarantine, frame: pd.DataFrame, col: str) -> pd.DataFrame:
  """Quarantines rows whose ``col`` (a numeric track id) is missing or not an integer."""
  frame = q.reject(frame, frame[col].isna(), f"{col} is missing")
  return q.reject_unmatched(frame, [col], r"\s*\d+\s*", "an integer")


def read_autotagging(path: str, q: Optional[quarantine.Quarantine] = None) -> pd.DataFrame:
  """One autotagging TSV as a frame with a ``TAGS`` list column (one tag per field).

  Lines with fewer than the five fixed fields, and lines whose ``TRACK_ID`` is not
  ``track_<digits>``, are quarantined.

  Args:
    path: the TSV.
    q: the quarantine to read through (a fresh one when None).

  Returns:
    The rows with ``TRACK_ID`` … ``DURATION`` as text, ``TAGS`` and the origin columns.

  Raises:
    ValueError: the header is not ``TRACK_ID ARTIST_ID ALBUM_ID PATH DURATION TAGS``.
  """
  q = q or quarantine.Quarantine()
  frame = q.read(path, _TAGGING, _HEADER)
  header = [c for c in frame.columns if c not in source_tables.ORIGIN]
  if header != _HEADER:
    raise ValueError(f"{path}: unexpected header {header}, expected {_HEADER}")
  return q.reject_unmatched(frame, ["TRACK_ID"], r"\s*track_\d+\s*", "a track_<digits> id")


def load_stats(data_dir: str, q: Optional[quarantine.Quarantine] = None) -> pd.DataFrame:
  """Jamendo usage statistics per track, keyed by ``track_id`` (``track_0001234``).

  Columns are those of ``jamendo_stats.tsv`` as numbers (null where unreadable) plus
  ``track_id``, ``popularity`` = log1p(listens) and ``like_rate`` = likes / listens
  (null when never listened). Lines whose ``track`` is not an integer are quarantined.
  """
  q = q or quarantine.Quarantine()
  stats = q.read(_path(data_dir, "jamendo_stats.tsv"), _STATS,
                 ("track", "rate_listened_total", "likes"))
  stats = _reject_bad_ids(q, stats, "track")
  stats = stats.drop(columns=list(source_tables.ORIGIN)).reset_index(drop=True)
  stats = stats.apply(pd.to_numeric, errors="coerce")
  stats.insert(0, "track_id", stats["track"].astype(np.int64).map("track_{:07d}".format))
  listens, likes = stats["rate_listened_total"], stats["likes"]
  stats["popularity"] = np.log1p(listens.where(listens >= 0)).astype(np.float32)
  stats["like_rate"] = (likes / listens.where(listens > 0)).astype(np.float64)
  return stats


def load_titles(data_dir: str, q: Optional[quarantine.Quarantine] = None) -> pd.Series:
  """Attribution text ("<title> by <artist>") per ``track_id`` for the test tracks."""
  q = q or quarantine.Quarantine()
  att = q.read(_path(data_dir, "split_0_test_tracks.tsv"), _TITLES, ("TRACK_ID", "ATTRIBUTION"))
  att = _reject_bad_ids(q, att, "TRACK_ID")
  ids = att["TRACK_ID"].astype(np.int64).map("track_{:07d}".format)
  titles = pd.Series(att["ATTRIBUTION"].fillna("").str.strip().to_numpy(), index=ids.to_numpy())
  return titles[~titles.index.duplicated()]


def load(data_dir: str) -> source_tables.SourceTables:
  """Reads ``mtg_jamendo/`` into the common schema: tracks, and no events.

  Args:
    data_dir: the folder holding ``autotagging-{train,validation,test}.tsv``,
      ``jamendo_stats.tsv`` and ``split_0_test_tracks.tsv``.

  Returns:
    The tables: events empty (no listener data); tracks with the TRACK_SCHEMA
    columns (not validated), their source lines and the quarantine.
  """
  q = quarantine.Quarantine()
  meta = pd.concat([read_autotagging(_path(data_dir, f"autotagging-{s}.tsv"), q)
                    for s in SPLITS], ignore_index=True)
  stats = load_stats(data_dir, q)
  popularity = pd.Series(stats["popularity"].to_numpy(), index=stats["track_id"].to_numpy())
  popularity = popularity[~popularity.index.duplicated()]
  titles = load_titles(data_dir, q)
  track = meta["TRACK_ID"].str.strip()
  tracks = events.make_tracks(
      len(meta),
      track_id=track,
      artist_id=meta["ARTIST_ID"],
      tags=meta["TAGS"],
      duration_s=events.numeric_or_text(meta["DURATION"]),
      popularity=track.map(popularity).astype(np.float32),
      title=track.map(titles).fillna("").astype(str),
  )
  no_origin = pd.DataFrame({c: pd.Series([], dtype=t) for c, t in
                            zip(source_tables.ORIGIN, (object, np.int64))})
  return source_tables.SourceTables(events.make_events(SOURCE, 0), tracks, no_origin,
                                    source_tables.origin_of(meta), q)
