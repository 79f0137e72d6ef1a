"""Skipping inside a session: latent session modes, momentum, skip profiles and context.

This module owns the dynamic part of the listener response (``docs/data.md``,
"Skipping"). A session starts in a latent mode (``MODES``: lean-back, browsing or
skip-through) drawn from :func:`mode_shares`; before every play the mode is redrawn with
a small hazard (``mode_switch``). Play ``j`` of a session is skipped early (within
30 s) with probability ``sigmoid(l_j)``::

    l_j = skip_bias + mode_bias[mode] - z_eff + momentum_gain * h_j
          + position_gain * (1 - exp(-j / POSITION_SCALE)) + offset

where ``z_eff`` is the interest utility (``simulation.response_model``, drift
included), ``h_j`` the fading memory of the session's last skip
(``h_{j+1} = max(momentum_decay * h_j, skip_j)``: a skip raises the next play's skip
probability by ``momentum_gain`` on the logit, the one after by ``momentum_decay``
times that, and so on; consecutive skips renew the memory rather than pile it up) and
``offset`` the context: the surface, the activity and shuffle (:func:`context_offset`).
A session in the skip-through mode ends after a skipped play with probability
``skip_through_quit`` (the listener gives up), so the rest of its planned plays never
happen. Every play then gets a skip profile (``SKIP_PROFILES``, the Music Streaming
Sessions Dataset's skip_1 / skip_2 / skip_3 / not_skipped): an early skip is very brief
(first 5 s) with probability ``sigmoid(very_brief_bias - z_eff + very_brief_mode[mode])``,
else brief (5-30 s); an unskipped play is a full listen with ``sigmoid(full_listen_bias
+ z_eff - mode_bias[mode] / 2)``, else most of the track. Everything is vectorized over
the sessions that advance together (:func:`step`).
"""

import dataclasses
from typing import Tuple

import numpy as np

from features import events

SKIP_PROFILES = events.SKIP_PROFILES
VERY_BRIEF, BRIEF, MOST, FULL = range(len(SKIP_PROFILES))
MODES = ("lean_back", "browsing", "skip_through")
LEAN_BACK, BROWSING, SKIP_THROUGH = range(len(MODES))
# Seconds listened of a very brief and of a brief skip: U(VERY_BRIEF_S) and U(BRIEF_S).
VERY_BRIEF_S = (1.0, 5.0)
BRIEF_S = (5.0, 30.0)
# Completion of a play that stops after most of the track: U(MOST_COMPLETION, 1).
MOST_COMPLETION = 0.5
# Plays over which the position effect builds up.
POSITION_SCALE = 3.0


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def mode_shares(config) -> np.ndarray:
  """``[3]`` share of sessions starting in each of ``MODES``."""
  st = config.skip_through_share
  rest = 1.0 - st
  return np.array([rest * config.lean_back_share, rest * (1.0 - config.lean_back_share), st])


def draw_modes(config, u: np.ndarray) -> np.ndarray:
  """A mode per uniform in ``u`` (inverse CDF of :func:`mode_shares`)."""
  cum = np.cumsum(mode_shares(config))
  return np.minimum(np.searchsorted(cum, u, side="right"), len(MODES) - 1).astype(np.int8)


def context_offset(config, surface: np.ndarray, activity: np.ndarray,
                   shuffle: np.ndarray) -> np.ndarray:
  """Skip-logit offset of a context: surface, activity and shuffle.

  Args:
    config: the resolved world config.
    surface: index into ``world_config.ORGANIC_SURFACES`` (one more index: promo).
    activity: index into ``world_config.SIM_ACTIVITIES``.
    shuffle: bool, shuffle play on.

  Returns:
    Float array broadcast from the three inputs.
  """
  return (np.asarray(config.surface_skip_bias)[np.asarray(surface, np.int64)]
          + np.asarray(config.activity_skip_bias)[np.asarray(activity, np.int64)]
          + config.shuffle_skip_bias * np.asarray(shuffle, np.float64))


def position_effect(config, pos) -> np.ndarray:
  return config.position_gain * (1.0 - np.exp(-np.asarray(pos, np.float64) / POSITION_SCALE))


@dataclasses.dataclass
class SessionState:
  """State of sessions that advance together (one row per session).

  Attributes:
    mode: current mode (index into ``MODES``).
    momentum: fading memory of the session's last skip (1 right after a skip).
    run_style, run_len: the current run of unskipped plays of one style (drift).
    offset: the session's context offset (:func:`context_offset`).
    alive: False once the session has ended (its later plays never happen).
  """
  mode: np.ndarray
  momentum: np.ndarray
  run_style: np.ndarray
  run_len: np.ndarray
  offset: np.ndarray
  alive: np.ndarray

  @classmethod
  def start(cls, config, offset: np.ndarray, u_mode: np.ndarray) -> "SessionState":
    """Fresh sessions: a drawn mode, no momentum, no run."""
    n = len(offset)
    return cls(mode=draw_modes(config, u_mode), momentum=np.zeros(n),
               run_style=np.full(n, -1, np.int64), run_len=np.zeros(n, np.int64),
               offset=np.asarray(offset, np.float64), alive=np.ones(n, bool))

  def take(self, n: int) -> "SessionState":
    """A view of the first ``n`` sessions (updates write through)."""
    return SessionState(**{f.name: getattr(self, f.name)[:n]
                           for f in dataclasses.fields(self)})


