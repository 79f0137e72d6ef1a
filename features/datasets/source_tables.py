"""What an adapter hands over, and how it becomes checked tables plus a quarantine.

Owns ``SourceTables`` (an adapter's events and tracks in the common schema, the source
line each row came from, and the ``Quarantine`` its files were read through) and
``check``, the step between an adapter and the files written: every row is validated
against the common schema (``features.events``), every valid event must point at a
valid track (the referential check: an event whose track is not in the tracks table is
quarantined as ``UNKNOWN_TRACK``, never written pointing at nothing), and each rejected
row goes back to its source line in the quarantine, raw text included.
"""

import collections
import dataclasses
from typing import Dict, Tuple

import pandas as pd

from features import events as events_lib
from features.datasets import quarantine as quarantine_lib

UNKNOWN_TRACK = "unknown track_id (not in the tracks table)"
ORIGIN = (quarantine_lib.FILE, quarantine_lib.LINE)


@dataclasses.dataclass
class SourceTables:
  """One source as an adapter read it, not yet validated.

  Attributes:
    events: EVENT_SCHEMA columns, one row per event.
    tracks: TRACK_SCHEMA columns, one row per track.
    events_origin: ``FILE`` and ``LINE`` of each events row (same length and order).
    tracks_origin: the same for tracks; a track built from other rows (e.g. 30Music's
      tracks, taken from the plays) names the first line it was seen on.
    quarantine: the files read and the lines quarantined so far.
    notes: counts the adapter reports beside the quarantine (e.g. events whose user
      has no members row), by description.
  """
  events: pd.DataFrame
  tracks: pd.DataFrame
  events_origin: pd.DataFrame
  tracks_origin: pd.DataFrame
  quarantine: quarantine_lib.Quarantine
  notes: Dict[str, int] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    for table, origin in (("events", self.events_origin), ("tracks", self.tracks_origin)):
      if len(origin) != len(getattr(self, table)):
        raise ValueError(f"{table}_origin has {len(origin)} rows, "
                         f"{table} has {len(getattr(self, table))}")


def origin_of(frame: pd.DataFrame) -> pd.DataFrame:
  """The ``FILE`` / ``LINE`` columns of ``frame``, with a fresh index."""
  return frame[list(ORIGIN)].reset_index(drop=True)


@dataclasses.dataclass
class CheckedTables:
  """The rows that passed, and what the checks found.

  Attributes:
    events, tracks: the valid rows, schema column order, source order.
    reports: ``{"events": ValidationReport, "tracks": ValidationReport}`` over the
      adapted rows (parse-level rejects never became rows and are not in them).
    quarantine: every quarantined line so far, read failures included.
  """
  events: pd.DataFrame
  tracks: pd.DataFrame
  reports: Dict[str, events_lib.ValidationReport]
  quarantine: quarantine_lib.Quarantine


def _split(table: str, df: pd.DataFrame, reason: pd.Series, schema
           ) -> Tuple[pd.DataFrame, events_lib.ValidationReport]:
  ok = (reason == "").to_numpy()
  counts = collections.Counter(reason[~ok])
  report = events_lib.ValidationReport(table, len(df), int(ok.sum()), dict(counts))
  return df.reset_index(drop=True)[ok][list(schema.names)].reset_index(drop=True), report


def check(tables: SourceTables) -> CheckedTables:
  """Validates ``tables``, checks event -> track references, quarantines what fails.

  Args:
    tables: an adapter's output.

  Returns:
    The valid rows and the reports; the rejected rows are added to
    ``tables.quarantine`` under their source lines.
  """
  track_reason = events_lib.track_reasons(tables.tracks)
  event_reason = events_lib.event_reasons(tables.events)
  track_id = tables.tracks["track_id"].reset_index(drop=True)
  known = pd.Index(track_id[track_reason == ""].dropna().unique())
  event_track = tables.events["track_id"].reset_index(drop=True)
  unknown = (event_reason == "") & ~event_track.isin(known)
  event_reason = event_reason.mask(unknown, UNKNOWN_TRACK)
  q = tables.quarantine
  q.reject(origin_of(tables.tracks_origin), track_reason != "", track_reason)
  q.reject(origin_of(tables.events_origin), event_reason != "", event_reason)
  tracks, tr_report = _split("tracks", tables.tracks, track_reason, events_lib.TRACK_SCHEMA)
  events, ev_report = _split("events", tables.events, event_reason, events_lib.EVENT_SCHEMA)
  return CheckedTables(events, tracks, {"events": ev_report, "tracks": tr_report}, q)
