"""The fit of the skip parameters to ``simulation.skip_targets``.

This module owns how the skip part of ``simulation/calibrated_params.json`` is fitted:
the three link biases (``skip_bias``, ``very_brief_bias``, ``full_listen_bias``) by
bisection on the logit offsets a simulation records (every term of a play's logit
but the bias), and the two structural parameters (``momentum_gain`` for the lag-1 skip
momentum, ``skip_through_share`` for the share of sessions skipped through) by a few
damped fixed-point rounds, each on a fresh simulation. Momentum feeds back into the
offsets, so the biases are refitted every round.
"""

from typing import Callable, Dict

import numpy as np

from simulation import calibration_stats
from simulation import skip_dynamics
from simulation import skip_stats
from simulation import skip_targets
from simulation.skip_dynamics import sigmoid

# Listeners x days of every fitting simulation, and the number of rounds.
FIT_USERS, FIT_DAYS, ROUNDS = 1500, 3, 5
# d(lag-1 momentum) / d(momentum_gain), measured around the fit; the update divides by it.
MOMENTUM_SLOPE = 0.25
GAIN_RANGE = (0.0, 4.0)
SHARE_RANGE = (0.0, 0.5)


def bisect(f: Callable[[float], float], lo: float, hi: float, target: float,
           iters: int = 50) -> float:
  """Solves f(x) = target for increasing f on [lo, hi]."""
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    if f(mid) < target:
      lo = mid
    else:
      hi = mid
  return 0.5 * (lo + hi)


def simulate(params: Dict[str, object], seed: int, sim_seed: int,
             n_users: int = FIT_USERS, days: int = FIT_DAYS):
  """A world of ``params`` and the raw columns of its simulated plays."""
  return calibration_stats.world_plays(params, seed, n_users, days, sim_seed)


def fit_links(behaviour: Dict[str, float], world, cols: Dict[str, np.ndarray]) -> None:
  """Skip, very-brief and full-listen biases that hit their targets on ``cols``'s
  recorded offsets (updates ``behaviour``)."""
  off = cols["skip_offset"]
  behaviour["skip_bias"] = bisect(lambda b: np.mean(sigmoid(b + off)), -15, 15,
                                  skip_targets.EARLY_SKIP)
  vb, full = skip_dynamics.profile_offsets(world.config, cols["utility"], cols["mode"])
  skip = cols["skip"]
  behaviour["very_brief_bias"] = bisect(lambda b: np.mean(sigmoid(b + vb[skip])), -15, 15,
                                        skip_targets.VERY_BRIEF_OF_EARLY)
  keep = skip_targets.FULL_LISTEN / (1.0 - skip_targets.EARLY_SKIP)
  behaviour["full_listen_bias"] = bisect(lambda b: np.mean(sigmoid(b + full[~skip])), -15,
                                         15, keep)


def fit(params: Dict[str, object], seed: int, say=print, rounds: int = ROUNDS) -> None:
  """Fits the skip links and structure in ``params["behaviour"]`` (in place).

  Each round simulates with the current parameters, measures the lag-1 momentum and
  the share of skipped-through sessions, moves ``momentum_gain`` by the momentum gap
  over ``MOMENTUM_SLOPE`` and scales ``skip_through_share`` by target over measured
  (both damped by half), and refits the link biases on that simulation's offsets
  (``skip_bias`` damped by half as well).
  """
  beh = params["behaviour"]
  for r in range(rounds):
    world, cols = simulate(params, seed, seed + r)
    mom = skip_stats.momentum(cols["session"], cols["skip"], lags=(1,))[1]
    share = skip_stats.all_skip_share(cols["session"], cols["skip"])
    step = 0.5 * (skip_targets.MOMENTUM_LAG1 - mom) / MOMENTUM_SLOPE
    beh["momentum_gain"] = float(np.clip(beh["momentum_gain"] + step, *GAIN_RANGE))
    ratio = skip_targets.ALL_SKIP_SESSIONS / max(share, 1e-3)
    beh["skip_through_share"] = float(np.clip(beh["skip_through_share"] * ratio ** 0.5,
                                              *SHARE_RANGE))
    before = beh["skip_bias"]
    fit_links(beh, world, cols)
    # More skips mean more momentum, which the recorded offsets do not see: a full
    # step overshoots, half a step converges.
    beh["skip_bias"] = before + 0.5 * (beh["skip_bias"] - before)
    say(f"  skip round {r + 1}: early skip {cols['skip'].mean():.3f}, lag-1 momentum "
        f"{mom:.3f}, skipped-through sessions {share:.3f} -> momentum_gain "
        f"{beh['momentum_gain']:.3f}, skip_through_share {beh['skip_through_share']:.3f}, "
        f"skip_bias {beh['skip_bias']:.3f}")
