"""The common event schema that every data source produces, and its validator.

Two tables make a dataset:

* **events**: one row per play or impression (``EVENT_SCHEMA``). Labels a source does
  not record are null (NaN for floats); ``features.raw_features`` turns a null label into
  value 0 with weight 0 — it is never invented. Features a source does not record
  (``ts``, ``user_segment``, ``user_tenure_days``) are null as well.
* **tracks**: one row per track with its metadata (``TRACK_SCHEMA``).

``validate_events`` / ``validate_tracks`` split a pandas frame into valid rows and
quarantined rows (each with a ``reason``), count bad rows by reason, write the bad rows
to a quarantine CSV when asked, and fail with a clear message (``BadDataError``) only
when the bad fraction exceeds a limit. Nothing valid is dropped and row order is kept.
``make_events`` / ``make_tracks`` build frames with the schema's columns and defaults so
that adapters only spell out what their source actually has.
"""

import collections
import dataclasses
import os
from typing import Dict, Optional

import numpy as np
import pandas as pd
import pyarrow as pa

from features import feature_spec
EVENT_SCHEMA = pa.schema([
    ("user_id", pa.string()),
    ("session_id", pa.string()),        # a pseudo-session (one per user) where the source has none
    ("ts", pa.int64()),                 # epoch seconds (UTC); null where the source has no time
    ("plays", pa.int64()),              # plays this row stands for (1, or a count in aggregates)
    ("track_id", pa.string()),
    ("artist_id", pa.string()),         # null if unknown
    ("source", pa.string()),            # one of feature_spec.SOURCES
    ("user_segment", pa.string()),      # one of feature_spec.SEGMENTS; null if unknown
    ("user_tenure_days", pa.float32()),  # >= 0; null if unknown
    ("context_activity", pa.string()),  # one of feature_spec.ACTIVITIES
    ("context_surface", pa.string()),   # one of feature_spec.SURFACES
    ("is_promo", pa.bool_()),
    # labels: null where the source does not have them
    ("completion", pa.float32()),       # 0..1
    ("skip", pa.float32()),             # 0/1
    ("like", pa.float32()),             # 0/1
    ("subscription", pa.float32()),     # 0/1
    ("exposure", pa.float32()),         # >= 0
    # play context and skip detail that some logs record: null where the source has none
    ("shuffle", pa.bool_()),            # shuffle play on
    ("skip_profile", pa.string()),      # one of SKIP_PROFILES
])

# How much of a play was heard (the class names of the skip_profile label).
SKIP_PROFILES = feature_spec.SKIP_PROFILES

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

# Labels in [0, 1]; exposure only has a lower bound.
_UNIT_LABELS = ("completion", "skip", "like", "subscription")
# The reason a repeated play is quarantined with (a duplicate, not a malformed row).
DUPLICATE_EVENT = "duplicate event (session_id, track_id, ts)"


class BadDataError(ValueError):
  """Raised when the fraction of malformed rows exceeds the configured limit."""


@dataclasses.dataclass
class ValidationReport:
  """What validation found: row counts and bad rows by reason.

  Attributes:
    table: "events" or "tracks".
    total: rows looked at.
    valid: rows kept.
    bad_by_reason: quarantined rows per reason (the first failing check of a row).
    quarantine_path: the CSV holding the bad rows with their reason, if written.
  """
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
    for reason, n in sorted(self.bad_by_reason.items(), key=lambda kv: (-kv[1], kv[0])):
      lines.append(f"  {n:>8}  {reason}")
    if self.quarantine_path:
      lines.append(f"  quarantine: {self.quarantine_path}")
    return "\n".join(lines)

  def to_dict(self) -> Dict[str, object]:
    """JSON-ready form (used by import reports)."""
    return {"table": self.table, "total": self.total, "valid": self.valid, "bad": self.bad,
            "bad_fraction": self.bad_fraction, "bad_by_reason": dict(self.bad_by_reason),
            "quarantine_path": self.quarantine_path}


# ------------------------------------------------------------------------ builders
def _null_ints(n: int) -> pd.Series:
  return pd.Series(pd.array([pd.NA] * n, dtype="Int64"))


