"""Tests of ``melody data examples`` (features.own_logs): a team's CSV log with only the
required columns (a play-only log, so its plays come with sampled negatives) becomes span
folders whose history crosses span boundaries; bad rows and unknown tracks are set aside;
the Beam job gives the same examples on a 2-worker Dask cluster as on the DirectRunner."""

import collections
import os

import numpy as np
import pandas as pd
import pytest

from features import example_io
from features import feature_spec
from features import own_logs

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

DAY = 86400
DAY1 = 20000 * DAY   # 2024-10-04 (UTC day number 20000)
DAY2 = DAY1 + DAY


def _log_rows():
  """Two listeners over two days; ``u1`` plays t1, t2 on day 1 and t3 on day 2."""
  rows = [("u1", "t1", DAY1 + 3600), ("u1", "t2", DAY1 + 3900),
          ("u1", "t3", DAY2 + 7200), ("u2", "t2", DAY1 + 100), ("u2", "t4", DAY2 + 50),
          ("u2", "t1", "not a time"), ("u2", "nope", DAY2 + 60)]
  return pd.DataFrame(rows, columns=["user_id", "track_id", "ts"])


@pytest.fixture(scope="module")
def own_log(tmp_path_factory):
  root = tmp_path_factory.mktemp("own_log")
  (root / "logs").mkdir()
  rows = _log_rows()
  # Two files (one per day, as a daily export would be) with interleaved listeners.
  rows.iloc[[0, 1, 3, 5]].to_csv(root / "logs" / "day1.csv", index=False)
  rows.iloc[[2, 4, 6]].to_csv(root / "logs" / "day2.csv", index=False)
  pd.DataFrame({"track_id": ["t1", "t2", "t3", "t4"], "artist_id": ["a1", "a2", "a1", "a3"],
                "tags": ["rock|pop", "", "jazz", "calm"]}).to_csv(root / "tracks.csv",
                                                                  index=False)
  return root


@pytest.fixture(scope="module")
def built(own_log):
  out = own_log / "data"
  manifest = own_logs.build_examples(str(own_log / "logs"), str(own_log / "tracks.csv"),
                                     str(out), shards=1, eval_percent=0, max_bad_fraction=0.5)
  return out, manifest


def _parse(pattern):
  records = list(example_io.iter_records(pattern))
  if not records:
    return {}
  return {k: v.numpy() for k, v in
          tf.io.parse_example(records, feature_spec.raw_feature_spec()).items()}


def test_spans_per_day_and_bad_rows_set_aside(built):
  out, manifest = built
  assert manifest["spans"] == ["span-20241004", "span-20241005"]
  assert sorted(os.listdir(out / "examples")) == manifest["spans"]
  assert manifest["rows"] == {"read": 7, "invalid": 1, "unknown_track": 1, "tracks_invalid": 0}
  assert manifest["counts"]["events"] == 5
  quarantined = pd.read_csv(out / "quarantine" / "events.quarantine.csv")
  assert quarantined["reason"].tolist() == ["ts not numeric"]


def _plays(parsed):
  """The examples of the log's own plays (a play-only log also has sampled negatives)."""
  keep = parsed["interest_like"] == 1
  return {k: v[keep] for k, v in parsed.items()}


def test_history_crosses_span_boundaries(built):
  out, _ = built
  day2 = _plays(_parse(str(out / "examples" / "span-20241005" / "train-*")))
  by_cand = {c.decode(): i for i, c in enumerate(day2["cand_track_id"])}
  i = by_cand["t3"]  # u1's day-2 play sees its day-1 plays, most recent first
  assert day2["hist_len"][i] == 2
  assert [t.decode() for t in day2["hist_track_ids"][i][:2]] == ["t2", "t1"]
  np.testing.assert_allclose(day2["hist_gap_s"][i][:2], [DAY + 3300, DAY + 3600])
  # A new session (more than SESSION_GAP_S later), so nothing in the session window.
  assert day2["sess_len"][i] == 0
  assert day2["source"][i] == b"own"
  day1 = _plays(_parse(str(out / "examples" / "span-20241004" / "train-*")))
  assert sorted(day1["hist_len"].tolist()) == [0, 0, 1]  # never a later play
  # Tags from the CSV's "|"-separated column.
  j = [c.decode() for c in day1["cand_track_id"]].index("t1")
  assert [t.decode() for t in day1["cand_tags"][j][:2]] == ["rock", "pop"]


def test_gap_sessions():
  users = np.array(["b", "a", "a", "a", "b"], dtype=object)
  ts = np.array([5.0, 0.0, 100.0, 100.0 + own_logs.SESSION_GAP_S + 1, np.nan])
  assert own_logs.gap_sessions(users, ts).tolist() == ["b:0", "a:0", "a:0", "a:1", "b:0"]


def test_missing_required_column_is_named(tmp_path):
  pd.DataFrame({"user_id": ["u"], "ts": [1]}).to_csv(tmp_path / "e.csv", index=False)
  with pytest.raises(ValueError, match=r"required column\(s\) \['track_id'\] missing"):
    own_logs.read_events([str(tmp_path / "e.csv")])


def _records_by_tag(examples_dir):
  out = collections.defaultdict(list)
  for span in sorted(os.listdir(examples_dir)):
    for split in ("train", "eval"):
      pattern = os.path.join(examples_dir, span, f"{split}-*")
      out[f"{span}/{split}"] = sorted(example_io.canonical(r)
                                      for r in example_io.iter_records(pattern))
  return dict(out)


@pytest.mark.slow
def test_dask_two_workers_writes_what_the_direct_runner_writes(own_log, built):
  out, direct_manifest = built
  dask_out = own_log / "dask"
  manifest = own_logs.build_examples(str(own_log / "logs"), str(own_log / "tracks.csv"),
                                     str(dask_out), shards=1, eval_percent=0,
                                     max_bad_fraction=0.5, runner="DaskRunner")
  assert manifest["runner"] == "DaskRunner"
  direct = _records_by_tag(out / "examples")
  counts = direct_manifest["counts"]
  assert sum(len(v) for v in direct.values()) == (counts["train_examples"]
                                                   + counts["eval_examples"])
  assert direct_manifest["next_play"]["per_positive"] >= 1   # with its sampled negatives
  assert _records_by_tag(dask_out / "examples") == direct
