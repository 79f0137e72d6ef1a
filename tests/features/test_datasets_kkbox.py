"""Tests of the KKBox adapter: rules on hand-made rows, counts on the shared sample.

KKBox data must not be committed, so the real-data tests need the shared datasets
(``shared_data`` skips visibly without them); the rule tests need nothing.
"""

import functools
import os
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from features import feature_spec
from features.datasets import kkbox, quarantine, registry, source_tables
from melody_cli import main as melody


@functools.lru_cache(maxsize=None)
def _load(data_dir):
  return registry.load("kkbox", data_dir)


def test_segment_rule_on_hand_made_members():
  members = pd.DataFrame({
      "msno": ["lapsed_young", "lapsed_old", "trial", "new", "paid", "future"],
      "registration_init_time": [20160801, 20120101, 20170210, 20170201, 20150101, 20170301],
      "expiration_date": [20170101, 20160101, 20170310, 20170901, 20170901, 20170901],
  })
  feats = kkbox.member_features(members)
  assert feats["user_segment"].tolist() == [
      "free", "free_veteran", "trial", "new", "paid", None]
  assert feats.loc["new", "user_tenure_days"] == 27.0
  assert feats.loc["lapsed_old", "user_tenure_days"] == 1885.0
  assert np.isnan(feats.loc["future", "user_tenure_days"])


def test_segment_rule_validates_arguments():
  with pytest.raises(ValueError, match="trial_days must be positive, got 0"):
    kkbox.SegmentRule(trial_days=0)


def test_surface_mapping():
  tab = pd.Series(["discover", "my library", "my library", None, None, "notification",
                   "listen with", "explore"])
  stype = pd.Series(["online-playlist", "local-library", "local-playlist", "radio", "album",
                     "song", "listen-with", None])
  assert kkbox.surface_of(tab, stype).tolist() == [
      "discover", "library", "playlist", "radio", "unknown", "unknown", "radio", "discover"]


@pytest.mark.realdata
def test_real_counts_and_coverage(shared_data):
  events, tracks, reports = _load(shared_data)
  # 18,385 labeled train plays + 3,735 unlabeled test plays; 300 songs.
  assert len(events) == 22_120
  assert len(tracks) == 300
  assert reports["events"].bad == 0 and reports["tracks"].bad == 0
  assert events["user_id"].nunique() == 14_430
  assert events["track_id"].nunique() == 300
  # Only `like` (the repeat-listen target) exists, and only for train rows.
  assert int(events["like"].notna().sum()) == 18_385
  assert int(events["like"].sum()) == 11_477      # mean 0.624 as in PROVENANCE
  assert set(events["like"].dropna().unique()) == {0.0, 1.0}
  assert events["like"].iloc[18_385:].isna().all()
  for col in ("completion", "skip", "subscription", "exposure"):
    assert events[col].isna().all(), col
  assert events["ts"].isna().all()
  assert (events["plays"] == 1).all()
  assert set(events["context_surface"]) <= set(feature_spec.SURFACES)


@pytest.mark.realdata
def test_real_segments_and_surfaces(shared_data):
  events, _, _ = _load(shared_data)
  assert events["user_segment"].value_counts().to_dict() == {
      "paid": 20_116, "free": 1_192, "free_veteran": 628, "new": 149, "trial": 35}
  assert events["context_surface"].value_counts().to_dict() == {
      "discover": 10_396, "library": 6_060, "playlist": 2_882, "radio": 1_427,
      "search": 1_293, "unknown": 62}
  assert events["user_tenure_days"].between(0, 4_722).all()


@pytest.mark.realdata
def test_real_golden_first_rows(shared_data):
  events, tracks, _ = _load(shared_data)
  first = events.iloc[0]
  assert first["user_id"] == "W5/Zf2XBU+3wkx81edpZMHev/NNgy6JujZ3nR/A+euo="
  assert first["session_id"] == "kkbox_user:W5/Zf2XBU+3wkx81edpZMHev/NNgy6JujZ3nR/A+euo="
  assert first["track_id"] == "7Xxzo9Z584Z1AhkaLLWEcpzcEuxcquGE52Ztc4879YI="
  assert first["artist_id"] == "kkbox_artist:田馥甄 (Hebe)"
  assert (first["user_segment"], first["user_tenure_days"]) == ("paid", 1698.0)
  assert (first["context_surface"], first["like"]) == ("radio", 0.0)
  t = tracks.iloc[0]
  assert t["track_id"] == "8Q7MCgDYnoWTLGa5JpzHXsx4+auguwuEIW3vqUbHB8M="
  assert list(t["tags"]) == ["kkbox_genre:545"]
  assert t["duration_s"] == pytest.approx(971.104)
  assert t["popularity"] == pytest.approx(np.log1p(2))
  assert t["title"] == "法術"


