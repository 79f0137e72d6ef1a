"""The common event schema that every data source produces, and its validator.

Two tables make a dataset:

* **events**: one row per play or impression (``EVENT_SCHEMA``). Labels a source does
  not record are null (NaN for floats); ``features.examples`` turns a null label into
  value 0 with weight 0 — it is never invented.
* **tracks**: one row per track with its metadata (``TRACK_SCHEMA``).

``validate_events`` / ``validate_tracks`` split a pandas frame into valid rows and
quarantined rows (each with a ``reason``), count bad rows by reason, and fail with a
clear message only when the bad fraction exceeds a limit. Nothing valid is dropped.
"""

import collections
import dataclasses
import os
from typing import Dict, Optional

import numpy as np
import pandas as pd
import pyarrow as pa

from features import feature_spec as fs

EVENT_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("session_id", pa.string()),
    ("ts", pa.int64()),                 # epoch seconds (UTC); null where the source has no time
    ("plays", pa.int64()),              # plays this row stands for (1, or a count in aggregates)
    ("track_id", pa.string()),
    ("artist_id", pa.string()),
    ("source", pa.string()),            # one of feature_spec.SOURCES
    ("user_segment", pa.string()),      # one of feature_spec.SEGMENTS
    ("user_tenure_days", pa.float32()),
    ("context_activity", pa.string()),  # one of feature_spec.ACTIVITIES
    ("context_surface", pa.string()),   # one of feature_spec.SURFACES
    ("is_promo", pa.bool_()),
    # labels: null where the source does not have them
    ("completion", pa.float32()),       # 0..1
    ("skip", pa.float32()),             # 0/1
    ("like", pa.float32()),             # 0/1
    ("subscription", pa.float32()),     # 0/1
    ("exposure", pa.float32()),         # >= 0
])

TRACK_SCHEMA = pa.schema([
    ("track_id", pa.string()),
    ("artist_id", pa.string()),
    ("tags", pa.list_(pa.string())),
    ("duration_s", pa.float32()),       # null if unknown
    ("popularity", pa.float32()),       # log1p(plays or listens); null if unknown
    ("title", pa.string()),             # free text for the intent model; may be empty
])

# event column -> label key of feature_spec
EVENT_LABELS: Dict[str, str] = {
    "completion": "interest_completion",
    "skip": "interest_skip",
    "like": "interest_like",
    "subscription": "subscription",
    "exposure": "exposure",
}


class BadDataError(ValueError):
  """Raised when the fraction of malformed rows exceeds the configured limit."""


@dataclasses.dataclass
class ValidationReport:
  """What validation found: row counts and bad rows by reason."""
  table: str
  total: int
  valid: int
  bad_by_reason: Dict[str, int]
  quarantine_path: Optional[str] = None

  @property
  def bad(self) -> int:
    return self.total - self.valid

  @property
  def bad_fraction(self) -> float:
    return self.bad / self.total if self.total else 0.0

  def summary(self) -> str:
    lines = [f"{self.table}: {self.total} rows, {self.valid} valid, {self.bad} quarantined"
             f" ({100 * self.bad_fraction:.2f}%)"]
    for reason, n in sorted(self.bad_by_reason.items(), key=lambda kv: -kv[1]):
      lines.append(f"  {n:>8}  {reason}")
    if self.quarantine_path:
      lines.append(f"  quarantine: {self.quarantine_path}")
    return "\n".join(lines)


def _reasons_events(df: pd.DataFrame) -> pd.Series:
  """First failing check per row ('' when the row is valid)."""
  reason = pd.Series("", index=df.index, dtype=object)

  def mark(mask, why):
    mask = mask & (reason == "")
    reason[mask] = why

  for col in ("user_id", "track_id", "session_id"):
    mark(df[col].isna() | (df[col].astype(str).str.len() == 0), f"missing {col}")
  ts = pd.to_numeric(df["ts"], errors="coerce")
  mark(ts.notna() & (ts <= 0), "ts not positive")
  plays = pd.to_numeric(df["plays"], errors="coerce")
  mark(plays.isna() | (plays < 1), "plays below 1")
  mark(~df["source"].isin(fs.SOURCES), "unknown source")
  mark(~df["user_segment"].isin(fs.SEGMENTS), "unknown user_segment")
  mark(~df["context_activity"].isin(fs.ACTIVITIES), "unknown context_activity")
  mark(~df["context_surface"].isin(fs.SURFACES), "unknown context_surface")
  for col in ("completion", "skip", "like", "subscription"):
    v = pd.to_numeric(df[col], errors="coerce")
    mark(v.notna() & ((v < 0) | (v > 1)), f"{col} outside [0, 1]")
  v = pd.to_numeric(df["exposure"], errors="coerce")
  mark(v.notna() & (v < 0), "exposure negative")
  return reason


def _reasons_tracks(df: pd.DataFrame) -> pd.Series:
  reason = pd.Series("", index=df.index, dtype=object)

  def mark(mask, why):
    mask = mask & (reason == "")
    reason[mask] = why

  mark(df["track_id"].isna() | (df["track_id"].astype(str).str.len() == 0), "missing track_id")
  mark(df["track_id"].duplicated(keep="first"), "duplicate track_id")
  d = pd.to_numeric(df["duration_s"], errors="coerce")
  mark(d.notna() & (d <= 0), "duration_s not positive")
  return reason


def _validate(df, schema, reasons_fn, table, quarantine_dir, max_bad_fraction):
  missing = [n for n in schema.names if n not in df.columns]
  if missing:
    raise BadDataError(f"{table}: columns missing: {missing}")
  reason = reasons_fn(df)
  bad_mask = reason != ""
  counts = collections.Counter(reason[bad_mask])
  report = ValidationReport(table, len(df), int((~bad_mask).sum()), dict(counts))
  if bad_mask.any() and quarantine_dir:
    os.makedirs(quarantine_dir, exist_ok=True)
    path = os.path.join(quarantine_dir, f"{table}.quarantine.csv")
    q = df[bad_mask].copy()
    q.insert(0, "reason", reason[bad_mask])
    q.to_csv(path, index=False)
    report.quarantine_path = path
  if report.bad_fraction > max_bad_fraction:
    raise BadDataError(
        f"{table}: {report.bad} of {report.total} rows are malformed "
        f"({100 * report.bad_fraction:.2f}% > limit {100 * max_bad_fraction:.2f}%)\n"
        + report.summary())
  valid = df[~bad_mask][list(schema.names)].reset_index(drop=True)
  return valid, report


def validate_events(df: pd.DataFrame, quarantine_dir: Optional[str] = None,
                    max_bad_fraction: float = 0.05):
  """Splits events into (valid frame in EVENT_SCHEMA column order, report)."""
  return _validate(df, EVENT_SCHEMA, _reasons_events, "events", quarantine_dir,
                   max_bad_fraction)


def validate_tracks(df: pd.DataFrame, quarantine_dir: Optional[str] = None,
                    max_bad_fraction: float = 0.05):
  """Splits tracks into (valid frame in TRACK_SCHEMA column order, report)."""
  return _validate(df, TRACK_SCHEMA, _reasons_tracks, "tracks", quarantine_dir,
                   max_bad_fraction)


def to_arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
  """Converts a validated frame to an Arrow table of exactly ``schema``."""
  return pa.Table.from_pandas(df[list(schema.names)], schema=schema, preserve_index=False)


def empty_labels(n: int) -> Dict[str, np.ndarray]:
  """Null (NaN) label columns for a source that records none of them."""
  return {col: np.full(n, np.nan, dtype=np.float32) for col in EVENT_LABELS}
