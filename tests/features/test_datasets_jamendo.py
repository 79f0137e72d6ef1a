"""Tests of the MTG-Jamendo adapter on the committed excerpt and the shared data."""

import functools
import os

import numpy as np
import pytest

from features import events as events_lib
from features.datasets import jamendo, registry
from melody_testing import fixture_copies


@functools.lru_cache(maxsize=None)
def _load(data_dir):
  return registry.load("jamendo", data_dir)


def _fixture(fixtures_dir):
  return os.path.join(fixtures_dir, "jamendo")


def test_fixture_tracks(fixtures_dir):
  events, tracks, reports = _load(_fixture(fixtures_dir))
  assert len(events) == 0 and list(events.columns) == list(events_lib.EVENT_SCHEMA.names)
  assert (reports["tracks"].total, reports["tracks"].bad) == (79, 0)   # 25 + 10 + 44
  assert tracks["track_id"].iloc[0] == "track_0000241"
  assert int(tracks["tags"].map(len).sum()) == 112
  assert int(tracks["popularity"].notna().sum()) == 40      # test tracks with stats
  assert int((tracks["title"] != "").sum()) == 44           # every excerpted test track
  by_id = tracks.set_index("track_id")
  t = by_id.loc["track_0000214"]
  assert (t["artist_id"], list(t["tags"])) == ("artist_000014", ["genre---punkrock"])
  assert t["duration_s"] == pytest.approx(124.6)
  assert t["title"] == "Intro chiante by David TMX"    # trailing space stripped
  assert t["popularity"] == pytest.approx(np.log1p(44_663))
  last = tracks.iloc[-1]
  assert list(last["tags"]) == ["genre---electronic", "instrument---synthesizer"]
  assert np.isnan(last["popularity"])


def test_fixture_stats_like_rate(fixtures_dir):
  stats = jamendo.load_stats(_fixture(fixtures_dir)).set_index("track_id")
  row = stats.loc["track_0000215"]
  assert (row["rate_listened_total"], row["likes"]) == (53_844, 2)
  assert row["like_rate"] == pytest.approx(2 / 53_844)
  assert row["popularity"] == pytest.approx(np.log1p(53_844))


def test_variable_width_rows_parse(tmp_path):
  path = tmp_path / "autotagging-x.tsv"
  path.write_bytes(b"TRACK_ID\tARTIST_ID\tALBUM_ID\tPATH\tDURATION\tTAGS\r\n"
                   b"track_0000001\tartist_1\talbum_1\t01/1.mp3\t200.5\tgenre---rock\t"
                   b"instrument---piano\tmood/theme---calm\r\n"
                   b"track_0000002\tartist_1\talbum_1\t02/2.mp3\t99\tgenre---pop\r\n")
  df = jamendo.read_autotagging(str(path))
  assert df["TAGS"].tolist() == [
      ["genre---rock", "instrument---piano", "mood/theme---calm"], ["genre---pop"]]
  assert df["DURATION"].tolist() == ["200.5", "99"]


@pytest.mark.realdata
def test_real_counts_and_coverage(shared_data):
  events, tracks, reports = _load(shared_data)
  assert len(events) == 0       # MTG-Jamendo has no listener data
  assert (reports["tracks"].total, reports["tracks"].bad) == (55_525, 0)
  assert tracks["artist_id"].nunique() == 3_565
  assert int(tracks["popularity"].notna().sum()) == 9_858
  assert int((tracks["title"] != "").sum()) == 11_565
  assert tracks["duration_s"].min() == pytest.approx(30.0)
  assert tracks["duration_s"].max() == pytest.approx(4140.3)
  tags = tracks["tags"].explode()
  assert int(tags.size) == 230_261
  for prefix, n in (("genre---", 87), ("instrument---", 40), ("mood/theme---", 56)):
    assert tags[tags.str.startswith(prefix)].nunique() == n, prefix