def make_events(source: str, n: int, **columns) -> pd.DataFrame:
  """An events frame with every ``EVENT_SCHEMA`` column, defaults filled in.

  Defaults say "the source does not record this": ``ts`` null, ``plays`` 1, unknown
  segment/tenure (null), ``context_activity``/``context_surface`` "unknown",
  ``is_promo`` False (organic plays), every label null, ``shuffle`` and
  ``skip_profile`` null.

  Args:
    source: one of ``feature_spec.SOURCES``.
    n: number of rows.
    **columns: column name -> array-like of length ``n`` overriding a default.

  Returns:
    A DataFrame with exactly the ``EVENT_SCHEMA`` columns, in schema order.

  Raises:
    ValueError: unknown source or column, or a column of the wrong length.
  """
  if source not in feature_spec.SOURCES:
    raise ValueError(f"unknown source {source!r}; known: {feature_spec.SOURCES}")

  def defaults():
    return {
        "user_id": pd.Series([None] * n, dtype=object),
        "session_id": pd.Series([None] * n, dtype=object),
        "ts": _null_ints(n),
        "plays": pd.Series(np.ones(n, dtype=np.int64)),
        "track_id": pd.Series([None] * n, dtype=object),
        "artist_id": pd.Series([None] * n, dtype=object),
        "source": pd.Series([source] * n, dtype=object),
        "user_segment": pd.Series([None] * n, dtype=object),
        "user_tenure_days": pd.Series(np.full(n, np.nan, dtype=np.float32)),
        "context_activity": pd.Series(["unknown"] * n, dtype=object),
        "context_surface": pd.Series(["unknown"] * n, dtype=object),
        "is_promo": pd.Series(np.zeros(n, dtype=bool)),
        **{k: pd.Series(v) for k, v in empty_labels(n).items()},
        "shuffle": pd.Series([None] * n, dtype="boolean"),
        "skip_profile": pd.Series([None] * n, dtype=object),
    }
  return _schema_frame("EVENT_SCHEMA", EVENT_SCHEMA, n, defaults, columns)


def make_tracks(n: int, **columns) -> pd.DataFrame:
  """A tracks frame with every ``TRACK_SCHEMA`` column (unknown values null, no tags).

  Args:
    n: number of rows.
    **columns: column name -> array-like of length ``n``.

  Returns:
    A DataFrame with exactly the ``TRACK_SCHEMA`` columns, in schema order.

  Raises:
    ValueError: unknown column, or a column of the wrong length.
  """
  def defaults():
    return {
        "track_id": pd.Series([None] * n, dtype=object),
        "artist_id": pd.Series([None] * n, dtype=object),
        "tags": pd.Series([[] for _ in range(n)], dtype=object),
        "duration_s": pd.Series(np.full(n, np.nan, dtype=np.float32)),
        "popularity": pd.Series(np.full(n, np.nan, dtype=np.float32)),
        "title": pd.Series([""] * n, dtype=object),
    }
  return _schema_frame("TRACK_SCHEMA", TRACK_SCHEMA, n, defaults, columns)


def _schema_frame(schema_name: str, schema: pa.Schema, n: int, defaults, columns
                  ) -> pd.DataFrame:
  """``defaults()`` overlaid with ``columns``, checked, in ``schema`` column order."""
  if n < 0:
    raise ValueError(f"n must be >= 0, got {n}")
  unknown = sorted(set(columns) - set(schema.names))
  if unknown:
    raise ValueError(f"columns not in {schema_name}: {unknown}")
  data = defaults()
  for name, values in columns.items():
    values = pd.Series(values).reset_index(drop=True)
    if len(values) != n:
      raise ValueError(f"column {name!r} has {len(values)} values, expected {n}")
    data[name] = values
  return pd.DataFrame({name: data[name] for name in schema.names})


