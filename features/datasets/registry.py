"""The registry of real-data adapters: load a source validated, or import it to disk.

Owns the name -> adapter table, the default data directory, the lookup of a source's
folder under a data directory, ``load`` (adapter + validation + optional quarantine) used
by other packages (e.g. the simulator's calibration), and ``run_import``, the work behind
``melody data import``: it writes ``events.parquet``, ``tracks.parquet``,
``quarantine/*.csv`` when some rows are bad and ``import_report.json``, prints progress
and a summary table, and returns a process exit code.
"""

import dataclasses
import json
import os
import sys
import time
from typing import Callable, Dict, Optional, Tuple

import pandas as pd
import pyarrow.parquet as pq

from features import events as events_lib
from features.datasets import hetrec, jamendo, kkbox, thirty_music

Loader = Callable[[str], Tuple[pd.DataFrame, pd.DataFrame]]


@dataclasses.dataclass(frozen=True)
class Source:
  """One importable dataset.

  Attributes:
    name: the ``--source`` name (also the ``source`` column value).
    folder: its folder under the shared data directory.
    marker: a file that must exist in the folder (tells a source folder from a root).
    loader: ``data_dir -> (events_df, tracks_df)``.
  """
  name: str
  folder: str
  marker: str
  loader: Loader


SOURCES: Dict[str, Source] = {s.name: s for s in (
    Source("kkbox", "kkbox_sample", "train.csv", kkbox.load),
    Source("30music", "30music_slices", "30music-200ks_test.0.txt", thirty_music.load),
    Source("hetrec", "hetrec2011_lastfm_2k", "user_artists.dat", hetrec.load),
    Source("jamendo", "mtg_jamendo", "autotagging-test.tsv", jamendo.load),
)}

# Exit codes of run_import.
EXIT_OK = 0
EXIT_BAD_DATA = 1
EXIT_NOT_FOUND = 2

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_DATA_DIR = os.path.join(_REPO, "..", "shared", "data")


def default_data_dir() -> str:
  """Where the shared real datasets live: $MELODY_DATA_DIR or ../shared/data."""
  return os.path.abspath(os.environ.get("MELODY_DATA_DIR", DEFAULT_DATA_DIR))


def get(source: str) -> Source:
  """The registered source called ``source``."""
  if source not in SOURCES:
    raise ValueError(f"unknown source {source!r}; known: {sorted(SOURCES)}")
  return SOURCES[source]


def source_dir(source: str, data_dir: str) -> str:
  """The folder holding ``source``'s files.

  ``data_dir`` may be the source's folder itself (e.g. ``tests/fixtures/hetrec``) or the
  shared data root that contains it (``…/shared/data``).

  Raises:
    ValueError: unknown source.
    FileNotFoundError: neither ``data_dir`` nor ``data_dir/<folder>`` has the files.
  """
  src = get(source)
  for candidate in (data_dir, os.path.join(data_dir, src.folder)):
    if os.path.isfile(os.path.join(candidate, src.marker)):
      return candidate
  raise FileNotFoundError(
      f"{source}: no {src.marker} in {data_dir} or {os.path.join(data_dir, src.folder)}")


def _check(reports, max_bad_fraction):
  over = [r for r in reports.values() if r.bad_fraction > max_bad_fraction]
  if over:
    raise events_lib.BadDataError("\n".join(
        f"{r.table}: {r.bad} of {r.total} rows are malformed "
        f"({100 * r.bad_fraction:.2f}% > limit {100 * max_bad_fraction:.2f}%)\n"
        + r.summary() for r in over))


def load(source: str, data_dir: str, quarantine_dir: Optional[str] = None,
         max_bad_fraction: float = 0.05):
  """Loads one source in the common schema, validated.

  Args:
    source: "kkbox", "30music", "hetrec" or "jamendo".
    data_dir: the shared data root or the source's own folder (see ``source_dir``).
    quarantine_dir: where bad rows go (``events.quarantine.csv``,
      ``tracks.quarantine.csv``); not written when None.
    max_bad_fraction: the largest tolerated fraction of bad rows per table.

  Returns:
    (events_df, tracks_df, reports): the valid rows in EVENT_SCHEMA / TRACK_SCHEMA
    column order and original row order, and ``{"events": ValidationReport,
    "tracks": ValidationReport}``.

  Raises:
    ValueError: unknown source or ``max_bad_fraction`` outside [0, 1].
    FileNotFoundError: the source's files are not there.
    BadDataError: a table has more bad rows than allowed (both tables are validated
      and quarantined first, so the message covers both).
  """
  if not 0.0 <= max_bad_fraction <= 1.0:
    raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
  raw_events, raw_tracks = get(source).loader(source_dir(source, data_dir))
  events, ev_report = events_lib.validate_events(raw_events, quarantine_dir, max_bad_fraction=1.0)
  tracks, tr_report = events_lib.validate_tracks(raw_tracks, quarantine_dir, max_bad_fraction=1.0)
  reports = {"events": ev_report, "tracks": tr_report}
  _check(reports, max_bad_fraction)
  return events, tracks, reports


# ------------------------------------------------------------------------ import
def _rate(rows: int, seconds: float) -> str:
  return f"{rows / seconds:,.0f} rows/s" if seconds > 0 else "n/a rows/s"


