"""The listener world: a seeded, vectorized simulator that is Melody's ground truth.

This module owns the synthetic catalog (tracks with real MTG-Jamendo tag text, a long-tail
popularity fitted to public play counts, promo tracks with an exposure value), the
listeners (latent tastes over tags, segment, tenure, engagement, promo fatigue,
subscription state), the context (hour, weekday, activity) and the public response
functions that say how a listener reacts to a track. ``World.iter_events`` logs a
popularity/taste-based policy with inserted promo slots in exactly
``features.events.EVENT_SCHEMA``; ``World.expected_response``, ``World.play_slate`` and
``World.end_day`` let ``simulation/rollout.py`` score or roll out any ranked list.

Response model (all public, see ``docs/data.md``). For listener u, track t, activity a::

    z = bias + strength_u * cos(taste_u, emb_t) * taste_scale
        + pop_weight * mainstream_u * popz_t
        + familiar_t(u) * familiar_weight[a] + (1 - familiar_t(u)) * novel_weight[a]
        + energy_t * energy_weight[a] + calm_t * calm_weight[a]
        - promo_t * (promo_penalty + promo_fatigue_skip * fatigue_u)
        + drift_gain * min(run_len, drift_cap) * [style_t == run_style]
    P(skip) = sigmoid(skip_bias - z)
    P(full listen | no skip) = sigmoid(full_listen_bias + z); else completion ~ U(0.5, 1)
    skipped plays last U(skip_min_s, skip_max_s) seconds
    P(like | no skip) = sigmoid(like_bias + like_slope * z)
    exposure = exposure_value_t * completion for promo tracks, else 0
    conversion hazard per impression (non-paid) = base_hazard[segment]
        * exp(engagement_weight * (engagement_u - engagement_ref)
              + promo_conversion_weight * placement_t(u) * completion * promo_t
              - fatigue_conversion_weight * fatigue_u)
    P(return next day) = sigmoid(activity_u + return_engagement_weight
                                 * (engagement_u - engagement_ref) + paid_return_bonus * paid)

``familiar_t(u)`` is 1 when the track's artist is one of the listener's known artists,
``placement_t(u) = sigmoid(placement_slope * cos(taste_u, emb_t))`` says how well a promo
fits the listener, and ``run_style``/``run_len`` is the style of the current run of
unskipped tracks inside a session (short-term drift).
"""

import dataclasses
import json
import os
from typing import Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from features import events
from features import feature_spec
PARAMS_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           "calibrated_params.json")
DEFAULT_START_TS = 1_704_067_200   # 2024-01-01 00:00:00 UTC, a Monday
DAY_S = 86_400
# Activities the simulator draws (feature_spec.ACTIVITIES without "unknown").
SIM_ACTIVITIES: Tuple[str, ...] = tuple(a for a in feature_spec.ACTIVITIES if a != "unknown")
# Surfaces of organic (non-promo) slots; promo slots use "promo".
ORGANIC_SURFACES: Tuple[str, ...] = ("home", "discover", "radio", "library", "playlist",
                                     "search")
PAID = feature_spec.SEGMENTS.index("paid")
# Tag words that make a track suit a workout (energy) or a focus session (calm). Only
# the words present in the tag vocabulary are used.
ENERGY_TAGS = ("energetic", "sport", "fast", "party", "upbeat", "motivational", "action",
               "powerful", "heavy", "dance", "edm", "techno", "house", "trance",
               "drumnbass", "eurodance", "hiphop", "rap", "hardrock", "metal", "punkrock",
               "club", "breakbeat", "dubstep")
CALM_TAGS = ("calm", "relaxing", "meditative", "soft", "background", "slow", "ambient",
             "classical", "piano", "newage", "chillout", "easylistening", "lounge",
             "minimal", "downtempo", "soundscape", "atmospheric", "nature", "dream",
             "classicalguitar", "harp")
_TITLE_A = ("Blue", "Quiet", "Golden", "Broken", "Electric", "Silver", "Last", "Paper",
            "Wild", "Hidden", "Northern", "Velvet", "Lonely", "Bright", "Slow", "Neon")
_TITLE_B = ("Harbor", "Morning", "Signal", "River", "Window", "Garden", "Echo", "Highway",
            "Letter", "Horizon", "Engine", "Shadow", "Season", "Mirror", "Tide", "Avenue")


