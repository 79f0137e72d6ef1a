"""Adapter for the KKBox music-recommendation sample (WSDM Cup 2018, 300 songs).

Owns the mapping of ``kkbox_sample/`` (train.csv, test.csv, songs.csv, members.csv,
song_extra_info.csv) to the common event and track schema of ``features.events``:

* One event per train.csv / test.csv row: ``user_id`` = ``msno``, ``track_id`` =
  ``song_id`` (ids keep their ``+/=`` characters), ``artist_id`` = ``kkbox_artist:<name>``
  from songs.csv where known.
* ``like`` is an **interest proxy**, not an explicit like: it is KKBox's ``target``,
  1 when the listener played the song again within a month of the first observed play.
  test.csv rows are real plays but Kaggle never published their ``target``, so their
  ``like`` is null. Every other label (completion, skip, subscription, exposure) is null.
* ``context_surface`` comes from ``source_system_tab`` (the app tab), refined by
  ``source_type`` (see ``surface_of``).
* ``user_segment`` / ``user_tenure_days`` come from members.csv dates relative to
  ``REFERENCE_DATE`` (see ``segment_rule``). The ``subscription`` label stays null:
  the members table is one snapshot of membership *status*, it never shows a conversion
  happening after a play, and status is already the segment feature.
* The files have no timestamps: ``ts`` is null. Rows keep file order (train rows, then
  test rows by their Kaggle ``id``), so ``events.groupby("user_id").cumcount()`` is a
  per-user order index. There are no sessions either: ``session_id`` is a per-user
  pseudo-session ``kkbox_user:<msno>``.

Tracks: songs.csv with ``duration_s`` = ``song_length`` / 1000, ``tags`` =
``kkbox_genre:<id>`` per ``|``-separated genre id, ``title`` from song_extra_info.csv,
``popularity`` = log1p(train + test rows of the song in this sample).

Quarantined (``features.datasets.quarantine``), each line with its reason: malformed
lines of any file, ``msno`` / ``song_id`` values that are not base64 ids, member dates
that are not YYYYMMDD, test rows without an integer ``id``; after validation, events
whose ``song_id`` is not a valid songs.csv track. An event whose ``msno`` has no
members.csv row is kept with a null segment and counted.
"""

import dataclasses
import numbers
import os

import numpy as np
import pandas as pd

from features import events as events_lib
from features.datasets import line_reader, quarantine, source_tables

SOURCE = "kkbox"
FILES = ("train.csv", "test.csv", "songs.csv", "members.csv", "song_extra_info.csv")

# The KKBox snapshot ends in February 2017: the last registration in members.csv is
# 2017-02-28. Segment and tenure are measured at that date.
REFERENCE_DATE = pd.Timestamp("2017-02-28")

# App tab -> surface. "notification" and "settings" are not a ranking surface.
_TAB_SURFACE = {
    "discover": "discover",
    "explore": "discover",
    "search": "search",
    "radio": "radio",
    "listen with": "radio",       # live "listen with" streams behave like a radio
    "my library": "library",
    "notification": "unknown",
    "settings": "unknown",
}
_PLAYLIST_TYPES = ("online-playlist", "local-playlist", "song-based-playlist",
                   "topic-article-playlist", "my-daily-playlist")
# Entry point -> surface, used only when the tab is missing.
_TYPE_SURFACE = dict({t: "playlist" for t in _PLAYLIST_TYPES},
                     **{"radio": "radio", "listen-with": "radio", "local-library": "library"})


