"""Tests of the HetRec (Last.fm 2k) adapter on the committed excerpt and the shared data."""

import functools
import os

import numpy as np
import pytest

from features.datasets import hetrec, registry, source_tables
from melody_testing import fixture_copies


@functools.lru_cache(maxsize=None)
def _load(data_dir):
  return registry.load("hetrec", data_dir)


def _fixture(fixtures_dir):
  return os.path.join(fixtures_dir, "hetrec")


def test_fixture_events_are_user_artist_aggregates(fixtures_dir):
  events, tracks, reports = _load(_fixture(fixtures_dir))
  assert (reports["events"].bad, reports["tracks"].bad) == (0, 0)
  assert len(events) == 200
  assert events["user_id"].value_counts().to_dict() == {
      "hetrec_user:2": 50, "hetrec_user:3": 50, "hetrec_user:747": 50, "hetrec_user:784": 50}
  assert int(events["plays"].sum()) == 266_850
  assert (events["session_id"] == events["user_id"]).all()
  assert (events["track_id"] == events["artist_id"]).all()
  assert events["ts"].isna().all()
  for col in ("completion", "skip", "like", "subscription", "exposure"):
    assert events[col].isna().all(), col
  first = events.iloc[0]
  assert (first["user_id"], first["track_id"], first["plays"]) == (
      "hetrec_user:2", "hetrec_artist:51", 13_883)


def test_fixture_tracks_quirks(fixtures_dir):
  _, tracks, _ = _load(_fixture(fixtures_dir))
  by_id = tracks.set_index("track_id")
  # 694 artists.dat rows + 12 tagged artists without a row (empty title, null popularity).
  assert len(tracks) == 706
  assert int((tracks["title"] == "").sum()) == 12
  assert int(tracks["popularity"].notna().sum()) == 198
  # QUOTE_NONE keeps the quotes; latin-1 tags.dat decodes.
  assert by_id.loc["hetrec_artist:1686", "title"] == '"Weird Al" Yankovic'
  assert list(by_id.loc["hetrec_artist:231", "tags"]) == ["español"]
  # popularity = log1p(total plays over users)
  assert by_id.loc["hetrec_artist:51", "popularity"] == pytest.approx(np.log1p(13_883))
  assert tracks["duration_s"].isna().all()


def test_fixture_is_byte_exact_crlf_and_latin1(fixtures_dir):
  with open(os.path.join(_fixture(fixtures_dir), "user_artists.dat"), "rb") as f:
    assert f.readline() == b"userID\tartistID\tweight\r\n"
  with open(os.path.join(_fixture(fixtures_dir), "tags.dat"), "rb") as f:
    raw = f.read()
  with pytest.raises(UnicodeDecodeError):
    raw.decode("utf-8")
  assert "español" in raw.decode("latin-1")


def test_artist_tags_most_used_first_ties_by_tag_id(tmp_path):
  (tmp_path / "tags.dat").write_bytes(
      "tagID\ttagValue\n1\trock\n2\tpop\n3\tdie \u00c4rzte\n".encode("latin-1"))
  (tmp_path / "user_taggedartists.dat").write_text(
      "userID\tartistID\ttagID\tday\tmonth\tyear\n"
      "1\t10\t2\t1\t1\t2010\n2\t10\t3\t1\t1\t2010\n3\t10\t3\t1\t1\t2010\n"
      "1\t10\t1\t1\t1\t2010\n1\t11\t2\t1\t1\t2010\n", encoding="ascii")
  tags = hetrec.artist_tags(str(tmp_path))
  assert list(tags.loc["10"]) == ["die \u00c4rzte", "rock", "pop"]
  assert list(tags.loc["11"]) == ["pop"]


@pytest.mark.realdata
def test_real_counts_and_coverage(shared_data):
  events, tracks, reports = _load(shared_data)
  assert (reports["events"].bad, reports["tracks"].bad) == (0, 0)
  assert len(events) == 92_834
  assert events["user_id"].nunique() == 1_892
  assert events["track_id"].nunique() == 17_632
  assert int(events["plays"].sum()) == 69_183_975
  assert (events["plays"].min(), events["plays"].median(), events["plays"].max()) == (
      1, 260, 352_698)
  for col in ("completion", "skip", "like", "subscription", "exposure"):
    assert events[col].isna().all(), col
  # 17,632 artists + 390 tagged-only artists.
  assert len(tracks) == 18_022
  assert int(tracks["popularity"].isna().sum()) == 390
  assert int((tracks["tags"].map(len) == 0).sum()) == 5_499
  assert int(tracks["tags"].map(len).sum()) == 109_750


