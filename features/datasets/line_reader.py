"""Line-robust reading of one delimited text file (CSV or TSV) for the data adapters.

Owns turning a file's bytes into a frame of its well-formed lines plus the list of its
malformed lines, each with its 1-based line number and a reason, so that one bad line
costs one line and never the file. A line is malformed when it does not decode in the
file's encoding, holds a NUL or a carriage return before its end, has an unbalanced
quote or a quote inside a field (quoted formats), or has the wrong number of fields.
The checks run with numpy over the whole buffer (line bounds, separators outside
quotes, control bytes), one decode per chunk of lines finds encoding errors, and the
well-formed lines are parsed in a single pass of pandas' C parser; only lines already
known to be bad, or the lines of a chunk that failed to decode, are looked at one by
one. A file whose header is missing, undecodable or lacks a required column cannot be
split into good and bad lines: that raises ``ValueError`` and the caller rejects the
file as a whole.

Every value is read as text (null, i.e. NaN, for an empty field; nothing else is
treated as missing); adapters convert and check values themselves.
"""

import csv
import dataclasses
import io
import os
from typing import List, Sequence

import numpy as np
import pandas as pd

# Columns added to every frame read: the file name and the 1-based physical line.
FILE = "_file"
LINE = "_line"

_NL, _CR, _NUL, _QUOTE = 0x0A, 0x0D, 0x00, 0x22
# Bytes decoded per attempt when looking for encoding errors.
_DECODE_CHUNK = 1 << 23


@dataclasses.dataclass(frozen=True)
class Format:
  """How a file is laid out.

  Attributes:
    sep: the field separator (one character).
    quoted: fields may be enclosed in double quotes (CSV rules, ``""`` inside);
      when False a quote is an ordinary character.
    encoding: the text encoding; ASCII-compatible (``utf-8``, ``ascii``, ``latin-1``),
      since only lines with a byte >= 0x80 are checked for decoding errors.
    repeated_last: the header's last column repeats (one field per item, e.g. one tag
      per field): a line has at least ``len(header) - 1`` fields, and that column
      becomes a list of its non-empty, stripped values. Unquoted formats only.
  """
  sep: str = ","
  quoted: bool = True
  encoding: str = "utf-8"
  repeated_last: bool = False

  def __post_init__(self):
    if len(self.sep) != 1 or ord(self.sep) > 127 or self.sep == '"':
      raise ValueError(f"sep must be one ASCII character other than '\"', got {self.sep!r}")
    if self.repeated_last and self.quoted:
      raise ValueError("repeated_last needs an unquoted format (quoted=False)")


class LineFile:
  """A file's bytes and line bounds; gives the raw text of any line on demand.

  Lines end at ``\\n``; a ``\\r`` right before it belongs to the line ending.

  Attributes:
    path: the file's path.
    name: its base name (how quarantine records name it).
    encoding: the encoding its text is decoded with.
    starts, ends: byte offsets of each line's first byte and of its end (exclusive,
      without the line ending); line ``k`` (1-based) is index ``k - 1``.
  """

  def __init__(self, path: str, encoding: str):
    with open(path, "rb") as f:
      self.data = f.read()
    self.path = path
    self.name = os.path.basename(path)
    self.encoding = encoding
    self.buf = np.frombuffer(self.data, dtype=np.uint8)
    newlines = np.flatnonzero(self.buf == _NL)
    starts = np.concatenate([[0], newlines + 1])
    ends = np.concatenate([newlines, [len(self.buf)]])
    if starts[-1] == len(self.buf):   # the file ends with a newline (or is empty)
      starts, ends = starts[:-1], ends[:-1]
    has_cr = ends > starts
    has_cr[has_cr] = self.buf[ends[has_cr] - 1] == _CR
    self.starts = starts.astype(np.int64)
    self.ends = (ends - has_cr).astype(np.int64)

  def __len__(self) -> int:
    return len(self.starts)

  def line_bytes(self, index: int) -> bytes:
    return self.data[self.starts[index]:self.ends[index]]

  def raw(self, line: int) -> str:
    """The text of 1-based ``line``; undecodable bytes are kept as ``\\xNN`` escapes."""
    return self.line_bytes(line - 1).decode(self.encoding, errors="backslashreplace")

  def line_of(self, offsets: np.ndarray) -> np.ndarray:
    """0-based line index of each byte offset."""
    return np.searchsorted(self.starts, offsets, side="right") - 1


@dataclasses.dataclass
class Parsed:
  """One file read line-robustly.

  Attributes:
    frame: one row per well-formed data line, every column text (null when empty),
      plus ``FILE`` and ``LINE``; file order.
    bad: the malformed data lines: ``line`` (1-based) and ``reason``.
    lines_read: data lines (non-blank lines after the header).
    file: the file's bytes and line bounds.
  """
  frame: pd.DataFrame
  bad: pd.DataFrame
  lines_read: int
  file: LineFile


