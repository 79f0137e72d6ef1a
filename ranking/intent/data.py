"""Training and evaluation data for the text-intent model, synthesized from real tags.

Owns (1) the catalog's text: a track's tags (MTG-Jamendo ``category---tag`` fields,
HetRec user tags or the simulator's Jamendo tag words) rendered as words, then its
title; (2) canonical tag keys, so ``genre---hiphop``, ``hip-hop`` and ``Hip Hop`` are one
tag; and (3) the request synthesizer: (listener, request, track) triplets whose requests
are written from phrasing templates over the catalog's real tags plus a lexicon of
colloquial mood words and situations (activity, weather, time of day), with multi-intent
and negated requests. Every request carries its *intent*: clauses of acceptable tags
(all clauses must match, any tag within a clause) and negated tags (none may match), so
relevance is checkable against any track's tags. Templates are split into training and
held-out phrasings and tracks into training and held-out tracks; evaluation requests
use only held-out phrasings.

Works on frames and arrays only; reading the datasets is the adapters' job.
"""

import dataclasses
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

# Colloquial mood families: the words people use -> the Jamendo tags that satisfy them.
MOODS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "chill": (("chill", "laid-back", "mellow", "low-key", "soothing", "relaxed",
               "easy-going", "unwinding"),
              ("relaxing", "calm", "chillout", "meditative", "soft", "downtempo",
               "easylistening", "lounge")),
    "upbeat": (("upbeat", "high-energy", "pumped up", "lively", "bouncy", "hype",
                "energizing", "peppy"),
               ("energetic", "upbeat", "fun", "party", "groovy", "dance", "powerful",
                "fast", "motivational")),
    "sad": (("sad", "melancholy", "heartbroken", "gloomy", "tearjerker", "blue",
             "wistful", "moody"),
            ("sad", "melancholic", "emotional", "dramatic")),
    "happy": (("feel-good", "cheerful", "joyful", "sunny", "happy", "bright", "carefree",
               "optimistic"),
              ("happy", "fun", "positive", "uplifting", "hopeful", "summer")),
    "romantic": (("romantic", "date-night", "tender", "sensual", "lovey-dovey", "intimate",
                  "swoony", "heartfelt"),
                 ("love", "romantic", "sexy", "ballad")),
    "epic": (("epic", "cinematic", "grand", "larger-than-life", "heroic", "sweeping",
              "blockbuster", "majestic"),
             ("epic", "dramatic", "powerful", "action", "trailer", "film", "adventure")),
    "dark": (("dark", "brooding", "ominous", "gritty", "sinister", "eerie", "shadowy",
              "haunting"),
             ("dark", "darkambient", "darkwave", "industrial", "heavy")),
    "focus": (("focus", "background", "unobtrusive", "concentration", "study-friendly",
               "distraction-free", "minimal", "quiet"),
              ("ambient", "background", "minimal", "calm", "atmospheric", "soundscape",
               "meditative")),
}

# Situations (activity, weather, time of day) -> the Jamendo tags that suit them.
SITUATIONS: Dict[str, Tuple[Tuple[str, ...], Tuple[str, ...]]] = {
    "cleaning": (("cleaning the flat", "tidying up the kitchen", "doing the chores",
                  "a deep clean of the house"),
                 ("energetic", "upbeat", "fun", "happy", "groovy", "dance", "pop")),
    "workout": (("a workout", "the gym", "a morning run", "lifting weights",
                 "a spin class"),
                ("energetic", "sport", "motivational", "powerful", "fast", "upbeat",
                 "action")),
    "study": (("studying", "writing my thesis", "deep work at my desk",
               "reading in the library"),
              ("ambient", "background", "calm", "minimal", "classical", "soundscape",
               "atmospheric")),
    "sleep": (("falling asleep", "bedtime", "a nap", "winding down before sleep"),
              ("relaxing", "calm", "meditative", "soft", "slow", "ambient")),
    "party": (("a house party", "pre-drinks with friends", "a birthday party",
               "dancing all night"),
              ("party", "dance", "club", "house", "edm", "disco", "fun")),
    "cooking": (("cooking dinner", "a sunday brunch", "baking on a lazy afternoon",
                 "a dinner party"),
                ("happy", "lounge", "jazz", "bossanova", "easylistening", "acidjazz")),
    "roadtrip": (("a road trip", "a long drive", "cruising on the highway",
                  "driving to the coast"),
                 ("rock", "travel", "adventure", "upbeat", "energetic", "poprock")),
    "yoga": (("yoga", "meditation", "a stretching session", "breathing exercises"),
             ("meditative", "relaxing", "newage", "calm", "ambient", "nature")),
    "rain": (("a rainy day", "a rainy commute", "a grey drizzly afternoon",
              "rain against the window"),
             ("melancholic", "calm", "sad", "relaxing", "soft", "emotional")),
    "sunny": (("a sunny afternoon", "a beach day", "a summer barbecue",
               "a picnic in the park"),
              ("happy", "summer", "fun", "positive", "upbeat", "reggae")),
    "winter": (("a snowy evening", "the holidays", "a cold winter night",
                "sitting by the fireplace"),
               ("christmas", "holiday", "calm", "soft", "romantic", "melodic")),
    "latenight": (("late at night", "a 3am drive", "the small hours",
                   "after midnight"),
                  ("dark", "deep", "ambient", "chillout", "downtempo", "atmospheric")),
    "morning": (("the morning", "my first coffee", "waking up", "sunrise"),
                ("uplifting", "positive", "happy", "hopeful", "inspiring", "soft")),
}

