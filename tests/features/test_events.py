"""Tests of the common event/track schema validator (features/events.py)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features import events
EVENT_NAMES = list(events.EVENT_SCHEMA.names)


def _good_events(n=6):
  return events.make_events(
      "30music", n,
      user_id=[f"u{i % 2}" for i in range(n)],
      session_id=[f"s{i % 2}" for i in range(n)],
      ts=pd.array([1_400_000_000 + 60 * i for i in range(n)], dtype="Int64"),
      track_id=[f"t{i}" for i in range(n)],
      artist_id=["a"] * n,
      skip=np.array([0, 1] * (n // 2), dtype=np.float32),
  )


def test_make_events_has_schema_columns_and_null_defaults():
  df = events.make_events("hetrec", 3, user_id=["a", "b", "c"])
  assert list(df.columns) == EVENT_NAMES
  assert df["ts"].isna().all()
  assert (df["plays"] == 1).all()
  assert (df["context_surface"] == "unknown").all()
  assert df["user_segment"].isna().all()
  for col in events.EVENT_LABELS:
    assert df[col].isna().all()


@pytest.mark.parametrize("kwargs,match", [
    (dict(source="spotify", n=1), "unknown source 'spotify'"),
    (dict(source="kkbox", n=1, rating=[1]), r"columns not in EVENT_SCHEMA: \['rating'\]"),
    (dict(source="kkbox", n=2, user_id=["a"]), "'user_id' has 1 values, expected 2"),
    (dict(source="kkbox", n=-1), "n must be >= 0, got -1"),
])
def test_make_events_rejects_bad_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    events.make_events(**kwargs)


def test_valid_rows_are_all_kept_in_order():
  df = _good_events()
  valid, report = events.validate_events(df)
  assert report.total == report.valid == 6
  assert report.bad_by_reason == {}
  assert valid["track_id"].tolist() == [f"t{i}" for i in range(6)]
  assert list(valid.columns) == EVENT_NAMES


def _bad_events():
  df = _good_events(10)
  df.loc[0, "user_id"] = None
  df.loc[1, "track_id"] = ""
  df.loc[2, "like"] = 2.0
  df.loc[3, "user_segment"] = "vip"
  df.loc[4, "context_surface"] = "tv"
  # Rows 5 and 7 become the same play (session s1, track t7, same second).
  df.loc[5, ["session_id", "track_id"]] = ["s1", "t7"]
  df.loc[[5, 7], "ts"] = 1_400_000_000 + 60 * 6
  return df


def test_bad_rows_counted_by_reason_and_valid_rows_kept(tmp_path):
  df = _bad_events()
  valid, report = events.validate_events(df, quarantine_dir=str(tmp_path), max_bad_fraction=0.9)
  assert report.bad_by_reason == {
      "missing user_id": 1,
      "missing track_id": 1,
      "like outside [0, 1]": 1,
      "unknown user_segment": 1,
      "unknown context_surface": 1,
      "duplicate event (session_id, track_id, ts)": 1,
  }
  assert (report.total, report.valid, report.bad) == (10, 4, 6)
  # Row 5 comes first, so the later row 7 is the duplicate; rows 5, 6, 8, 9 remain.
  assert valid["track_id"].tolist() == ["t7", "t6", "t8", "t9"]


def test_any_index_is_accepted():
  df = _bad_events()
  df.index = [0] * len(df)      # e.g. frames concatenated without ignore_index
  valid, report = events.validate_events(df, max_bad_fraction=0.9)
  assert report.bad == 6
  assert valid["track_id"].tolist() == ["t7", "t6", "t8", "t9"]


def test_quarantine_file_holds_bad_rows_with_reason(tmp_path):
  _, report = events.validate_events(_bad_events(), quarantine_dir=str(tmp_path),
                                 max_bad_fraction=0.9)
  assert report.quarantine_path == str(tmp_path / "events.quarantine.csv")
  q = pd.read_csv(report.quarantine_path)
  assert list(q.columns) == ["reason"] + EVENT_NAMES
  assert len(q) == 6
  assert q.loc[q["reason"] == "like outside [0, 1]", "like"].tolist() == [2.0]
  assert q.loc[q["reason"] == "unknown user_segment", "user_segment"].tolist() == ["vip"]


def test_no_quarantine_file_when_all_rows_are_valid(tmp_path):
  _, report = events.validate_events(_good_events(), quarantine_dir=str(tmp_path))
  assert report.quarantine_path is None
  assert not list(tmp_path.iterdir())


def test_limit_exceeded_raises_clear_message(tmp_path):
  with pytest.raises(events.BadDataError) as err:
    events.validate_events(_bad_events(), quarantine_dir=str(tmp_path), max_bad_fraction=0.5)
  msg = str(err.value)
  assert "events: 6 of 10 rows are malformed (60.00% > limit 50.00%)" in msg
  assert "missing user_id" in msg
  # The bad rows are still quarantined for inspection.
  assert (tmp_path / "events.quarantine.csv").exists()


def test_limit_is_inclusive():
  df = _good_events(10)
  df.loc[0, "plays"] = 0
  _, report = events.validate_events(df, max_bad_fraction=0.1)
  assert report.bad_by_reason == {"plays below 1": 1}
  with pytest.raises(events.BadDataError, match="10.00% > limit 9.00%"):
    events.validate_events(df, max_bad_fraction=0.09)


def test_non_numeric_values_are_reported_not_nulled():
  df = _good_events(4)
  df["ts"] = df["ts"].astype(object)
  df.loc[0, "ts"] = "yesterday"
  df["like"] = df["like"].astype(object)
  df.loc[1, "like"] = "yes"
  df.loc[2, "user_tenure_days"] = -3.0
  _, report = events.validate_events(df, max_bad_fraction=1.0)
  assert report.bad_by_reason == {"ts not numeric": 1, "like not numeric": 1,
                                  "user_tenure_days negative": 1}


def test_missing_column_raises():
  with pytest.raises(events.BadDataError, match=r"events: columns missing: \['exposure'\]"):
    events.validate_events(_good_events().drop(columns=["exposure"]))


def test_bad_max_bad_fraction_raises():
  with pytest.raises(ValueError, match="max_bad_fraction must be in \\[0, 1\\], got 1.5"):
    events.validate_events(_good_events(), max_bad_fraction=1.5)


def test_tracks_validation_reasons(tmp_path):
  df = events.make_tracks(
      5, track_id=["a", "b", "a", "", "c"], tags=[["x"], "rock", [], [], ["y"]],
      duration_s=[120.0, 100.0, 90.0, 80.0, -1.0])
  valid, report = events.validate_tracks(df, quarantine_dir=str(tmp_path), max_bad_fraction=1.0)
  assert report.bad_by_reason == {"tags not a list of strings": 1, "duplicate track_id": 1,
                                  "missing track_id": 1, "duration_s not positive": 1}
  assert valid["track_id"].tolist() == ["a"]
  assert (tmp_path / "tracks.quarantine.csv").exists()


def test_to_arrow_round_trip_keeps_nulls():
  df = _good_events(4)
  df.loc[1, "ts"] = pd.NA
  table = events.to_arrow(df, events.EVENT_SCHEMA)
  assert table.schema == events.EVENT_SCHEMA
  assert table.column("ts").to_pylist() == [1_400_000_000, None, 1_400_000_120, 1_400_000_180]
  assert table.column("like").null_count == 4
  df["artist_id"] = pd.array(["a", None, pd.NA, "b"], dtype="string")
  assert events.to_arrow(df, events.EVENT_SCHEMA).column("artist_id").to_pylist() == [
      "a", None, None, "b"]
  tracks = events.make_tracks(2, track_id=["a", "b"], tags=[["rock", "pop"], []])
  t = events.to_arrow(tracks, events.TRACK_SCHEMA)
  assert t.column("tags").to_pylist() == [["rock", "pop"], []]
  assert t.column("tags").type == pa.list_(pa.string())


def test_label_coverage():
  df = _good_events(4)
  cov = events.label_coverage(df)
  assert cov == {"interest_completion": 0.0, "interest_skip": 1.0, "interest_like": 0.0,
                 "subscription": 0.0, "exposure": 0.0}


def test_numeric_or_text_keeps_unparseable_values():
  raw = pd.Series(["3", None, "x", "2.5"])
  out = events.numeric_or_text(raw)
  assert out.tolist()[0] == 3.0 and out[1] is None and out[2] == "x" and out[3] == 2.5
  as_int = events.numeric_or_text(raw, integer=True)
  assert as_int[2] == "x" and as_int[3] == "2.5"
  clean = events.numeric_or_text(pd.Series(["1", "2", None]), integer=True)
  assert str(clean.dtype) == "Int64" and clean.isna().tolist() == [False, False, True]
