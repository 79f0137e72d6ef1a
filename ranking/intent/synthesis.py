"""The request synthesizer: (listener, request, track) triplets over a catalogue's tags.

Requests are written from the phrasing templates of ``lexicon`` over the catalogue's
real tags (every genre, instrument and mood/theme tag carried by a few tracks can be
named) plus colloquial mood words, situations and intent-free production remarks, with
multi-intent, negated and long descriptive requests; each carries its intent
(``intents.Request``). Tracks are split into training and held-out tracks, templates into
training and held-out phrasings; positives are drawn among the relevant tracks,
preferring what the listener likes and, mildly, popular tracks.
"""

import dataclasses
import re
from typing import Dict, List, Optional

import numpy as np
import pandas as pd

from ranking.intent import catalog
from ranking.intent import intents
from ranking.intent import lexicon


@dataclasses.dataclass(frozen=True)
class SynthConfig:
  """Settings of the request synthesizer.

  Attributes:
    heldout_track_fraction: share of catalog rows never used as training positives.
    min_relevant: a request must have at least this many relevant catalog tracks.
    style_min_count: a tag is used as a {style}/{instrument} slot when at least this many
      catalog tracks carry it.
    personal_temperature: positives are drawn among relevant tracks with probability
      proportional to ``exp(interest / temperature)`` (listener preference).
    popularity_weight: exponent on ``exp(popularity)`` in the positive draw.
    descriptive: also write requests that name mood/theme tags and long descriptive ones
      (templates with ``{moodtag}`` or ``{filler}``); False keeps the short colloquial set.
  """
  heldout_track_fraction: float = 0.2
  min_relevant: int = 3
  style_min_count: int = 3
  personal_temperature: float = 0.5
  popularity_weight: float = 0.3
  descriptive: bool = True

  def __post_init__(self):
    if not 0.0 <= self.heldout_track_fraction < 1.0:
      raise ValueError(f"heldout_track_fraction must be in [0, 1), got "
                       f"{self.heldout_track_fraction}")
    if self.min_relevant < 1:
      raise ValueError(f"min_relevant must be >= 1, got {self.min_relevant}")
    if self.personal_temperature <= 0:
      raise ValueError(f"personal_temperature must be positive, got "
                       f"{self.personal_temperature}")


@dataclasses.dataclass
class Triplets:
  """(listener, request, track) triplets with their requests' intents.

  Attributes:
    requests: one ``intents.Request`` per triplet.
    listener: ``[n]`` listener index (row of the listener table).
    track: ``[n]`` catalog row of the positive track.
  """
  requests: List[intents.Request]
  listener: np.ndarray
  track: np.ndarray

  @property
  def texts(self) -> List[str]:
    return [r.text for r in self.requests]

  def __len__(self) -> int:
    return len(self.requests)


