"""The quarantine of a data import: bad source lines, kept whole, with where and why.

Owns the ``Quarantine`` an adapter reads its files through: it records every line that
was not imported as one record ``{"file", "line", "raw", "reason"}`` (the file's base
name, the 1-based line number, the line's text with undecodable bytes kept as ``\\xNN``
escapes, and the first reason found), whether the line was malformed when read
(``line_reader``), failed an adapter's value check, failed validation of the common
schema, or points at a track that is not in the tracks table. It also owns the per-file
accounting those records feed (lines read, lines quarantined by reason, the fraction
of malformed lines that decides whether an import is rejected), and the JSONL file the
records are written to.

Duplicates (``DUPLICATE_REASONS``: the same play logged twice) are quarantined and
counted but are not malformed: the source wrote them on purpose, and they do not count
toward the malformed fraction.
"""

import collections
import dataclasses
import json
import os
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from features import events as events_lib
from features.datasets import line_reader

FILE = line_reader.FILE
LINE = line_reader.LINE
RECORD_KEYS = ("file", "line", "raw", "reason")
QUARANTINE_FILE = "quarantine.jsonl"
DUPLICATE_REASONS = (events_lib.DUPLICATE_EVENT,)


class Quarantine:
  """Reads an adapter's files and collects the lines that are not imported."""

  def __init__(self):
    self._files: Dict[str, line_reader.LineFile] = {}
    self._lines: Dict[str, int] = {}
    self._bad: List[pd.DataFrame] = []

  def read(self, path: str, fmt: line_reader.Format, required: Sequence[str] = ()
           ) -> pd.DataFrame:
    """Reads ``path`` line-robustly (see ``line_reader.read``), quarantining bad lines.

    Returns:
      The well-formed lines: text columns plus ``FILE`` and ``LINE``.

    Raises:
      FileNotFoundError, ValueError: as ``line_reader.read``.
    """
    parsed = line_reader.read(path, fmt, required)
    name = parsed.file.name
    self._files[name] = parsed.file
    self._lines[name] = parsed.lines_read
    if len(parsed.bad):
      self._bad.append(parsed.bad.assign(file=name)[["file", "line", "reason"]])
    return parsed.frame

  def reject(self, frame: pd.DataFrame, mask, reason: Union[str, pd.Series]) -> pd.DataFrame:
    """Quarantines the rows of ``frame`` where ``mask`` holds; returns the others.

    Args:
      frame: rows with ``FILE`` and ``LINE`` columns (as ``read`` returns them, or an
        origin frame of adapted rows).
      mask: boolean per row (nulls count as False).
      reason: one reason for all, or a reason per row (aligned with ``frame``).

    Returns:
      ``frame`` without the quarantined rows (same index, same order).
    """
    mask = pd.Series(mask, index=frame.index).fillna(False).astype(bool).to_numpy()
    if mask.any():
      why = reason if isinstance(reason, str) else np.asarray(reason, dtype=object)[mask]
      self._bad.append(pd.DataFrame({"file": frame[FILE].to_numpy()[mask],
                                     "line": frame[LINE].to_numpy()[mask], "reason": why}))
    return frame[~mask]

  def reject_unmatched(self, frame: pd.DataFrame, columns: Sequence[str], pattern: str,
                       what: str) -> pd.DataFrame:
    """Quarantines rows where a column is present but does not fully match ``pattern``.

    Args:
      frame: rows with ``FILE`` and ``LINE`` columns.
      columns: the columns to check, in order (a row gets the first failing one).
      pattern: an RE2 regular expression the whole value must match.
      what: what a value should be; the reason is ``"<column> is not <what>"``.

    Returns:
      ``frame`` without the quarantined rows.
    """
    for col in columns:
      values = pa.array(frame[col].to_numpy(dtype=object), type=pa.string(), from_pandas=True)
      matched = pc.match_substring_regex(values, f"^(?:{pattern})$").fill_null(True)
      frame = self.reject(frame, ~matched.to_numpy(zero_copy_only=False),
                          f"{col} is not {what}")
    return frame

  @property
  def lines_read(self) -> Dict[str, int]:
    """Data lines read per file, in reading order."""
    return dict(self._lines)

  def records(self) -> pd.DataFrame:
    """Every quarantined line: ``file``, ``line``, ``raw``, ``reason``.

    Ordered by file (reading order) then line; a line rejected for two reasons (its
    event and a track derived from it) has one record per reason.
    """
    if not self._bad:
      return pd.DataFrame({k: pd.Series([], dtype=object) for k in RECORD_KEYS})
    bad = pd.concat(self._bad, ignore_index=True)
    order = {name: i for i, name in enumerate(self._files)}
    bad = bad.assign(_order=bad["file"].map(order)).sort_values(
        ["_order", "line"], kind="stable", ignore_index=True)
    raw = [self._files[f].raw(int(n)) for f, n in zip(bad["file"], bad["line"])]
    return bad.assign(raw=raw, line=bad["line"].astype(np.int64))[list(RECORD_KEYS)]


