"""Tests of the adapter registry and of ``melody data import`` (features/datasets/registry.py,
importer.py)."""

import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from features import cli
from features import events as events_lib
from features.datasets import importer, quarantine, registry
from melody_cli import main as melody
from melody_testing import fixture_copies


def _hetrec_copy(fixtures_dir, root, extra_rows=b""):
  """A copy of the HetRec excerpt under ``root/hetrec2011_lastfm_2k`` plus extra rows."""
  return fixture_copies.copy_with_appended(os.path.join(fixtures_dir, "hetrec"),
                                           os.path.join(root, "hetrec2011_lastfm_2k"),
                                           {"user_artists.dat": extra_rows})


# Three malformed user x artist rows (CRLF like the file): unreadable, zero and missing.
_BAD_ROWS = b"9\t51\tlots\r\n9\t52\t0\r\n\t53\t10\r\n"


def test_cli_import_writes_parquet_and_report(fixtures_dir, tmp_path, capsys):
  out = tmp_path / "out"
  rc = melody.main(["data", "import", "--source", "hetrec", "--out", str(out),
                    "--data-dir", os.path.join(fixtures_dir, "hetrec")])
  assert rc == 0
  events = pq.read_table(out / "events.parquet")
  tracks = pq.read_table(out / "tracks.parquet")
  assert events.schema == events_lib.EVENT_SCHEMA and tracks.schema == events_lib.TRACK_SCHEMA
  assert (events.num_rows, tracks.num_rows) == (200, 706)
  assert events.column("plays").to_pylist()[:2] == [13_883, 11_690]
  assert events.column("ts").null_count == 200
  report = json.loads((out / "import_report.json").read_text(encoding="utf-8"))
  assert report["status"] == "ok"
  assert (report["events"]["total"], report["events"]["valid"]) == (200, 200)
  assert report["files"]["user_artists.dat"] == {
      "lines": 200, "malformed": 0, "malformed_fraction": 0.0, "quarantined_by_reason": {}}
  assert (report["quarantined"], report["quarantine_path"]) == (0, None)
  assert report["label_coverage"] == {k: 0.0 for k in events_lib.EVENT_LABELS.values()}
  assert not (out / "quarantine").exists()
  printed = capsys.readouterr().out
  assert "lines/s" in printed and "interest_like" in printed


def test_cli_import_quarantines_bad_rows_under_the_limit(fixtures_dir, tmp_path, capsys):
  _hetrec_copy(fixtures_dir, str(tmp_path / "data"), _BAD_ROWS)
  out = tmp_path / "out"
  rc = melody.main(["data", "import", "--source", "hetrec", "--out", str(out),
                    "--data-dir", str(tmp_path / "data"), "--max-bad-fraction", "0.02"])
  assert rc == 0
  report = json.loads((out / "import_report.json").read_text(encoding="utf-8"))
  assert report["events"]["bad_by_reason"] == {
      "plays not numeric": 1, "plays below 1": 1, "missing user_id": 1}
  assert (report["events"]["total"], report["events"]["valid"]) == (203, 200)
  assert report["files"]["user_artists.dat"]["malformed"] == 3
  path = out / "quarantine" / "quarantine.jsonl"
  assert report["quarantine_path"] == str(path)
  lines = path.read_text(encoding="utf-8").splitlines()
  assert json.loads(lines[0]) == {"file": "user_artists.dat", "line": 202,
                                  "raw": "9\t51\tlots", "reason": "plays not numeric"}
  assert len(lines) == 3
  assert pq.read_table(out / "events.parquet").num_rows == 200
  printed = capsys.readouterr().out
  assert "plays not numeric: 1" in printed and f"3 lines in {path}" in printed


def test_cli_import_fails_over_the_default_limit(fixtures_dir, tmp_path, capsys):
  _hetrec_copy(fixtures_dir, str(tmp_path / "data"), _BAD_ROWS)
  out = tmp_path / "out"
  rc = melody.main(["data", "import", "--source", "hetrec", "--out", str(out),
                    "--data-dir", str(tmp_path / "data")])
  assert rc == importer.EXIT_BAD_DATA
  err = capsys.readouterr().err
  assert "hetrec rejected" in err
  assert "user_artists.dat: 3 of 203 lines are malformed (1.48% > limit 1.00%)" in err
  path = out / "quarantine" / "quarantine.jsonl"
  assert f"quarantined lines (file, line, raw text, reason): {path}" in err
  report = json.loads((out / "import_report.json").read_text(encoding="utf-8"))
  assert report["status"] == "failed" and report["max_bad_fraction"] == 0.01
  assert not (out / "events.parquet").exists()
  assert [r["line"] for r in quarantine.read_jsonl(str(path))] == [202, 203, 204]