def step(config, z: np.ndarray, style: np.ndarray, u: np.ndarray, state: SessionState,
         pos: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """One play of every session in ``state``; updates the state in place.

  Args:
    config: the resolved world config.
    z: interest utility of the play (no drift).
    style: the track's style.
    u: ``[4, n]`` uniforms: mode switch, mode redraw, skip, quit.
    state: the sessions (length n).
    pos: position of the play in its session (0 = first).

  Returns:
    ``(skip, boost, mode, offset, played)``: the early-skip decision, the drift added
    to the utility, the mode the play was made in, the skip logit without
    ``skip_bias`` (what the calibration fits the bias on), and whether the play
    happened at all (False once its session has ended).
  """
  c = config
  same = style == state.run_style
  boost = c.drift_gain * np.minimum(state.run_len, c.drift_cap) * same
  switch = u[0] < c.mode_switch
  state.mode[:] = np.where(switch, draw_modes(c, u[1]), state.mode)
  offset = (np.asarray(c.mode_bias)[state.mode] - z - boost
            + c.momentum_gain * state.momentum + position_effect(c, pos) + state.offset)
  skip = u[2] < sigmoid(c.skip_bias + offset)
  played = state.alive.copy()
  state.alive[:] &= ~(skip & (state.mode == SKIP_THROUGH) & (u[3] < c.skip_through_quit))
  state.momentum[:] = np.maximum(c.momentum_decay * state.momentum, skip)
  run_len, run_style = state.run_len, state.run_style
  run_len[:] = np.where(skip, np.where(same, 0, run_len), np.where(same, run_len + 1, 1))
  run_style[:] = np.where(skip | same, run_style, style)
  return skip, boost, state.mode.copy(), offset, played


def profile_offsets(config, z_eff: np.ndarray, mode: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray]:
  """Logits without their bias: (very brief given an early skip, full given no skip)."""
  mode = np.asarray(mode, np.int64)
  vb = -z_eff + np.asarray(config.very_brief_mode)[mode]
  full = z_eff - 0.5 * np.asarray(config.mode_bias)[mode]
  return vb, full


def draw_profiles(config, z_eff: np.ndarray, skip: np.ndarray, mode: np.ndarray,
                  u: np.ndarray) -> np.ndarray:
  """Skip profile (index into ``SKIP_PROFILES``) of each play given its early skip.

  Args:
    config: the resolved world config.
    z_eff: utility with drift.
    skip: the early-skip decision.
    mode: the mode of the play.
    u: uniforms, one per play.
  """
  vb, full = profile_offsets(config, z_eff, mode)
  p = np.where(skip, sigmoid(config.very_brief_bias + vb),
               sigmoid(config.full_listen_bias + full))
  hit = u < p
  return np.where(skip, np.where(hit, VERY_BRIEF, BRIEF),
                  np.where(hit, FULL, MOST)).astype(np.int8)


def listened_fraction(profile: np.ndarray, duration: np.ndarray, u: np.ndarray
                      ) -> np.ndarray:
  """Completion of each play given its profile (``u`` places it inside the profile)."""
  dur = np.asarray(duration, np.float64)
  vb = np.minimum(VERY_BRIEF_S[0] + u * (VERY_BRIEF_S[1] - VERY_BRIEF_S[0]), dur) / dur
  br = np.minimum(BRIEF_S[0] + u * (BRIEF_S[1] - BRIEF_S[0]), dur) / dur
  most = MOST_COMPLETION + (1.0 - MOST_COMPLETION) * u
  return np.choose(np.asarray(profile, np.int64), [vb, br, most, np.ones_like(dur)])


def expected_completion(config, z_eff: np.ndarray, mode: int, duration: np.ndarray,
                        p_skip: np.ndarray) -> np.ndarray:
  """Expected completion of a play in ``mode`` that is skipped early with ``p_skip``."""
  vb, full = profile_offsets(config, z_eff, np.full(np.shape(z_eff), mode))
  p_vb = sigmoid(config.very_brief_bias + vb)
  p_full = sigmoid(config.full_listen_bias + full)
  dur = np.asarray(duration, np.float64)
  skipped = (p_vb * np.minimum(np.mean(VERY_BRIEF_S), dur)
             + (1 - p_vb) * np.minimum(np.mean(BRIEF_S), dur)) / dur
  kept = p_full + (1 - p_full) * 0.5 * (1.0 + MOST_COMPLETION)
  return p_skip * skipped + (1 - p_skip) * kept
