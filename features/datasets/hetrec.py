"""Adapter for hetrec2011-lastfm-2k (Last.fm listening counts and user tags, 2011).

Owns the mapping of ``hetrec2011_lastfm_2k/`` to the common schema. The dataset has no
individual plays, only each user's play count per artist, so:

* events are **aggregates**: one row per ``user_artists.dat`` row (user x artist) with
  ``plays`` = ``weight`` (scrobble count), ``ts`` null, ``user_id`` =
  ``hetrec_user:<userID>``, a per-user pseudo-session ``session_id`` =
  ``hetrec_user:<userID>``, and an artist-level pseudo track ``track_id`` = ``artist_id``
  = ``hetrec_artist:<artistID>``. Every label is null: a play count is interest
  strength (carried by ``plays``), not a like, skip or completion.
* tracks are the artists of ``artists.dat`` (name as ``title``), with ``tags`` = the tag
  texts users gave the artist (``user_taggedartists.dat`` joined to the latin-1
  ``tags.dat``), most-used first, and ``popularity`` = log1p(total plays of the artist).
  Artists that were tagged but have no ``artists.dat`` row are kept as tracks with an
  empty title and null popularity (the play counts only list each user's top artists,
  so absence is not zero plays). ``duration_s`` is null.

``user_friends.dat`` is not used: the common schema has no social graph.

Quarantined, each line with its reason: malformed lines of any file, ids that are not
integers, and (after validation) play counts that are not whole numbers >= 1 and
events whose artist is neither in ``artists.dat`` nor tagged (no track to point at).
"""

import dataclasses
import os
from typing import Sequence

import numpy as np
import pandas as pd

from features import events as events_lib
from features.datasets import line_reader, quarantine, source_tables

SOURCE = "hetrec"
FILES = ("artists.dat", "tags.dat", "user_artists.dat", "user_taggedartists.dat")
ARTIST_PREFIX = "hetrec_artist:"
USER_PREFIX = "hetrec_user:"


def _path(data_dir: str, name: str) -> str:
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"HetRec file not found: {path}")
  return path


# Tab-separated; quotes are text (artist 1686 is '"Weird Al" Yankovic').
_FORMAT = line_reader.Format(sep="\t", quoted=False, encoding="utf-8")
# tags.dat is latin-1 ('tropicália', 'fußball'); it does not decode as UTF-8.
_LATIN1 = dataclasses.replace(_FORMAT, encoding="latin-1")
_INT = r"\d+"


def _read(q: quarantine.Quarantine, data_dir: str, name: str, fmt: line_reader.Format,
          columns: Sequence[str], ids: Sequence[str]) -> pd.DataFrame:
  """Reads one file; quarantines lines whose ``ids`` are present but not integers."""
  return q.reject_unmatched(q.read(_path(data_dir, name), fmt, columns), ids, _INT,
                            "an integer")


def read_artists(q: quarantine.Quarantine, data_dir: str) -> pd.DataFrame:
  return _read(q, data_dir, "artists.dat", _FORMAT, ("id", "name"), ("id",))


def read_tags(q: quarantine.Quarantine, data_dir: str) -> pd.DataFrame:
  return _read(q, data_dir, "tags.dat", _LATIN1, ("tagID", "tagValue"), ("tagID",))


def read_user_artists(q: quarantine.Quarantine, data_dir: str) -> pd.DataFrame:
  return _read(q, data_dir, "user_artists.dat", _FORMAT, ("userID", "artistID", "weight"),
               ("userID", "artistID"))


def read_user_tagged_artists(q: quarantine.Quarantine, data_dir: str) -> pd.DataFrame:
  ids = ("userID", "artistID", "tagID")
  return _read(q, data_dir, "user_taggedartists.dat", _FORMAT, ids, ids)


def _tags_by_artist(uta: pd.DataFrame, tags: pd.DataFrame) -> pd.Series:
  text = pd.Series(tags["tagValue"].fillna("").str.strip().to_numpy(),
                   index=tags["tagID"].to_numpy())
  uta = uta.assign(tag=uta["tagID"].map(text),
                   tag_num=pd.to_numeric(uta["tagID"], errors="coerce"))
  uta = uta[uta["tag"].notna() & (uta["tag"] != "")]
  counts = (uta.groupby(["artistID", "tag"], sort=False)
            .agg(n=("userID", "size"), tag_num=("tag_num", "min")).reset_index())
  counts = counts.sort_values(["artistID", "n", "tag_num"], ascending=[True, False, True],
                              kind="stable")
  return counts.groupby("artistID", sort=False)["tag"].agg(list)


def artist_tags(data_dir: str) -> pd.Series:
  """Tag texts per artist id (str), most-used first, ties by tag id."""
  q = quarantine.Quarantine()
  return _tags_by_artist(read_user_tagged_artists(q, data_dir), read_tags(q, data_dir))


def load(data_dir: str) -> source_tables.SourceTables:
  """Reads hetrec2011-lastfm-2k into events and tracks of the common schema.

  Malformed lines and ids that are not integers are quarantined; after validation,
  so are events whose artist is neither in artists.dat nor tagged.

  Args:
    data_dir: the folder holding artists.dat, tags.dat, user_artists.dat and
      user_taggedartists.dat.

  Returns:
    The tables with EVENT_SCHEMA / TRACK_SCHEMA columns (not validated), their source
    lines (a tagged-only artist: its first tagging line) and the quarantine.
  """
  q = quarantine.Quarantine()
  ua = read_user_artists(q, data_dir)
  user = ua["userID"].str.strip()
  artist = ua["artistID"].str.strip()
  user_id = (USER_PREFIX + user).where(user.notna() & (user != ""), None)
  artist_id = (ARTIST_PREFIX + artist).where(artist.notna() & (artist != ""), None)
  weight = pd.to_numeric(ua["weight"], errors="coerce")
  events = events_lib.make_events(SOURCE, len(ua), user_id=user_id, session_id=user_id,
                                  plays=events_lib.numeric_or_text(ua["weight"], integer=True),
                                  track_id=artist_id, artist_id=artist_id)

  artists = read_artists(q, data_dir)
  tags = read_tags(q, data_dir)
  uta = read_user_tagged_artists(q, data_dir)
  tags_of = _tags_by_artist(uta, tags)
  total = weight.groupby(artist).sum(min_count=1)
  ids = pd.Index(artists["id"].str.strip())
  extra = sorted(tags_of.index.difference(ids), key=lambda a: (len(a), a))
  all_ids = list(ids) + extra
  track_ids = [ARTIST_PREFIX + a for a in all_ids]
  tracks = events_lib.make_tracks(
      len(all_ids),
      track_id=track_ids,
      artist_id=track_ids,
      tags=pd.Series([tags_of.get(a, []) for a in all_ids], dtype=object),
      popularity=np.log1p(pd.Series(all_ids).map(total).to_numpy(dtype=float)
                          ).astype(np.float32),
      title=list(artists["name"].fillna("")) + [""] * len(extra),
  )
  first_tagging = uta.drop_duplicates("artistID").set_index("artistID")
  tracks_origin = pd.concat([source_tables.origin_of(artists),
                             source_tables.origin_of(first_tagging.loc[extra])],
                            ignore_index=True)
  return source_tables.SourceTables(events, tracks, source_tables.origin_of(ua),
                                    tracks_origin, q)