def _split_header(text: str, fmt: Format) -> List[str]:
  quoting = csv.QUOTE_MINIMAL if fmt.quoted else csv.QUOTE_NONE
  return next(csv.reader([text], delimiter=fmt.sep, quoting=quoting))


def _first_column(lf: LineFile, pos: np.ndarray) -> np.ndarray:
  """Per line, the 1-based column of the first of the offsets ``pos`` on it, or 0."""
  line = lf.line_of(pos)
  first = np.zeros(len(lf), dtype=np.int64)
  # Reversed so that the first offset on a line is written last.
  first[line[::-1]] = (pos - lf.starts[line] + 1)[::-1]
  return first


def _field_counts(lf: LineFile, fmt: Format):
  """Fields per line, quoting problems per line, and the field separators.

  A quote (quoted formats) must open or close a field or be doubled inside one; the
  C parser reads any other quote as text, which would make its field count differ.

  Returns:
    (fields, unbalanced, stray, seps, seps_line): ``unbalanced`` flags lines with an
    odd number of quotes, ``stray`` is the column of a line's first misplaced quote
    (0: none); separators inside quotes are not counted, ``seps`` are the offsets of
    the others and ``seps_line`` their lines.
  """
  n = len(lf)
  seps = np.flatnonzero(lf.buf == ord(fmt.sep))
  seps_line = lf.line_of(seps)
  unbalanced = np.zeros(n, dtype=bool)
  stray = np.zeros(n, dtype=np.int64)
  quotes = np.flatnonzero(lf.buf == _QUOTE) if fmt.quoted else np.zeros(0, dtype=np.int64)
  if len(quotes):
    q_line = lf.line_of(quotes)
    unbalanced = np.bincount(q_line, minlength=n) % 2 == 1
    last = len(lf.buf) - 1
    prev = lf.buf[np.maximum(quotes - 1, 0)]
    after = lf.buf[np.minimum(quotes + 1, last)]
    boundary = ((quotes == lf.starts[q_line]) | (quotes + 1 == lf.ends[q_line])
                | np.isin(prev, (ord(fmt.sep), _QUOTE)) | np.isin(after, (ord(fmt.sep), _QUOTE)))
    stray = _first_column(lf, quotes[~boundary])
    # A separator is inside quotes when an odd number of quotes precede it on its line.
    before = np.searchsorted(quotes, seps) - np.searchsorted(quotes, lf.starts[seps_line])
    outside = before % 2 == 0
    seps, seps_line = seps[outside], seps_line[outside]
  return np.bincount(seps_line, minlength=n) + 1, unbalanced, stray, seps, seps_line


def _control_bytes(lf: LineFile) -> np.ndarray:
  """Per line, the column (1-based) of its first NUL or inner CR, or 0."""
  pos = np.flatnonzero((lf.buf == _NUL) | (lf.buf == _CR))
  return _first_column(lf, pos[pos < lf.ends[lf.line_of(pos)]])   # a CR at the end ends it


def _undecodable(lf: LineFile, candidates: np.ndarray) -> dict:
  """Lines among ``candidates`` (0-based) that do not decode: index -> reason.

  Only lines with a byte >= 0x80 can fail. They are decoded together, a chunk of the
  file at a time; only the lines of a chunk that fails are decoded one by one.
  """
  if lf.encoding.replace("-", "").replace("_", "").lower() in ("latin1", "iso88591"):
    return {}                       # every byte decodes in latin-1
  high = np.zeros(len(lf), dtype=bool)
  high[lf.line_of(np.flatnonzero(lf.buf >= 0x80))] = True
  suspects = candidates[high[candidates]]
  found = {}
  view = memoryview(lf.data)
  for chunk in np.split(suspects, np.flatnonzero(np.diff(lf.starts[suspects] // _DECODE_CHUNK))
                        + 1):
    if not len(chunk):
      continue
    try:
      str(view[lf.starts[chunk[0]]:lf.ends[chunk[-1]]], lf.encoding)
      continue
    except UnicodeDecodeError:
      pass
    for index in chunk:
      try:
        lf.line_bytes(index).decode(lf.encoding)
      except UnicodeDecodeError as e:
        found[int(index)] = (f"not {lf.encoding}: byte 0x{e.object[e.start]:02x} "
                             f"at column {e.start + 1}")
  return found


def _kept_bytes(lf: LineFile, keep: np.ndarray, stops: np.ndarray) -> bytes:
  """Lines flagged in ``keep``, each cut at ``stops`` but with its line ending, in order."""
  seg_ends = np.append(lf.starts[1:], len(lf.buf))
  idx = np.flatnonzero(keep)
  if not len(idx):
    return b""
  if (np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))
      and np.array_equal(stops[idx], lf.ends[idx])):
    return lf.data[lf.starts[idx[0]]:seg_ends[idx[-1]]]      # one contiguous run
  # Keep [start, stop) and [end, next start) of each kept line: +1/-1 marks, cumsum.
  marks = np.zeros(len(lf.buf) + 1, dtype=np.int8)
  for lo, hi in ((lf.starts[idx], stops[idx]), (lf.ends[idx], seg_ends[idx])):
    np.add.at(marks, lo, 1)
    np.add.at(marks, hi, -1)
  return lf.buf[np.cumsum(marks[:-1], dtype=np.int8) > 0].tobytes()


