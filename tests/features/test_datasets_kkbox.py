"""Tests of the KKBox adapter: rules on hand-made rows, counts on the shared sample.

KKBox data must not be committed, so the real-data tests need the shared datasets
(``shared_data`` skips visibly without them); the rule tests need nothing.
"""

import functools
import os

import numpy as np
import pandas as pd
import pytest

from features import feature_spec
from features.datasets import kkbox, registry


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
  events, _ = kkbox.load(os.path.join(shared_data, "kkbox_sample"), include_test=False)
  assert len(events) == 18_385
  assert events["like"].notna().all()


def _write_kkbox(folder):
  """A hand-made KKBox-shaped folder: two good plays and two malformed ones."""
  folder.mkdir()
  (folder / "train.csv").write_text(
      "msno,song_id,source_system_tab,source_screen_name,source_type,target\n"
      "u+1=,s/1=,discover,Discover Chart,online-playlist,1\n"
      "u+1=,s/2=,search,Search,song,maybe\n"
      ",s/1=,radio,Radio,radio,0\n", encoding="utf-8")
  (folder / "test.csv").write_text(
      "id,msno,song_id,source_system_tab,source_screen_name,source_type\n"
      "7,u+2=,s/2=,my library,Local playlist more,local-playlist\n", encoding="utf-8")
  (folder / "songs.csv").write_text(
      "song_id,song_length,genre_ids,artist_name,composer,lyricist,language\n"
      "s/1=,200000,465|958,Artist A,,,3.0\n"
      "s/2=,long,,Artist B,,,-1.0\n", encoding="utf-8")
  (folder / "members.csv").write_text(
      "msno,city,bd,gender,registered_via,registration_init_time,expiration_date\n"
      "u+1=,1,0,,7,20110820,20170920\n"
      "u+2=,1,0,,7,20170220,20170301\n", encoding="utf-8")
  (folder / "song_extra_info.csv").write_text(
      "song_id,name,isrc\ns/1=,Song One,X\ns/2=,Song Two,Y\n", encoding="utf-8")


def test_hand_made_folder_reports_malformed_rows(tmp_path):
  _write_kkbox(tmp_path / "kkbox")
  events, tracks, reports = registry.load("kkbox", str(tmp_path / "kkbox"),
                                          quarantine_dir=str(tmp_path / "q"),
                                          max_bad_fraction=1.0)
  assert reports["events"].bad_by_reason == {"like not numeric": 1, "missing user_id": 1}
  assert reports["tracks"].bad_by_reason == {"duration_s not numeric": 1}
  assert events["track_id"].tolist() == ["s/1=", "s/2="]
  assert events["like"].tolist()[0] == 1.0 and np.isnan(events["like"].tolist()[1])
  assert events["user_segment"].tolist() == ["paid", "trial"]
  assert events["context_surface"].tolist() == ["discover", "playlist"]
  assert list(tracks.iloc[0]["tags"]) == ["kkbox_genre:465", "kkbox_genre:958"]
  assert tracks.iloc[0]["duration_s"] == 200.0
  assert (tmp_path / "q" / "events.quarantine.csv").exists()