def test_cli_default_limit_is_the_registry_default():
  assert cli.DEFAULT_MAX_BAD_FRACTION == registry.DEFAULT_MAX_BAD_FRACTION


def test_cli_import_missing_data(tmp_path, capsys):
  rc = melody.main(["data", "import", "--source", "jamendo", "--out", str(tmp_path / "o"),
                    "--data-dir", str(tmp_path / "nowhere")])
  assert rc == importer.EXIT_NOT_FOUND
  assert "no autotagging-test.tsv in" in capsys.readouterr().err


def test_source_dir_accepts_root_or_folder(fixtures_dir, tmp_path):
  folder = _hetrec_copy(fixtures_dir, str(tmp_path))
  assert registry.source_dir("hetrec", str(tmp_path)) == folder
  assert registry.source_dir("hetrec", folder) == folder
  with pytest.raises(FileNotFoundError, match="no user_artists.dat"):
    registry.source_dir("hetrec", os.path.join(fixtures_dir, "jamendo"))


def test_load_rejects_bad_arguments(fixtures_dir):
  with pytest.raises(ValueError, match="unknown source 'spotify'"):
    registry.load("spotify", fixtures_dir)
  with pytest.raises(ValueError, match="max_bad_fraction must be in \\[0, 1\\], got -0.1"):
    registry.load("hetrec", os.path.join(fixtures_dir, "hetrec"), max_bad_fraction=-0.1)


def test_load_raises_over_the_limit_after_quarantining(fixtures_dir, tmp_path):
  _hetrec_copy(fixtures_dir, str(tmp_path / "data"), _BAD_ROWS)
  qdir = tmp_path / "q"
  with pytest.raises(events_lib.BadDataError, match="3 of 203 lines are malformed"):
    registry.load("hetrec", str(tmp_path / "data"), quarantine_dir=str(qdir))
  assert len(quarantine.read_jsonl(str(qdir / "quarantine.jsonl"))) == 3
  _, _, report = registry.load("hetrec", str(tmp_path / "data"), max_bad_fraction=0.015)
  assert report["events"].bad == 3 and report.quarantine_path is None


@pytest.mark.realdata
def test_cli_import_real_30music(shared_data, tmp_path):
  out = tmp_path / "out"
  rc = melody.main(["data", "import", "--source", "30music", "--out", str(out),
                    "--data-dir", shared_data])
  assert rc == 0
  report = json.loads((out / "import_report.json").read_text(encoding="utf-8"))
  assert report["events"]["bad_by_reason"] == {
      "duplicate event (session_id, track_id, ts)": 3_205}
  # Duplicates are quarantined but not malformed: the default limit passes.
  assert report["max_bad_fraction"] == 0.01 and report["quarantined"] == 3_205
  assert sum(f["malformed"] for f in report["files"].values()) == 0
  assert report["label_coverage"]["interest_skip"] == pytest.approx(108_823 / 118_342)
  assert report["label_coverage"]["interest_like"] == 0.0
  assert pq.read_metadata(out / "events.parquet").num_rows == 118_342


def test_cli_import_unreadable_layout_fails_cleanly(fixtures_dir, tmp_path, capsys):
  folder = tmp_path / "jamendo"
  shutil.copytree(os.path.join(fixtures_dir, "jamendo"), folder)
  (folder / "autotagging-train.tsv").write_bytes(b"ID\tWHO\r\ntrack_1\tx\r\n")
  out = tmp_path / "out"
  rc = melody.main(["data", "import", "--source", "jamendo", "--out", str(out),
                    "--data-dir", str(folder)])
  assert rc == importer.EXIT_BAD_DATA
  assert "cannot read jamendo" in capsys.readouterr().err
  assert json.loads((out / "import_report.json").read_text())["status"] == "failed"