def load_params(path: Optional[str] = None) -> dict:
  """Loads the calibrated parameters (derived statistics only) from JSON.

  Args:
    path: JSON file; default ``simulation/calibrated_params.json`` next to this module.

  Returns:
    The parameter dict written by ``simulation.calibration``.
  """
  path = path or PARAMS_PATH
  if not os.path.exists(path):
    raise ValueError(f"calibrated parameters not found at {path!r}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


@dataclasses.dataclass(frozen=True)
class WorldConfig:
  """Parameters of the world. ``None`` means "take it from the calibrated JSON".

  Attributes:
    n_tracks: catalog size.
    n_artists: number of artists (every artist has at least one track); 0 means
      ``max(1, n_tracks // 5)``.
    n_tags: tags used from the vocabulary, most frequent first; 0 = all of them.
    latent_dim: dimension of the tag/track/taste embedding space.
    promo_fraction: fraction of catalog tracks that are promo tracks.
    promo_slot_rate: fraction of logged impressions that are promo slots.
    explore_share: fraction of organic slots the logging policy fills uniformly at
      random from the organic catalog (every track has a non-zero logging chance).
    segment_mix: initial share of each ``feature_spec.SEGMENTS`` entry.
    known_artists: artists each listener already knows (familiar music).
    artist_size_sigma: log-sd of the number of tracks per artist.
    artist_popularity_share: share of the variance of a track's popularity latent that
      comes from its artist (the rest is the track's own).
    taste_scale: weight of taste affinity in the utility.
    pop_weight: weight of standardized popularity (times the listener's mainstreamness).
    utility_bias: constant in the utility.
    familiar_weight, novel_weight, energy_weight, calm_weight: per activity in
      ``SIM_ACTIVITIES`` order (commute, workout, focus, explore).
    promo_penalty: utility cost of being a promo track.
    promo_fatigue_skip: extra utility cost of a promo per unit of fatigue.
    drift_gain, drift_cap: short-term drift: a run of ``n`` unskipped tracks of one style
      adds ``drift_gain * min(n, drift_cap)`` to that style's utility.
    skip_bias, full_listen_bias, like_bias, like_slope: outcome links (see module doc).
    skip_min_s, skip_max_s: listening time of a skipped play.
    popularity_exponent: the logging policy samples tracks with weight listens**exponent.
    session_len_mu, session_len_sigma: session length ~ round(lognormal(mu, sigma)).
    max_session_len: cap on session length.
    think_s_mean: mean pause (exponential) between the end of a play and the next start.
    pause_prob, pause_s_mean: chance and mean length (exponential) of a longer pause
      inside a session (the listener steps away).
    extra_sessions_mean: Poisson mean of sessions beyond the first on an active day.
    min_session_gap_s: minimum idle time between two sessions of one listener.
    session_style_prob: chance that a session follows one of the listener's favourite
      styles (else a style drawn by tag frequency).
    base_hazard: per-impression conversion hazard per segment (0 for paid).
    engagement_weight, engagement_ref: engagement effect on conversion and return.
    promo_conversion_weight: effect of a well-placed, listened promo on conversion.
    placement_slope: slope of the promo placement quality in taste affinity.
    fatigue_conversion_weight: effect of promo fatigue on conversion.
    fatigue_decay: multiplicative decay of promo fatigue per day.
    exposure_sigma: log-sd of promo tracks' exposure value (median 1).
    return_engagement_weight: engagement effect on next-day return.
    paid_return_bonus: extra return logit of paid listeners.
    activity_mean, activity_sd: listeners' baseline return logit ~ N(mean, sd).
    engagement_smoothing: weight of the new day in the engagement moving average.
    trial_days: mean length of a trial (geometric expiry to "free").
  """
  n_tracks: int = 5000
  n_artists: int = 0
  n_tags: int = 0
  latent_dim: int = 16
  promo_fraction: float = 0.03
  promo_slot_rate: float = 0.06
  explore_share: float = 0.05
  segment_mix: Tuple[float, ...] = (0.15, 0.35, 0.20, 0.05, 0.25)
  known_artists: int = 30
  artist_size_sigma: float = 1.5
  artist_popularity_share: float = 0.8
  taste_scale: float = 2.0
  pop_weight: float = 0.3
  utility_bias: float = 0.0
  familiar_weight: Tuple[float, ...] = (0.8, 0.3, 0.3, -0.3)
  novel_weight: Tuple[float, ...] = (-0.3, 0.0, 0.0, 0.5)
  energy_weight: Tuple[float, ...] = (0.0, 0.8, -0.4, 0.0)
  calm_weight: Tuple[float, ...] = (0.0, -0.4, 0.8, 0.0)
  promo_penalty: float = 0.3
  promo_fatigue_skip: float = 0.1
  drift_gain: float = 0.25
  drift_cap: int = 4
  skip_bias: Optional[float] = None
  full_listen_bias: Optional[float] = None
  like_bias: Optional[float] = None
  like_slope: float = 0.8
  skip_min_s: float = 3.0
  skip_max_s: float = 30.0
  popularity_exponent: Optional[float] = None
  session_len_mu: Optional[float] = None
  session_len_sigma: Optional[float] = None
  max_session_len: int = 200
  think_s_mean: Optional[float] = None
  pause_prob: Optional[float] = None
  pause_s_mean: Optional[float] = None
  extra_sessions_mean: float = 0.4
  min_session_gap_s: int = 1800
  session_style_prob: float = 0.8
  base_hazard: Tuple[float, ...] = (2.0e-4, 1.1e-4, 4.0e-5, 1.3e-3, 0.0)
  engagement_weight: float = 1.5
  engagement_ref: float = 0.6
  promo_conversion_weight: float = 2.0
  placement_slope: float = 4.0
  fatigue_conversion_weight: float = 0.15
  fatigue_decay: float = 0.7
  exposure_sigma: float = 0.5
  return_engagement_weight: float = 2.0
  paid_return_bonus: float = 0.4
  activity_mean: float = 0.0
  activity_sd: float = 1.0
  engagement_smoothing: float = 0.3
  trial_days: float = 30.0

  def __post_init__(self):
    if self.n_tracks < 1:
      raise ValueError(f"n_tracks must be >= 1, got {self.n_tracks}")
    if not 0 <= self.n_artists <= self.n_tracks:
      raise ValueError(f"n_artists must be in [0, n_tracks={self.n_tracks}], "
                       f"got {self.n_artists}")
    if self.n_tags < 0:
      raise ValueError(f"n_tags must be >= 0, got {self.n_tags}")
    if self.latent_dim < 2:
      raise ValueError(f"latent_dim must be >= 2, got {self.latent_dim}")
    for name in ("promo_fraction", "promo_slot_rate", "explore_share", "session_style_prob",
                 "artist_popularity_share",
                 "fatigue_decay", "engagement_smoothing"):
      v = getattr(self, name)
      if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {v}")
    if len(self.segment_mix) != len(feature_spec.SEGMENTS) or min(self.segment_mix) < 0 or (
        abs(sum(self.segment_mix) - 1.0) > 1e-6):
      raise ValueError(f"segment_mix must be {len(fs.SEGMENTS)} non-negative shares "
                       f"summing to 1, got {self.segment_mix}")
    if len(self.base_hazard) != len(feature_spec.SEGMENTS) or min(self.base_hazard) < 0:
      raise ValueError(f"base_hazard must be {len(fs.SEGMENTS)} values >= 0, "
                       f"got {self.base_hazard}")
    for name in ("familiar_weight", "novel_weight", "energy_weight", "calm_weight"):
      if len(getattr(self, name)) != len(SIM_ACTIVITIES):
        raise ValueError(f"{name} needs one value per activity {SIM_ACTIVITIES}, "
                         f"got {getattr(self, name)}")
    if self.known_artists < 1:
      raise ValueError(f"known_artists must be >= 1, got {self.known_artists}")
    if self.max_session_len < 1:
      raise ValueError(f"max_session_len must be >= 1, got {self.max_session_len}")
    if not 0 < self.skip_min_s <= self.skip_max_s:
      raise ValueError(f"need 0 < skip_min_s <= skip_max_s, got "
                       f"{self.skip_min_s}, {self.skip_max_s}")
    if self.drift_cap < 0:
      raise ValueError(f"drift_cap must be >= 0, got {self.drift_cap}")
    if self.min_session_gap_s < 0:
      raise ValueError(f"min_session_gap_s must be >= 0, got {self.min_session_gap_s}")


@dataclasses.dataclass
class Listeners:
  """Mutable state of a batch of listeners (one row per listener).

  Attributes:
    user_index: global listener number (``user_id`` is ``f"u{user_index:07d}"``).
    taste: unit taste vectors, [n, latent_dim].
    strength: how strongly taste drives the response, [n].
    mainstream: how much popularity pleases the listener, [n].
    favorite_styles, favorite_weights: the listener's favourite styles (genre tag ids)
      and their weights, [n, 3].
    known_artists: artist ids the listener knows (familiar music), [n, known_artists].
    segment: index into ``feature_spec.SEGMENTS``, [n].
    tenure_days: days since sign-up, [n].
    engagement: moving average of daily mean completion, [n].
    fatigue: promo fatigue (decayed count of promo impressions), [n].
    activity: baseline return logit, [n].
    converted: converted to paid inside the simulation, [n].
    last_end_ts: end of the listener's last session (0 = none), [n].
  """
  user_index: np.ndarray
  taste: np.ndarray
  strength: np.ndarray
  mainstream: np.ndarray
  favorite_styles: np.ndarray
  favorite_weights: np.ndarray
  known_artists: np.ndarray
  segment: np.ndarray
  tenure_days: np.ndarray
  engagement: np.ndarray
  fatigue: np.ndarray
  activity: np.ndarray
  converted: np.ndarray
  last_end_ts: np.ndarray

  def __len__(self) -> int:
    return len(self.user_index)

  def take(self, rows) -> "Listeners":
    """A copy holding only ``rows``."""
    return Listeners(**{f.name: getattr(self, f.name)[rows].copy()
                        for f in dataclasses.fields(self)})

  def user_ids(self) -> np.ndarray:
    return np.array([f"u{i:07d}" for i in self.user_index], dtype=object)


def _activity_index(activity, n: int) -> np.ndarray:
  """Activity as int index into SIM_ACTIVITIES, from strings, ints or a scalar."""
  a = np.asarray(activity)
  if a.dtype.kind in "US" or a.dtype == object:
    lookup = {name: i for i, name in enumerate(SIM_ACTIVITIES)}
    flat = [lookup.get(str(x), -1) for x in a.reshape(-1)]
    if min(flat, default=0) < 0:
      raise ValueError(f"unknown activity in {sorted(set(map(str, a.reshape(-1))))}; "
                       f"known: {SIM_ACTIVITIES}")
    a = np.asarray(flat, dtype=np.int64).reshape(a.shape)
  a = np.broadcast_to(a.astype(np.int64), (n,)) if a.ndim == 0 else a.astype(np.int64)
  if a.shape != (n,) or (a.size and (a.min() < 0 or a.max() >= len(SIM_ACTIVITIES))):
    raise ValueError(f"activity must be {n} indices in [0, {len(SIM_ACTIVITIES)}), "
                     f"got shape {a.shape}")
  return a


class _Sampler:
  """Weighted sampling of one item inside a group (e.g. a track of a given style)."""

  def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
    order = np.lexsort((np.arange(len(group)), group))
    self.items = order
    self.cum = np.cumsum(weight[order].astype(np.float64))
    counts = np.bincount(group, minlength=n_groups)
    self.end = np.cumsum(counts)
    self.begin = self.end - counts
    start_cum = np.concatenate([[0.0], self.cum])
    self.lo = start_cum[self.begin]
    self.total = start_cum[self.end] - self.lo
    self.counts = counts

  def draw(self, groups: np.ndarray, u: np.ndarray) -> np.ndarray:
    target = self.lo[groups] + u * self.total[groups]
    pos = np.searchsorted(self.cum, target, side="right")
    pos = np.clip(pos, self.begin[groups], self.end[groups] - 1)
    return self.items[pos]


def _quantile_sample(quantiles: Sequence[float], u: np.ndarray) -> np.ndarray:
  """Inverse-CDF sampling from evenly spaced quantiles (linear interpolation)."""
  q = np.asarray(quantiles, dtype=np.float64)
  return np.interp(u, np.linspace(0.0, 1.0, len(q)), q)


class World:
  """The seeded listener world.

  Args:
    config: world parameters; ``None`` fields come from ``params``.
    seed: seed of the catalog and of every listener/event stream.
    params: calibrated parameters (default: the committed JSON).

  Usage::

    world = World(WorldConfig(n_tracks=5000), seed=7)
    for table in world.iter_events(n_users=10_000, days=7):
      ...   # pyarrow.Table in features.events.EVENT_SCHEMA
  """

  def __init__(self, config: WorldConfig = WorldConfig(), seed: int = 7,
               params: Optional[dict] = None):
    if not isinstance(config, WorldConfig):
      raise ValueError(f"config must be a WorldConfig, got {type(config).__name__}")
    if not isinstance(seed, (int, np.integer)) or seed < 0:
      raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    self.params = params if params is not None else load_params()
    beh = self.params.get("behaviour", {})
    resolved = {}
    for field in ("skip_bias", "full_listen_bias", "like_bias", "popularity_exponent",
                  "session_len_mu", "session_len_sigma", "think_s_mean", "pause_prob",
                  "pause_s_mean"):
      if getattr(config, field) is None:
        if field not in beh:
          raise ValueError(f"{field} is neither set in WorldConfig nor in the params")
        resolved[field] = float(beh[field])
    if not config.n_artists:
      resolved["n_artists"] = max(1, config.n_tracks // 5)
    self.config = dataclasses.replace(config, **resolved)
    self.seed = int(seed)
    self._build_catalog(np.random.default_rng(np.random.SeedSequence([self.seed, 0])))

  # ------------------------------------------------------------------ catalog
  def _build_catalog(self, rng: np.random.Generator) -> None:
    c, p = self.config, self.params
    tags = p["tags"]
    names = list(tags["names"])
    freq = np.asarray(tags["freq"], dtype=np.float64)
    cats = list(tags.get("categories", ["genre"] * len(names)))
    keep = np.argsort(-freq, kind="stable")
    if c.n_tags:
      if c.n_tags > len(names):
        raise ValueError(f"n_tags={c.n_tags} exceeds the vocabulary of {len(names)} tags")
      keep = keep[:c.n_tags]
    keep = np.sort(keep)
    remap = -np.ones(len(names), dtype=np.int64)
    remap[keep] = np.arange(len(keep))
    self.tag_names = [names[i] for i in keep]
    self.tag_categories = [cats[i] for i in keep]
    freq = freq[keep] / freq[keep].sum()
    self.tag_freq = freq
    n_tags = len(keep)
    lift = np.zeros((n_tags, n_tags))
    for i, j, l in tags.get("cooc", []):
      a, b = remap[int(i)], remap[int(j)]
      if a >= 0 and b >= 0 and l > 0:
        lift[a, b] = np.log(l)
    self.tag_lift = lift
    is_style = np.array([k == "genre" for k in self.tag_categories])
    if not is_style.any():
      is_style[:] = True
    self.style_tags = np.flatnonzero(is_style)

    # Tag embeddings: random directions pulled towards co-occurring tags.
    d = c.latent_dim
    e = rng.standard_normal((n_tags, d))
    w = np.maximum(lift, 0.0)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-9)
    e = e + 1.0 * (w @ e)
    self.tag_emb = e / np.linalg.norm(e, axis=1, keepdims=True)

    # Artists: sizes and a latent "star power"; each artist has a primary style.
    n_t, n_a = c.n_tracks, c.n_artists
    size_w = rng.lognormal(0.0, c.artist_size_sigma, n_a)
    artist = np.concatenate([np.arange(n_a), rng.choice(n_a, n_t - n_a,
                                                        p=size_w / size_w.sum())])
    artist = rng.permutation(artist)
    star = rng.standard_normal(n_a)
    style_p = freq[self.style_tags] / freq[self.style_tags].sum()
    artist_style = self.style_tags[rng.choice(len(style_p), n_a, p=style_p)]

    # Tracks: primary style (mostly the artist's), further tags by co-occurrence.
    primary = artist_style[artist].copy()
    other = rng.random(n_t) < 0.15
    primary[other] = self.style_tags[rng.choice(len(style_p), other.sum(), p=style_p)]
    tpt = np.asarray(p["tags_per_track"], dtype=np.float64)
    tpt = tpt[:feature_spec.MAX_TAGS] / tpt[:feature_spec.MAX_TAGS].sum()
    n_tags_t = np.minimum(1 + rng.choice(len(tpt), n_t, p=tpt), n_tags)
    logits = np.log(freq)[None, :] + lift[primary] + rng.gumbel(size=(n_t, n_tags))
    logits[np.arange(n_t), primary] = -np.inf
    rest = np.argsort(-logits, axis=1)[:, :feature_spec.MAX_TAGS - 1]
    if rest.shape[1] < feature_spec.MAX_TAGS - 1:   # a vocabulary smaller than MAX_TAGS
      rest = np.pad(rest, ((0, 0), (0, feature_spec.MAX_TAGS - 1 - rest.shape[1])),
                    constant_values=-1)
    tag_mat = np.concatenate([primary[:, None], rest], axis=1)
    tag_mat[np.arange(feature_spec.MAX_TAGS)[None, :] >= n_tags_t[:, None]] = -1
    self.track_tags = tag_mat
    self.track_num_tags = n_tags_t
    self.track_style = primary
    self.track_artist = artist

    onehot = np.zeros((n_t, n_tags))
    rows, cols = np.nonzero(tag_mat >= 0)
    onehot[rows, tag_mat[rows, cols]] = 1.0
    emb = onehot @ self.tag_emb / n_tags_t[:, None] + 0.3 * rng.standard_normal(
        (n_t, d)) / np.sqrt(d)
    self.track_emb = (emb / np.linalg.norm(emb, axis=1, keepdims=True)).astype(np.float32)
    lower = [n.lower() for n in self.tag_names]
    energy = np.isin(np.arange(n_tags), [i for i, n in enumerate(lower) if n in ENERGY_TAGS])
    calm = np.isin(np.arange(n_tags), [i for i, n in enumerate(lower) if n in CALM_TAGS])
    self.track_energy = (onehot[:, energy].sum(1) > 0).astype(np.float32)
    self.track_calm = (onehot[:, calm].sum(1) > 0).astype(np.float32)

    # Popularity: a latent (artist star power + track noise) mapped through the fitted
    # quantile function of log1p(listens), so the marginal matches the real data.
    r = c.artist_popularity_share
    latent = np.sqrt(r) * star[artist] + np.sqrt(1 - r) * rng.standard_normal(n_t)
    rank_u = (np.argsort(np.argsort(latent)) + 0.5) / n_t
    n_promo = int(round(c.promo_fraction * n_t))
    promo = np.zeros(n_t, dtype=bool)
    if n_promo:
      # Promos are mostly new releases: drawn from the less popular 60%.
      cand = np.flatnonzero(rank_u < 0.6)
      promo[rng.choice(cand, min(n_promo, len(cand)), replace=False)] = True
    self.track_pop = _quantile_sample(p["popularity_quantiles"], rank_u).astype(np.float32)
    self.track_popz = ((self.track_pop - self.track_pop.mean())
                       / max(self.track_pop.std(), 1e-6)).astype(np.float32)
    self.track_duration = np.exp(_quantile_sample(
        p["duration_log_quantiles"], rng.random(n_t))).astype(np.float32)
    self.track_promo = promo
    self.track_exposure = np.where(
        promo, rng.lognormal(0.0, c.exposure_sigma, n_t), 0.0).astype(np.float32)

    # Logging-policy samplers: global, per style and per artist, weight listens**alpha.
    wpop = np.exp(c.popularity_exponent * (self.track_pop - self.track_pop.max()))
    organic = (~promo).astype(np.float64)
    self._pop_sampler = _Sampler(np.zeros(n_t, np.int64), wpop * organic + 1e-12, 1)
    self._style_sampler = _Sampler(primary, wpop * organic + 1e-12, n_tags)
    self._artist_sampler = _Sampler(artist, wpop * organic + 1e-12, n_a)
    self._organic_tracks = np.flatnonzero(~promo) if (~promo).any() else np.arange(n_t)
    promo_idx = np.flatnonzero(promo)
    self._promo_tracks = promo_idx if len(promo_idx) else np.flatnonzero(organic)
    style_counts = np.bincount(primary, minlength=n_tags)
    self._session_style_p = np.where(style_counts > 0, freq, 0.0)
    self._session_style_p /= self._session_style_p.sum()
    artist_w = np.bincount(artist, weights=wpop, minlength=n_a)
    self._artist_p = artist_w / artist_w.sum()
    self._log_artist_p = np.log(self._artist_p + 1e-300)
    self._known_sampler = _Sampler(np.zeros(n_a, np.int64), np.sqrt(self._artist_p), 1)
    self._known_style_sampler = _Sampler(artist_style, np.sqrt(self._artist_p), n_tags)
    self._artist_style = artist_style

    self.track_ids = np.array([f"t{i:06d}" for i in range(n_t)], dtype=object)
    self.artist_ids = np.array([f"a{i:05d}" for i in range(n_a)], dtype=object)
    titles = [f"{_TITLE_A[a]} {_TITLE_B[b]}" for a, b in zip(
        rng.integers(0, len(_TITLE_A), n_t), rng.integers(0, len(_TITLE_B), n_t))]
    tag_names = np.array(self.tag_names, dtype=object)
    self.tracks = pd.DataFrame({
        "track_id": self.track_ids,
        "artist_id": self.artist_ids[artist],
        "tags": [list(tag_names[row[row >= 0]]) for row in tag_mat],
        "duration_s": self.track_duration,
        "popularity": self.track_pop,
        "title": titles,
        "is_promo": promo,
        "exposure_value": self.track_exposure,
    })
    self._track_dict = pa.array(self.track_ids, pa.string())
    self._artist_dict = pa.array(self.artist_ids, pa.string())

  def tracks_table(self) -> pa.Table:
    """The catalog in exactly ``features.events.TRACK_SCHEMA``."""
    return pa.Table.from_pandas(self.tracks[list(events.TRACK_SCHEMA.names)],
                                schema=events.TRACK_SCHEMA, preserve_index=False)

  # ---------------------------------------------------------------- listeners
  def sample_users(self, n: int, rng: np.random.Generator, start_index: int = 0,
                   segment_mix: Optional[Sequence[float]] = None) -> Listeners:
    """Draws ``n`` fresh listeners.

    Args:
      n: how many.
      rng: random generator (the caller owns the stream).
      start_index: global number of the first listener (for ``user_id``).
      segment_mix: overrides ``config.segment_mix``.

    Returns:
      A ``Listeners`` batch.
    """
    if n < 0:
      raise ValueError(f"n must be >= 0, got {n}")
    c = self.config
    mix = np.asarray(segment_mix if segment_mix is not None else c.segment_mix, float)
    if len(mix) != len(feature_spec.SEGMENTS) or mix.min() < 0 or abs(mix.sum() - 1) > 1e-6:
      raise ValueError(f"segment_mix must be {len(fs.SEGMENTS)} shares summing to 1, "
                       f"got {segment_mix}")
    d = c.latent_dim
    sp = self._session_style_p ** 0.7
    sp = sp / sp.sum()
    g = np.log(sp + 1e-300)[None, :] + rng.gumbel(size=(n, len(sp)))
    fav = np.argsort(-g, axis=1)[:, :3]
    fw = rng.dirichlet(np.ones(3) * 1.5, n)
    taste = np.einsum("nk,nkd->nd", fw, self.tag_emb[fav]) + 0.4 * rng.standard_normal(
        (n, d)) / np.sqrt(d)
    taste /= np.linalg.norm(taste, axis=1, keepdims=True)
    # Known artists: half from the listener's favourite styles, half from the whole
    # catalog, both weighted by sqrt(artist popularity) (repeats are allowed).
    K = c.known_artists
    n_style = K // 2
    pick = (rng.random((n, n_style))[..., None]
            > np.cumsum(fw, axis=1)[:, None, :]).sum(-1)
    styles = np.take_along_axis(fav, np.minimum(pick, 2), axis=1)
    known = np.concatenate([
        self._known_style_sampler.draw(styles.reshape(-1), rng.random(n * n_style)
                                       ).reshape(n, n_style),
        self._known_sampler.draw(np.zeros(n * (K - n_style), np.int64),
                                 rng.random(n * (K - n_style))).reshape(n, K - n_style)],
        axis=1)
    segment = rng.choice(len(feature_spec.SEGMENTS), n, p=mix / mix.sum()).astype(np.int8)
    lo = np.array([0, 14, 180, 0, 30], float)[segment]
    hi = np.array([14, 180, 1500, 60, 2000], float)[segment]
    tenure = lo + rng.random(n) * (hi - lo)
    return Listeners(
        user_index=np.arange(start_index, start_index + n, dtype=np.int64),
        taste=taste.astype(np.float32),
        strength=rng.lognormal(0.0, 0.3, n).astype(np.float32),
        mainstream=rng.normal(1.0, 0.5, n).astype(np.float32),
        favorite_styles=fav.astype(np.int64),
        favorite_weights=fw,
        known_artists=np.sort(known, axis=1).astype(np.int64),
        segment=segment,
        tenure_days=tenure.astype(np.float32),
        engagement=np.full(n, c.engagement_ref, np.float32),
        fatigue=np.zeros(n, np.float32),
        activity=rng.normal(c.activity_mean, c.activity_sd, n).astype(np.float32),
        converted=segment == PAID,
        last_end_ts=np.zeros(n, np.int64),
    )

  # ------------------------------------------------------- response functions
  def _utility(self, L: Listeners, rows: np.ndarray, tracks: np.ndarray,
               activity: np.ndarray, fatigue: np.ndarray) -> np.ndarray:
    """Utility without drift; ``rows``, ``tracks``, ``activity``, ``fatigue`` broadcast."""
    c = self.config
    aff = (L.taste[rows] * self.track_emb[tracks]).sum(-1)
    fam = self.is_familiar(L, rows, tracks)
    fw = np.asarray(c.familiar_weight)[activity]
    nw = np.asarray(c.novel_weight)[activity]
    z = (c.utility_bias + L.strength[rows] * aff * c.taste_scale
         + c.pop_weight * L.mainstream[rows] * self.track_popz[tracks]
         + np.where(fam, fw, nw)
         + self.track_energy[tracks] * np.asarray(c.energy_weight)[activity]
         + self.track_calm[tracks] * np.asarray(c.calm_weight)[activity]
         - self.track_promo[tracks] * (c.promo_penalty + c.promo_fatigue_skip * fatigue))
    return z.astype(np.float64)

  def is_familiar(self, L: Listeners, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """Whether each track's artist is known to the listener in ``rows`` (broadcasting)."""
    artist = self.track_artist[tracks]
    return (L.known_artists[rows] == artist[..., None]).any(-1)

  def placement(self, L: Listeners, rows: np.ndarray, tracks: np.ndarray) -> np.ndarray:
    """Promo placement quality in (0, 1): how well the track fits the listener."""
    aff = (L.taste[rows] * self.track_emb[tracks]).sum(-1)
    return _sigmoid(self.config.placement_slope * aff)

  def _hazard(self, L, rows, tracks, completion, fatigue):
    c = self.config
    base = np.asarray(c.base_hazard)[L.segment[rows]]
    promo = self.track_promo[tracks]
    q = self.placement(L, rows, tracks)
    h = base * np.exp(c.engagement_weight * (L.engagement[rows] - c.engagement_ref)
                      + c.promo_conversion_weight * q * completion * promo
                      - c.fatigue_conversion_weight * fatigue)
    return np.where(L.converted[rows], 0.0, np.minimum(h, 0.5))

  def expected_response(self, listeners: Listeners, track_idx: np.ndarray,
                        activity=None, run_style: Optional[np.ndarray] = None,
                        run_len: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Ground-truth expected response of each listener to each track of a list.

    Args:
      listeners: batch of n listeners (their current state: fatigue, engagement, …).
      track_idx: int array [n, k] of catalog rows (``world.tracks`` index).
      activity: context activity per listener (names or indices into
        ``SIM_ACTIVITIES``); default "explore".
      run_style, run_len: current in-session run per listener (short-term drift);
        default no run.

    Returns:
      Dict of float arrays [n, k]: ``utility``, ``p_skip``, ``p_complete`` (expected
      completion fraction), ``p_like``, ``exposure`` (expected exposure value) and
      ``conversion_hazard`` (probability that this impression converts the listener,
      evaluated at the expected completion). Each impression is scored on its own at
      the listener's current state (no drift or fatigue build-up along the list;
      ``play_slate`` plays a list in order).
    """
    t = np.asarray(track_idx)
    n = len(listeners)
    if t.ndim != 2 or t.shape[0] != n:
      raise ValueError(f"track_idx must be [n={n}, k], got shape {t.shape}")
    if t.size and (t.min() < 0 or t.max() >= self.config.n_tracks):
      raise ValueError(f"track_idx out of range [0, {self.config.n_tracks})")
    c = self.config
    act = _activity_index("explore" if activity is None else activity, n)
    rows = np.arange(n)[:, None]
    z = self._utility(listeners, rows, t, act[:, None], listeners.fatigue[:, None])
    if run_style is not None and run_len is not None:
      same = self.track_style[t] == np.asarray(run_style)[:, None]
      z = z + c.drift_gain * np.minimum(np.asarray(run_len)[:, None], c.drift_cap) * same
    p_skip = _sigmoid(c.skip_bias - z)
    p_full = _sigmoid(c.full_listen_bias + z)
    dur = self.track_duration[t]
    skip_c = np.minimum(0.5 * (c.skip_min_s + c.skip_max_s), dur) / dur
    p_complete = (1 - p_skip) * (p_full + (1 - p_full) * 0.75) + p_skip * skip_c
    p_like = (1 - p_skip) * _sigmoid(c.like_bias + c.like_slope * z)
    exposure = self.track_exposure[t] * p_complete
    hazard = self._hazard(listeners, rows, t, p_complete, listeners.fatigue[:, None])
    return {"utility": z, "p_skip": p_skip, "p_complete": p_complete, "p_like": p_like,
            "exposure": exposure, "conversion_hazard": hazard}

  def sample_context(self, n: int, rng: np.random.Generator,
                     day_start: int = DEFAULT_START_TS) -> Dict[str, np.ndarray]:
    """Draws a session context per listener as the logging world does.

    Args:
      n: number of contexts.
      rng: random generator.
      day_start: midnight (UTC epoch seconds) of the day; sets weekday/weekend.

    Returns:
      ``hour`` (0..23), ``weekday`` (0 = Monday), ``activity`` (index into
      ``SIM_ACTIVITIES``) and ``ts`` (session start, epoch seconds), arrays of length n.
    """
    if n < 0:
      raise ValueError(f"n must be >= 0, got {n}")
    hour_p, act_p, _, _ = self._context_tables()
    weekday = int(((day_start // DAY_S) + 3) % 7)
    hour = rng.choice(24, n, p=hour_p)
    act = (rng.random(n)[:, None] > np.cumsum(act_p[int(weekday >= 5), hour], 1)).sum(1)
    return {"hour": hour, "weekday": np.full(n, weekday),
            "activity": np.minimum(act, len(SIM_ACTIVITIES) - 1),
            "ts": day_start + hour * 3600 + rng.integers(0, 3600, n)}

  def return_probability(self, listeners: Listeners) -> np.ndarray:
    """Probability that each listener comes back the next day."""
    c = self.config
    paid = (listeners.segment == PAID) | listeners.converted
    return _sigmoid(listeners.activity + c.return_engagement_weight
                    * (listeners.engagement - c.engagement_ref) + c.paid_return_bonus * paid)

  def _drift_step(self, z, style, u_skip, run_style, run_len):
    """One slate position for all active sessions; updates the run in place."""
    c = self.config
    same = style == run_style
    boost = c.drift_gain * np.minimum(run_len, c.drift_cap) * same
    skip = u_skip < _sigmoid(c.skip_bias - z - boost)
    run_len[:] = np.where(skip, np.where(same, 0, run_len), np.where(same, run_len + 1, 1))
    run_style[:] = np.where(skip | same, run_style, style)
    return skip, boost

  def _outcomes(self, z_eff, skip, tracks, rng):
    """Completion, listened seconds and like of each play given the skip decision."""
    c = self.config
    n = len(z_eff)
    dur = self.track_duration[tracks].astype(np.float64)
    u = rng.random((3, n))
    listened_skip = np.minimum(c.skip_min_s + u[0] * (c.skip_max_s - c.skip_min_s), dur)
    full = u[1] < _sigmoid(c.full_listen_bias + z_eff)
    comp = np.where(skip, listened_skip / dur, np.where(full, 1.0, 0.5 + 0.5 * u[0]))
    like = ~skip & (u[2] < _sigmoid(c.like_bias + c.like_slope * z_eff))
    return comp, comp * dur, like

  def play_slate(self, listeners: Listeners, track_idx: np.ndarray, activity=None,
                 rng: Optional[np.random.Generator] = None) -> Dict[str, np.ndarray]:
    """Plays a ranked list top to bottom for every listener and updates their state.

    Drift builds up along the list, promo impressions add fatigue, and a conversion
    marks the listener converted (no later hazard). Use it for slate rollouts.

    Args:
      listeners: batch of n listeners; ``fatigue`` and ``converted`` are updated.
      track_idx: int array [n, k] of catalog rows, in play order.
      activity: per-listener activity (default "explore").
      rng: random generator.

    Returns:
      Dict of arrays [n, k]: ``completion``, ``skip``, ``like``, ``subscription``,
      ``exposure``.
    """
    t = np.asarray(track_idx)
    n = len(listeners)
    if t.ndim != 2 or t.shape[0] != n:
      raise ValueError(f"track_idx must be [n={n}, k], got shape {t.shape}")
    rng = rng if rng is not None else np.random.default_rng(self.seed)
    act = _activity_index("explore" if activity is None else activity, n)
    k = t.shape[1]
    out = {key: np.zeros((n, k)) for key in ("completion", "skip", "like", "subscription",
                                              "exposure")}
    run_style = np.full(n, -1, np.int64)
    run_len = np.zeros(n, np.int64)
    rows = np.arange(n)
    for j in range(k):
      tj = t[:, j]
      z = self._utility(listeners, rows, tj, act, listeners.fatigue)
      skip, boost = self._drift_step(z, self.track_style[tj], rng.random(n), run_style,
                                     run_len)
      comp, _, like = self._outcomes(z + boost, skip, tj, rng)
      h = self._hazard(listeners, rows, tj, comp, listeners.fatigue)
      conv = rng.random(n) < h
      listeners.converted |= conv
      listeners.fatigue += self.track_promo[tj]
      out["completion"][:, j] = comp
      out["skip"][:, j] = skip
      out["like"][:, j] = like
      out["subscription"][:, j] = conv
      out["exposure"][:, j] = self.track_exposure[tj] * comp
    return out

  def end_day(self, listeners: Listeners, mean_completion: np.ndarray,
              active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Closes a day: engagement, fatigue decay, tenure, segments; draws next-day return.

    Args:
      listeners: the batch (updated in place).
      mean_completion: each listener's mean completion today (ignored if inactive).
      active: bool, whether the listener played anything today.
      rng: random generator.

    Returns:
      Bool array: who comes back tomorrow.
    """
    c = self.config
    a = np.asarray(active, bool)
    m = np.nan_to_num(np.asarray(mean_completion, np.float64), nan=c.engagement_ref)
    s = c.engagement_smoothing
    listeners.engagement = np.where(
        a, (1 - s) * listeners.engagement + s * m, listeners.engagement).astype(np.float32)
    listeners.fatigue = (listeners.fatigue * c.fatigue_decay).astype(np.float32)
    listeners.tenure_days = listeners.tenure_days + 1
    seg = listeners.segment
    seg = np.where(listeners.converted, PAID, seg)
    seg = np.where((seg == feature_spec.SEGMENTS.index("new")) & (listeners.tenure_days >= 14),
                   feature_spec.SEGMENTS.index("free"), seg)
    seg = np.where((seg == feature_spec.SEGMENTS.index("free")) & (listeners.tenure_days >= 180),
                   feature_spec.SEGMENTS.index("free_veteran"), seg)
    expire = (seg == feature_spec.SEGMENTS.index("trial")) & (rng.random(len(seg))
                                                              < 1 / c.trial_days)
    listeners.segment = np.where(expire, feature_spec.SEGMENTS.index("free"), seg).astype(np.int8)
    return rng.random(len(listeners)) < self.return_probability(listeners)

  # ------------------------------------------------------------- event logging
  def _context_tables(self):
    """P(activity | hour, weekend) and the hour-of-day profile of session starts."""
    h = np.arange(24)
    bump = lambda centre, width: np.exp(-0.5 * ((h - centre) / width) ** 2)
    hour_w = 0.2 + bump(8, 1.2) + bump(13, 2.0) * 0.6 + bump(18, 1.5) + bump(21, 2.0)
    hour_w[:6] *= 0.25
    act = np.zeros((2, 24, len(SIM_ACTIVITIES)))
    for weekend in (0, 1):
      commute = (bump(8, 1.0) + bump(18, 1.0)) * (0.2 if weekend else 1.5)
      workout = 0.15 + 0.6 * (bump(7, 1.0) + bump(19, 1.5))
      focus = (0.1 + 1.2 * ((h >= 9) & (h <= 17))) * (0.3 if weekend else 1.0)
      explore = 0.4 + 0.8 * ((h >= 20) | (h <= 1)) + 0.5 * weekend
      act[weekend] = np.stack([commute, workout, focus, explore], axis=1)
    act /= act.sum(-1, keepdims=True)
    # P(surface | activity) for organic slots, ORGANIC_SURFACES order.
    surf = np.array([[0.25, 0.05, 0.15, 0.35, 0.15, 0.05],     # commute
                     [0.20, 0.05, 0.25, 0.15, 0.30, 0.05],     # workout
                     [0.25, 0.05, 0.30, 0.15, 0.20, 0.05],     # focus
                     [0.25, 0.35, 0.15, 0.05, 0.10, 0.10]])    # explore
    # P(candidate source | surface): familiar artist, session style, global popular.
    src = np.array([[0.35, 0.40, 0.25], [0.10, 0.45, 0.45], [0.20, 0.70, 0.10],
                    [0.80, 0.15, 0.05], [0.40, 0.50, 0.10], [0.30, 0.30, 0.40]])
    return hour_w / hour_w.sum(), act, surf, src

  def _simulate_day(self, L: Listeners, active: np.ndarray, day_start: int,
                    rng: np.random.Generator) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Sessions, impressions and outcomes of one day for the active listeners."""
    c = self.config
    hour_p, act_p, surf_p, src_p = self._context_tables()
    weekend = int(((day_start // DAY_S) + 3) % 7 >= 5)
    users = np.flatnonzero(active)
    n_sess = 1 + rng.poisson(c.extra_sessions_mean, len(users))
    s_user = np.repeat(users, n_sess)
    S = len(s_user)
    hour = rng.choice(24, S, p=hour_p)
    s_off = (hour * 3600 + rng.integers(0, 3600, S)).astype(np.int64)
    order = np.lexsort((s_off, s_user))
    s_user, hour, s_off = s_user[order], hour[order], s_off[order]
    s_act = (rng.random(S)[:, None] > np.cumsum(act_p[weekend, hour], axis=1)).sum(1)
    s_act = np.minimum(s_act, len(SIM_ACTIVITIES) - 1)
    s_surf = (rng.random(S)[:, None] > np.cumsum(surf_p[s_act], axis=1)).sum(1)
    s_surf = np.minimum(s_surf, len(ORGANIC_SURFACES) - 1)
    fav_pick = (rng.random(S)[:, None] > np.cumsum(L.favorite_weights[s_user], 1)).sum(1)
    fav_style = L.favorite_styles[s_user, np.minimum(fav_pick, 2)]
    glob_style = rng.choice(len(self._session_style_p), S, p=self._session_style_p)
    s_style = np.where(rng.random(S) < c.session_style_prob, fav_style, glob_style)
    s_len = np.clip(np.rint(np.exp(c.session_len_mu + c.session_len_sigma
                                   * rng.standard_normal(S))), 1, c.max_session_len)
    s_len = s_len.astype(np.int64)
    E = int(s_len.sum())
    s_begin = np.cumsum(s_len) - s_len
    e_sess = np.repeat(np.arange(S), s_len)
    e_pos = np.arange(E) - s_begin[e_sess]
    e_user = s_user[e_sess]
    e_act = s_act[e_sess]

    # Logging policy: promo slots, else a familiar artist, the session style or a
    # globally popular track.
    u = rng.random((4, E))
    promo_slot = u[0] < c.promo_slot_rate
    src_p = np.concatenate([src_p * (1 - c.explore_share),
                            np.full((len(src_p), 1), c.explore_share)], axis=1)
    src = (u[1][:, None] > np.cumsum(src_p[s_surf[e_sess]], 1)).sum(1)
    track = np.empty(E, np.int64)
    m = src == 0
    known = L.known_artists[e_user[m]]   # a known artist, weighted by popularity
    pick = np.argmax(self._log_artist_p[known] + rng.gumbel(size=known.shape), axis=1)
    art = known[np.arange(len(known)), pick]
    track[m] = self._artist_sampler.draw(art, u[2][m])
    m = src == 1
    track[m] = self._style_sampler.draw(s_style[e_sess[m]], u[2][m])
    m = src == 2
    track[m] = self._pop_sampler.draw(np.zeros(m.sum(), np.int64), u[2][m])
    m = src >= 3   # exploration: uniform over the organic catalog (full support)
    track[m] = self._organic_tracks[rng.integers(0, len(self._organic_tracks), m.sum())]
    track[promo_slot] = self._promo_tracks[
        rng.integers(0, len(self._promo_tracks), promo_slot.sum())]
    is_promo = self.track_promo[track]
    surface = np.where(promo_slot, len(ORGANIC_SURFACES), s_surf[e_sess])

    # Fatigue at each impression: carried-over fatigue + promos earlier today.
    promo_f = is_promo.astype(np.float64)
    cum = np.cumsum(promo_f) - promo_f
    u_first = np.searchsorted(e_user, users)       # events are grouped by listener
    before = cum - cum[u_first][np.searchsorted(users, e_user)]
    fatigue = L.fatigue[e_user] + before
    z = self._utility(L, e_user, track, e_act, fatigue)

    # Short-term drift: walk all sessions position by position (longest first, so the
    # active sessions are always a prefix).
    by_len = np.argsort(-s_len, kind="stable")
    begin_sorted = s_begin[by_len]
    len_sorted = s_len[by_len]
    run_style = np.full(S, -1, np.int64)
    run_len = np.zeros(S, np.int64)
    skip = np.zeros(E, bool)
    boost = np.zeros(E)
    style = self.track_style[track]
    u_skip = u[3]
    n_active = np.searchsorted(-len_sorted, -np.arange(int(s_len.max(initial=0))),
                               side="left")
    for p, na in enumerate(n_active):
      idx = begin_sorted[:na] + p
      sk, bo = self._drift_step(z[idx], style[idx], u_skip[idx], run_style[:na],
                                run_len[:na])
      skip[idx] = sk
      boost[idx] = bo
    z_eff = z + boost
    comp, listened, like = self._outcomes(z_eff, skip, track, rng)

    # Timestamps: plays follow each other (listened time + a pause); sessions of one
    # listener never overlap and start after the previous day's last session.
    pause = np.where(rng.random(E) < c.pause_prob, rng.exponential(c.pause_s_mean, E), 0.0)
    gap = np.floor(listened + rng.exponential(c.think_s_mean, E) + pause).astype(np.int64) + 1
    sess_cum = np.cumsum(gap) - gap
    e_off = sess_cum - sess_cum[s_begin][e_sess]
    s_dur = np.add.reduceat(gap, s_begin) if S else np.zeros(0, np.int64)
    planned = day_start + s_off
    planned = np.maximum(planned, L.last_end_ts[s_user] + c.min_session_gap_s)
    step = s_dur + c.min_session_gap_s
    acc = np.cumsum(step) - step
    first_s = np.searchsorted(s_user, users)
    acc = acc - acc[first_s][np.searchsorted(users, s_user)]
    rank = np.searchsorted(users, s_user).astype(np.int64)
    v = planned - acc
    offset = rank << 40
    start = np.maximum.accumulate(v - v.min(initial=0) + offset) - offset + v.min(
        initial=0) + acc
    ts = start[e_sess] + e_off
    last = np.concatenate([first_s[1:], [S]]) - 1 if S else first_s
    if S:
      L.last_end_ts[users] = start[last] + s_dur[last]

    # Conversion: the first impression whose hazard fires; later rows are "paid".
    h = self._hazard(L, e_user, track, comp, fatigue)
    fire = rng.random(E) < h
    conv_pos = np.full(len(L), E, np.int64)
    hits = np.flatnonzero(fire)
    if len(hits):
      first_users, first_idx = np.unique(e_user[hits], return_index=True)
      conv_pos[first_users] = hits[first_idx]
    subscription = np.zeros(E, bool)
    subscription[conv_pos[conv_pos < E]] = True
    L.converted[conv_pos < E] = True
    seg = np.where(np.arange(E) > conv_pos[e_user], PAID, L.segment[e_user])

    cnt = np.bincount(e_user, minlength=len(L))
    mean_comp = np.bincount(e_user, weights=comp, minlength=len(L)) / np.maximum(cnt, 1)
    L.fatigue = (L.fatigue + np.bincount(e_user, weights=promo_f, minlength=len(L))
                 ).astype(np.float32)
    cols = {
        "user": e_user, "session": e_sess, "ts": ts, "track": track,
        "segment": seg, "tenure": L.tenure_days[e_user] + (ts - day_start) / DAY_S,
        "activity": e_act, "surface": surface, "is_promo": is_promo,
        "completion": comp, "skip": skip, "like": like, "subscription": subscription,
        "exposure": self.track_exposure[track] * comp * is_promo,
        "session_len": s_len[e_sess], "gap": gap, "pos": e_pos, "listened": listened,
        "utility": z_eff,
    }
    return cols, mean_comp

  def simulate(self, listeners: Listeners, days: int, start_ts: int,
               rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Runs the logging policy for ``days`` days; returns raw event columns (numpy).

    Rows are sorted by (listener, ts). ``user`` and ``session`` are row numbers in
    ``listeners`` and a per-call session counter. Used by ``iter_events`` and by the
    calibration, which also reads ``gap`` (seconds from this play's start to the next
    one's), ``listened`` (seconds played), ``utility`` (z with drift), ``pos`` (position
    in the session), ``session_len`` and ``day``.

    Args:
      listeners: the batch; its state (engagement, fatigue, segment, …) is advanced.
      days: days to simulate.
      start_ts: epoch seconds of the first day's midnight (UTC).
      rng: random generator.

    Returns:
      Dict of numpy columns, one row per impression.
    """
    if days < 1:
      raise ValueError(f"days must be >= 1, got {days}")
    if start_ts <= 0:
      raise ValueError(f"start_ts must be positive epoch seconds, got {start_ts}")
    n = len(listeners)
    p0 = _sigmoid(listeners.activity + 0.5)
    active = rng.random(n) < p0
    parts, s_base = [], 0
    for d in range(days):
      cols, mean_comp = self._simulate_day(listeners, active, start_ts + d * DAY_S, rng)
      cols["session"] = cols["session"] + s_base
      s_base += int(cols["session"].max(initial=-1)) + 1
      cols["day"] = np.full(len(cols["ts"]), d, np.int32)
      parts.append(cols)
      active = self.end_day(listeners, mean_comp, active, rng)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((out["ts"], out["user"]))
    return {k: v[order] for k, v in out.items()}

  def iter_events(self, n_users: int, days: int, chunk_users: int = 2000,
                  start_ts: int = DEFAULT_START_TS) -> Iterator[pa.Table]:
    """Simulated impressions in ``features.events.EVENT_SCHEMA``, chunk by chunk.

    Args:
      n_users: listeners in total (``u0000000`` …).
      days: days simulated per listener.
      chunk_users: listeners per chunk; memory grows with chunk_users * days. The
        events depend on (seed, chunk_users): keep it fixed for reproducibility.
      start_ts: epoch seconds (UTC) of the first day's midnight.

    Yields:
      ``pyarrow.Table`` chunks sorted by (user_id, ts); each listener lies wholly
      inside one chunk.
    """
    if n_users < 1:
      raise ValueError(f"n_users must be >= 1, got {n_users}")
    if days < 1:
      raise ValueError(f"days must be >= 1, got {days}")
    if chunk_users < 1:
      raise ValueError(f"chunk_users must be >= 1, got {chunk_users}")
    if start_ts <= 0:
      raise ValueError(f"start_ts must be positive epoch seconds, got {start_ts}")
    seg_dict = pa.array(list(feature_spec.SEGMENTS), pa.string())
    act_dict = pa.array(list(SIM_ACTIVITIES), pa.string())
    surf_dict = pa.array(list(ORGANIC_SURFACES) + ["promo"], pa.string())
    for first in range(0, n_users, chunk_users):
      n = min(chunk_users, n_users - first)
      rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, first]))
      L = self.sample_users(n, rng, start_index=first)
      cols = self.simulate(L, days, start_ts, rng)
      yield self._to_table(L, cols, seg_dict, act_dict, surf_dict)

  def _to_table(self, L, cols, seg_dict, act_dict, surf_dict) -> pa.Table:
    E = len(cols["ts"])

    def dict_str(indices, dictionary):
      return pa.DictionaryArray.from_arrays(
          pa.array(np.asarray(indices, np.int32)), dictionary).dictionary_decode()

    # Session ids: "<user_id>-s<k>", k numbering the listener's sessions in the chunk.
    sess = cols["session"]
    new_sess = np.ones(E, bool)
    new_sess[1:] = sess[1:] != sess[:-1]
    s_rows = np.flatnonzero(new_sess)
    s_user = cols["user"][s_rows]
    s_rank = np.arange(len(s_rows)) - np.searchsorted(s_user, s_user)
    uid = L.user_index[s_user]
    s_names = pa.array([f"u{a:07d}-s{b}" for a, b in zip(uid.tolist(), s_rank.tolist())],
                       pa.string())
    s_index = np.cumsum(new_sess) - 1
    user_dict = pa.array([f"u{i:07d}" for i in L.user_index.tolist()], pa.string())
    f32 = lambda x: pa.array(np.asarray(x, np.float32))
    arrays = [
        dict_str(cols["user"], user_dict),
        dict_str(s_index, s_names),
        pa.array(np.asarray(cols["ts"], np.int64)),
        pa.array(np.ones(E, np.int64)),
        dict_str(cols["track"], self._track_dict),
        dict_str(self.track_artist[cols["track"]], self._artist_dict),
        dict_str(np.zeros(E, np.int32), pa.array(["sim"], pa.string())),
        dict_str(cols["segment"], seg_dict),
        f32(cols["tenure"]),
        dict_str(cols["activity"], act_dict),
        dict_str(cols["surface"], surf_dict),
        pa.array(np.asarray(cols["is_promo"], bool)),
        f32(cols["completion"]),
        f32(cols["skip"]),
        f32(cols["like"]),
        f32(cols["subscription"]),
        f32(cols["exposure"]),
    ]
    return pa.Table.from_arrays(arrays, schema=events.EVENT_SCHEMA)
