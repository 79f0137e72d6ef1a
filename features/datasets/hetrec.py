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
"""

import csv
import os
from typing import Tuple

import numpy as np
import pandas as pd

from features import events as events_lib

SOURCE = "hetrec"
FILES = ("artists.dat", "tags.dat", "user_artists.dat", "user_taggedartists.dat")
ARTIST_PREFIX = "hetrec_artist:"
USER_PREFIX = "hetrec_user:"


def _path(data_dir: str, name: str) -> str:
  path = os.path.join(data_dir, name)
  if not os.path.exists(path):
    raise FileNotFoundError(f"HetRec file not found: {path}")
  return path


def read_artists(data_dir: str) -> pd.DataFrame:
  # QUOTE_NONE: artist 1686 is '"Weird Al" Yankovic' and default quoting eats the quotes.
  return pd.read_csv(_path(data_dir, "artists.dat"), sep="\t", encoding="utf-8",
                     quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def read_tags(data_dir: str) -> pd.DataFrame:
  # tags.dat is latin-1 ('tropicália', 'fußball'); it does not decode as UTF-8.
  return pd.read_csv(_path(data_dir, "tags.dat"), sep="\t", encoding="latin-1",
                     quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)


def read_user_artists(data_dir: str) -> pd.DataFrame:
  # CRLF line endings; the C parser drops the '\r'.
  return pd.read_csv(_path(data_dir, "user_artists.dat"), sep="\t", dtype=str,
                     encoding="ascii")


def read_user_tagged_artists(data_dir: str) -> pd.DataFrame:
  return pd.read_csv(_path(data_dir, "user_taggedartists.dat"), sep="\t", dtype=str,
                     encoding="ascii")


def artist_tags(data_dir: str) -> pd.Series:
  """Tag texts per artist id (str), most-used first, ties by tag id."""
  uta = read_user_tagged_artists(data_dir)
  tags = read_tags(data_dir)
  text = pd.Series(tags["tagValue"].str.strip().to_numpy(), index=tags["tagID"].to_numpy())
  uta = uta.assign(tag=uta["tagID"].map(text),
                   tag_num=pd.to_numeric(uta["tagID"], errors="coerce"))
  uta = uta[uta["tag"].notna() & (uta["tag"] != "")]
  counts = (uta.groupby(["artistID", "tag"], sort=False)
            .agg(n=("userID", "size"), tag_num=("tag_num", "min")).reset_index())
  counts = counts.sort_values(["artistID", "n", "tag_num"], ascending=[True, False, True],
                              kind="stable")
  return counts.groupby("artistID", sort=False)["tag"].agg(list)


def load(data_dir: str) -> Tuple[pd.DataFrame, pd.DataFrame]:
  """Reads hetrec2011-lastfm-2k into (events, tracks) of the common schema.

  Args:
    data_dir: the folder holding artists.dat, tags.dat, user_artists.dat and
      user_taggedartists.dat.

  Returns:
    (events_df, tracks_df) with the EVENT_SCHEMA / TRACK_SCHEMA columns, not validated.
  """
  ua = read_user_artists(data_dir)
  user = ua["userID"].str.strip()
  artist = ua["artistID"].str.strip()
  user_id = (USER_PREFIX + user).where(user.notna() & (user != ""), None)
  artist_id = (ARTIST_PREFIX + artist).where(artist.notna() & (artist != ""), None)
  weight = pd.to_numeric(ua["weight"], errors="coerce")
  events = events_lib.make_events(SOURCE, len(ua), user_id=user_id, session_id=user_id,
                          plays=events_lib.numeric_or_text(ua["weight"], integer=True),
                          track_id=artist_id, artist_id=artist_id)

  artists = read_artists(data_dir)
  tags_of = artist_tags(data_dir)
  total = weight.groupby(artist).sum(min_count=1)
  ids = pd.Index(artists["id"].str.strip())
  extra = tags_of.index.difference(ids)
  all_ids = list(ids) + sorted(extra, key=lambda a: (len(a), a))
  track_ids = [ARTIST_PREFIX + a for a in all_ids]
  tracks = events_lib.make_tracks(
      len(all_ids),
      track_id=track_ids,
      artist_id=track_ids,
      tags=pd.Series([tags_of.get(a, []) for a in all_ids], dtype=object),
      popularity=np.log1p(pd.Series(all_ids).map(total).to_numpy(dtype=float)
                          ).astype(np.float32),
      title=list(artists["name"]) + [""] * len(extra),
  )
  return events, tracks
