"""The promo controller: less promotion for a listener segment whose completion falls below
its floor, given back slowly once it recovers.

This module owns :class:`PromoController`. Once per window (an hour, a day) it reads each
segment's sessions and mean completion. When a segment's completion is below its floor,
it scales that segment's gamma (the exposure weight of fusion) and its promo share down by
one step, never below ``min_scale`` of their base values; when completion is back above
the floor plus a margin, it scales them up by a smaller step, never above the base. After
an action on a segment, that segment waits ``cooldown_windows`` windows before the next, so
the effect of one step is seen before another is taken. A window with too few sessions of
a segment says nothing about it. The result is a :class:`WeightsOverride`: per segment
the fusion weights (gamma's removed share goes to alpha, so a row still sums as the base
row) and the promo share, which the gateway sends as the request's ``alpha_beta_gamma``
override, so nothing is pushed to the model server; a gateway in another process reads
it from the file the controller writes (:class:`OverrideFile`). Every action is returned
and logged with its evidence.
"""

import dataclasses
import json
import logging
import os
import time
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from online import file_watch
from ranking.fusion import spec

_LOG = logging.getLogger("melody.online")
LOWER, RESTORE = "lower", "restore"


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
  """How the controller reacts.

  Attributes:
    completion_floor: Mean completion per session below which a segment's promotion is
      lowered.
    segment_floors: ``(segment, floor)`` pairs overriding ``completion_floor``.
    recover_margin: Completion must reach the floor plus this before promotion is
      restored (hysteresis, so a segment at the floor does not oscillate).
    step_down: Fraction of the base gamma and promo share removed per action.
    step_up: Fraction given back per restoring action (smaller: restore slowly).
    min_scale: The lowest fraction of the base values the controller goes to.
    cooldown_windows: Windows a segment waits after an action before the next one.
    min_sessions: Fewest sessions of a segment in a window for the window to count.
    base_promo_share: The promo share of the list at scale 1 (the mixing rules' default
      of 2 promos per 10 positions).
  """
  completion_floor: float = 0.45
  segment_floors: Tuple[Tuple[str, float], ...] = ()
  recover_margin: float = 0.03
  step_down: float = 0.25
  step_up: float = 0.1
  min_scale: float = 0.25
  cooldown_windows: int = 2
  min_sessions: int = 50
  base_promo_share: float = 0.2

  def __post_init__(self):
    for name in ("step_down", "step_up"):
      if not 0.0 < getattr(self, name) <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
    if not 0.0 <= self.min_scale <= 1.0:
      raise ValueError(f"min_scale must be in [0, 1], got {self.min_scale}")
    if self.cooldown_windows < 0 or self.min_sessions < 1:
      raise ValueError(f"cooldown_windows must be >= 0 and min_sessions >= 1, got "
                       f"{self.cooldown_windows} and {self.min_sessions}")
    if self.recover_margin < 0:
      raise ValueError(f"recover_margin must be >= 0, got {self.recover_margin}")

  def floor(self, segment: str) -> float:
    return dict(self.segment_floors).get(segment, self.completion_floor)


@dataclasses.dataclass(frozen=True)
class SegmentOverride:
  """One segment's controlled values.

  Attributes:
    scale: Fraction of the base gamma and promo share in force.
    weights: ``(alpha, beta, gamma)`` to send with the segment's requests.
    promo_share: Largest share of promoted tracks in the list.
  """
  scale: float
  weights: Tuple[float, float, float]
  promo_share: float


