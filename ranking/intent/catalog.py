"""The intent model's catalogue and its text: what the track tower reads.

Owns canonical tag keys, so ``genre---hiphop``, ``hip-hop`` and ``Hip Hop`` are one tag;
a track's text (its tags rendered as words, MTG-Jamendo ``category---tag`` fields,
HetRec user tags or the simulator's Jamendo tag words, then its title); and
:func:`mixed_catalog`, a catalogue of Jamendo tracks and tagged HetRec artists. Works on
frames and arrays only; reading the datasets is the adapters' job.
"""

import re
from typing import Dict, FrozenSet, List, Optional, Sequence

import numpy as np
import pandas as pd

# Readable words for MTG-Jamendo's run-together tag names.
TAG_WORDS: Dict[str, str] = {
    "easylistening": "easy listening", "drumnbass": "drum and bass", "hiphop": "hip hop",
    "poprock": "pop rock", "newage": "new age", "triphop": "trip hop", "rnb": "r&b",
    "punkrock": "punk rock", "instrumentalpop": "instrumental pop",
    "instrumentalrock": "instrumental rock", "electropop": "electro pop",
    "darkambient": "dark ambient", "synthpop": "synth pop", "hardrock": "hard rock",
    "rocknroll": "rock and roll", "alternativerock": "alternative rock",
    "deephouse": "deep house", "jazzfunk": "jazz funk", "bossanova": "bossa nova",
    "darkwave": "dark wave", "acidjazz": "acid jazz", "classicrock": "classic rock",
    "newwave": "new wave", "ethnicrock": "ethnic rock", "jazzfusion": "jazz fusion",
    "worldfusion": "world fusion", "bluesrock": "blues rock", "heavymetal": "heavy metal",
    "singersongwriter": "singer songwriter", "postrock": "post rock",
    "electricguitar": "electric guitar", "acousticguitar": "acoustic guitar",
    "drummachine": "drum machine", "electricpiano": "electric piano",
    "classicalguitar": "classical guitar", "doublebass": "double bass",
    "pipeorgan": "pipe organ", "acousticbassguitar": "acoustic bass guitar",
    "80s": "80s", "90s": "90s", "70s": "70s", "60s": "60s",
}

def tag_key(tag: str) -> str:
  """Canonical key of a tag: no ``category---`` prefix, lower case, letters and digits."""
  tag = str(tag)
  if "---" in tag:
    tag = tag.split("---", 1)[1]
  return re.sub(r"[^0-9a-z&]", "", tag.lower())


def tag_category(tag: str) -> str:
  """``genre``, ``instrument``, ``mood`` (Jamendo prefixes) or ``style`` (free tags)."""
  tag = str(tag)
  if "---" in tag:
    cat = tag.split("---", 1)[0]
    return "mood" if cat.startswith("mood") else cat
  return "style"


def tag_words(tag: str) -> str:
  """A tag as words: ``genre---drumnbass`` -> ``drum and bass``, ``hip-hop`` -> ``hip-hop``."""
  raw = str(tag).split("---", 1)[1] if "---" in str(tag) else str(tag)
  return TAG_WORDS.get(tag_key(raw), raw.strip().lower())


def track_text(tags: Sequence[str], title: str = "", max_tags: int = 8) -> str:
  """The text the track tower reads: tag words first (they survive truncation), then title.

  Args:
    tags: the track's tags in any of the supported spellings.
    title: the title (or ``"<title> by <artist>"``); may be empty.
    max_tags: at most this many tags, in the given order.
  """
  words = []
  for t in list(tags if tags is not None else [])[:max_tags]:
    w = tag_words(t)
    if w and w not in words:
      words.append(w)
  text = ", ".join(words)
  title = (title or "").strip()
  if title:
    text = f"{text}. {title}" if text else title
  return text


def catalog_texts(tracks: pd.DataFrame) -> List[str]:
  """Track texts of a ``TRACK_SCHEMA`` frame in row order (the serving catalog order)."""
  titles = tracks["title"] if "title" in tracks else pd.Series([""] * len(tracks))
  return [track_text(list(tags) if tags is not None else [], "" if t is None else str(t))
          for tags, t in zip(tracks["tags"], titles.fillna(""))]


def catalog_tag_keys(tracks: pd.DataFrame) -> List[FrozenSet[str]]:
  """Canonical tag keys per catalog row."""
  return [frozenset(tag_key(t) for t in (tags if tags is not None else []) if tag_key(t))
          for tags in tracks["tags"]]


def mixed_catalog(jamendo_tracks: pd.DataFrame, hetrec_tracks: Optional[pd.DataFrame] = None,
                  n_jamendo: int = 3000, n_hetrec: int = 0, seed: int = 0,
                  min_tags: int = 2) -> pd.DataFrame:
  """A catalog of Jamendo tracks (titled ones first) plus tagged HetRec artists.

  Args:
    jamendo_tracks: the Jamendo adapter's tracks.
    hetrec_tracks: the HetRec adapter's tracks (artist-level pseudo tracks), optional.
    n_jamendo: Jamendo rows to keep (titled test-split tracks preferred).
    n_hetrec: HetRec rows to keep (most tagged first).
    seed: sampling seed.
    min_tags: HetRec artists with fewer tags are skipped.

  Returns:
    ``TRACK_SCHEMA`` columns, index reset (row = catalog row).
  """
  if n_jamendo < 0 or n_hetrec < 0:
    raise ValueError(f"sizes must be >= 0, got n_jamendo={n_jamendo} n_hetrec={n_hetrec}")
  rng = np.random.default_rng(seed)
  j = jamendo_tracks[jamendo_tracks["tags"].map(lambda t: t is not None and len(t) > 0)]
  titled = j["title"].fillna("").str.len() > 0
  order = np.concatenate([rng.permutation(np.flatnonzero(titled.to_numpy())),
                          rng.permutation(np.flatnonzero(~titled.to_numpy()))])
  parts = [j.iloc[order[:n_jamendo]]]
  if hetrec_tracks is not None and n_hetrec > 0:
    h = hetrec_tracks[hetrec_tracks["tags"].map(lambda t: t is not None and len(t) >= min_tags)]
    h = h.assign(_n=h["tags"].map(len)).sort_values("_n", ascending=False, kind="stable")
    h = h.drop(columns="_n").head(n_hetrec)
    h = h.assign(tags=h["tags"].map(lambda t: list(t)[:8]))
    parts.append(h)
  return pd.concat(parts, ignore_index=True)
