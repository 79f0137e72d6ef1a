"""An injected change of taste for the live loop: from a given day on, the listeners of
one segment dislike promotions.

This module owns that injection and nothing else. It goes through the world's own
mechanism for tiring of promotions: a promo track's utility is lowered by
``promo_fatigue_skip`` per unit of a listener's promo fatigue, and fatigue also lowers the
chance that a promo converts. From the change's day on, before each day's traffic, the
segment's listeners get their fatigue raised to a floor worth ``promo_cost`` of utility
(``promo_cost / promo_fatigue_skip`` units), as if they had heard far more promotions than
they have: they skip promo tracks more, finish fewer of them and convert less through
them, while every other track and every other segment is untouched. The world's nightly
decay would wash a one-off bump out, so the floor is set again each day (a lasting
change, not a shock). A listener whose segment changes is judged by the segment of the
day.
"""

import dataclasses

import numpy as np

from features import feature_spec
from simulation import world as world_lib
from simulation.listeners import Listeners


@dataclasses.dataclass(frozen=True)
class TasteChange:
  """Listeners of ``segment`` dislike promotions from day ``day`` on.

  Attributes:
    day: The first live day of the change (1 is the first live day).
    segment: One of ``feature_spec.SEGMENTS``.
    promo_cost: Extra utility a promo track loses for them (the world's base promo
      penalty is 0.3).
  """
  day: int
  segment: str = "free"
  promo_cost: float = 1.0

  def __post_init__(self):
    if self.day < 1:
      raise ValueError(f"promo_dislike_day must be >= 1, got {self.day}")
    if self.segment not in feature_spec.SEGMENTS:
      raise ValueError(f"promo_dislike_segment must be one of {feature_spec.SEGMENTS}, "
                       f"got {self.segment!r}")
    if not self.promo_cost > 0:
      raise ValueError(f"promo_dislike_cost must be positive, got {self.promo_cost}")


def fatigue_floor(change: TasteChange, world: world_lib.World) -> float:
  """The promo fatigue whose utility cost in ``world`` is ``change.promo_cost``.

  Raises:
    ValueError: the world's promo fatigue costs nothing (no floor could express it).
  """
  per_unit = float(world.config.promo_fatigue_skip)
  if per_unit <= 0:
    raise ValueError(f"promo_fatigue_skip must be positive to express a dislike of "
                     f"promotions, got {per_unit}")
  return change.promo_cost / per_unit


def apply(change: TasteChange, world: world_lib.World, listeners: Listeners,
          day: int) -> int:
  """Raises the promo fatigue of ``change.segment``'s listeners to the floor on day
  ``day`` if the change has started; returns how many listeners are in the segment then
  (0 before the change's day)."""
  if day < change.day:
    return 0
  members = listeners.segment == feature_spec.SEGMENTS.index(change.segment)
  floor = np.float32(fatigue_floor(change, world))
  listeners.fatigue[members] = np.maximum(listeners.fatigue[members], floor)
  return int(members.sum())