@pytest.mark.realdata
def test_real_tracks(shared_data):
  _, tracks, _ = _load(shared_data)
  assert tracks["duration_s"].notna().all()
  assert int(tracks["tags"].map(len).sum()) == 320
  assert int((tracks["tags"].map(len) == 0).sum()) == 5     # 5 songs without genre
  assert (tracks["title"] != "").all()
  assert tracks["popularity"].min() > 0


@pytest.mark.realdata
def test_train_only_option(shared_data):
  tables = kkbox.load(os.path.join(shared_data, "kkbox_sample"), include_test=False)
  assert len(tables.events) == 18_385
  assert tables.events["like"].notna().all()
  assert tables.events_origin["_line"].tolist()[:2] == [2, 3]


@pytest.mark.realdata
def test_real_files_read_without_quarantine(shared_data):
  _, _, report = _load(shared_data)
  assert {name: f.lines for name, f in report.files.items()} == {
      "train.csv": 18_385, "test.csv": 3_735, "songs.csv": 300, "members.csv": 14_430,
      "song_extra_info.csv": 300}
  assert len(report.records) == 0
  assert report.notes == {"events whose msno has no members.csv row (segment null)": 0}


_TRAIN_HEADER = "msno,song_id,source_system_tab,source_screen_name,source_type,target\n"
# train.csv lines 2..12: two good plays between one example of each defect.
_TRAIN_LINES = [
    b"u+1=,s/1=,discover,Discover Chart,online-playlist,1",         # 2 good
    b"u+1=,s/2=,search,Search,song,maybe",                          # 3 target not a number
    b",s/1=,radio,Radio,radio,0",                                   # 4 no msno
    b"u+2=,s/1=,radio,Radio,radio,0,x,y",                           # 5 extra fields
    b"u+2=,s/1=,radio,Radio",                                       # 6 missing fields
    b"u+2=,s/\xff1=,radio,Radio,radio,1",                           # 7 invalid UTF-8
    b"u+2=,s/9=,radio,Radio,radio,1",                               # 8 song not in songs.csv
    "<<garbage>> \u00bfqu\u00e9?".encode("utf-8"),                  # 9 garbage
    b"u+2=,s/3=,radio,Radio,radio,1",                               # 10 song quarantined
    b"u?2,s/1=,radio,Radio,radio,1",                                # 11 msno not an id
    b"u+2=,s/2=,my library,Local playlist more,local-playlist,0",   # 12 good
]


def _write_kkbox(folder):
  """A hand-made KKBox folder with one line per defect (see ``_TRAIN_LINES``)."""
  folder.mkdir()
  (folder / "train.csv").write_bytes(_TRAIN_HEADER.encode() + b"\n".join(_TRAIN_LINES) + b"\n")
  (folder / "test.csv").write_text(
      "id,msno,song_id,source_system_tab,source_screen_name,source_type\n"
      "7,u+2=,s/2=,my library,Local playlist more,local-playlist\n"
      "x8,u+1=,s/1=,radio,Radio,radio\n"
      "3,u+1=,s/1=,discover,,online-playlist\n", encoding="utf-8")
  (folder / "songs.csv").write_text(
      "song_id,song_length,genre_ids,artist_name,composer,lyricist,language\n"
      "s/1=,200000,465|958,Artist A,,,3.0\n"
      "s/2=,180000,,Artist B,,,-1.0\n"
      "s/3=,long,,Artist C,,,-1.0\n"
      's/4=,1000,,"Artist, D",,,-1.0\n', encoding="utf-8")
  (folder / "members.csv").write_text(
      "msno,city,bd,gender,registered_via,registration_init_time,expiration_date\n"
      "u+1=,1,0,,7,20110820,20170920\n"
      "u+2=,1,0,,7,20170220,20170301\n"
      "u+3=,1,0,,7,2011-08-20,20170920\n", encoding="utf-8")
  (folder / "song_extra_info.csv").write_text(
      "song_id,name,isrc\ns/1=,Song One,X\ns/2=,Song Two,Y\n", encoding="utf-8")


