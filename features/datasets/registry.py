"""The registry of real-data adapters, and loading a source checked and quarantined.

Owns the name -> adapter table, the default data directory, the lookup of a source's
folder under a data directory, and ``load``: adapter, validation, the event -> track
reference check, the quarantine file and the malformed-line limit, used by ``melody
data import`` (``features.datasets.importer``) and by other packages (e.g. the
simulator's calibration).

The limit is per source file: a file whose malformed lines (quarantined for any reason
but being a duplicate play) exceed ``max_bad_fraction`` of its data lines fails the
load, after the quarantine is written.
"""

import dataclasses
import os
from typing import Callable, Dict, Optional

import pandas as pd

from features import events as events_lib
from features.datasets import hetrec, jamendo, kkbox, quarantine, source_tables, thirty_music

Loader = Callable[[str], source_tables.SourceTables]


@dataclasses.dataclass(frozen=True)
class Source:
  """One importable dataset.

  Attributes:
    name: the ``--source`` name (also the ``source`` column value).
    folder: its folder under the shared data directory.
    marker: a file that must exist in the folder (tells a source folder from a root).
    loader: ``data_dir -> SourceTables``.
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

# The largest tolerated fraction of malformed lines per source file.
DEFAULT_MAX_BAD_FRACTION = 0.01

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


@dataclasses.dataclass
class LoadReport:
  """What loading one source found, per table and per source file.

  ``report["events"]`` / ``report["tracks"]`` are the tables' ``ValidationReport`` s.

  Attributes:
    tables: ``{"events": ValidationReport, "tracks": ValidationReport}`` over the rows
      the adapter produced (lines rejected while reading never became rows).
    files: per source file, its data lines and what the quarantine took from it.
    records: every quarantined line (``file``, ``line``, ``raw``, ``reason``).
    notes: counts the adapter reports beside the quarantine.
    quarantine_path: the JSONL file the records were written to, if any.
  """
  tables: Dict[str, events_lib.ValidationReport]
  files: Dict[str, quarantine.FileReport]
  records: pd.DataFrame
  notes: Dict[str, int]
  quarantine_path: Optional[str] = None

  def __getitem__(self, table: str) -> events_lib.ValidationReport:
    return self.tables[table]

  def over_limit(self, max_bad_fraction: float):
    """The ``FileReport`` s whose malformed fraction is above ``max_bad_fraction``."""
    return quarantine.over_limit(self.files, max_bad_fraction)

  def limit_message(self, max_bad_fraction: float) -> str:
    """Each file over the limit with its counts, and where the quarantine is."""
    return quarantine.limit_message(self.over_limit(max_bad_fraction), max_bad_fraction,
                                    self.quarantine_path)

  def to_dict(self) -> Dict[str, object]:
    """JSON-ready form (used by import reports)."""
    return {"events": self.tables["events"].to_dict(), "tracks": self.tables["tracks"].to_dict(),
            "files": {name: f.to_dict() for name, f in self.files.items()},
            "quarantined": len(self.records), "quarantine_path": self.quarantine_path,
            "notes": dict(self.notes)}


def check_fraction(max_bad_fraction: float) -> None:
  """Raises ValueError unless ``max_bad_fraction`` is in [0, 1]."""
  if not 0.0 <= max_bad_fraction <= 1.0:
    raise ValueError(f"max_bad_fraction must be in [0, 1], got {max_bad_fraction}")


def check_tables(tables: source_tables.SourceTables, quarantine_dir: Optional[str] = None):
  """Checks an adapter's tables and writes the quarantine; applies no limit.

  Args:
    tables: an adapter's output.
    quarantine_dir: where ``quarantine.jsonl`` goes when some line was quarantined;
      not written when None.

  Returns:
    (events_df, tracks_df, LoadReport).
  """
  checked = source_tables.check(tables)
  records = checked.quarantine.records()
  path = None
  if quarantine_dir and len(records):
    path = quarantine.write_jsonl(records, os.path.join(quarantine_dir,
                                                        quarantine.QUARANTINE_FILE))
    for report in checked.reports.values():
      report.quarantine_path = path if report.bad else None
  report = LoadReport(checked.reports,
                      quarantine.file_reports(checked.quarantine.lines_read, records),
                      records, dict(tables.notes), path)
  return checked.events, checked.tracks, report


def load(source: str, data_dir: str, quarantine_dir: Optional[str] = None,
         max_bad_fraction: float = DEFAULT_MAX_BAD_FRACTION):
  """Loads one source in the common schema, checked.

  Args:
    source: "kkbox", "30music", "hetrec" or "jamendo".
    data_dir: the shared data root or the source's own folder (see ``source_dir``).
    quarantine_dir: where the quarantined lines go (``quarantine.jsonl``: file, line,
      raw text, reason); not written when None.
    max_bad_fraction: the largest tolerated fraction of malformed lines per file.

  Returns:
    (events_df, tracks_df, report): the valid rows in EVENT_SCHEMA / TRACK_SCHEMA
    column order and source order, and a ``LoadReport``.

  Raises:
    ValueError: unknown source or ``max_bad_fraction`` outside [0, 1], or a file whose
      layout cannot be read at all (no header, missing columns).
    FileNotFoundError: the source's files are not there.
    BadDataError: a file has more malformed lines than allowed (the quarantine is
      written first; the message names the files, counts and the quarantine file).
  """
  check_fraction(max_bad_fraction)
  tables = get(source).loader(source_dir(source, data_dir))
  events, tracks, report = check_tables(tables, quarantine_dir)
  if report.over_limit(max_bad_fraction):
    raise events_lib.BadDataError(report.limit_message(max_bad_fraction))
  return events, tracks, report