@pytest.mark.realdata
def test_real_golden_rows(shared_data):
  events, tracks, _ = _load(shared_data)
  first = events.iloc[0]
  assert (first["user_id"], first["track_id"], first["plays"]) == (
      "hetrec_user:2", "hetrec_artist:51", 13_883)
  t = tracks.iloc[0]
  assert (t["track_id"], t["title"]) == ("hetrec_artist:1", "MALICE MIZER")
  assert list(t["tags"]) == ["j-rock", "visual kei", "gothic", "japanese", "weeabo", "jrock",
                             "better than lady gaga"]
  assert t["popularity"] == pytest.approx(6.648984)
  by_id = tracks.set_index("track_id")
  assert by_id.loc["hetrec_artist:1686", "title"] == '"Weird Al" Yankovic'
  assert "tropicália" in list(by_id.loc["hetrec_artist:5750", "tags"])
  assert by_id["popularity"].idxmax() == "hetrec_artist:289"   # Britney Spears


# user_artists.dat lines appended after the excerpt's 200 rows (CRLF, like the file).
_BAD_USER_ARTISTS = [
    b"9\t51\tlots",         # plays not a number
    b"9\t52\t0",            # no play
    b"\t53\t10",            # no user
    b"9\t51\t10\textra",    # extra field
    b"9\t51",               # missing field
    b"9\t5\xff1\t10",       # invalid UTF-8
    b"9\t999999\t10",       # artist neither in artists.dat nor tagged
    b"#garbage#",           # garbage
    b"x\t51\t10",           # user id not a number
    b"9\t54\t77",           # good
]


def test_bad_lines_are_quarantined_whole_and_good_ones_kept(fixtures_dir, tmp_path):
  folder = fixture_copies.copy_with_appended(_fixture(fixtures_dir), str(tmp_path / "h"), {
      "user_artists.dat": b"".join(line + b"\r\n" for line in _BAD_USER_ARTISTS),
      "artists.dat": b"4242\tNo Links\n"})   # two of four fields
  events, tracks, report = registry.load("hetrec", folder, max_bad_fraction=1.0)
  assert len(events) == 201 and len(tracks) == 706
  last = events.iloc[-1]
  assert (last["user_id"], last["track_id"], last["plays"]) == (
      "hetrec_user:9", "hetrec_artist:54", 77)
  records = report.records
  ua = records[records["file"] == "user_artists.dat"]
  first = 202   # header + 200 excerpt rows
  assert list(zip(ua["line"], ua["reason"])) == [
      (first, "plays not numeric"),
      (first + 1, "plays below 1"),
      (first + 2, "missing user_id"),
      (first + 3, "expected 3 fields, saw 4"),
      (first + 4, "expected 3 fields, saw 2"),
      (first + 5, "not utf-8: byte 0xff at column 4"),
      (first + 6, source_tables.UNKNOWN_TRACK),
      (first + 7, "expected 3 fields, saw 1"),
      (first + 8, "userID is not an integer"),
  ]
  expected_raw = [line.decode("utf-8", errors="backslashreplace")
                  for line in _BAD_USER_ARTISTS[:-1]]
  assert ua["raw"].tolist() == expected_raw
  assert ua["raw"].iloc[5] == "9\t5\\xff1\t10"
  art = records[records["file"] == "artists.dat"]
  assert (art["line"].tolist(), art["raw"].tolist(), art["reason"].tolist()) == (
      [696], ["4242\tNo Links"], ["expected 4 fields, saw 2"])
  assert (report.files["user_artists.dat"].lines,
          report.files["user_artists.dat"].malformed) == (210, 9)
  assert report["events"].bad_by_reason == {
      "plays not numeric": 1, "plays below 1": 1, "missing user_id": 1,
      source_tables.UNKNOWN_TRACK: 1}