class RequestSynthesizer:
  """Writes requests over a catalog's real tags and draws personal positives.

  Usage:
    syn = RequestSynthesizer(tracks_df, SynthConfig(), seed=0)
    train = syn.triplets(5000, heldout=False, interest=interest)   # [listeners, N]
    test = syn.triplets(500, heldout=True, interest=interest)
    rel = intents.relevance(test.requests, syn.tag_keys)           # [500, N]

  Args:
    tracks: ``TRACK_SCHEMA``-like frame (``tags``, ``title``, optional ``popularity``), in
      catalog row order.
    config: a ``SynthConfig``.
    seed: seed of the track split and of every draw.
  """

  def __init__(self, tracks: pd.DataFrame, config: SynthConfig = SynthConfig(),
               seed: int = 0):
    if len(tracks) < 2:
      raise ValueError(f"the catalog needs at least 2 tracks, got {len(tracks)}")
    self.config = config
    self.rng = np.random.default_rng(seed)
    self.tag_keys = catalog.catalog_tag_keys(tracks)
    self.index = intents.TagIndex(self.tag_keys)
    self.n_tracks = len(tracks)
    pop = (pd.to_numeric(tracks["popularity"], errors="coerce").fillna(0.0).to_numpy()
           if "popularity" in tracks else np.zeros(self.n_tracks))
    self.popularity = pop.astype(np.float64)
    perm = np.random.default_rng(seed + 1).permutation(self.n_tracks)
    n_held = int(round(config.heldout_track_fraction * self.n_tracks))
    self.heldout_tracks = np.sort(perm[:n_held])
    self.train_tracks = np.sort(perm[n_held:])
    self._train_mask = np.zeros(self.n_tracks, bool)
    self._train_mask[self.train_tracks] = True

    counts: Dict[str, int] = {}
    words: Dict[str, str] = {}
    category: Dict[str, str] = {}
    for tags in tracks["tags"]:
      for t in (tags if tags is not None else []):
        k = catalog.tag_key(t)
        if not k:
          continue
        counts[k] = counts.get(k, 0) + 1
        words.setdefault(k, catalog.tag_words(t))
        cat = catalog.tag_category(t)
        if category.get(k) in (None, "style"):
          category[k] = cat
    instruments = set(catalog.tag_key(t) for t in lexicon.INSTRUMENT_WORDS)
    moods = set(lexicon.MOOD_THEME_TAGS)
    for k in list(category):
      if category[k] == "style" and k in instruments:
        category[k] = "instrument"
      elif category[k] == "style" and k in moods:
        category[k] = "mood"
    ok = {k for k, c in counts.items() if c >= config.style_min_count}
    self.words = words
    self.styles = sorted(k for k in ok if category[k] in ("genre", "style"))
    self.instruments = sorted(k for k in ok if category[k] == "instrument")
    self.mood_tags = sorted(k for k in ok if category[k] == "mood")
    self._style_p = _normalized([counts[k] for k in self.styles])
    self._instr_p = _normalized([counts[k] for k in self.instruments])
    self._mood_p = _normalized([counts[k] for k in self.mood_tags])
    # Slots named by one tag: slot -> (candidate tag keys, draw probabilities).
    self._tag_slots = {"style": (self.styles, self._style_p),
                       "style2": (self.styles, self._style_p),
                       "instrument": (self.instruments, self._instr_p),
                       "moodtag": (self.mood_tags, self._mood_p)}

  @property
  def target_tags(self) -> List[str]:
    """Every tag a request can name (a slot value): styles, instruments and mood tags."""
    return sorted(set(self.styles) | set(self.instruments) | set(self.mood_tags))

  # ------------------------------------------------------------------ slot fillers
  def _fill(self, template: str, heldout: bool = False):
    """Fills a template's slots; returns (text, clauses, negated) or None."""
    rng = self.rng
    values, clauses, negated = {}, [], set()
    used = set()
    for slot in re.findall(r"\{(\w+)\}", template):
      if slot == "mood":
        fam = list(lexicon.MOODS)[rng.integers(len(lexicon.MOODS))]
        phrases, tags = lexicon.MOODS[fam]
        values[slot] = phrases[rng.integers(len(phrases))]
        clauses.append(frozenset(tags))
        used.add(fam)
      elif slot in ("style", "style2", "instrument", "moodtag"):
        keys, p = self._tag_slots[slot]
        if not keys:
          return None
        k = keys[rng.choice(len(keys), p=p)]
        if k in used:
          return None
        values[slot] = self.words[k]
        clauses.append(frozenset([k]))
        used.add(k)
      elif slot == "situation":
        sit = list(lexicon.SITUATIONS)[rng.integers(len(lexicon.SITUATIONS))]
        phrases, tags = lexicon.SITUATIONS[sit]
        values[slot] = phrases[rng.integers(len(phrases))]
        clauses.append(frozenset(tags))
      elif slot == "filler":
        fillers = lexicon.HELDOUT_FILLERS if heldout else lexicon.TRAIN_FILLERS
        values[slot] = fillers[rng.integers(len(fillers))]
      elif slot == "neg":
        pool = self.styles + self.mood_tags
        if not pool:
          return None
        k = pool[rng.integers(len(pool))]
        if k in used or any(k in c for c in clauses):
          return None
        values[slot] = self.words[k]
        negated.add(k)
    return template.format(**values), tuple(clauses), frozenset(negated)

  def requests(self, n: int, heldout: bool, max_tries: int = 50) -> List[intents.Request]:
    """``n`` satisfiable requests from training (or held-out) phrasings."""
    templates = lexicon.HELDOUT_TEMPLATES if heldout else lexicon.TRAIN_TEMPLATES
    if not self.config.descriptive:
      templates = tuple(t if "{moodtag}" not in t and "{filler}" not in t else None
                        for t in templates)
    pool = self.heldout_tracks if heldout else self.train_tracks
    out: List[intents.Request] = []
    tries = 0
    while len(out) < n:
      tries += 1
      if tries > max_tries * max(n, 1):
        raise ValueError(f"could only write {len(out)} of {n} satisfiable requests; the "
                         "catalog has too few tags (min_relevant "
                         f"{self.config.min_relevant})")
      t = int(self.rng.integers(len(templates)))
      if templates[t] is None:
        continue
      filled = self._fill(templates[t], heldout)
      if filled is None:
        continue
      req = intents.Request(filled[0], filled[1], filled[2], t, heldout)
      rel = self.index.match(req)
      if rel.sum() < self.config.min_relevant or not rel[pool].any():
        continue
      out.append(req)
    return out

  def triplets(self, n: int, heldout: bool = False, interest: Optional[np.ndarray] = None,
               n_listeners: int = 1) -> Triplets:
    """``n`` (listener, request, track) triplets.

    Training triplets draw positives among relevant *training* tracks; held-out ones
    among relevant *held-out* tracks. The draw prefers what the listener likes
    (``interest``) and, mildly, popular tracks.

    Args:
      n: number of triplets.
      heldout: use held-out phrasings and held-out tracks.
      interest: optional ``[n_listeners, N]`` interest scores (the ranking model's).
      n_listeners: listeners when ``interest`` is None.
    """
    if interest is not None:
      interest = np.asarray(interest, np.float64)
      if interest.ndim != 2 or interest.shape[1] != self.n_tracks:
        raise ValueError(f"interest must be [listeners, {self.n_tracks}], got "
                         f"{interest.shape}")
      n_listeners = interest.shape[0]
    if n_listeners < 1:
      raise ValueError(f"n_listeners must be >= 1, got {n_listeners}")
    reqs = self.requests(n, heldout)
    rel = intents.relevance(reqs, self.index)
    pool_mask = ~self._train_mask if heldout else self._train_mask
    listeners = self.rng.integers(0, n_listeners, n)
    tracks = np.zeros(n, np.int64)
    for i in range(n):
      cand = np.flatnonzero(rel[i] & pool_mask)
      logit = self.config.popularity_weight * self.popularity[cand]
      if interest is not None:
        logit = logit + interest[listeners[i], cand] / self.config.personal_temperature
      p = np.exp(logit - logit.max())
      tracks[i] = cand[self.rng.choice(len(cand), p=p / p.sum())]
    return Triplets(reqs, listeners.astype(np.int64), tracks)


def _normalized(weights) -> np.ndarray:
  w = np.asarray(weights, np.float64)
  if w.size == 0:
    return w
  # Flatten the head and mix in a uniform share, so rare tags are named in requests too.
  w = np.sqrt(w)
  return 0.5 * w / w.sum() + 0.5 / w.size