def numeric_or_text(raw: pd.Series, integer: bool = False) -> pd.Series:
  """Parses a raw column to numbers, keeping unparseable values visible.

  Values that parse become numbers (``Int64`` when ``integer`` and all of them are
  whole); a value that is present but not a number (or not whole when ``integer``)
  stays as its original text, so that validation quarantines its row as "… not
  numeric" / "… not whole seconds" instead of the value silently turning null.

  Args:
    raw: the column as read (strings or numbers).
    integer: whether the values must be whole numbers.

  Returns:
    A Series with the same index.
  """
  num = pd.to_numeric(raw, errors="coerce")
  bad = raw.notna() & num.isna()
  if integer:
    bad |= num.notna() & (num != np.floor(num))
  if not bad.any():
    return num.astype("Int64") if integer else num.astype(np.float64)
  out = num.astype(object).where(num.notna(), None)
  out[bad] = raw[bad]
  return out


# ---------------------------------------------------------------------- validation
class _Reasons:
  """Collects the first failing check of each row."""

  def __init__(self, index):
    self.reason = pd.Series("", index=index, dtype=object)

  def mark(self, mask, why: str) -> None:
    mask = pd.Series(mask, index=self.reason.index).fillna(False).astype(bool)
    mask &= self.reason == ""
    if mask.any():
      self.reason[mask] = why


def _is_blank(col: pd.Series) -> pd.Series:
  return col.isna() | (col.astype(str).str.strip().str.len() == 0)


def _numeric(reasons: _Reasons, col: pd.Series, name: str) -> pd.Series:
  """Numeric view of a column; marks values that are present but not numbers."""
  v = pd.to_numeric(col, errors="coerce")
  reasons.mark(col.notna() & v.isna(), f"{name} not numeric")
  return v


def _reasons_events(df: pd.DataFrame) -> pd.Series:
  """First failing check per row ('' when the row is valid)."""
  r = _Reasons(df.index)
  for col in ("user_id", "track_id", "session_id"):
    r.mark(_is_blank(df[col]), f"missing {col}")
  ts = _numeric(r, df["ts"], "ts")
  r.mark(ts.notna() & (ts <= 0), "ts not positive")
  r.mark(ts.notna() & (ts != np.floor(ts)), "ts not whole seconds")
  plays = _numeric(r, df["plays"], "plays")
  r.mark(plays.isna() | (plays < 1), "plays below 1")
  r.mark(~df["source"].isin(feature_spec.SOURCES), "unknown source")
  r.mark(df["user_segment"].notna() & ~df["user_segment"].isin(feature_spec.SEGMENTS),
         "unknown user_segment")
  tenure = _numeric(r, df["user_tenure_days"], "user_tenure_days")
  r.mark(tenure.notna() & (tenure < 0), "user_tenure_days negative")
  r.mark(~df["context_activity"].isin(feature_spec.ACTIVITIES), "unknown context_activity")
  r.mark(~df["context_surface"].isin(feature_spec.SURFACES), "unknown context_surface")
  for col in _UNIT_LABELS:
    v = _numeric(r, df[col], col)
    r.mark(v.notna() & ((v < 0) | (v > 1)), f"{col} outside [0, 1]")
  v = _numeric(r, df["exposure"], "exposure")
  r.mark(v.notna() & (v < 0), "exposure negative")
  r.mark(df["skip_profile"].notna() & ~df["skip_profile"].isin(SKIP_PROFILES),
         "unknown skip_profile")
  # The same play logged twice (same session, track and second) would double-count it
  # and fake a zero gap; only timed rows can be told apart this way.
  timed = ts.notna()
  dup = pd.Series(False, index=df.index)
  if timed.any():
    keys = df.loc[timed, ["session_id", "track_id"]].assign(_ts=ts[timed])
    dup[timed] = keys.duplicated(keep="first").to_numpy()
  r.mark(dup, DUPLICATE_EVENT)
  return r.reason