@dataclasses.dataclass(frozen=True)
class WeightsOverride:
  """The controller's output: overrides for the segments it has lowered.

  Attributes:
    segments: ``segment -> SegmentOverride``; a segment absent runs on the model's table.
  """
  segments: Mapping[str, SegmentOverride] = dataclasses.field(default_factory=dict)

  def weights_for(self, segment: str) -> Optional[List[float]]:
    """The ``alpha_beta_gamma`` override for ``segment``, or None (use the table)."""
    entry = self.segments.get(segment)
    return None if entry is None else list(entry.weights)

  def to_json(self) -> str:
    return json.dumps({s: dataclasses.asdict(o) for s, o in sorted(self.segments.items())},
                      sort_keys=True)

  @classmethod
  def from_json(cls, text: str) -> "WeightsOverride":
    doc = json.loads(text)
    return cls({s: SegmentOverride(float(o["scale"]), tuple(map(float, o["weights"])),
                                   float(o["promo_share"])) for s, o in doc.items()})

  def write(self, path: str) -> None:
    """Writes the override to ``path`` atomically (a reader sees the old or the new)."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      f.write(self.to_json())
    os.replace(tmp, path)


class OverrideFile:
  """The override a controller in another process writes (``WeightsOverride.write``), as
  the gateway reads it: the file is checked at most every ``check_seconds`` and re-read
  when it changed. No file means no override; a file that does not parse keeps the last
  good override (and is logged).

  Args:
    path: The override file.
    check_seconds: Longest time between checks (a ``stat``) of the file.
    clock: Monotonic seconds.
  """

  def __init__(self, path: str, check_seconds: float = 1.0,
               clock: Callable[[], float] = time.monotonic):
    self.path = path
    self._watch = file_watch.FileWatch(path, check_seconds, clock)
    self._current = WeightsOverride()

  def current(self) -> WeightsOverride:
    """The override in force now."""
    self._watch.look(self._reload, on_missing=self._clear)
    return self._current

  def weights_for(self, segment: str) -> Optional[List[float]]:
    return self.current().weights_for(segment)

  def _clear(self) -> None:
    self._current = WeightsOverride()

  def _reload(self) -> None:
    try:
      with open(self.path, encoding="utf-8") as f:
        self._current = WeightsOverride.from_json(f.read())
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
      _LOG.warning("weights override %s not applied (%s); keeping the previous one",
                   self.path, e)


@dataclasses.dataclass(frozen=True)
class Action:
  """One controller action and the evidence for it.

  Attributes:
    window: The window it was taken in.
    segment: The segment acted on.
    kind: ``lower`` or ``restore``.
    completion: The segment's mean completion in the window.
    sessions: Its sessions in the window.
    floor: Its completion floor.
    scale_before, scale_after: The fraction of base gamma and promo share.
    weights: The segment's fusion weights after the action.
    promo_share: Its promo share after the action.
  """
  window: int
  segment: str
  kind: str
  completion: float
  sessions: int
  floor: float
  scale_before: float
  scale_after: float
  weights: Tuple[float, float, float]
  promo_share: float

  def as_dict(self) -> Dict[str, object]:
    return dataclasses.asdict(self)


class PromoController:
  """Lowers and restores promotion per segment from windows of completion.

  Args:
    config: How it reacts.
    base_weights: ``segment -> (alpha, beta, gamma)`` at scale 1 (the fusion spec's
      table by default).
  """

  def __init__(self, config: ControllerConfig = ControllerConfig(),
               base_weights: Optional[Mapping[str, Sequence[float]]] = None):
    self.config = config
    self.base = {s: tuple(map(float, w)) for s, w in
                 (base_weights or dict(spec.DEFAULT_SEGMENT_WEIGHTS)).items()}
    self._scale: Dict[str, float] = {}
    self._last_action: Dict[str, int] = {}
    self.actions: List[Action] = []

  def scale(self, segment: str) -> float:
    return self._scale.get(segment, 1.0)

  def observe(self, window: int, completion: Mapping[str, Tuple[int, float]]
              ) -> List[Action]:
    """Takes one window's ``segment -> (sessions, mean completion)``; returns the actions.

    Raises:
      ValueError: a segment without base weights.
    """
    c = self.config
    taken = []
    for segment, (sessions, value) in sorted(completion.items()):
      if segment not in self.base:
        raise ValueError(f"segment {segment!r} has no base weights; known: "
                         f"{sorted(self.base)}")
      if sessions < c.min_sessions:
        continue
      last = self._last_action.get(segment)
      if last is not None and window - last <= c.cooldown_windows:
        continue
      before, floor = self.scale(segment), c.floor(segment)
      if value < floor and before > c.min_scale:
        after, kind = max(c.min_scale, before - c.step_down), LOWER
      elif value >= floor + c.recover_margin and before < 1.0:
        after, kind = min(1.0, before + c.step_up), RESTORE
      else:
        continue
      self._scale[segment] = after
      self._last_action[segment] = window
      entry = self._entry(segment, after)
      action = Action(window, segment, kind, float(value), int(sessions), floor, before,
                      after, entry.weights, entry.promo_share)
      _LOG.info("promo controller: %s", json.dumps(action.as_dict()))
      taken.append(action)
    self.actions.extend(taken)
    return taken

  def override(self) -> WeightsOverride:
    """The override now in force (segments at scale 1 are left out)."""
    return WeightsOverride({s: self._entry(s, v) for s, v in self._scale.items() if v < 1.0})

  def _entry(self, segment: str, scale: float) -> SegmentOverride:
    alpha, beta, gamma = self.base[segment]
    removed = gamma * (1.0 - scale)
    return SegmentOverride(scale, (alpha + removed, beta, gamma - removed),
                           self.config.base_promo_share * scale)
