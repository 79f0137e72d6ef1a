"""The intent model's catalogue and its text: what the track tower reads.

Owns canonical tag keys, so ``genre---hiphop``, ``hip-hop`` and ``Hip Hop`` are one tag;
a track's text (every tag rendered as words: MTG-Jamendo ``category---tag`` fields,
HetRec user tags or the simulator's Jamendo tag words) and, apart from it, its title; and
:func:`mixed_catalog`, a catalogue of Jamendo tracks of chosen MTG splits and tagged
HetRec artists. Works on
frames and arrays only; reading the datasets is the adapters' job.
"""

import re
from typing import Dict, FrozenSet, List, Optional, Sequence, Tuple

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

# MTG-Jamendo split-0 splits a model may be trained on; ``test`` is for evaluation only.
TRAIN_SPLITS: Tuple[str, ...] = ("train", "validation")


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


def track_text(tags: Sequence[str], title: str = "") -> str:
  """The text the track tower reads: every tag as words, in the given order.

  The title is not part of it: titles are free text ("Flamenco (Radio Edit)") that would
  outvote the tags in a mean-pooled embedding, so they live in their own, down-weighted
  field of the lexical scorer (:func:`catalog_titles`). A track without tags is described
  by its title alone.

  Args:
    tags: the track's tags in any of the supported spellings.
    title: the title (or ``"<title> by <artist>"``), used only when there is no tag.
  """
  words = []
  for t in (tags if tags is not None else []):
    w = tag_words(t)
    if w and w not in words:
      words.append(w)
  return ", ".join(words) if words else (title or "").strip()


def catalog_texts(tracks: pd.DataFrame) -> List[str]:
  """Track texts of a ``TRACK_SCHEMA`` frame in row order (the serving catalog order)."""
  return [track_text(list(tags) if tags is not None else [], title)
          for tags, title in zip(tracks["tags"], catalog_titles(tracks))]


def catalog_titles(tracks: pd.DataFrame) -> List[str]:
  """Titles of a ``TRACK_SCHEMA`` frame in row order (``""`` where there is none)."""
  if "title" not in tracks:
    return [""] * len(tracks)
  return ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t).strip()
          for t in tracks["title"]]


def catalog_tag_keys(tracks: pd.DataFrame) -> List[FrozenSet[str]]:
  """Canonical tag keys per catalog row."""
  return [frozenset(tag_key(t) for t in (tags if tags is not None else []) if tag_key(t))
          for tags in tracks["tags"]]


def mixed_catalog(jamendo_tracks: pd.DataFrame, hetrec_tracks: Optional[pd.DataFrame] = None,
                  n_jamendo: int = 3000, n_hetrec: int = 0, seed: int = 0,
                  min_tags: int = 2, splits: Optional[Sequence[str]] = TRAIN_SPLITS
                  ) -> pd.DataFrame:
  """A catalog of Jamendo tracks of some MTG splits plus tagged HetRec artists.

  Args:
    jamendo_tracks: the Jamendo adapter's tracks; with ``splits``, a ``split`` column
      (``features.datasets.jamendo_splits.with_splits``) is required.
    hetrec_tracks: the HetRec adapter's tracks (artist-level pseudo tracks), optional.
    n_jamendo: Jamendo rows to keep (a seeded sample of the tagged rows of ``splits``).
    n_hetrec: HetRec rows to keep (most tagged first).
    seed: sampling seed.
    min_tags: HetRec artists with fewer tags are skipped.
    splits: the MTG splits to draw from (training: train and validation only; the test
      split is for evaluation); None takes every row.

  Returns:
    ``TRACK_SCHEMA`` columns (and ``split`` when given), index reset (row = catalog row).

  Raises:
    ValueError: negative sizes, or ``splits`` without a ``split`` column.
  """
  if n_jamendo < 0 or n_hetrec < 0:
    raise ValueError(f"sizes must be >= 0, got n_jamendo={n_jamendo} n_hetrec={n_hetrec}")
  rng = np.random.default_rng(seed)
  j = jamendo_tracks[jamendo_tracks["tags"].map(lambda t: t is not None and len(t) > 0)]
  if splits is not None:
    if "split" not in j:
      raise ValueError("jamendo_tracks has no 'split' column; add it with "
                       "features.datasets.jamendo_splits.with_splits")
    j = j[j["split"].isin(list(splits))]
  parts = [j.iloc[np.sort(rng.permutation(len(j))[:n_jamendo])]]
  if hetrec_tracks is not None and n_hetrec > 0:
    h = hetrec_tracks[hetrec_tracks["tags"].map(lambda t: t is not None and len(t) >= min_tags)]
    h = h.assign(_n=h["tags"].map(len)).sort_values("_n", ascending=False, kind="stable")
    h = h.drop(columns="_n").head(n_hetrec)
    h = h.assign(tags=h["tags"].map(lambda t: list(t)[:8]))
    parts.append(h)
  return pd.concat(parts, ignore_index=True)
