"""``melody data import``: one source to parquet files, a quarantine and a report.

Owns the work behind the command: it loads a source through its adapter and the checks
of ``features.datasets.registry``, writes ``events.parquet`` and ``tracks.parquet``,
``quarantine/quarantine.jsonl`` (every line not imported: file, line, raw text, reason)
when some line was quarantined, and ``import_report.json`` (per table and per file
counts, the quarantine's path, label coverage), prints progress and a summary, and
returns a process exit code. The import fails only when a source file has more
malformed lines than ``max_bad_fraction``; then nothing but the quarantine and the
report is written.
"""

import json
import os
import sys
import time
from typing import Dict

import pandas as pd
import pyarrow.parquet as pq

from features import events as events_lib
from features.datasets import registry

# Exit codes of run_import.
EXIT_OK = 0
EXIT_BAD_DATA = 1
EXIT_NOT_FOUND = 2


def _rate(rows: int, seconds: float) -> str:
  return f"{rows / seconds:,.0f} lines/s" if seconds > 0 else "n/a lines/s"


def _reasons(counts: Dict[str, int]) -> str:
  return ", ".join(f"{k}: {v:,}" for k, v in
                   sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))) or "-"


def summary_table(events: pd.DataFrame, report: registry.LoadReport) -> str:
  """The human-readable summary printed at the end of an import."""
  lines = [f"{'file':<28} {'lines':>9} {'malformed':>9}   quarantined by reason"]
  for f in report.files.values():
    lines.append(f"{f.name:<28} {f.lines:>9,} {f.malformed:>9,}   {_reasons(f.bad_by_reason)}")
  lines.append(f"{'table':<8} {'rows':>9} {'written':>9}")
  for name, r in report.tables.items():
    lines.append(f"{name:<8} {r.total:>9,} {r.valid:>9,}")
  for note, n in report.notes.items():
    lines.append(f"note: {note}: {n:,}")
  if report.quarantine_path:
    lines.append(f"quarantine: {len(report.records):,} lines in {report.quarantine_path}")
  lines.append(f"{'label':<22} {'coverage':>9}")
  for key, cov in events_lib.label_coverage(events).items():
    lines.append(f"{key:<22} {100 * cov:>8.1f}%")
  return "\n".join(lines)


def _write_report(path: str, report: Dict[str, object]) -> None:
  with open(path, "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2, ensure_ascii=False, sort_keys=True)
    f.write("\n")


def run_import(source: str, data_dir: str, out: str,
               max_bad_fraction: float = registry.DEFAULT_MAX_BAD_FRACTION,
               stream=None) -> int:
  """Imports one source into ``out`` (the work of ``melody data import``).

  Writes ``out/events.parquet`` and ``out/tracks.parquet`` (exact EVENT_SCHEMA /
  TRACK_SCHEMA), ``out/quarantine/quarantine.jsonl`` when lines were quarantined, and
  ``out/import_report.json``. Parquet files are written only when the import succeeds;
  the quarantine and the report always are.

  Args:
    source: "kkbox", "30music", "hetrec" or "jamendo".
    data_dir: the shared data root or the source's own folder.
    out: output directory (created).
    max_bad_fraction: fail when a source file has more malformed lines than this
      fraction of its data lines.
    stream: where progress goes (default stdout); errors go to stderr.

  Returns:
    0 on success, 1 when a file is too malformed (or its layout cannot be read at all),
    2 when the files are missing.

  Raises:
    ValueError: unknown source or ``max_bad_fraction`` outside [0, 1].
  """
  registry.get(source)
  registry.check_fraction(max_bad_fraction)
  stream = stream or sys.stdout
  os.makedirs(out, exist_ok=True)
  report_path = os.path.join(out, "import_report.json")
  report: Dict[str, object] = {"source": source, "data_dir": os.path.abspath(data_dir),
                               "max_bad_fraction": max_bad_fraction}

  def say(msg):
    print(f"[{source}] {msg}", file=stream, flush=True)

  def fail(code, msg):
    print(f"melody data import: {msg}", file=sys.stderr)
    _write_report(report_path, dict(report, status="failed", error=msg))
    return code

  try:
    folder = registry.source_dir(source, data_dir)
  except FileNotFoundError as e:
    return fail(EXIT_NOT_FOUND, str(e))

  t0 = time.perf_counter()
  try:
    tables = registry.get(source).loader(folder)
  except ValueError as e:
    # A file without a readable header or with missing columns cannot be split into
    # good and bad lines: it is rejected as a whole.
    return fail(EXIT_BAD_DATA, f"cannot read {source} from {folder}: {e}")
  read_s = time.perf_counter() - t0
  n_lines = sum(tables.quarantine.lines_read.values())
  say(f"read {n_lines:,} lines from {len(tables.quarantine.lines_read)} files in {folder} "
      f"in {read_s:.2f} s ({_rate(n_lines, read_s)})")

  t0 = time.perf_counter()
  events, tracks, loaded = registry.check_tables(tables, os.path.join(out, "quarantine"))
  check_s = time.perf_counter() - t0
  n_rows = len(tables.events) + len(tables.tracks)
  say(f"checked {n_rows:,} rows in {check_s:.2f} s; {len(loaded.records):,} lines quarantined")
  report.update(loaded.to_dict())
  report["label_coverage"] = events_lib.label_coverage(events)
  if loaded.over_limit(max_bad_fraction):
    return fail(EXIT_BAD_DATA, f"{source} rejected, too many malformed lines:\n"
                + loaded.limit_message(max_bad_fraction))

  t0 = time.perf_counter()
  pq.write_table(events_lib.to_arrow(events, events_lib.EVENT_SCHEMA),
                 os.path.join(out, "events.parquet"))
  pq.write_table(events_lib.to_arrow(tracks, events_lib.TRACK_SCHEMA),
                 os.path.join(out, "tracks.parquet"))
  write_s = time.perf_counter() - t0
  say(f"wrote {len(events) + len(tracks):,} rows to {out} in {write_s:.2f} s")
  _write_report(report_path, dict(report, status="ok"))
  print(summary_table(events, loaded), file=stream, flush=True)
  return EXIT_OK