@dataclasses.dataclass(frozen=True)
class FileReport:
  """What one source file lost to the quarantine.

  Attributes:
    name: the file's base name.
    lines: its data lines (non-blank lines after the header).
    bad_by_reason: quarantine records per reason.
    malformed: distinct lines quarantined for a reason other than a duplicate.
  """
  name: str
  lines: int
  bad_by_reason: Dict[str, int]
  malformed: int

  @property
  def malformed_fraction(self) -> float:
    """Malformed lines over data lines (0 for a file without data lines)."""
    return self.malformed / self.lines if self.lines else 0.0

  def to_dict(self) -> Dict[str, object]:
    """JSON-ready form (used by import reports)."""
    return {"lines": self.lines, "malformed": self.malformed,
            "malformed_fraction": self.malformed_fraction,
            "quarantined_by_reason": dict(self.bad_by_reason)}


def file_reports(lines_read: Dict[str, int], records: pd.DataFrame) -> Dict[str, FileReport]:
  """Per-file accounting of the quarantine ``records`` (see ``Quarantine.records``)."""
  malformed = records[~records["reason"].isin(DUPLICATE_REASONS)]
  distinct = malformed.drop_duplicates(["file", "line"])["file"].value_counts()
  out = {}
  for name, lines in lines_read.items():
    mine = records.loc[records["file"] == name, "reason"]
    out[name] = FileReport(name, lines, dict(collections.Counter(mine)),
                           int(distinct.get(name, 0)))
  return out


def over_limit(files: Dict[str, FileReport], max_bad_fraction: float) -> List[FileReport]:
  """The files whose malformed fraction is above ``max_bad_fraction``."""
  return [f for f in files.values() if f.malformed_fraction > max_bad_fraction]


def limit_message(over: Sequence[FileReport], max_bad_fraction: float,
                  path: Optional[str]) -> str:
  """Names each file over the limit with its counts, and where the quarantine is."""
  lines = []
  for f in over:
    lines.append(f"{f.name}: {f.malformed:,} of {f.lines:,} lines are malformed "
                 f"({100 * f.malformed_fraction:.2f}% > limit {100 * max_bad_fraction:.2f}%)")
    for reason, n in sorted(f.bad_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
      lines.append(f"  {n:>8,}  {reason}")
  lines.append(f"quarantined lines (file, line, raw text, reason): {path}" if path else
               "quarantined lines were not written (no quarantine directory given)")
  return "\n".join(lines)


def write_jsonl(records: pd.DataFrame, path: str) -> str:
  """Writes ``records`` one JSON object per line (keys ``RECORD_KEYS``); returns ``path``."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    for file, line, raw, reason in records[list(RECORD_KEYS)].itertuples(index=False):
      f.write(json.dumps({"file": file, "line": int(line), "raw": raw, "reason": reason},
                         ensure_ascii=False))
      f.write("\n")
  return path


def read_jsonl(path: str) -> List[Dict[str, object]]:
  """The records of a quarantine file, in file order."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
