"""Adapter for MTG-Jamendo (split-0 autotagging) plus the Jamendo track statistics.

Owns the mapping of ``mtg_jamendo/`` to the common schema. MTG-Jamendo is a track
catalogue, not a listening log:

* tracks: every row of ``autotagging-{train,validation,test}.tsv`` (in that order):
  ``track_id`` = ``TRACK_ID`` (``track_0001234``), ``artist_id`` = ``ARTIST_ID``,
  ``duration_s`` = ``DURATION``, ``tags`` = the ``category---tag`` fields as they are
  (genre, instrument, mood/theme). Those files have a variable number of tab fields
  (one per tag) and CRLF line endings, so they are parsed line by line.
  ``popularity`` = log1p(``rate_listened_total``) from ``jamendo_stats.tsv`` (9,858
  split-0 test tracks; null for the rest). ``title`` = the ``"<title> by <artist>"``
  attribution text of ``split_0_test_tracks.tsv`` (test tracks only; empty otherwise).
* events: **none**. The dataset records no listener, so there is no user, play or
  label to map and the events table is empty (with the schema's columns). Per-track
  engagement (listens, likes, favorites, ...) and a like rate are in ``load_stats``.
"""

import os
from typing import List, Tuple

import numpy as np
import pandas as pd

from features import events
SOURCE = "jamendo"
SPLITS = ("train", "validation", "test")
_HEADER = ["TRACK_ID", "ARTIST_ID", "ALBUM_ID", "PATH", "DURATION"]


def _path(data_dir: str, name: str) -> str:
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"Jamendo file not found: {path}")
  return path


def read_autotagging(path: str) -> pd.DataFrame:
  """One autotagging TSV as a frame with a ``TAGS`` list column and a ``split`` column.

  Rows shorter than the five fixed fields are kept with the missing fields null, so
  validation sees (and counts) them instead of the parser dropping them.
  """
  rows: List[list] = []
  with open(path, encoding="utf-8", newline="") as f:
    header = f.readline().rstrip("\r\n").split("\t")
    if header[:5] != _HEADER:
      raise ValueError(f"{path}: unexpected header {header[:5]}, expected {_HEADER}")
    for line in f:
      parts = line.rstrip("\r\n").split("\t")
      if parts == [""]:
        continue  # blank line, e.g. a trailing newline
      fixed = (parts[:5] + [None] * 5)[:5]
      rows.append(fixed + [[t.strip() for t in parts[5:] if t.strip()]])
  return pd.DataFrame(rows, columns=_HEADER + ["TAGS"])


def load_stats(data_dir: str) -> pd.DataFrame:
  """Jamendo usage statistics per track, keyed by ``track_id`` (``track_0001234``).

  Columns are those of ``jamendo_stats.tsv`` plus ``track_id``, ``popularity`` =
  log1p(listens) and ``like_rate`` = likes / listens (null when never listened).
  """
  stats = pd.read_csv(_path(data_dir, "jamendo_stats.tsv"), sep="\t", encoding="utf-8")
  num = pd.to_numeric(stats["track"], errors="coerce").astype("Int64")
  stats.insert(0, "track_id", num.map(lambda t: None if pd.isna(t) else f"track_{t:07d}"))
  listens = pd.to_numeric(stats["rate_listened_total"], errors="coerce")
  likes = pd.to_numeric(stats["likes"], errors="coerce")
  stats["popularity"] = np.log1p(listens.where(listens >= 0)).astype(np.float32)
  stats["like_rate"] = (likes / listens.where(listens > 0)).astype(np.float64)
  return stats


def load_titles(data_dir: str) -> pd.Series:
  """Attribution text ("<title> by <artist>") per ``track_id`` for the test tracks."""
  att = pd.read_csv(_path(data_dir, "split_0_test_tracks.tsv"), sep="\t", encoding="utf-8",
                    dtype={"ATTRIBUTION": str}, keep_default_na=False)
  num = pd.to_numeric(att["TRACK_ID"], errors="coerce").astype("Int64")
  ids = num.map(lambda t: None if pd.isna(t) else f"track_{t:07d}")
  titles = pd.Series(att["ATTRIBUTION"].str.strip().to_numpy(), index=ids.to_numpy())
  return titles[titles.index.notna() & ~titles.index.duplicated()]


def load(data_dir: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """Reads ``mtg_jamendo/`` into (events, tracks) of the common schema.

  Args:
    data_dir: the folder holding ``autotagging-{train,validation,test}.tsv``,
      ``jamendo_stats.tsv`` and ``split_0_test_tracks.tsv``.

  Returns:
    (events_df, tracks_df): events is empty (no listener data); tracks has the
    TRACK_SCHEMA columns, not validated.
  """
  meta = pd.concat([read_autotagging(_path(data_dir, f"autotagging-{s}.tsv"))
                    for s in SPLITS], ignore_index=True)
  stats = load_stats(data_dir)
  popularity = pd.Series(stats["popularity"].to_numpy(), index=stats["track_id"].to_numpy())
  popularity = popularity[popularity.index.notna() & ~popularity.index.duplicated()]
  titles = load_titles(data_dir)
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
  return events.make_events(SOURCE, 0), tracks