@dataclasses.dataclass(frozen=True)
class SegmentRule:
  """How members.csv dates become a ``user_segment`` (checked in this order).

  At ``REFERENCE_DATE``: tenure = days since registration, active = expiration on or
  after the reference date, span = days from registration to expiration.

  1. not active: ``free_veteran`` when tenure >= ``veteran_days``, else ``free``;
  2. active and span <= ``trial_days``: ``trial`` (the whole membership fits in one
     trial period);
  3. active and tenure < ``new_days``: ``new``;
  4. otherwise ``paid``.

  Attributes:
    new_days: tenure below which an active member counts as new.
    trial_days: longest registration-to-expiry span that counts as a trial.
    veteran_days: tenure from which a lapsed member counts as a veteran.
  """
  new_days: int = 30
  trial_days: int = 45
  veteran_days: int = 365

  def __post_init__(self):
    for name in ("new_days", "trial_days", "veteran_days"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")


segment_rule = SegmentRule()


def _date(col: pd.Series) -> pd.Series:
  """int YYYYMMDD -> Timestamp; NaT when unreadable."""
  num = pd.to_numeric(col, errors="coerce").astype("Int64")
  return pd.to_datetime(num.astype(str).where(num.notna(), None), format="%Y%m%d",
                        errors="coerce")


def _seconds(ms: pd.Series) -> pd.Series:
  """Milliseconds -> seconds, leaving unparseable text for the validator to report."""
  if ms.dtype == object:
    return ms.map(lambda v: v / 1000.0 if isinstance(v, numbers.Number) else v)
  return ms / 1000.0


def member_features(members: pd.DataFrame, rule: SegmentRule = segment_rule,
                    reference: pd.Timestamp = REFERENCE_DATE) -> pd.DataFrame:
  """Per-member segment and tenure.

  Args:
    members: members.csv as read (``msno``, ``registration_init_time``,
      ``expiration_date`` as int YYYYMMDD).
    rule: the segment rule.
    reference: the date segment and tenure are measured at.

  Returns:
    Frame indexed by ``msno`` with ``user_segment`` (null when a date is unreadable
    or registration is after the reference date) and ``user_tenure_days``.
  """
  reg = _date(members["registration_init_time"])
  exp = _date(members["expiration_date"])
  tenure = (reference - reg).dt.days.astype("float64")
  span = (exp - reg).dt.days
  active = exp >= reference
  seg = np.select(
      [~active & (tenure >= rule.veteran_days), ~active, span <= rule.trial_days,
       tenure < rule.new_days],
      ["free_veteran", "free", "trial", "new"], default="paid").astype(object)
  unknown = reg.isna() | exp.isna() | (tenure < 0)
  seg[unknown.to_numpy()] = None
  tenure[unknown] = np.nan
  return pd.DataFrame({"user_segment": seg, "user_tenure_days": tenure.to_numpy()},
                      index=members["msno"].to_numpy())


def surface_of(tab: pd.Series, source_type: pd.Series) -> pd.Series:
  """Maps (source_system_tab, source_type) to ``feature_spec.SURFACES``.

  The tab is the surface the listener was on. Within "my library" a play started from
  one of the listener's playlists counts as "playlist". Without a tab the entry point
  decides; anything unmapped is "unknown".
  """
  tab = tab.astype(object).where(tab.notna(), None)
  by_tab = tab.map(_TAB_SURFACE)
  is_playlist = source_type.isin(_PLAYLIST_TYPES)
  by_tab = by_tab.mask((tab == "my library") & is_playlist, "playlist")
  by_type = source_type.map(_TYPE_SURFACE)
  return by_tab.fillna(by_type).fillna("unknown").astype(object)


_FORMAT = line_reader.Format(sep=",", quoted=True, encoding="utf-8")
# Columns each file must have (others are read and ignored).
_REQUIRED = {
    "train.csv": ("msno", "song_id", "source_system_tab", "source_type", "target"),
    "test.csv": ("id", "msno", "song_id", "source_system_tab", "source_type"),
    "songs.csv": ("song_id", "song_length", "genre_ids", "artist_name"),
    "members.csv": ("msno", "registration_init_time", "expiration_date"),
    "song_extra_info.csv": ("song_id", "name"),
}
# KKBox ids are base64 text ('+', '/', '=' included); anything else is not an id.
_ID = r"[A-Za-z0-9+/]+=*"


def _read(q: quarantine.Quarantine, data_dir: str, name: str) -> pd.DataFrame:
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"KKBox file not found: {path}")
  return q.read(path, _FORMAT, _REQUIRED[name])


def _reject_bad_ids(q: quarantine.Quarantine, frame: pd.DataFrame, *cols) -> pd.DataFrame:
  return q.reject_unmatched(frame, cols, _ID, "a KKBox id")


