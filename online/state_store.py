"""The listener state store interface and its key layout.

This module owns what every backend offers (:class:`StateStore`): read listeners' states,
commit a micro-batch atomically (the changed states, the per-segment popularity counts,
the quarantined lines and the source offsets they came from, all in one transaction, so a
crash leaves either the whole batch or none of it), read the offsets back to resume,
and the per-segment popularity list the gateway falls back on. ``online.stores`` picks the
backend from a URL: a path or ``sqlite:///PATH`` (the embedded default,
``online.sqlite_store``) or ``redis://HOST:PORT/DB`` (``online.redis_store``).

Key layout, shared by both backends and shaped as Feast's online stores key features:
the entity is the listener (join key ``user_id``), the feature view is
``listener_state`` with one feature ``state`` (the JSON of
``online.listener_state.ListenerState``) and its event timestamp (the newest event
applied). See docs/nearline.md.
"""

import abc
import dataclasses
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from online import listener_state

FEATURE_VIEW = "listener_state"
ENTITY_KEY = "user_id"
ALL_SEGMENTS = "all"   # the popularity list over every segment


@dataclasses.dataclass(frozen=True)
class Offset:
  """How far a source file has been applied: byte offset and line count."""
  offset: int = 0
  lines: int = 0


@dataclasses.dataclass(frozen=True)
class Quarantined:
  """A source line that was not applied, with where it was and why."""
  file: str
  line: int
  raw: str
  reason: str


@dataclasses.dataclass
class Batch:
  """One micro-batch's effect, committed atomically by :meth:`StateStore.commit`.

  Attributes:
    states: The changed listener states (whole values).
    popularity: (segment, track_id) -> plays to add.
    quarantined: Lines set aside.
    offsets: Source file -> offset after this batch.
  """
  states: List[listener_state.ListenerState] = dataclasses.field(default_factory=list)
  popularity: Dict[Tuple[str, str], int] = dataclasses.field(default_factory=dict)
  quarantined: List[Quarantined] = dataclasses.field(default_factory=list)
  offsets: Dict[str, Offset] = dataclasses.field(default_factory=dict)


class StateStore(abc.ABC):
  """Listener states, popularity lists, quarantine and source offsets."""

  url: str = ""

  @abc.abstractmethod
  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    """The states of the listeners that have one (unknown listeners are left out)."""

  def get(self, user_id: str) -> Optional[listener_state.ListenerState]:
    """The state of ``user_id``, or None for a listener never seen."""
    return self.get_many([user_id]).get(user_id)

  @abc.abstractmethod
  def commit(self, batch: Batch) -> None:
    """Writes all of ``batch`` in one transaction."""

  @abc.abstractmethod
  def offsets(self) -> Dict[str, Offset]:
    """Source file -> the offset its applied lines end at."""

  @abc.abstractmethod
  def top_tracks(self, segment: str, k: int) -> List[Tuple[str, float]]:
    """The ``k`` most played tracks of ``segment`` (``ALL_SEGMENTS``: of everyone)."""

  @abc.abstractmethod
  def quarantined(self) -> List[Quarantined]:
    """Every quarantined line, by file and line."""

  @abc.abstractmethod
  def listener_count(self) -> int:
    """How many listeners have a state."""

  @abc.abstractmethod
  def bytes_per_listener(self) -> float:
    """Storage the states take per listener (backend-specific measure, see its doc)."""

  def close(self) -> None:
    """Releases connections."""

  def __enter__(self) -> "StateStore":
    return self

  def __exit__(self, *exc) -> None:
    self.close()


def merge_offsets(current: Mapping[str, Offset], new: Mapping[str, Offset]
                  ) -> Dict[str, Offset]:
  """``current`` updated by ``new`` (a file's offset only moves forward)."""
  out = dict(current)
  for name, off in new.items():
    if name not in out or off.offset >= out[name].offset:
      out[name] = off
  return out
