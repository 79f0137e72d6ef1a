"""What a weight bandit sees of a listener: segment one-hots and the listener's state.

This module owns the bandits' context vectors. :class:`SegmentContext` is the segment
one-hot plus the activity one-hot (a weight row per segment and context).
:class:`StateContext` appends the listener's state as a served system would know it
from its own logs: the recent completion and skip rates, the skip rate on promos (a
proxy for promo tolerance), plays in the current session so far, the length of the
last session, hours since the last play, how much history there is, and tenure. Every
state feature comes from the logged plays (``ListenerState.history``), the catalogue's
promo flags and the request's segment and tenure, never from the world's hidden
parameters (taste, fatigue, skip profile). State features are standardised with the
running mean and standard deviation of every context the bandit has seen so far.
"""

import dataclasses

import numpy as np

from features import feature_spec
from simulation import policies

STATE_FEATURES = ("recent_completion", "recent_skip", "promo_skip", "session_plays",
                  "last_session_plays", "log_hours_since_last_play", "log_history_plays",
                  "log_tenure_days")
CONTEXTS = ("segment", "state")


@dataclasses.dataclass(frozen=True)
class StateConfig:
  """How the listener-state features read the logged plays.

  Attributes:
    recent: plays (most recent first) behind the recent completion and skip rates.
    prior_plays: pseudo-plays at ``prior_rate`` every rate is shrunk towards, so a
      listener with one play is not at 0 or 1.
    prior_rate: the rate a listener without plays gets.
    session_gap_s: a gap longer than this between two plays starts a new session.
  """
  recent: int = 20
  prior_plays: float = 1.0
  prior_rate: float = 0.5
  session_gap_s: int = feature_spec.SESSION_WINDOW_S

  def __post_init__(self):
    if self.recent < 1:
      raise ValueError(f"recent must be >= 1, got {self.recent}")
    if not self.prior_plays > 0:
      raise ValueError(f"prior_plays must be > 0, got {self.prior_plays}")
    if not 0 <= self.prior_rate <= 1:
      raise ValueError(f"prior_rate must be in [0, 1], got {self.prior_rate}")
    if self.session_gap_s < 1:
      raise ValueError(f"session_gap_s must be >= 1, got {self.session_gap_s}")


def _rate(hits: np.ndarray, count: np.ndarray, cfg: StateConfig) -> np.ndarray:
  return (hits + cfg.prior_rate * cfg.prior_plays) / (count + cfg.prior_plays)


def _leading_run(linked: np.ndarray) -> np.ndarray:
  """``[n]`` how many leading entries of each row of bool ``linked`` are all True."""
  if not linked.shape[1]:
    return np.zeros(len(linked), np.int64)
  return np.where(linked.all(1), linked.shape[1], np.argmin(linked, axis=1))


def state_features(state: policies.ListenerState, context: policies.Context,
                   config: StateConfig = StateConfig()) -> np.ndarray:
  """``[n, len(STATE_FEATURES)]`` raw (unstandardised) listener-state features.

  Args:
    state: the listeners and their logged plays (most recent first, ``track`` -1 pads).
    context: the requests (``ts`` is the request time).
    config: windows and priors.

  Returns:
    float64 features in ``STATE_FEATURES`` order.
  """
  n = len(state)
  hist = state.history
  track = np.asarray(hist.get("track", np.full((n, 0), -1)), np.int64)
  if not track.shape[1]:
    track = np.full((n, 1), -1, np.int64)   # no history kept: one empty column
  have = track >= 0
  logged = {k: np.asarray(hist[k]) if k in hist and np.shape(hist[k]) == track.shape
            else np.zeros(track.shape) for k in ("completion", "skip", "ts")}
  comp = np.where(have, logged["completion"].astype(float), 0.0)
  skip = np.where(have, logged["skip"].astype(float), 0.0)
  ts = logged["ts"].astype(np.int64)
  recent = have[:, :config.recent]
  n_recent = recent.sum(1)
  promo = have & state.world.track_promo[np.maximum(track, 0)]
  now = np.asarray(context.ts, np.int64)
  # A play belongs to the session in progress when it ended within the gap of the
  # request; the last session is the run of plays linked by short gaps.
  session_plays = _leading_run(have & (now[:, None] - ts <= config.session_gap_s))
  linked = have[:, 1:] & (ts[:, :-1] - ts[:, 1:] <= config.session_gap_s)
  last_session = np.where(have[:, 0], 1 + _leading_run(linked), 0)
  hours = np.where(have[:, 0], np.maximum(now - ts[:, 0], 0) / 3600.0, 0.0)
  tenure = np.asarray(state.listeners.tenure_days, float)
  return np.stack([
      _rate((comp[:, :config.recent] * recent).sum(1), n_recent, config),
      _rate((skip[:, :config.recent] * recent).sum(1), n_recent, config),
      _rate((skip * promo).sum(1), promo.sum(1), config),
      session_plays.astype(float),
      last_session.astype(float),
      np.log1p(hours),
      np.log1p(have.sum(1).astype(float)),
      np.log1p(np.maximum(tenure, 0.0)),
  ], axis=1)


