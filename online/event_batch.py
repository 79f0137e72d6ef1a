"""A micro-batch of event lines as columns, parsed in one pass where it can be.

This module owns turning the raw lines of one micro-batch into :class:`EventColumns`
(one Python list per event column, the values normalised as the updater applies them)
plus the lines set aside. The fast path parses the whole batch at once with Arrow's JSON
reader against an explicit schema and checks every column vectorised; it accepts a batch
only when every line is a valid event, and then gives exactly what the line-by-line
parser (``online.event_source.parse_event``) gives. Anything unusual in the batch (a
malformed line, a wrong type, a value out of range, a quirk where Arrow is more lenient
than the line parser: ``NaN``, a byte order mark) sends the whole batch through the
line-by-line parser, which quarantines the bad lines with their reason.
"""

import dataclasses
import io
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pyarrow as pa
from pyarrow import json as pa_json

from features import feature_spec
from online import event_source
from online import listener_state

_STRING_FIELDS = ("user_id", "track_id", "artist_id", "session_id", "user_segment")
_UNIT_FIELDS = ("completion", "skip", "like", "subscription")
_SCHEMA = pa.schema([(name, pa.string()) for name in _STRING_FIELDS]
                    + [(name, pa.float64()) for name in ("ts", "user_tenure_days")
                       + _UNIT_FIELDS])
_PARSE = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore",
                              newlines_in_values=False)
_SEGMENTS = frozenset(feature_spec.SEGMENTS)
# Integers a float64 holds exactly: a larger ts goes through the line parser.
_MAX_EXACT_TS = float(1 << 53)


@dataclasses.dataclass
class EventColumns:
  """Valid events of a batch, one list per column, in log order.

  ``line`` is the event's index among the batch's lines; the unit columns hold 0.0 for a
  value the event left out (what applying it means); ``segment`` and ``tenure`` keep
  None for "not given".
  """
  line: List[int] = dataclasses.field(default_factory=list)
  user: List[str] = dataclasses.field(default_factory=list)
  ts: List[int] = dataclasses.field(default_factory=list)
  track: List[str] = dataclasses.field(default_factory=list)
  artist: List[str] = dataclasses.field(default_factory=list)
  session: List[str] = dataclasses.field(default_factory=list)
  completion: List[float] = dataclasses.field(default_factory=list)
  skip: List[float] = dataclasses.field(default_factory=list)
  like: List[float] = dataclasses.field(default_factory=list)
  subscription: List[float] = dataclasses.field(default_factory=list)
  segment: List[Optional[str]] = dataclasses.field(default_factory=list)
  tenure: List[Optional[float]] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return len(self.line)

  def event(self, i: int) -> listener_state.PlayEvent:
    """Event ``i`` as a :class:`~online.listener_state.PlayEvent`."""
    return listener_state.PlayEvent(
        self.user[i], self.ts[i], self.track[i], self.artist[i], self.session[i],
        self.completion[i], self.skip[i], self.like[i], self.subscription[i],
        self.segment[i], self.tenure[i])


def parse_lines(raws: Sequence[bytes]) -> Tuple[EventColumns, List[Tuple[int, str, str]]]:
  """The valid events of ``raws`` and the rest as (line index, text, reason).

  Args:
    raws: The batch's lines, without their newline.
  """
  columns = parse_batch(raws)
  if columns is not None:
    return columns, []
  columns, rejected = EventColumns(), []
  for i, raw in enumerate(raws):
    text = raw.decode("utf-8", errors="replace")
    try:
      event = event_source.parse_event(text)
    except ValueError as e:
      rejected.append((i, text, str(e)))
      continue
    _append(columns, i, event)
  return columns, rejected


def _append(columns: EventColumns, i: int, event: listener_state.PlayEvent) -> None:
  columns.line.append(i)
  columns.user.append(event.user_id)
  columns.ts.append(event.ts)
  columns.track.append(event.track_id)
  columns.artist.append(event.artist_id)
  columns.session.append(event.session_id)
  for name in _UNIT_FIELDS:
    value = getattr(event, name)
    getattr(columns, name).append(0.0 if value is None else value)
  columns.segment.append(event.user_segment)
  columns.tenure.append(event.user_tenure_days)


def parse_batch(raws: Sequence[bytes]) -> Optional[EventColumns]:
  """All of ``raws`` as events in one columnar pass, or None when any line is not a
  valid event (the caller then parses line by line)."""
  n = len(raws)
  if not n or max(map(len, raws)) > event_source.MAX_LINE_BYTES:
    return None
  # Every line an object from its first byte: no blank line (Arrow skips those, which
  # would shift rows against lines) and no byte order mark (Arrow skips it, the line
  # parser refuses it).
  data = b"\n".join(raws)
  if data[:1] != b"{" or data.count(b"\n{") != n - 1:
    return None
  try:
    table = pa_json.read_json(
        io.BytesIO(data), parse_options=_PARSE,
        read_options=pa_json.ReadOptions(use_threads=False, block_size=len(data) + 1))
  except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
    return None
  if table.num_rows != n:   # a line holding two objects
    return None
  strings = {}
  for name in _STRING_FIELDS:
    strings[name] = _strings(table.column(name), required=name in ("user_id", "track_id"))
    if strings[name] is None:
      return None
  if not set(strings["user_segment"]) - {None} <= _SEGMENTS:
    return None
  ts, ts_null = _floats(table.column("ts"))
  if ts_null.any() or not (np.isfinite(ts) & (ts > 0) & (ts == np.floor(ts))
                           & (ts < _MAX_EXACT_TS)).all():
    return None
  units = {}
  for name in _UNIT_FIELDS:
    values, null = _floats(table.column(name))
    if not (null | ((values >= 0.0) & (values <= 1.0))).all():
      return None
    units[name] = np.where(null, 0.0, values).tolist()
  tenure, tenure_null = _floats(table.column("user_tenure_days"))
  if not (tenure_null | (np.isfinite(tenure) & (tenure >= 0))).all():
    return None
  tenure_list = tenure.tolist()
  for i in np.flatnonzero(tenure_null).tolist():
    tenure_list[i] = None

  return EventColumns(
      line=list(range(n)), user=strings["user_id"], ts=ts.astype(np.int64).tolist(),
      track=strings["track_id"], artist=_or_empty(strings["artist_id"]),
      session=_or_empty(strings["session_id"]), completion=units["completion"],
      skip=units["skip"], like=units["like"], subscription=units["subscription"],
      segment=strings["user_segment"], tenure=tenure_list)


def warm_up() -> None:
  """Parses one sample line, so that the Arrow JSON reader's one-time set-up (some
  0.5 s of CPU on first use in a process) happens at start-up, not in the first batch."""
  parse_batch([b'{"user_id": "u", "ts": 1, "track_id": "t"}'])


def _or_empty(values: List[Optional[str]]) -> List[str]:
  return [v or "" for v in values] if None in values else values


def _strings(column: pa.ChunkedArray, required: bool) -> Optional[List[Optional[str]]]:
  """A string column's values (None for null); None when a required one is null or
  blank (what the line parser calls missing)."""
  values = column.to_numpy(zero_copy_only=False).tolist()
  if required and (column.null_count or not all(map(str.strip, set(values)))):
    return None
  return values


def _floats(column: pa.ChunkedArray) -> Tuple[np.ndarray, np.ndarray]:
  """(values, null mask) of a float64 column (a null's value is NaN)."""
  array = column.combine_chunks()
  values = array.to_numpy(zero_copy_only=False)
  null = array.is_null().to_numpy(zero_copy_only=False)
  return values, null