# Phrasing templates. Slots: {mood} {style} {style2} {instrument} {situation} {neg}.
TRAIN_TEMPLATES: Tuple[str, ...] = (
    "{mood} {style}",
    "play me something {mood}",
    "{style} with {instrument}",
    "{mood} music for {situation}",
    "some {style} for {situation}",
    "i need {mood} {instrument} music",
    "{mood} {style} but not {neg}",
    "{style}, no {neg} please",
    "{style} and {style2}",
    "songs for {situation}",
    "{mood} tunes with lots of {instrument}",
    "give me {style} that is {mood}",
    "{instrument} for {situation}",
    "{mood} but not {neg}, for {situation}",
)
HELDOUT_TEMPLATES: Tuple[str, ...] = (
    "put on some {mood} {style}, i'm in the mood",
    "any {style} tracks that feel {mood}?",
    "{situation}: {mood} {instrument} please",
    "looking for {style} for {situation}, nothing {neg}",
    "something {mood} to listen to during {situation}",
    "mix of {style} and {style2}",
    "{instrument}-heavy {style}",
    "what's good for {situation}?",
)

Clause = FrozenSet[str]


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


# ------------------------------------------------------------------------ intents
@dataclasses.dataclass(frozen=True)
class Request:
  """One synthesized request.

  Attributes:
    text: the request as a listener would type it.
    clauses: every clause must match; a clause matches when the track has any of its tags.
    negated: tags the track must not have.
    template: index into the template list it came from.
    heldout: written from a held-out phrasing template.
  """
  text: str
  clauses: Tuple[Clause, ...]
  negated: Clause
  template: int
  heldout: bool


class TagIndex:
  """Which catalog rows carry each tag key, for fast intent matching.

  Args:
    tag_keys: canonical tag keys per catalog row.
  """

  def __init__(self, tag_keys: Sequence[FrozenSet[str]]):
    self.n_tracks = len(tag_keys)
    rows: Dict[str, List[int]] = {}
    for n, keys in enumerate(tag_keys):
      for k in keys:
        rows.setdefault(k, []).append(n)
    self._rows = {k: np.asarray(v, np.int64) for k, v in rows.items()}

  def has_any(self, tags) -> np.ndarray:
    m = np.zeros(self.n_tracks, bool)
    for t in tags:
      if t in self._rows:
        m[self._rows[t]] = True
    return m

  def match(self, req: "Request") -> np.ndarray:
    """``[N]`` bool: rows matching every clause and no negated tag."""
    m = np.ones(self.n_tracks, bool)
    for clause in req.clauses:
      m &= self.has_any(clause)
    if req.negated:
      m &= ~self.has_any(req.negated)
    return m


def relevance(requests: Sequence[Request], tag_keys) -> np.ndarray:
  """``[R, N]`` bool: does catalog row n satisfy request r's intent (tag match).

  Args:
    requests: the requests.
    tag_keys: canonical tag keys per catalog row, or a ``TagIndex`` over them.
  """
  index = tag_keys if isinstance(tag_keys, TagIndex) else TagIndex(tag_keys)
  out = np.zeros((len(requests), index.n_tracks), bool)
  for r, req in enumerate(requests):
    out[r] = index.match(req)
  return out


