"""The world's listeners: who they are, what they like, and how their state ages.

This module owns the listener population: the ``Listeners`` batch (latent taste over
tags, taste strength, mainstreamness, favourite styles, known artists, segment,
tenure, engagement, promo fatigue, return activity, conversion state), drawing fresh
listeners from a catalogue (:func:`sample_listeners`), and the day-to-day ageing of
that state (:func:`advance_day`: engagement moving average, fatigue decay, tenure and
the segment transitions new -> free -> free_veteran, trial expiry and conversion to
paid). How a listener responds to a track is ``simulation.response_model``.
"""

import dataclasses
from typing import Optional, Sequence

import numpy as np

from features import feature_spec
from simulation.catalog import Catalog
from simulation.world_config import PAID, WorldConfig, check_segment_shares

_NEW, _FREE, _VETERAN, _TRIAL = (feature_spec.SEGMENTS.index(s)
                                 for s in ("new", "free", "free_veteran", "trial"))
# Tenure (days) of a fresh listener is uniform on [low, high) of its segment, in
# feature_spec.SEGMENTS order.
_TENURE_LOW = np.array([0, 14, 180, 0, 30], float)
_TENURE_HIGH = np.array([14, 180, 1500, 60, 2000], float)
# Days after sign-up at which a new listener becomes free, and free a veteran.
NEW_DAYS = 14
VETERAN_DAYS = 180


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


def sample_listeners(config: WorldConfig, catalog: Catalog, n: int, rng: np.random.Generator,
                     start_index: int = 0,
                     segment_mix: Optional[Sequence[float]] = None) -> Listeners:
  """Draws ``n`` fresh listeners.

  Args:
    config: the resolved world config.
    catalog: the world's catalogue (tag embeddings, style shares, artist samplers).
    n: how many.
    rng: random generator (the caller owns the stream).
    start_index: global number of the first listener (for ``user_id``).
    segment_mix: overrides ``config.segment_mix``.

  Returns:
    A ``Listeners`` batch.
  """
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  c = config
  mix = np.asarray(segment_mix if segment_mix is not None else c.segment_mix, float)
  check_segment_shares(mix)
  d = c.latent_dim
  sp = catalog.session_style_p ** 0.7
  sp = sp / sp.sum()
  g = np.log(sp + 1e-300)[None, :] + rng.gumbel(size=(n, len(sp)))
  fav = np.argsort(-g, axis=1)[:, :3]
  fw = rng.dirichlet(np.ones(3) * 1.5, n)
  taste = np.einsum("nk,nkd->nd", fw, catalog.tag_emb[fav]) + 0.4 * rng.standard_normal(
      (n, d)) / np.sqrt(d)
  taste /= np.linalg.norm(taste, axis=1, keepdims=True)
  # Known artists: half from the listener's favourite styles, half from the whole
  # catalog, both weighted by sqrt(artist popularity) (repeats are allowed).
  k = c.known_artists
  n_style = k // 2
  pick = (rng.random((n, n_style))[..., None]
          > np.cumsum(fw, axis=1)[:, None, :]).sum(-1)
  styles = np.take_along_axis(fav, np.minimum(pick, 2), axis=1)
  known = np.concatenate([
      catalog.known_style_sampler.draw(styles.reshape(-1), rng.random(n * n_style)
                                       ).reshape(n, n_style),
      catalog.known_sampler.draw(np.zeros(n * (k - n_style), np.int64),
                                 rng.random(n * (k - n_style))).reshape(n, k - n_style)],
      axis=1)
  segment = rng.choice(len(feature_spec.SEGMENTS), n, p=mix / mix.sum()).astype(np.int8)
  lo = _TENURE_LOW[segment]
  hi = _TENURE_HIGH[segment]
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


def advance_day(config: WorldConfig, listeners: Listeners, mean_completion: np.ndarray,
                active: np.ndarray, rng: np.random.Generator) -> None:
  """Ages the listeners by one day: engagement, fatigue decay, tenure, segments.

  Args:
    config: the resolved world config.
    listeners: the batch (updated in place).
    mean_completion: each listener's mean completion today (ignored if inactive).
    active: bool, whether the listener played anything today.
    rng: random generator (trial expiry).
  """
  c = config
  a = np.asarray(active, bool)
  m = np.nan_to_num(np.asarray(mean_completion, np.float64), nan=c.engagement_ref)
  s = c.engagement_smoothing
  listeners.engagement = np.where(
      a, (1 - s) * listeners.engagement + s * m, listeners.engagement).astype(np.float32)
  listeners.fatigue = (listeners.fatigue * c.fatigue_decay).astype(np.float32)
  listeners.tenure_days = listeners.tenure_days + 1
  seg = listeners.segment
  seg = np.where(listeners.converted, PAID, seg)
  seg = np.where((seg == _NEW) & (listeners.tenure_days >= NEW_DAYS), _FREE, seg)
  seg = np.where((seg == _FREE) & (listeners.tenure_days >= VETERAN_DAYS), _VETERAN, seg)
  expire = (seg == _TRIAL) & (rng.random(len(seg)) < 1 / c.trial_days)
  listeners.segment = np.where(expire, _FREE, seg).astype(np.int8)