def _repeated_stops(lf: LineFile, fields, seps, seps_line, n_fixed: int) -> np.ndarray:
  """Per line, the offset where its first ``n_fixed`` fields end."""
  stops = lf.ends.copy()
  longer = np.flatnonzero(fields > n_fixed)
  stops[longer] = seps[np.searchsorted(seps_line, longer) + n_fixed - 1]
  return stops


def _tail_lists(lf: LineFile, lines: np.ndarray, stops: np.ndarray, sep: str) -> list:
  """Per line, the non-empty stripped fields after ``stops`` (the repeated column)."""
  out = []
  for lo, hi in zip(stops[lines] + 1, lf.ends[lines]):
    items = lf.data[lo:hi].decode(lf.encoding).split(sep) if lo <= hi else ()
    out.append([t for t in (item.strip() for item in items) if t])
  return out


def _reasons(lf: LineFile, fmt: Format, n_header: int, body: np.ndarray, fields: np.ndarray,
             unbalanced: np.ndarray, stray: np.ndarray) -> dict:
  """The malformed lines among ``body``: 0-based index -> reason (the most basic one)."""
  if fmt.repeated_last:
    wrong, want = fields[body] < n_header - 1, f"at least {n_header - 1}"
  else:
    wrong, want = fields[body] != n_header, str(n_header)
  reasons = {int(i): f"expected {want} fields, saw {fields[i]}" for i in body[wrong]}
  for index in body[stray[body] > 0]:
    reasons[int(index)] = f"quote inside a field at column {stray[index]}"
  for index in body[unbalanced[body]]:
    reasons[int(index)] = "unbalanced quote"
  control = _control_bytes(lf)
  for index in body[control[body] > 0]:
    reasons[int(index)] = f"control byte (NUL or CR) at column {control[index]}"
  reasons.update(_undecodable(lf, body))
  return reasons


def read(path: str, fmt: Format, required: Sequence[str] = ()) -> Parsed:
  """Reads ``path`` line-robustly: good lines parsed, bad lines listed with a reason.

  Args:
    path: the file.
    fmt: its layout.
    required: columns the header must name.

  Returns:
    The parsed file (see ``Parsed``).

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file has no header, the header does not decode, or it lacks a
      required column (the file cannot be read line by line at all).
  """
  lf = LineFile(path, fmt.encoding)
  nonblank = np.flatnonzero(lf.ends > lf.starts)
  if not len(nonblank):
    raise ValueError(f"{path}: empty file, expected a header line")
  head = int(nonblank[0])
  try:
    header = _split_header(lf.line_bytes(head).decode(fmt.encoding), fmt)
  except UnicodeDecodeError as e:
    raise ValueError(f"{path}: header line {head + 1} is not {fmt.encoding}: {e}") from e
  missing = [c for c in required if c not in header]
  if missing:
    raise ValueError(f"{path}: header lacks {missing}; found {header}")
  body = nonblank[1:]

  fields, unbalanced, stray, seps, seps_line = _field_counts(lf, fmt)
  reasons = _reasons(lf, fmt, len(header), body, fields, unbalanced, stray)
  keep = np.zeros(len(lf), dtype=bool)
  keep[body] = True
  bad_index = np.array(sorted(reasons), dtype=np.int64)
  keep[bad_index] = False
  good = np.flatnonzero(keep)
  # The repeated column is split off in Python (it becomes a list per row anyway), so
  # pandas parses a fixed number of fields.
  names = header[:-1] if fmt.repeated_last else list(header)
  stops = (_repeated_stops(lf, fields, seps, seps_line, len(names)) if fmt.repeated_last
           else lf.ends)
  if len(good):
    frame = pd.read_csv(
        io.BytesIO(_kept_bytes(lf, keep, stops)), sep=fmt.sep, header=None, names=names,
        dtype=str, encoding=fmt.encoding, engine="c", index_col=False,
        quoting=csv.QUOTE_MINIMAL if fmt.quoted else csv.QUOTE_NONE,
        keep_default_na=False, na_values=[""], skip_blank_lines=False)
    if len(frame) != len(good):
      raise ValueError(f"{path}: parsed {len(frame)} rows from {len(good)} well-formed lines")
  else:
    frame = pd.DataFrame({c: pd.Series([], dtype=object) for c in names})
  if fmt.repeated_last:
    frame[header[-1]] = pd.Series(_tail_lists(lf, good, stops, fmt.sep), index=frame.index,
                                  dtype=object)
  frame[FILE] = lf.name
  frame[LINE] = good + 1
  bad = pd.DataFrame({"line": bad_index + 1,
                      "reason": [reasons[int(i)] for i in bad_index]})
  return Parsed(frame=frame, bad=bad, lines_read=len(body), file=lf)