def summary_table(events: pd.DataFrame, reports: Dict[str, events_lib.ValidationReport]) -> str:
  """The human-readable summary printed at the end of an import."""
  lines = [f"{'table':<8} {'read':>9} {'written':>9} {'bad':>7}   bad rows by reason"]
  for name, r in reports.items():
    reasons = ", ".join(f"{k}: {v}" for k, v in
                        sorted(r.bad_by_reason.items(), key=lambda kv: (-kv[1], kv[0])))
    lines.append(f"{name:<8} {r.total:>9,} {r.valid:>9,} {r.bad:>7,}   {reasons or '-'}")
  lines.append(f"{'label':<22} {'coverage':>9}")
  for key, cov in events_lib.label_coverage(events).items():
    lines.append(f"{key:<22} {100 * cov:>8.1f}%")
  return "\n".join(lines)


def _write_report(path: str, report: Dict[str, object]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2, ensure_ascii=False, sort_keys=True)
    f.write("\n")


def run_import(source: str, data_dir: str, out: str, max_bad_fraction: float = 0.05,
               stream=None) -> int:
  """Imports one source into ``out`` (the work of ``melody data import``).

  Writes ``out/events.parquet`` and ``out/tracks.parquet`` (exact EVENT_SCHEMA /
  TRACK_SCHEMA), ``out/quarantine/{events,tracks}.quarantine.csv`` when rows are bad,
  and ``out/import_report.json`` (row counts, bad rows by reason, label coverage).
  Parquet files are written only when the import succeeds; the report always is.

  Args:
    source: "kkbox", "30music", "hetrec" or "jamendo".
    data_dir: the shared data root or the source's own folder.
    out: output directory (created).
    max_bad_fraction: fail when a table has more bad rows than this fraction.
    stream: where progress goes (default stdout); errors go to stderr.

  Returns:
    0 on success, 1 when the data is too malformed (or a file cannot be parsed at all),
    2 when the files are missing.

  Raises:
    ValueError: unknown source or ``max_bad_fraction`` outside [0, 1].
  """
  get(source)
  if not 0.0 <= max_bad_fraction <= 1.0:
    raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")
  stream = stream or sys.stdout
  os.makedirs(out, exist_ok=True)
  report_path = os.path.join(out, "import_report.json")
  report: Dict[str, object] = {"source": source, "data_dir": os.path.abspath(data_dir),
                               "max_bad_fraction": max_bad_fraction}

  def say(msg):
    print(f"[{source}] {msg}", file=stream, flush=True)

  try:
    folder = source_dir(source, data_dir)
  except FileNotFoundError as e:
    print(f"melody data import: {e}", file=sys.stderr)
    _write_report(report_path, dict(report, status="failed", error=str(e)))
    return EXIT_NOT_FOUND

  t0 = time.perf_counter()
  try:
    raw_events, raw_tracks = get(source).loader(folder)
  except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
    # A file whose layout is broken (wrong header, wrong encoding, unparseable CSV)
    # cannot be split into good and bad rows: reject it as a whole.
    print(f"melody data import: cannot read {source} from {folder}: {e}", file=sys.stderr)
    _write_report(report_path, dict(report, status="failed", error=str(e)))
    return EXIT_BAD_DATA
  read_s = time.perf_counter() - t0
  n_read = len(raw_events) + len(raw_tracks)
  say(f"read {len(raw_events):,} events + {len(raw_tracks):,} tracks from {folder} "
      f"in {read_s:.2f} s ({_rate(n_read, read_s)})")

  t0 = time.perf_counter()
  qdir = os.path.join(out, "quarantine")
  events, ev_report = events_lib.validate_events(raw_events, qdir, max_bad_fraction=1.0)
  tracks, tr_report = events_lib.validate_tracks(raw_tracks, qdir, max_bad_fraction=1.0)
  reports = {"events": ev_report, "tracks": tr_report}
  val_s = time.perf_counter() - t0
  say(f"validated {n_read:,} rows in {val_s:.2f} s ({_rate(n_read, val_s)}); "
      f"{ev_report.bad + tr_report.bad:,} quarantined")
  report.update({
      "events": ev_report.to_dict(),
      "tracks": tr_report.to_dict(),
      "label_coverage": events_lib.label_coverage(events),
  })
  try:
    _check(reports, max_bad_fraction)
  except events_lib.BadDataError as e:
    print(f"melody data import: {source} rejected, too many malformed rows:\n{e}",
          file=sys.stderr)
    _write_report(report_path, dict(report, status="failed", error=str(e)))
    return EXIT_BAD_DATA

  t0 = time.perf_counter()
  pq.write_table(events_lib.to_arrow(events, events_lib.EVENT_SCHEMA),
                 os.path.join(out, "events.parquet"))
  pq.write_table(events_lib.to_arrow(tracks, events_lib.TRACK_SCHEMA),
                 os.path.join(out, "tracks.parquet"))
  write_s = time.perf_counter() - t0
  n_out = len(events) + len(tracks)
  say(f"wrote {n_out:,} rows to {out} in {write_s:.2f} s ({_rate(n_out, write_s)})")
  _write_report(report_path, dict(report, status="ok"))
  print(summary_table(events, reports), file=stream, flush=True)
  return EXIT_OK
