"""The measurements of the calibration: simulated plays, what a real log would keep, distances.

This module owns how a parameter set is measured against the real data: the world a
parameter dict gives and the plays it simulates (:func:`world_plays`), what a
Last.fm/30Music log would record of those plays (:func:`scrobble_view`), and the
distances between a simulated and a real sample (two-sample Kolmogorov-Smirnov,
Lorenz curves of play concentration), and the text form of the comparison tables.
"""

from typing import Dict, Sequence, Tuple

import numpy as np

from simulation.world import World
from simulation.world_config import DEFAULT_START_TS, WorldConfig


def calibrated_world(params: dict, seed: int, **config) -> World:
  """The world of ``params`` (``config`` overrides ``WorldConfig`` fields)."""
  return World(WorldConfig(**config), seed=seed, params=params)


def simulate_plays(world: World, n_users: int, days: int, seed: int) -> Dict[str, np.ndarray]:
  """``World.simulate`` columns of fresh listeners, plus each play's track ``duration``."""
  rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
  listeners = world.sample_users(n_users, rng)
  cols = world.simulate(listeners, days, DEFAULT_START_TS, rng)
  cols["duration"] = world.track_duration[cols["track"]].astype(np.float64)
  return cols


def world_plays(params: dict, seed: int, n_users: int, days: int,
                sim_seed: int) -> Tuple[World, Dict[str, np.ndarray]]:
  """The world of ``params`` (seeded ``seed``) and the plays it simulates (``sim_seed``)."""
  world = calibrated_world(params, seed)
  return world, simulate_plays(world, n_users, days, sim_seed)


def text_table(head: Sequence[str], body: Sequence[Sequence[str]], markdown: bool) -> str:
  """A comparison table as markdown, or as aligned plain-text columns."""
  if markdown:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines)
  widths = [max(len(x[i]) for x in [head] + list(body)) for i in range(len(head))]
  out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
  out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
  return "\n".join(out)


def scrobble_view(cols: Dict[str, np.ndarray], min_s: float = 30.0, max_s: float = 240.0):
  """What a Last.fm/30Music log would record of simulated plays.

  Last.fm scrobbles a play only when the track is longer than 30 s and was played for
  half its length or 4 minutes, whichever comes first, so skipped plays never reach the
  log and the gaps between logged plays include them.

  Args:
    cols: ``World.simulate`` output (needs ``session``, ``listened``, ``gap``, ``track``
      durations through ``duration``).
    min_s, max_s: the scrobble thresholds.

  Returns:
    (session_lengths, gaps_s, skip_proxy_rate) of the logged plays.
  """
  logged = scrobbled(cols["duration"], cols["listened"], min_s, max_s)
  return logged_stats(cols["session"], cols["gap"].astype(np.float64), logged)


def scrobbled(duration, listened, min_s: float = 30.0, max_s: float = 240.0) -> np.ndarray:
  """Bool per play: the scrobble rule of :func:`scrobble_view`."""
  return (duration > min_s) & (listened >= np.minimum(duration / 2, max_s))


def logged_stats(session, gap, logged):
  """Session lengths, start-to-start gaps and the share of gaps < 30 s of logged plays.

  Args:
    session: session id per play, plays of a session contiguous.
    gap: seconds from each play's start to the next one's.
    logged: bool per play.

  Returns:
    ``(lengths, gaps, rate)``.
  """
  start = np.cumsum(gap) - gap                  # start offset of every play
  s = session[logged]
  t = start[logged]
  same = s[1:] == s[:-1]
  gaps = (t[1:] - t[:-1])[same]
  _, lengths = np.unique(s, return_counts=True)
  rate = float((gaps < 30).mean()) if len(gaps) else float("nan")
  return lengths, gaps, rate


def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sample Kolmogorov-Smirnov distance (largest gap between the two ECDFs)."""
  a = np.sort(np.asarray(a, np.float64))
  b = np.sort(np.asarray(b, np.float64))
  if len(a) == 0 or len(b) == 0:
    raise ValueError(f"ks_distance needs two non-empty samples, got {len(a)} and {len(b)}")
  x = np.concatenate([a, b])
  fa = np.searchsorted(a, x, side="right") / len(a)
  fb = np.searchsorted(b, x, side="right") / len(b)
  return float(np.max(np.abs(fa - fb)))


def lorenz(counts: Sequence[float], grid: int = 201) -> np.ndarray:
  """Share of all plays held by the least played fraction q of items, on a q grid."""
  c = np.sort(np.asarray(counts, np.float64))
  c = c[c > 0]
  if len(c) == 0:
    raise ValueError("lorenz needs at least one positive count")
  cum = np.concatenate([[0.0], np.cumsum(c)]) / c.sum()
  q = np.linspace(0.0, 1.0, grid)
  return np.interp(q, np.linspace(0.0, 1.0, len(cum)), cum)


def lorenz_ks(a_counts, b_counts) -> float:
  """KS distance between the play-weighted item-rank distributions (Lorenz curves)."""
  return float(np.max(np.abs(lorenz(a_counts) - lorenz(b_counts))))


def artist_play_counts(world: World, cols: Dict[str, np.ndarray]) -> np.ndarray:
  """Simulated plays per artist of ``world`` in ``cols``."""
  return np.bincount(world.track_artist[cols["track"]], minlength=world.config.n_artists)
