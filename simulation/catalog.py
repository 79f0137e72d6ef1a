"""The world's catalogue: tags, artists, tracks, popularity, promos and weighted draws.

This module owns the synthetic catalogue built from the calibrated parameters: the tag
vocabulary with real MTG-Jamendo names, frequencies and co-occurrence lift, tag and
track embeddings, artists with a size and a latent star power, tracks with tags, a
primary style, a duration and a long-tail popularity fitted to public play counts,
promo tracks with an exposure value, and the weighted samplers that draw a track of a
style, of an artist or of the whole catalogue (the logging policy) and the artists a
listener knows. Every draw comes from the one generator handed to :class:`Catalog`,
in a fixed order, so a seed gives the same catalogue.
"""

from typing import Sequence

import numpy as np
import pandas as pd
import pyarrow as pa

from features import events
from features import feature_spec
from simulation.world_config import WorldConfig

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


class GroupSampler:
  """Weighted sampling of one item inside a group (e.g. a track of a given style).

  Args:
    group: ``[n]`` group id of each item (0 .. n_groups - 1).
    weight: ``[n]`` non-negative sampling weight of each item.
    n_groups: number of groups.
  """

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
    """One item per entry of ``groups``, chosen by the uniforms ``u`` (same shape)."""
    target = self.lo[groups] + u * self.total[groups]
    pos = np.searchsorted(self.cum, target, side="right")
    pos = np.clip(pos, self.begin[groups], self.end[groups] - 1)
    return self.items[pos]


def _quantile_sample(quantiles: Sequence[float], u: np.ndarray) -> np.ndarray:
  """Inverse-CDF sampling from evenly spaced quantiles (linear interpolation)."""
  q = np.asarray(quantiles, dtype=np.float64)
  return np.interp(u, np.linspace(0.0, 1.0, len(q)), q)


