"""The listener world's parameters: ``WorldConfig``, the calibrated JSON and constants.

This module owns everything the rest of the world is parameterized by: the frozen
``WorldConfig`` (catalog size, response-model weights, session and conversion
parameters), loading ``simulation/calibrated_params.json`` and filling the fields left
``None`` from it (:func:`resolve`), the simulation clock (``DEFAULT_START_TS``,
``DAY_S``) and the vocabularies the simulator draws from (``SIM_ACTIVITIES``,
``ORGANIC_SURFACES``). The meaning of each weight is the response model in
``simulation.response_model``.
"""

import dataclasses
import json
import os
from typing import Optional, Tuple

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
# WorldConfig fields whose None default means "the calibrated value".
CALIBRATED_FIELDS = ("skip_bias", "full_listen_bias", "like_bias", "very_brief_bias",
                     "momentum_gain", "skip_through_share", "popularity_exponent",
                     "session_len_mu", "session_len_sigma", "think_s_mean", "pause_prob",
                     "pause_s_mean")
# Lower bounds of the integer fields.
_MINIMUMS = (("n_tracks", 1), ("n_tags", 0), ("latent_dim", 2), ("known_artists", 1),
             ("max_session_len", 1), ("drift_cap", 0), ("min_session_gap_s", 0))
_UNIT_INTERVAL = ("promo_fraction", "promo_slot_rate", "explore_share", "session_style_prob",
                  "artist_popularity_share", "fatigue_decay", "engagement_smoothing",
                  "skip_through_share", "lean_back_share", "mode_switch", "momentum_decay",
                  "skip_through_quit")
_PER_ACTIVITY = ("familiar_weight", "novel_weight", "energy_weight", "calm_weight",
                 "activity_skip_bias")
# Per-entry tuples of the skip model and their lengths (modes; surfaces with promo).
_SKIP_TUPLES = (("mode_bias", 3), ("very_brief_mode", 3),
                ("surface_skip_bias", len(ORGANIC_SURFACES) + 1),
                ("shuffle_prob", len(ORGANIC_SURFACES)))


def load_params(path: Optional[str] = None) -> dict:
  """Loads the calibrated parameters (derived statistics only) from JSON.

  Args:
    path: JSON file; default ``simulation/calibrated_params.json``.

  Returns:
    The parameter dict written by ``simulation.calibration``.
  """
  path = path or PARAMS_PATH
  if not os.path.exists(path):
    raise ValueError(f"calibrated parameters not found at {path!r}")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def check_segment_shares(mix, what: str = "segment_mix") -> None:
  """Raises unless ``mix`` is one non-negative share per segment, summing to 1."""
  if len(mix) != len(feature_spec.SEGMENTS) or min(mix) < 0 or abs(sum(mix) - 1.0) > 1e-6:
    raise ValueError(f"{what} must be {len(feature_spec.SEGMENTS)} non-negative shares "
                     f"summing to 1, got {mix}")


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
    skip_bias, full_listen_bias, like_bias, like_slope: outcome links (see
      ``simulation.response_model``).
    very_brief_bias: link of a very brief skip (first 5 s) among early skips.
    momentum_gain, momentum_decay: short-term skip momentum: a skip adds
      ``momentum_gain`` to the next play's skip logit, ``momentum_decay`` times that to
      the one after, and so on until the next skip (``simulation.skip_dynamics``).
    skip_through_share, lean_back_share: share of sessions starting in the
      skip-through mode, and lean-back's share of the others (the rest browse).
    mode_bias: skip-logit offset of each mode (lean-back, browsing, skip-through).
    very_brief_mode: very-brief logit offset of each mode.
    mode_switch: per-play chance that a session's mode is redrawn.
    skip_through_quit: chance that a skip-through session ends after a skipped play.
    position_gain: skip-logit offset reached after a few plays of a session.
    surface_skip_bias: skip-logit offset of the session's surface, in
      ``ORGANIC_SURFACES`` order then promo.
    activity_skip_bias: skip-logit offset per activity.
    shuffle_prob: chance that a session on each organic surface plays in shuffle.
    shuffle_skip_bias: skip-logit offset of shuffle play.
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
  very_brief_bias: Optional[float] = None
  momentum_gain: Optional[float] = None
  momentum_decay: float = 0.3
  skip_through_share: Optional[float] = None
  lean_back_share: float = 0.6
  mode_bias: Tuple[float, ...] = (-0.6, 0.0, 3.0)
  very_brief_mode: Tuple[float, ...] = (0.0, 0.0, 1.5)
  mode_switch: float = 0.04
  skip_through_quit: float = 0.15
  position_gain: float = 0.1
  surface_skip_bias: Tuple[float, ...] = (0.0, 0.2, 0.3, 0.25, 0.15, -0.4, 0.0)
  activity_skip_bias: Tuple[float, ...] = (0.0, 0.0, -0.3, 0.2)
  shuffle_prob: Tuple[float, ...] = (0.1, 0.1, 0.0, 0.6, 0.5, 0.1)
  shuffle_skip_bias: float = 0.5
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
    for name, low in _MINIMUMS:
      if getattr(self, name) < low:
        raise ValueError(f"{name} must be >= {low}, got {getattr(self, name)}")
    if not 0 <= self.n_artists <= self.n_tracks:
      raise ValueError(f"n_artists must be in [0, n_tracks={self.n_tracks}], "
                       f"got {self.n_artists}")
    for name in _UNIT_INTERVAL:
      if getattr(self, name) is not None and not 0.0 <= getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
    check_segment_shares(self.segment_mix)
    if len(self.base_hazard) != len(feature_spec.SEGMENTS) or min(self.base_hazard) < 0:
      raise ValueError(f"base_hazard must be {len(feature_spec.SEGMENTS)} values >= 0, "
                       f"got {self.base_hazard}")
    for name in _PER_ACTIVITY:
      if len(getattr(self, name)) != len(SIM_ACTIVITIES):
        raise ValueError(f"{name} needs one value per activity {SIM_ACTIVITIES}, "
                         f"got {getattr(self, name)}")
    for name, n in _SKIP_TUPLES:
      if len(getattr(self, name)) != n:
        raise ValueError(f"{name} needs {n} values, got {getattr(self, name)}")
    if min(self.shuffle_prob) < 0 or max(self.shuffle_prob) > 1:
      raise ValueError(f"shuffle_prob must be in [0, 1], got {self.shuffle_prob}")


def resolve(config: WorldConfig, params: dict) -> WorldConfig:
  """``config`` with every ``None`` field taken from the calibrated ``params``.

  Args:
    config: the requested world.
    params: the calibrated parameter dict (``load_params``).

  Returns:
    A config with no ``None`` field and ``n_artists`` set.
  """
  behaviour = params.get("behaviour", {})
  resolved = {}
  for field in CALIBRATED_FIELDS:
    if getattr(config, field) is None:
      if field not in behaviour:
        raise ValueError(f"{field} is neither set in WorldConfig nor in the params")
      resolved[field] = float(behaviour[field])
  if not config.n_artists:
    resolved["n_artists"] = max(1, config.n_tracks // 5)
  return dataclasses.replace(config, **resolved)