def test_hand_made_folder_quarantines_each_bad_line(tmp_path):
  _write_kkbox(tmp_path / "kkbox")
  events, tracks, report = registry.load("kkbox", str(tmp_path / "kkbox"),
                                         quarantine_dir=str(tmp_path / "q"),
                                         max_bad_fraction=1.0)
  # Every valid play is kept: train lines 2 and 12, then test rows by id (3, 7).
  assert events["track_id"].tolist() == ["s/1=", "s/2=", "s/1=", "s/2="]
  assert events["user_id"].tolist() == ["u+1=", "u+2=", "u+1=", "u+2="]
  assert events["like"].tolist()[:2] == [1.0, 0.0] and events["like"].iloc[2:].isna().all()
  assert events["user_segment"].tolist() == ["paid", "trial", "paid", "trial"]
  assert events["context_surface"].tolist() == ["discover", "playlist", "discover", "playlist"]
  assert tracks["track_id"].tolist() == ["s/1=", "s/2=", "s/4="]
  assert list(tracks.iloc[0]["tags"]) == ["kkbox_genre:465", "kkbox_genre:958"]
  assert tracks.iloc[0]["duration_s"] == 200.0
  assert tracks.iloc[2]["artist_id"] == "kkbox_artist:Artist, D"

  records = quarantine.read_jsonl(report.quarantine_path)
  assert report.quarantine_path == str(tmp_path / "q" / "quarantine.jsonl")
  assert [(r["file"], r["line"], r["reason"]) for r in records] == [
      ("train.csv", 3, "like not numeric"),
      ("train.csv", 4, "missing user_id"),
      ("train.csv", 5, "expected 6 fields, saw 8"),
      ("train.csv", 6, "expected 6 fields, saw 4"),
      ("train.csv", 7, "not utf-8: byte 0xff at column 8"),
      ("train.csv", 8, source_tables.UNKNOWN_TRACK),
      ("train.csv", 9, "expected 6 fields, saw 1"),
      ("train.csv", 10, source_tables.UNKNOWN_TRACK),
      ("train.csv", 11, "msno is not a KKBox id"),
      ("test.csv", 3, "id is not an integer"),
      ("songs.csv", 4, "duration_s not numeric"),
      ("members.csv", 4, "registration_init_time is not a YYYYMMDD date"),
  ]
  raw = {(r["file"], r["line"]): r["raw"] for r in records}
  for line in (3, 5, 6, 8, 9, 10, 11):   # the text is kept whole
    assert raw[("train.csv", line)] == _TRAIN_LINES[line - 2].decode("utf-8")
  assert raw[("train.csv", 7)] == "u+2=,s/\\xff1=,radio,Radio,radio,1"
  assert raw[("members.csv", 4)] == "u+3=,1,0,,7,2011-08-20,20170920"
  train = report.files["train.csv"]
  assert (train.lines, train.malformed) == (11, 9)
  assert report["events"].bad_by_reason == {
      "like not numeric": 1, "missing user_id": 1, source_tables.UNKNOWN_TRACK: 2}
  assert report["tracks"].bad_by_reason == {"duration_s not numeric": 1}


@pytest.mark.realdata
def test_real_sample_with_injected_defects_imports_the_rest(shared_data, tmp_path, capsys):
  folder = tmp_path / "kkbox_sample"
  shutil.copytree(os.path.join(shared_data, "kkbox_sample"), folder)
  lines = (folder / "train.csv").read_bytes().split(b"\n")
  # Line 41 gets two extra fields, line 42 an invalid byte, line 43 loses a field,
  # line 44 an unknown song, and a garbage line goes in before line 45.
  lines[40] += b",x,y"
  lines[41] = lines[41].replace(b",", b",\xff", 1)
  lines[42] = lines[42].rsplit(b",", 1)[0]
  lines[43] = lines[43].replace(lines[43].split(b",")[1], b"c29uZw==")
  lines.insert(44, b"\x00\x01 garbage")
  (folder / "train.csv").write_bytes(b"\n".join(lines))
  out = tmp_path / "out"
  rc = melody.main(["data", "import", "--source", "kkbox", "--out", str(out),
                    "--data-dir", str(folder)])
  assert rc == 0
  records = quarantine.read_jsonl(str(out / "quarantine" / "quarantine.jsonl"))
  assert [(r["line"], r["reason"]) for r in records] == [
      (41, "expected 6 fields, saw 8"), (42, "not utf-8: byte 0xff at column 46"),
      (43, "expected 6 fields, saw 5"), (44, source_tables.UNKNOWN_TRACK),
      (45, "control byte (NUL or CR) at column 1")]
  assert records[0]["raw"] == lines[40].decode("utf-8")
  assert pq.read_metadata(out / "events.parquet").num_rows == 22_120 - 4
  assert "5 lines in" in capsys.readouterr().out