def intent_match(requests: Sequence[Request], tag_keys: Sequence[FrozenSet[str]],
                 rows: np.ndarray) -> np.ndarray:
  """Graded intent relevance of tracks ``rows [R, K]``: the fraction of clauses matched,
  0 when a negated tag is present (the reward's intent term)."""
  rows = np.asarray(rows)
  out = np.zeros(rows.shape, np.float32)
  for r, req in enumerate(requests):
    n_cl = max(len(req.clauses), 1)
    for j, n in enumerate(rows[r]):
      if n < 0 or n >= len(tag_keys):
        continue
      keys = tag_keys[n]
      if req.negated & keys:
        continue
      out[r, j] = sum(bool(c & keys) for c in req.clauses) / n_cl
  return out


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
  """
  heldout_track_fraction: float = 0.2
  min_relevant: int = 3
  style_min_count: int = 3
  personal_temperature: float = 0.5
  popularity_weight: float = 0.3

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
    requests: one ``Request`` per triplet.
    listener: ``[n]`` listener index (row of the listener table).
    track: ``[n]`` catalog row of the positive track.
  """
  requests: List[Request]
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
    rel = relevance(test.requests, syn.tag_keys)                   # [500, N]

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
    self.tag_keys = catalog_tag_keys(tracks)
    self.index = TagIndex(self.tag_keys)
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
        k = tag_key(t)
        if not k:
          continue
        counts[k] = counts.get(k, 0) + 1
        words.setdefault(k, tag_words(t))
        cat = tag_category(t)
        if category.get(k) in (None, "style"):
          category[k] = cat
    instruments = set(tag_key(t) for t in _INSTRUMENT_WORDS)
    for k in list(category):
      if category[k] == "style" and k in instruments:
        category[k] = "instrument"
    ok = {k for k, c in counts.items() if c >= config.style_min_count}
    self.words = words
    self.styles = sorted(k for k in ok if category[k] in ("genre", "style"))
    self.instruments = sorted(k for k in ok if category[k] == "instrument")
    self.mood_tags = sorted(k for k in ok if category[k] == "mood")
    self._style_p = _normalized([counts[k] for k in self.styles])
    self._instr_p = _normalized([counts[k] for k in self.instruments])

  # ------------------------------------------------------------------ slot fillers
  def _fill(self, template: str):
    """Fills a template's slots; returns (text, clauses, negated) or None."""
    rng = self.rng
    values, clauses, negated = {}, [], set()
    used = set()
    for slot in re.findall(r"\{(\w+)\}", template):
      if slot == "mood":
        fam = list(MOODS)[rng.integers(len(MOODS))]
        phrases, tags = MOODS[fam]
        values[slot] = phrases[rng.integers(len(phrases))]
        clauses.append(frozenset(tags))
        used.add(fam)
      elif slot in ("style", "style2"):
        if not self.styles:
          return None
        k = self.styles[rng.choice(len(self.styles), p=self._style_p)]
        if k in used:
          return None
        values[slot] = self.words[k]
        clauses.append(frozenset([k]))
        used.add(k)
      elif slot == "instrument":
        if not self.instruments:
          return None
        k = self.instruments[rng.choice(len(self.instruments), p=self._instr_p)]
        values[slot] = self.words[k]
        clauses.append(frozenset([k]))
        used.add(k)
      elif slot == "situation":
        sit = list(SITUATIONS)[rng.integers(len(SITUATIONS))]
        phrases, tags = SITUATIONS[sit]
        values[slot] = phrases[rng.integers(len(phrases))]
        clauses.append(frozenset(tags))
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

  def requests(self, n: int, heldout: bool, max_tries: int = 50) -> List[Request]:
    """``n`` satisfiable requests from training (or held-out) phrasings."""
    templates = HELDOUT_TEMPLATES if heldout else TRAIN_TEMPLATES
    pool = self.heldout_tracks if heldout else self.train_tracks
    out: List[Request] = []
    tries = 0
    while len(out) < n:
      tries += 1
      if tries > max_tries * max(n, 1):
        raise ValueError(f"could only write {len(out)} of {n} satisfiable requests; the "
                         "catalog has too few tags (min_relevant "
                         f"{self.config.min_relevant})")
      t = int(self.rng.integers(len(templates)))
      filled = self._fill(templates[t])
      if filled is None:
        continue
      req = Request(filled[0], filled[1], filled[2], t, heldout)
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
    rel = relevance(reqs, self.index)
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


# HetRec's free tags have no category; these words mark instruments among them.
_INSTRUMENT_WORDS = ("piano", "guitar", "violin", "cello", "saxophone", "trumpet",
                     "flute", "drums", "synthesizer", "accordion", "harp", "organ")


def _normalized(weights) -> np.ndarray:
  w = np.asarray(weights, np.float64)
  if w.size == 0:
    return w
  w = np.sqrt(w)   # flatten the head: rare tags appear in requests too
  return w / w.sum()


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
