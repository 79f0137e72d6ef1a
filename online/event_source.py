"""The nearline updater's input: a directory of JSON-lines event logs being appended.

This module owns reading play events from ``SOURCE``: every ``*.jsonl`` file in the
directory (a log shipper's or the simulator's live output; files are read in name
order, each from the byte offset the store says it was applied up to), one JSON object
per line with the columns of ``features.events.EVENT_SCHEMA`` (only ``user_id``,
``track_id`` and ``ts`` are required). A line counts only once its newline is written,
so a writer caught mid-line is read on the next pass. :func:`parse_event` turns a line
into a :class:`~online.listener_state.PlayEvent` or says why it cannot.
"""

import dataclasses
import glob
import math
import os
from typing import Dict, List, Mapping, Tuple

# orjson (locked, a TFX dependency) parses a line several times faster than json.
import orjson

from features import feature_spec
from online import listener_state
from online import state_store

MAX_LINE_BYTES = 64 << 10
_CHUNK_BYTES = 1 << 20
_UNIT_FIELDS = ("completion", "skip", "like", "subscription")
_TEXT_FIELDS = ("session_id", "artist_id")
# JSON numbers (bool, a subclass of int, is not one); NaN fails every range check.
_NUMBER = (int, float)


@dataclasses.dataclass(frozen=True)
class Line:
  """One complete line of a source file (``line`` counts from 1)."""
  file: str
  line: int
  raw: str


@dataclasses.dataclass
class LineBlock:
  """Complete lines read in one pass, as raw bytes, and where each came from.

  Attributes:
    raws: The lines without their newline, in file then line order.
    spans: (file, number of its first line here, lines here), one per file read.
  """
  raws: List[bytes] = dataclasses.field(default_factory=list)
  spans: List[Tuple[str, int, int]] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return len(self.raws)

  def line(self, i: int) -> Line:
    """Line ``i`` of the block with its file and line number."""
    for file, first, count in self.spans:
      if i < count:
        return Line(file, first + i, self.raws[i].decode("utf-8", errors="replace"))
      i -= count
    raise IndexError(i)


class DirectorySource:
  """Complete lines of ``DIR/*.jsonl`` past given offsets.

  Args:
    directory: The directory of event logs.
    pattern: Which files of it are logs.
  """

  def __init__(self, directory: str, pattern: str = "*.jsonl"):
    if not os.path.isdir(directory):
      raise ValueError(f"events directory {directory!r} does not exist")
    self.directory = directory
    self.pattern = pattern

  def read(self, offsets: Mapping[str, state_store.Offset], max_lines: int
           ) -> Tuple[LineBlock, Dict[str, state_store.Offset]]:
    """Up to ``max_lines`` new complete lines, and each touched file's offset after them.

    Args:
      offsets: File name (relative to the directory) -> where applying stopped.
      max_lines: Most lines to return.

    Returns:
      (the lines, file -> offset after its last returned line).
    """
    block = LineBlock()
    after: Dict[str, state_store.Offset] = {}
    for path in sorted(glob.glob(os.path.join(self.directory, self.pattern))):
      if len(block.raws) >= max_lines:
        break
      name = os.path.relpath(path, self.directory)
      start = offsets.get(name, state_store.Offset())
      with open(path, "rb") as f:
        f.seek(start.offset)
        raws = _complete_lines(f, max_lines - len(block.raws))
      if raws:
        block.spans.append((name, start.lines + 1, len(raws)))
        block.raws.extend(raws)
        after[name] = state_store.Offset(start.offset + sum(map(len, raws)) + len(raws),
                                         start.lines + len(raws))
    return block, after


def _complete_lines(f, max_lines: int) -> List[bytes]:
  """Up to ``max_lines`` newline-terminated lines of ``f`` from where it stands (a last
  line without its newline is still being written, and is left for the next read)."""
  lines: List[bytes] = []
  pending = b""
  while len(lines) < max_lines:
    chunk = f.read(_CHUNK_BYTES)
    if not chunk:
      break
    parts = (pending + chunk).split(b"\n") if pending else chunk.split(b"\n")
    pending = parts.pop()
    lines.extend(parts[:max_lines - len(lines)])
  return lines


def parse_event(raw: str) -> listener_state.PlayEvent:
  """One JSON line as a play event.

  Raises:
    ValueError: the reason the line cannot be applied (quarantined with it).
  """
  if len(raw) > MAX_LINE_BYTES:
    raise ValueError(f"line longer than {MAX_LINE_BYTES} bytes")
  try:
    doc = orjson.loads(raw)
  except orjson.JSONDecodeError as e:
    raise ValueError(f"not JSON: {e.msg} at column {e.colno}") from None
  if type(doc) is not dict:  # pylint: disable=unidiomatic-typecheck
    raise ValueError("not a JSON object")
  get = doc.get
  user, track = get("user_id"), get("track_id")
  for name, value in (("user_id", user), ("track_id", track)):
    if type(value) is not str or not value.strip():  # pylint: disable=unidiomatic-typecheck
      raise ValueError(f"missing {name}")
  ts = get("ts")
  if type(ts) not in _NUMBER or not math.isfinite(ts):
    raise ValueError("ts missing or not a number")
  if ts != int(ts) or ts <= 0:
    raise ValueError("ts not positive whole seconds")
  text = []
  for name in _TEXT_FIELDS:
    value = get(name)
    if value is not None and type(value) is not str:  # pylint: disable=unidiomatic-typecheck
      raise ValueError(f"{name} not a string")
    text.append(value or "")
  unit = []
  for name in _UNIT_FIELDS:
    value = get(name)
    if value is not None:
      if type(value) not in _NUMBER or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} outside [0, 1]" if type(value) in _NUMBER
                         else f"{name} not a number")
      value = float(value)
    unit.append(value)
  segment = get("user_segment")
  if segment is not None and segment not in feature_spec.SEGMENTS:
    raise ValueError("unknown user_segment")
  tenure = get("user_tenure_days")
  if tenure is not None:
    if type(tenure) not in _NUMBER or not tenure >= 0:
      raise ValueError("user_tenure_days not a number >= 0")
    tenure = float(tenure)
  return listener_state.PlayEvent(user, int(ts), track, text[1], text[0], *unit, segment,
                                  tenure)
