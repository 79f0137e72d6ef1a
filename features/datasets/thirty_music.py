"""Adapter for the 30Music "200ks" session slices (Last.fm scrobbles, 2014).

Owns the mapping of ``30music_slices/30music-200ks_test.<k>.txt`` (TSV with header:
UserId, SessionId, ItemId, Time, ArtistId) to the common event schema. Each row is one
play: ``user_id`` = ``30music_user:<UserId>``, ``session_id`` =
``30music_session:<SessionId>``, ``track_id`` = ``30music_track:<ItemId>``, ``artist_id``
= ``30music_artist:<ArtistId>``, ``ts`` = ``Time`` (epoch seconds, UTC). Rows are
ordered by slice, then session (in order of first appearance), then time (stable, so
ties keep file order).

``skip`` is a **heuristic proxy**, not an observed label: a play followed by the next
play of the same session less than ``SkipProxy.max_gap_s`` (30 s) later counts as
skipped (1), otherwise 0; the last play of a session has no next play, so its ``skip``
is null. Note that on these slices the proxy is 0 everywhere: Last.fm only scrobbles
a track after about 30 s of playback, and the shortest gap between distinct plays is
exactly 30 s. The same (session, track, second) logged twice is left in place for the
validator to quarantine, and is ignored when computing gaps. ``completion``, ``like``,
``subscription`` and ``exposure`` are null; the files have no user segment or surface.
The slices carry no track metadata, so the tracks table only lists the track ids with
their artist; ``popularity`` stays null (unknown). Counting it from the slices themselves
would hand every training example the plays of later days, the ones a model is evaluated
on, so a model learns a track's popularity from its training spans instead.

Quarantined, each line with its reason: malformed lines, ids that are not integers,
and (after validation) unreadable times and repeated plays. The tracks table is built
from the plays, so the event -> track reference always resolves.
"""

import dataclasses
import glob
import os
import re

import numpy as np
import pandas as pd

from features import events as events_lib
from features.datasets import line_reader, quarantine, source_tables

SOURCE = "30music"
FILE_PATTERN = "30music-200ks_test.*.txt"
_COLUMNS = ("UserId", "SessionId", "ItemId", "Time", "ArtistId")


@dataclasses.dataclass(frozen=True)
class SkipProxy:
  """The gap rule behind the ``skip`` proxy.

  Attributes:
    max_gap_s: a play whose next play in the session starts less than this many
      seconds later is marked skipped.
  """
  max_gap_s: float = 30.0

  def __post_init__(self):
    if not self.max_gap_s > 0:
      raise ValueError(f"max_gap_s must be positive, got {self.max_gap_s}")


def slice_files(data_dir: str):
  """The slice files of ``data_dir``, ordered by slice number."""
  files = glob.glob(os.path.join(data_dir, FILE_PATTERN))
  if not files:
    raise FileNotFoundError(f"no {FILE_PATTERN} files in {data_dir}")
  def number(path):
    m = re.search(r"\.(\d+)\.txt$", path)
    return int(m.group(1)) if m else -1
  return sorted(files, key=lambda p: (number(p), p))


_FORMAT = line_reader.Format(sep="\t", quoted=False, encoding="utf-8")
_ID_COLUMNS = ("UserId", "SessionId", "ItemId", "ArtistId")


def _read_slices(q: quarantine.Quarantine, data_dir: str) -> pd.DataFrame:
  frames = []
  for k, path in enumerate(slice_files(data_dir)):
    df = q.read(path, _FORMAT, _COLUMNS)
    # Ids are decimal integers; an empty one is left for validation ("missing ...").
    df = q.reject_unmatched(df, _ID_COLUMNS, r"\s*\d+\s*", "an integer")
    frames.append(df.assign(_slice=k))
  plays = pd.concat(frames, ignore_index=True)
  plays["_time"] = pd.to_numeric(plays["Time"], errors="coerce")
  plays["_row"] = np.arange(len(plays))
  # Sessions stay in the order they first appear; plays within a session go by time.
  plays["_session"] = plays.groupby(["_slice", "SessionId"], sort=False,
                                    dropna=False).ngroup()
  return plays.sort_values(["_session", "_time", "_row"], kind="stable",
                           ignore_index=True)


def skip_proxy(session: pd.Series, track: pd.Series, ts: pd.Series,
               rule: SkipProxy = SkipProxy()) -> np.ndarray:
  """The gap-based skip proxy for plays ordered by session then time.

  Args:
    session: session id per play.
    track: track id per play.
    ts: play start, epoch seconds (float; NaN when unreadable).
    rule: the gap threshold.

  Returns:
    float32 array: 1 when the next distinct play of the session starts less than
    ``rule.max_gap_s`` later, 0 when later, NaN for the last play of a session, for
    repeats of the same (session, track, second) and for plays without a time.
  """
  frame = pd.DataFrame({"s": session.to_numpy(), "t": track.to_numpy(),
                        "ts": ts.to_numpy(dtype=float)})
  usable = frame["ts"].notna() & ~frame.duplicated(["s", "t", "ts"], keep="first")
  kept = frame[usable]
  gap = kept.groupby("s", sort=False)["ts"].shift(-1) - kept["ts"]
  out = np.full(len(frame), np.nan, dtype=np.float32)
  out[usable.to_numpy()] = np.where(gap.isna(), np.nan,
                                    (gap < rule.max_gap_s).astype(np.float32))
  return out


def load(data_dir: str, rule: SkipProxy = SkipProxy()) -> source_tables.SourceTables:
  """Reads the 30Music slices into events and tracks of the common schema.

  Malformed lines and ids that are not integers are quarantined. The tracks table is
  built from the plays, so every event's track is in it.

  Args:
    data_dir: the folder holding ``30music-200ks_test.<k>.txt``.
    rule: the skip-proxy rule.

  Returns:
    The tables with EVENT_SCHEMA / TRACK_SCHEMA columns (not validated), their source
    lines (a track: the first play of it) and the quarantine.
  """
  q = quarantine.Quarantine()
  plays = _read_slices(q, data_dir)
  n = len(plays)

  def ids(col, prefix):
    v = plays[col].str.strip()
    return (prefix + v).where(v.notna() & (v != ""), None)

  session = ids("SessionId", "30music_session:")
  track = ids("ItemId", "30music_track:")
  artist = ids("ArtistId", "30music_artist:")
  events = events_lib.make_events(
      SOURCE, n,
      user_id=ids("UserId", "30music_user:"),
      session_id=session,
      ts=events_lib.numeric_or_text(plays["Time"], integer=True),
      track_id=track,
      artist_id=artist,
      skip=skip_proxy(session, track, plays["_time"], rule),
  )

  known = pd.DataFrame({"track_id": track, "artist_id": artist}).dropna(subset=["track_id"])
  first = known.drop_duplicates("track_id", keep="first")
  tracks = events_lib.make_tracks(
      len(first),
      track_id=first["track_id"],
      artist_id=first["artist_id"],
  )
  return source_tables.SourceTables(
      events, tracks, source_tables.origin_of(plays),
      source_tables.origin_of(plays.loc[first.index]), q)
