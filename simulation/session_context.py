"""Session contexts: when listeners play, what they are doing, and where they listen.

This module owns the context distributions of the world: the hour-of-day profile of
session starts, P(activity | hour, weekend), P(surface | activity) of organic slots
and P(candidate source | surface) of the logging policy, and drawing a session
context per listener (:func:`sample_context`) as the logged world does.
"""

import dataclasses
from typing import Dict

import numpy as np

from simulation.world_config import DAY_S, DEFAULT_START_TS, SIM_ACTIVITIES


@dataclasses.dataclass(frozen=True)
class ContextTables:
  """The context distributions.

  Attributes:
    hour: ``[24]`` P(session starts in hour h).
    activity: ``[2, 24, activities]`` P(activity | weekend, hour), ``SIM_ACTIVITIES``.
    surface: ``[activities, surfaces]`` P(surface | activity) of organic slots, in
      ``world_config.ORGANIC_SURFACES`` order.
    source: ``[surfaces, 3]`` P(candidate source | surface) of the logging policy:
      familiar artist, session style, global popular.
  """
  hour: np.ndarray
  activity: np.ndarray
  surface: np.ndarray
  source: np.ndarray


def context_tables() -> ContextTables:
  """The world's context distributions (fixed; no parameter moves them)."""
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
  surf = np.array([[0.25, 0.05, 0.15, 0.35, 0.15, 0.05],     # commute
                   [0.20, 0.05, 0.25, 0.15, 0.30, 0.05],     # workout
                   [0.25, 0.05, 0.30, 0.15, 0.20, 0.05],     # focus
                   [0.25, 0.35, 0.15, 0.05, 0.10, 0.10]])    # explore
  src = np.array([[0.35, 0.40, 0.25], [0.10, 0.45, 0.45], [0.20, 0.70, 0.10],
                  [0.80, 0.15, 0.05], [0.40, 0.50, 0.10], [0.30, 0.30, 0.40]])
  return ContextTables(hour=hour_w / hour_w.sum(), activity=act, surface=surf, source=src)


def weekday(day_start: int) -> int:
  """Day of the week (0 = Monday) of a UTC midnight, epoch seconds."""
  return int(((day_start // DAY_S) + 3) % 7)


def draw_categorical(rng: np.random.Generator, p: np.ndarray) -> np.ndarray:
  """One index per row of the probability rows ``p`` ``[n, k]`` (inverse CDF)."""
  return (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(1)


def sample_context(n: int, rng: np.random.Generator,
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
  tables = context_tables()
  day = weekday(day_start)
  hour = rng.choice(24, n, p=tables.hour)
  act = draw_categorical(rng, tables.activity[int(day >= 5), hour])
  return {"hour": hour, "weekday": np.full(n, day),
          "activity": np.minimum(act, len(SIM_ACTIVITIES) - 1),
          "ts": day_start + hour * 3600 + rng.integers(0, 3600, n)}