def _reject_bad_dates(q: quarantine.Quarantine, members: pd.DataFrame) -> pd.DataFrame:
  cols = ("registration_init_time", "expiration_date")
  members = q.reject_unmatched(members, cols, r"\d{8}", "a YYYYMMDD date")
  for col in cols:   # eight digits, but not a day of the calendar (e.g. 20170231)
    day = pd.to_datetime(members[col], format="%Y%m%d", errors="coerce")
    members = q.reject(members, members[col].notna() & day.isna(), f"{col} is not a YYYYMMDD date")
  return members


def load(data_dir: str, include_test: bool = True) -> source_tables.SourceTables:
  """Reads ``kkbox_sample/`` into events and tracks of the common schema.

  Malformed lines, ids that are not base64 text, unparseable member dates and test
  rows without an integer ``id`` are quarantined; members are matched by ``msno`` (an
  event whose user has no members row keeps a null segment, counted in ``notes``).

  Args:
    data_dir: the folder holding train.csv, test.csv, songs.csv, members.csv and
      song_extra_info.csv.
    include_test: also emit the unlabeled test.csv plays (``like`` null).

  Returns:
    The tables with EVENT_SCHEMA / TRACK_SCHEMA columns (not validated), their source
    lines and the quarantine.
  """
  q = quarantine.Quarantine()
  train = _reject_bad_ids(q, _read(q, data_dir, "train.csv"), "msno", "song_id")
  parts = [train.assign(like=events_lib.numeric_or_text(train["target"]))]
  if include_test:
    test = _reject_bad_ids(q, _read(q, data_dir, "test.csv"), "msno", "song_id")
    test = q.reject(test, test["id"].isna(), "id is missing")
    test = q.reject_unmatched(test, ["id"], r"\d+", "an integer")
    test = test.assign(_id=test["id"].astype(np.int64)).sort_values("_id", kind="stable")
    parts.append(test.assign(like=np.nan))
  plays = pd.concat(parts, ignore_index=True)
  songs = _reject_bad_ids(q, _read(q, data_dir, "songs.csv"), "song_id").reset_index(drop=True)
  members = _reject_bad_dates(q, _reject_bad_ids(q, _read(q, data_dir, "members.csv"), "msno"))
  extra = _reject_bad_ids(q, _read(q, data_dir, "song_extra_info.csv"), "song_id")

  artist_of = pd.Series(("kkbox_artist:" + songs["artist_name"]).to_numpy(),
                        index=songs["song_id"].to_numpy())
  artist_of = artist_of[~artist_of.index.duplicated()]
  feats = member_features(members)
  feats = feats[~feats.index.duplicated()]
  user = plays["msno"]
  n = len(plays)
  events = events_lib.make_events(
      SOURCE, n,
      user_id=user,
      session_id="kkbox_user:" + user.fillna(""),
      track_id=plays["song_id"],
      artist_id=plays["song_id"].map(artist_of),
      user_segment=user.map(feats["user_segment"]),
      user_tenure_days=user.map(feats["user_tenure_days"]).astype(np.float32),
      context_surface=surface_of(plays["source_system_tab"], plays["source_type"]),
      like=plays["like"],
  )
  # A missing msno must stay missing so that validation quarantines the row.
  events.loc[user.isna().to_numpy(), "session_id"] = None

  counts = plays["song_id"].value_counts()
  title_of = pd.Series(extra["name"].to_numpy(), index=extra["song_id"].to_numpy())
  title_of = title_of[~title_of.index.duplicated()]
  tags = songs["genre_ids"].fillna("").str.split("|").map(
      lambda ids: ["kkbox_genre:" + g.strip() for g in ids if g.strip()])
  tracks = events_lib.make_tracks(
      len(songs),
      track_id=songs["song_id"],
      artist_id="kkbox_artist:" + songs["artist_name"],
      tags=tags,
      duration_s=_seconds(events_lib.numeric_or_text(songs["song_length"])),
      popularity=np.log1p(songs["song_id"].map(counts).fillna(0)).astype(np.float32),
      title=songs["song_id"].map(title_of).fillna("").astype(str),
  )
  no_member = int((user.notna() & ~user.isin(feats.index)).sum())
  return source_tables.SourceTables(
      events, tracks, source_tables.origin_of(plays), source_tables.origin_of(songs), q,
      notes={"events whose msno has no members.csv row (segment null)": no_member})
