"""The response model: how a listener responds to a track (the world's ground truth).

This module owns the public response functions (see ``docs/data.md``). For listener
u, track t, activity a::

    z = bias + strength_u * cos(taste_u, emb_t) * taste_scale
        + pop_weight * mainstream_u * popz_t
        + familiar_t(u) * familiar_weight[a] + (1 - familiar_t(u)) * novel_weight[a]
        + energy_t * energy_weight[a] + calm_t * calm_weight[a]
        - promo_t * (promo_penalty + promo_fatigue_skip * fatigue_u)
        + drift_gain * min(run_len, drift_cap) * [style_t == run_style]
    P(early skip), skip profile, completion: ``simulation.skip_dynamics`` (session
        mode, skip momentum, position, surface, activity, shuffle; z drives them all)
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
list in expectation (``expected_response``) or plays it in order (``play_slate``); a
ranked list is played as a session on the recommendation surface
(``RECOMMENDATION_SURFACE``, shuffle off).
"""

from typing import Dict, Optional

import numpy as np

from simulation import skip_dynamics
from simulation.catalog import Catalog
from simulation.listeners import Listeners
from simulation.skip_dynamics import sigmoid
from simulation.world_config import ORGANIC_SURFACES, PAID, SIM_ACTIVITIES, WorldConfig

SLATE_OUTCOMES = ("completion", "skip", "like", "subscription", "exposure", "skip_profile",
                  "played")
# The surface a ranked list is played on in rollouts and in expected responses.
RECOMMENDATION_SURFACE = ORGANIC_SURFACES.index("home")


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

  def outcomes(self, z_eff, skip, mode, tracks, rng):
    """Completion, listened seconds, like and skip profile of each play given its early
    skip and mode."""
    c = self.config
    n = len(z_eff)
    dur = self.catalog.track_duration[tracks].astype(np.float64)
    u = rng.random((3, n))
    profile = skip_dynamics.draw_profiles(c, z_eff, skip, mode, u[1])
    comp = skip_dynamics.listened_fraction(profile, dur, u[0])
    like = ~skip & (u[2] < sigmoid(c.like_bias + c.like_slope * z_eff))
    return comp, comp * dur, like, profile

  def slate_offset(self, activity: np.ndarray) -> np.ndarray:
    """Context offset of a ranked list on the recommendation surface, shuffle off."""
    return skip_dynamics.context_offset(self.config, RECOMMENDATION_SURFACE, activity,
                                        False)

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
      evaluated at the expected completion). Each impression is scored on its own as
      the first play of a session on the recommendation surface, averaged over the
      session modes, at the listener's current state (no drift, momentum or fatigue
      build-up along the list; ``play_slate`` plays a list in order).
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
    dur = cat.track_duration[t]
    offset = self.slate_offset(act)[:, None]
    p_skip = np.zeros(z.shape)
    p_complete = np.zeros(z.shape)
    p_like = np.zeros(z.shape)
    like = sigmoid(c.like_bias + c.like_slope * z)
    for m, share in enumerate(skip_dynamics.mode_shares(c)):
      ps = sigmoid(c.skip_bias + c.mode_bias[m] - z + offset)
      p_skip += share * ps
      p_complete += share * skip_dynamics.expected_completion(c, z, m, dur, ps)
      p_like += share * (1 - ps) * like
    exposure = cat.track_exposure[t] * p_complete
    hazard = self.hazard(listeners, rows, t, p_complete, listeners.fatigue[:, None])
    return {"utility": z, "p_skip": p_skip, "p_complete": p_complete, "p_like": p_like,
            "exposure": exposure, "conversion_hazard": hazard}

  def play_slate(self, listeners: Listeners, track_idx: np.ndarray, activity,
                 rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Plays a ranked list top to bottom for every listener and updates their state.

    The list is one session: its mode is drawn at the start and may switch, skip
    momentum and drift build up along the list, promo impressions add fatigue, a
    conversion marks the listener converted (no later hazard), and a listener who
    gives up in the skip-through mode plays nothing further down the list.

    Args:
      listeners: batch of n listeners; ``fatigue`` and ``converted`` are updated.
      track_idx: int array [n, k] of catalog rows, in play order.
      activity: per-listener activity (None: "explore").
      rng: random generator.

    Returns:
      Dict of arrays [n, k]: ``completion``, ``skip``, ``like``, ``subscription``,
      ``exposure``, ``skip_profile`` (index into ``skip_dynamics.SKIP_PROFILES``, -1
      where not played) and ``played`` (0 after the listener gave up; every outcome
      is 0 there).
    """
    n = len(listeners)
    t = _check_slate(track_idx, n)
    c, cat = self.config, self.catalog
    act = activity_index("explore" if activity is None else activity, n)
    k = t.shape[1]
    out = {key: np.zeros((n, k)) for key in SLATE_OUTCOMES}
    state = skip_dynamics.SessionState.start(c, self.slate_offset(act), rng.random(n))
    rows = np.arange(n)
    for j in range(k):
      tj = t[:, j]
      z = self.utility(listeners, rows, tj, act, listeners.fatigue)
      skip, boost, mode, _, played = skip_dynamics.step(c, z, cat.track_style[tj],
                                                        rng.random((4, n)), state, j)
      comp, _, like, profile = self.outcomes(z + boost, skip, mode, tj, rng)
      comp, skip, like = comp * played, skip & played, like & played
      h = self.hazard(listeners, rows, tj, comp, listeners.fatigue)
      conv = played & (rng.random(n) < h)
      listeners.converted |= conv
      listeners.fatigue += cat.track_promo[tj] & played
      out["completion"][:, j] = comp
      out["skip"][:, j] = skip
      out["like"][:, j] = like
      out["subscription"][:, j] = conv
      out["exposure"][:, j] = cat.track_exposure[tj] * comp
      out["skip_profile"][:, j] = np.where(played, profile, -1)
      out["played"][:, j] = played
    return out