def one_hots(segment: np.ndarray, activity: np.ndarray) -> np.ndarray:
  """``[n, S + A]`` one-hot segment then one-hot activity (the segment one-hot sums to
  one, so it doubles as the bias)."""
  n = len(segment)
  x = np.zeros((n, policies.N_SEG + policies.N_ACT))
  x[np.arange(n), np.asarray(segment, np.int64)] = 1.0
  x[np.arange(n), policies.N_SEG + np.asarray(activity, np.int64)] = 1.0
  return x


class RunningStandardizer:
  """Standardises columns with the running mean and variance of every row seen.

  Each batch first joins the statistics, then is standardised with them, so the first
  batch is standardised by its own spread. A column whose standard deviation is below
  ``min_std`` is only centred (a constant column becomes 0).

  Args:
    dim: columns.
    min_std: the smallest standard deviation divided by.
  """

  def __init__(self, dim: int, min_std: float = 1e-6):
    if dim < 1:
      raise ValueError(f"dim must be >= 1, got {dim}")
    self.count = 0
    self.mean = np.zeros(dim)
    self.m2 = np.zeros(dim)
    self.min_std = min_std

  def update(self, x: np.ndarray) -> None:
    """Adds a batch (Chan et al.'s parallel variance update)."""
    x = np.asarray(x, np.float64)
    if not len(x):
      return
    n_b, mean_b = len(x), x.mean(0)
    m2_b = ((x - mean_b) ** 2).sum(0)
    total = self.count + n_b
    delta = mean_b - self.mean
    self.mean = self.mean + delta * n_b / total
    self.m2 = self.m2 + m2_b + delta ** 2 * self.count * n_b / total
    self.count = total

  @property
  def std(self) -> np.ndarray:
    var = self.m2 / max(self.count, 1)
    return np.sqrt(np.maximum(var, 0.0))

  def transform(self, x: np.ndarray) -> np.ndarray:
    std = self.std
    return (np.asarray(x, np.float64) - self.mean) / np.where(std < self.min_std, 1.0, std)


class SegmentContext:
  """Context = segment one-hot + activity one-hot."""

  name = "segment"
  dim = policies.N_SEG + policies.N_ACT

  def features(self, state: policies.ListenerState, context: policies.Context) -> np.ndarray:
    return one_hots(state.listeners.segment, context.activity)


class StateContext:
  """Context = segment and activity one-hots + standardised listener-state features.

  Args:
    config: how the state features read the logged plays.
  """

  name = "state"
  dim = policies.N_SEG + policies.N_ACT + len(STATE_FEATURES)

  def __init__(self, config: StateConfig = StateConfig()):
    self.config = config
    self.standardizer = RunningStandardizer(len(STATE_FEATURES))

  def features(self, state: policies.ListenerState, context: policies.Context) -> np.ndarray:
    raw = state_features(state, context, self.config)
    self.standardizer.update(raw)
    return np.concatenate([one_hots(state.listeners.segment, context.activity),
                           self.standardizer.transform(raw)], axis=1)


def make_context(name: str):
  """A fresh context builder by name (``CONTEXTS``)."""
  if name == "segment":
    return SegmentContext()
  if name == "state":
    return StateContext()
  raise ValueError(f"bandit context must be one of {CONTEXTS}, got {name!r}")