def _reasons_tracks(df: pd.DataFrame) -> pd.Series:
  r = _Reasons(df.index)
  r.mark(_is_blank(df["track_id"]), "missing track_id")
  r.mark(df["track_id"].duplicated(keep="first"), "duplicate track_id")
  tags_ok = df["tags"].map(
      lambda t: isinstance(t, (list, tuple, np.ndarray))
      and all(isinstance(x, str) and x for x in t))
  r.mark(~tags_ok.astype(bool), "tags not a list of strings")
  d = _numeric(r, df["duration_s"], "duration_s")
  r.mark(d.notna() & (d <= 0), "duration_s not positive")
  p = _numeric(r, df["popularity"], "popularity")
  r.mark(p.notna() & (p < 0), "popularity negative")
  return r.reason


def _validate(df, schema, reasons_fn, table, quarantine_dir, max_bad_fraction):
  if not 0.0 <= max_bad_fraction <= 1.0:
    raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
  missing = [n for n in schema.names if n not in df.columns]
  if missing:
    raise BadDataError(f"{table}: columns missing: {missing}")
  # Checks align on the index; a fresh one keeps them right for any input index.
  df = df.reset_index(drop=True)
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
  """Splits events into valid rows and quarantined rows.

  Args:
    df: events with (at least) the ``EVENT_SCHEMA`` columns.
    quarantine_dir: if given and some rows are bad, they are written with their reason
      to ``<quarantine_dir>/events.quarantine.csv``.
    max_bad_fraction: the largest tolerated fraction of bad rows.

  Returns:
    (valid frame in EVENT_SCHEMA column order and original row order, ValidationReport).

  Raises:
    BadDataError: columns are missing, or more than ``max_bad_fraction`` of the rows
      are bad (the message holds the counts by reason).
    ValueError: ``max_bad_fraction`` outside [0, 1].
  """
  return _validate(df, EVENT_SCHEMA, _reasons_events, "events", quarantine_dir,
                   max_bad_fraction)


def validate_tracks(df: pd.DataFrame, quarantine_dir: Optional[str] = None,
                    max_bad_fraction: float = 0.05):
  """Splits tracks into valid rows and quarantined rows; see ``validate_events``."""
  return _validate(df, TRACK_SCHEMA, _reasons_tracks, "tracks", quarantine_dir,
                   max_bad_fraction)


def event_reasons(df: pd.DataFrame) -> pd.Series:
  """The first failing check of each events row ('' when valid), indexed 0..n-1.

  The checks ``validate_events`` applies, for callers that track each row's origin.
  """
  return _reasons_events(df.reset_index(drop=True))


def track_reasons(df: pd.DataFrame) -> pd.Series:
  """The first failing check of each tracks row ('' when valid), indexed 0..n-1."""
  return _reasons_tracks(df.reset_index(drop=True))


# ------------------------------------------------------------------------- arrow
def _column_for(series: pd.Series, field: pa.Field):
  t = field.type
  if pa.types.is_integer(t):
    return pd.to_numeric(series, errors="raise").astype("Int64")
  if pa.types.is_floating(t):
    return pd.to_numeric(series, errors="raise").astype(np.float32)
  if pa.types.is_boolean(t):
    return series.astype("boolean")
  if pa.types.is_list(t):
    return series.map(lambda v: None if v is None else [str(x) for x in v])
  return series.map(lambda v: None if v is None or pd.isna(v) else str(v))


def to_arrow(df: pd.DataFrame, schema: pa.Schema) -> pa.Table:
  """Converts a validated frame to an Arrow table of exactly ``schema``.

  Nullable integers (``ts``) may come as floats with NaN or as pandas ``Int64``;
  missing values become Arrow nulls.
  """
  cols = {f.name: _column_for(df[f.name].reset_index(drop=True), f) for f in schema}
  return pa.Table.from_pandas(pd.DataFrame(cols), schema=schema, preserve_index=False)


def empty_labels(n: int) -> Dict[str, np.ndarray]:
  """Null (NaN) label columns for a source that records none of them."""
  return {col: np.full(n, np.nan, dtype=np.float32) for col in EVENT_LABELS}


def label_coverage(events: pd.DataFrame) -> Dict[str, float]:
  """Fraction of event rows with a non-null value, per label key of feature_spec."""
  n = len(events)
  return {key: (float(events[col].notna().sum()) / n if n else 0.0)
          for col, key in EVENT_LABELS.items()}