class Catalog:
  """The seeded catalogue of a world.

  Public arrays are indexed by catalogue row (``track_*``, length ``n_tracks``) or by
  tag (``tag_*``); ``tracks`` is the catalogue as a frame. The samplers serve the
  logging policy (``pop_sampler``, ``style_sampler``, ``artist_sampler``, weight
  listens**``popularity_exponent``, organic tracks only) and the listeners' known
  artists (``known_sampler``, ``known_style_sampler``, weight sqrt of the artist's
  share of plays).

  Args:
    config: a resolved world config (no ``None`` field).
    params: the calibrated parameter dict.
    rng: the catalogue's generator; the draws below consume it in a fixed order.
  """

  def __init__(self, config: WorldConfig, params: dict, rng: np.random.Generator):
    self.config = config
    self._build_tags(params["tags"], rng)
    self._build_tracks(params["tags_per_track"], rng)
    self._build_popularity(params, rng)
    self._build_samplers()
    self._build_ids(rng)

  def _build_tags(self, tags: dict, rng: np.random.Generator) -> None:
    """Tag vocabulary, frequencies, co-occurrence lift and tag embeddings."""
    c = self.config
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
    self.tag_freq = freq[keep] / freq[keep].sum()
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
    # Random directions pulled towards co-occurring tags.
    e = rng.standard_normal((n_tags, c.latent_dim))
    w = np.maximum(lift, 0.0)
    w = w / np.maximum(w.sum(1, keepdims=True), 1e-9)
    e = e + 1.0 * (w @ e)
    self.tag_emb = e / np.linalg.norm(e, axis=1, keepdims=True)

  def _build_tracks(self, tags_per_track: Sequence[float], rng: np.random.Generator) -> None:
    """Artists (sizes, star power, primary style) and tracks (tags, style, embedding)."""
    c = self.config
    n_t, n_a, n_tags, d = c.n_tracks, c.n_artists, len(self.tag_names), c.latent_dim
    freq, lift = self.tag_freq, self.tag_lift
    size_w = rng.lognormal(0.0, c.artist_size_sigma, n_a)
    artist = np.concatenate([np.arange(n_a), rng.choice(n_a, n_t - n_a,
                                                        p=size_w / size_w.sum())])
    artist = rng.permutation(artist)
    self._star = rng.standard_normal(n_a)
    style_p = freq[self.style_tags] / freq[self.style_tags].sum()
    self.artist_style = self.style_tags[rng.choice(len(style_p), n_a, p=style_p)]

    # Primary style (mostly the artist's), further tags by co-occurrence.
    primary = self.artist_style[artist].copy()
    other = rng.random(n_t) < 0.15
    primary[other] = self.style_tags[rng.choice(len(style_p), other.sum(), p=style_p)]
    max_tags = feature_spec.MAX_TAGS
    tpt = np.asarray(tags_per_track, dtype=np.float64)
    tpt = tpt[:max_tags] / tpt[:max_tags].sum()
    n_tags_t = np.minimum(1 + rng.choice(len(tpt), n_t, p=tpt), n_tags)
    logits = np.log(freq)[None, :] + lift[primary] + rng.gumbel(size=(n_t, n_tags))
    logits[np.arange(n_t), primary] = -np.inf
    rest = np.argsort(-logits, axis=1)[:, :max_tags - 1]
    if rest.shape[1] < max_tags - 1:   # a vocabulary smaller than MAX_TAGS
      rest = np.pad(rest, ((0, 0), (0, max_tags - 1 - rest.shape[1])), constant_values=-1)
    tag_mat = np.concatenate([primary[:, None], rest], axis=1)
    tag_mat[np.arange(max_tags)[None, :] >= n_tags_t[:, None]] = -1
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

  def _build_popularity(self, params: dict, rng: np.random.Generator) -> None:
    """Popularity, durations, promo flags and exposure values.

    Popularity is a latent (artist star power + track noise) mapped through the fitted
    quantile function of log1p(listens), so the marginal matches the real data.
    """
    c = self.config
    n_t = c.n_tracks
    r = c.artist_popularity_share
    latent = np.sqrt(r) * self._star[self.track_artist] + np.sqrt(1 - r) * rng.standard_normal(
        n_t)
    rank_u = (np.argsort(np.argsort(latent)) + 0.5) / n_t
    n_promo = int(round(c.promo_fraction * n_t))
    promo = np.zeros(n_t, dtype=bool)
    if n_promo:
      # Promos are mostly new releases: drawn from the less popular 60%.
      cand = np.flatnonzero(rank_u < 0.6)
      promo[rng.choice(cand, min(n_promo, len(cand)), replace=False)] = True
    self.track_pop = _quantile_sample(params["popularity_quantiles"], rank_u).astype(np.float32)
    self.track_popz = ((self.track_pop - self.track_pop.mean())
                       / max(self.track_pop.std(), 1e-6)).astype(np.float32)
    self.track_duration = np.exp(_quantile_sample(
        params["duration_log_quantiles"], rng.random(n_t))).astype(np.float32)
    self.track_promo = promo
    self.track_exposure = np.where(
        promo, rng.lognormal(0.0, c.exposure_sigma, n_t), 0.0).astype(np.float32)

  def _build_samplers(self) -> None:
    """Logging-policy samplers (global, per style, per artist) and known-artist ones."""
    c = self.config
    n_t, n_a, n_tags = c.n_tracks, c.n_artists, len(self.tag_names)
    promo, artist = self.track_promo, self.track_artist
    wpop = np.exp(c.popularity_exponent * (self.track_pop - self.track_pop.max()))
    organic = (~promo).astype(np.float64)
    self.pop_sampler = GroupSampler(np.zeros(n_t, np.int64), wpop * organic + 1e-12, 1)
    self.style_sampler = GroupSampler(self.track_style, wpop * organic + 1e-12, n_tags)
    self.artist_sampler = GroupSampler(artist, wpop * organic + 1e-12, n_a)
    self.organic_tracks = np.flatnonzero(~promo) if (~promo).any() else np.arange(n_t)
    promo_idx = np.flatnonzero(promo)
    self.promo_tracks = promo_idx if len(promo_idx) else np.flatnonzero(organic)
    style_counts = np.bincount(self.track_style, minlength=n_tags)
    self.session_style_p = np.where(style_counts > 0, self.tag_freq, 0.0)
    self.session_style_p /= self.session_style_p.sum()
    artist_w = np.bincount(artist, weights=wpop, minlength=n_a)
    artist_p = artist_w / artist_w.sum()
    self.log_artist_p = np.log(artist_p + 1e-300)
    self.known_sampler = GroupSampler(np.zeros(n_a, np.int64), np.sqrt(artist_p), 1)
    self.known_style_sampler = GroupSampler(self.artist_style, np.sqrt(artist_p), n_tags)

  def _build_ids(self, rng: np.random.Generator) -> None:
    """Track/artist ids, titles and the catalogue frame."""
    n_t, n_a = self.config.n_tracks, self.config.n_artists
    self.track_ids = np.array([f"t{i:06d}" for i in range(n_t)], dtype=object)
    self.artist_ids = np.array([f"a{i:05d}" for i in range(n_a)], dtype=object)
    titles = [f"{_TITLE_A[a]} {_TITLE_B[b]}" for a, b in zip(
        rng.integers(0, len(_TITLE_A), n_t), rng.integers(0, len(_TITLE_B), n_t))]
    tag_names = np.array(self.tag_names, dtype=object)
    self.tracks = pd.DataFrame({
        "track_id": self.track_ids,
        "artist_id": self.artist_ids[self.track_artist],
        "tags": [list(tag_names[row[row >= 0]]) for row in self.track_tags],
        "duration_s": self.track_duration,
        "popularity": self.track_pop,
        "title": titles,
        "is_promo": self.track_promo,
        "exposure_value": self.track_exposure,
    })
    # Arrow dictionaries of the ids, shared by every event chunk.
    self.track_id_dict = pa.array(self.track_ids, pa.string())
    self.artist_id_dict = pa.array(self.artist_ids, pa.string())

  def tracks_table(self) -> pa.Table:
    """The catalog in exactly ``features.events.TRACK_SCHEMA``."""
    return pa.Table.from_pandas(self.tracks[list(events.TRACK_SCHEMA.names)],
                                schema=events.TRACK_SCHEMA, preserve_index=False)