@pytest.mark.realdata
def test_real_golden_rows(shared_data):
  _, tracks, _ = _load(shared_data)
  first = tracks.iloc[0]
  assert (first["track_id"], first["artist_id"], list(first["tags"])) == (
      "track_0000241", "artist_000005", ["genre---rock"])
  assert first["duration_s"] == pytest.approx(340.1)
  assert np.isnan(first["popularity"]) and first["title"] == ""
  last = tracks.iloc[-1]
  assert last["title"] == "TCD - Call From Berlin by The Clone Dj"
  assert last["popularity"] == pytest.approx(7.036149)
  stats = jamendo.load_stats(os.path.join(shared_data, "mtg_jamendo"))
  assert len(stats) == 9_858
  assert stats["like_rate"].notna().all()
  assert stats.loc[0, "like_rate"] == pytest.approx(4 / 10_149_034)


# autotagging-test.tsv lines appended after the excerpt's 44 rows (CRLF, like the file).
_BAD_TAGGING = [
    b"track_9000001\tartist_1\talbum_1\t01/1.mp3\t200.5\tgenre---rock\tmood/theme---calm",
    b"track_9000002\tartist_1\talbum_1\t02/2.mp3",                       # missing fields
    b"track_9000003\tartist_1\talbum_1\t03/3.mp3\tlong\tgenre---pop",    # duration not a number
    b"track_90000\xff4\tartist_1\talbum_1\t04/4.mp3\t100\tgenre---pop",  # invalid UTF-8
    b"~~~ garbage ~~~",                                                 # garbage
    b"artist_only\tartist_1\talbum_1\t05/5.mp3\t100\tgenre---pop",      # not a track id
    b"track_0000214\tartist_1\talbum_1\t06/6.mp3\t100\tgenre---pop",    # id already listed
    b"track_9000007\tartist_1\talbum_1\t07/7.mp3\t99",                  # good, no tag
]


def test_bad_lines_are_quarantined_whole_and_good_ones_kept(fixtures_dir, tmp_path):
  # jamendo_stats.tsv: an extra field, and stats of a track outside the catalogue
  # (unused, not an error).
  folder = fixture_copies.copy_with_appended(_fixture(fixtures_dir), str(tmp_path / "j"), {
      "autotagging-test.tsv": b"".join(line + b"\r\n" for line in _BAD_TAGGING),
      "jamendo_stats.tsv": (b"7259\t1\t2\t3\t4\t5\t6\t7.0\t8\t9\n"
                            b"123456789\t1\t10\t0\t0\t1\t0\t0.0\t0\n")})
  events, tracks, report = registry.load("jamendo", folder, max_bad_fraction=1.0)
  assert len(events) == 0
  assert len(tracks) == 79 + 2
  assert tracks["track_id"].tolist()[-2:] == ["track_9000001", "track_9000007"]
  assert [list(t) for t in tracks["tags"].tolist()[-2:]] == [
      ["genre---rock", "mood/theme---calm"], []]
  assert "track_123456789" not in set(tracks["track_id"])
  records = report.records
  tagging = records[records["file"] == "autotagging-test.tsv"]
  first = 46   # header + 44 excerpt rows + the first appended (good) line
  assert list(zip(tagging["line"], tagging["reason"])) == [
      (first + 1, "expected at least 5 fields, saw 4"),
      (first + 2, "duration_s not numeric"),
      (first + 3, "not utf-8: byte 0xff at column 12"),
      (first + 4, "expected at least 5 fields, saw 1"),
      (first + 5, "TRACK_ID is not a track_<digits> id"),
      (first + 6, "duplicate track_id"),
  ]
  assert tagging["raw"].tolist() == [
      line.decode("utf-8", errors="backslashreplace") for line in _BAD_TAGGING[1:-1]]
  stats = records[records["file"] == "jamendo_stats.tsv"]
  assert list(zip(stats["line"], stats["reason"])) == [(42, "expected 9 fields, saw 10")]
  assert stats["raw"].iloc[0] == "7259\t1\t2\t3\t4\t5\t6\t7.0\t8\t9"
  assert report.files["autotagging-test.tsv"].lines == 52
