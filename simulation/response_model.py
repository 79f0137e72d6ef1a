"""The response model: how a listener responds to a track (the world's ground truth).

This module owns the public response functions (see ``docs/data.md``). For listener
u, track t, activity a::

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
unskipped tracks inside a session (short-term drift). :class:`ResponseModel` scores a
list in expectation (``expected_response``) or plays it in order (``play_slate``).
"""

from typing import Dict, Optional

import numpy as np

from simulation.catalog import Catalog
from simulation.listeners import Listeners
from simulation.world_config import PAID, SIM_ACTIVITIES, WorldConfig

SLATE_OUTCOMES = ("completion", "skip", "like", "subscription", "exposure")


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def activity_index(activity, n: int) -> np.ndarray:
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


def _check_slate(track_idx, n: int) -> np.ndarray:
  t = np.asarray(track_idx)
  if t.ndim != 2 or t.shape[0] != n:
    raise ValueError(f"track_idx must be [n={n}, k], got shape {t.shape}")
  return t


class ResponseModel:
  """The ground-truth response of listeners to tracks of one catalogue.

  Args:
    config: the resolved world config (the weights of the module docstring).
    catalog: the catalogue the tracks come from.
  """

  def __init__(self, config: WorldConfig, catalog: Catalog):
    self.config = config
    self.catalog = catalog

  def utility(self, listeners: Listeners, rows: np.ndarray, tracks: np.ndarray,
              activity: np.ndarray, fatigue: np.ndarray) -> np.ndarray:
    """Utility ``z`` without drift; ``rows``, ``tracks``, ``activity``, ``fatigue``
    broadcast against each other."""
    c, cat = self.config, self.catalog
    aff = (listeners.taste[rows] * cat.track_emb[tracks]).sum(-1)
    fam = self.is_familiar(listeners, rows, tracks)
    fw = np.asarray(c.familiar_weight)[activity]
    nw = np.asarray(c.novel_weight)[activity]
    z = (c.utility_bias + listeners.strength[rows] * aff * c.taste_scale
         + c.pop_weight * listeners.mainstream[rows] * cat.track_popz[tracks]
         + np.where(fam, fw, nw)
         + cat.track_energy[tracks] * np.asarray(c.energy_weight)[activity]
         + cat.track_calm[tracks] * np.asarray(c.calm_weight)[activity]
         - cat.track_promo[tracks] * (c.promo_penalty + c.promo_fatigue_skip * fatigue))
    return z.astype(np.float64)

  def is_familiar(self, listeners: Listeners, rows: np.ndarray,
                  tracks: np.ndarray) -> np.ndarray:
    """Whether each track's artist is known to the listener in ``rows`` (broadcasting)."""
    artist = self.catalog.track_artist[tracks]
    return (listeners.known_artists[rows] == artist[..., None]).any(-1)

  def placement(self, listeners: Listeners, rows: np.ndarray,
                tracks: np.ndarray) -> np.ndarray:
    """Promo placement quality in (0, 1): how well the track fits the listener."""
    aff = (listeners.taste[rows] * self.catalog.track_emb[tracks]).sum(-1)
    return sigmoid(self.config.placement_slope * aff)

  def hazard(self, listeners: Listeners, rows: np.ndarray, tracks: np.ndarray,
             completion: np.ndarray, fatigue: np.ndarray) -> np.ndarray:
    """Per-impression conversion hazard (0 for converted listeners, capped at 0.5)."""
    c = self.config
    base = np.asarray(c.base_hazard)[listeners.segment[rows]]
    promo = self.catalog.track_promo[tracks]
    q = self.placement(listeners, rows, tracks)
    h = base * np.exp(c.engagement_weight * (listeners.engagement[rows] - c.engagement_ref)
                      + c.promo_conversion_weight * q * completion * promo
                      - c.fatigue_conversion_weight * fatigue)
    return np.where(listeners.converted[rows], 0.0, np.minimum(h, 0.5))

  def return_probability(self, listeners: Listeners) -> np.ndarray:
    """Probability that each listener comes back the next day."""
    c = self.config
    paid = (listeners.segment == PAID) | listeners.converted
    return sigmoid(listeners.activity + c.return_engagement_weight
                   * (listeners.engagement - c.engagement_ref) + c.paid_return_bonus * paid)

  def drift_step(self, z, style, u_skip, run_style, run_len):
    """One slate position for all active sessions; updates the run in place.

    Returns:
      ``(skip, boost)``: the skip decision and the drift added to the utility.
    """
    c = self.config
    same = style == run_style
    boost = c.drift_gain * np.minimum(run_len, c.drift_cap) * same
    skip = u_skip < sigmoid(c.skip_bias - z - boost)
    run_len[:] = np.where(skip, np.where(same, 0, run_len), np.where(same, run_len + 1, 1))
    run_style[:] = np.where(skip | same, run_style, style)
    return skip, boost

  def outcomes(self, z_eff, skip, tracks, rng):
    """Completion, listened seconds and like of each play given the skip decision."""
    c = self.config
    n = len(z_eff)
    dur = self.catalog.track_duration[tracks].astype(np.float64)
    u = rng.random((3, n))
    listened_skip = np.minimum(c.skip_min_s + u[0] * (c.skip_max_s - c.skip_min_s), dur)
    full = u[1] < sigmoid(c.full_listen_bias + z_eff)
    comp = np.where(skip, listened_skip / dur, np.where(full, 1.0, 0.5 + 0.5 * u[0]))
    like = ~skip & (u[2] < sigmoid(c.like_bias + c.like_slope * z_eff))
    return comp, comp * dur, like

  def expected_response(self, listeners: Listeners, track_idx: np.ndarray,
                        activity=None, run_style: Optional[np.ndarray] = None,
                        run_len: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
    """Ground-truth expected response of each listener to each track of a list.

    Args:
      listeners: batch of n listeners (their current state: fatigue, engagement, …).
      track_idx: int array [n, k] of catalog rows (``catalog.tracks`` index).
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
    n = len(listeners)
    t = _check_slate(track_idx, n)
    c, cat = self.config, self.catalog
    if t.size and (t.min() < 0 or t.max() >= c.n_tracks):
      raise ValueError(f"track_idx out of range [0, {c.n_tracks})")
    act = activity_index("explore" if activity is None else activity, n)
    rows = np.arange(n)[:, None]
    z = self.utility(listeners, rows, t, act[:, None], listeners.fatigue[:, None])
    if run_style is not None and run_len is not None:
      same = cat.track_style[t] == np.asarray(run_style)[:, None]
      z = z + c.drift_gain * np.minimum(np.asarray(run_len)[:, None], c.drift_cap) * same
    p_skip = sigmoid(c.skip_bias - z)
    p_full = sigmoid(c.full_listen_bias + z)
    dur = cat.track_duration[t]
    skip_c = np.minimum(0.5 * (c.skip_min_s + c.skip_max_s), dur) / dur
    p_complete = (1 - p_skip) * (p_full + (1 - p_full) * 0.75) + p_skip * skip_c
    p_like = (1 - p_skip) * sigmoid(c.like_bias + c.like_slope * z)
    exposure = cat.track_exposure[t] * p_complete
    hazard = self.hazard(listeners, rows, t, p_complete, listeners.fatigue[:, None])
    return {"utility": z, "p_skip": p_skip, "p_complete": p_complete, "p_like": p_like,
            "exposure": exposure, "conversion_hazard": hazard}

  def play_slate(self, listeners: Listeners, track_idx: np.ndarray, activity,
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Plays a ranked list top to bottom for every listener and updates their state.

    Drift builds up along the list, promo impressions add fatigue, and a conversion
    marks the listener converted (no later hazard).

    Args:
      listeners: batch of n listeners; ``fatigue`` and ``converted`` are updated.
      track_idx: int array [n, k] of catalog rows, in play order.
      activity: per-listener activity (None: "explore").
      rng: random generator.

    Returns:
      Dict of arrays [n, k]: ``completion``, ``skip``, ``like``, ``subscription``,
      ``exposure``.
    """
    n = len(listeners)
    t = _check_slate(track_idx, n)
    cat = self.catalog
    act = activity_index("explore" if activity is None else activity, n)
    k = t.shape[1]
    out = {key: np.zeros((n, k)) for key in SLATE_OUTCOMES}
    run_style = np.full(n, -1, np.int64)
    run_len = np.zeros(n, np.int64)
    rows = np.arange(n)
    for j in range(k):
      tj = t[:, j]
      z = self.utility(listeners, rows, tj, act, listeners.fatigue)
      skip, boost = self.drift_step(z, cat.track_style[tj], rng.random(n), run_style,
                                    run_len)
      comp, _, like = self.outcomes(z + boost, skip, tj, rng)
      h = self.hazard(listeners, rows, tj, comp, listeners.fatigue)
      conv = rng.random(n) < h
      listeners.converted |= conv
      listeners.fatigue += cat.track_promo[tj]
      out["completion"][:, j] = comp
      out["skip"][:, j] = skip
      out["like"][:, j] = like
      out["subscription"][:, j] = conv
      out["exposure"][:, j] = cat.track_exposure[tj] * comp
    return out
