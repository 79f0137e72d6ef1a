"""Tests of the training examples (features.windows, raw_features, splits, example_io,
examples_beam): golden history/session windows, labels (the skip-profile class label of
simulated and real sources too), splits, TFRecord round trip."""

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features import events as events_lib
from features import example_io
from features import examples_beam
from features import feature_spec
from features import raw_features
from features import splits
from features import windows
from melody_testing import toy_events

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order


def _event(user, session, ts, track, artist, completion=1.0, skip=0.0, like=None, **kw):
  row = {"user_id": user, "session_id": session, "ts": ts, "plays": 1, "track_id": track,
         "artist_id": artist, "source": "sim", "user_segment": "free",
         "user_tenure_days": 30.0, "context_activity": "focus", "context_surface": "home",
         "is_promo": False, "completion": completion, "skip": skip, "like": like,
         "subscription": None, "exposure": 0.0}
  row.update(kw)
  return row


TRACKS = pd.DataFrame({
    "track_id": ["t1", "t2", "t3", "t4", "t5"],
    "artist_id": ["a1", "a2", "a3", "a4", "a5"],
    "tags": [["rock", "pop"], [], None, ["jazz"], ["calm"]],
    "duration_s": [200.0, None, 100.0, 300.0, 400.0],
    "popularity": [1.5, 2.0, None, 0.5, 0.0],
    "title": ["", "", "", "", ""],
})

# User "a": session s1 (rows 0-2), an interleaved session s2 (row 3), s1 again (row 4),
# then a row exactly SESSION_WINDOW_S after row 4 (row 5). User "b": one row with a known
# weekday/hour, an unknown track and a missing artist.
ROWS = [
    _event("a", "s1", 1000, "t1", "a1"),
    _event("a", "s1", 1100, "t2", "a2", completion=0.5, skip=1.0, like=1.0),
    _event("a", "s1", 1200, "t3", "a3", completion=None, skip=None),
    _event("a", "s2", 1500, "t1", "a1"),
    _event("a", "s1", 1600, "t4", "a4", is_promo=True),
    _event("a", "s1", 1600 + feature_spec.SESSION_WINDOW_S, "t5", "a5"),
    _event("b", "x", 2 * 86400 + 5 * 3600 + 59, "zzz", None, user_segment="paid"),
]


@pytest.fixture(scope="module")
def parsed():
  table = pa.Table.from_pylist(ROWS, schema=events_lib.EVENT_SCHEMA)
  records = example_io.events_to_examples(table, TRACKS)
  assert len(records) == len(ROWS)
  return {
      k: v.numpy() for k, v in tf.io.parse_example(records, feature_spec.raw_feature_spec()).items()
  }


def _ids(row, n):
  return [x.decode() for x in row[:n]]


def test_every_raw_feature_has_its_length(parsed):
  assert set(parsed) == {f.name for f in feature_spec.RAW_FEATURES}
  for f in feature_spec.RAW_FEATURES:
    assert parsed[f.name].shape == ((len(ROWS), f.length) if f.length > 1 else (len(ROWS),))


def test_history_is_previous_plays_most_recent_first(parsed):
  assert parsed["hist_len"].tolist() == [0, 1, 2, 3, 4, 5, 0]
  assert _ids(parsed["hist_track_ids"][4], 5) == ["t1", "t3", "t2", "t1", ""]
  assert _ids(parsed["hist_artist_ids"][4], 4) == ["a1", "a3", "a2", "a1"]
  np.testing.assert_allclose(parsed["hist_gap_s"][4, :5], [100, 400, 500, 600, 0])
  # Row 2 has null completion/skip: 0 in the later history, not invented.
  np.testing.assert_allclose(parsed["hist_completion"][3, :4], [0.0, 0.5, 1.0, 0.0])
  np.testing.assert_allclose(parsed["hist_skip"][3, :4], [0.0, 1.0, 0.0, 0.0])
  # Padding beyond the length, and no history leaks across users.
  assert set(parsed["hist_track_ids"][0].tolist()) == {feature_spec.PAD_TOKEN}
  assert set(parsed["hist_track_ids"][6].tolist()) == {feature_spec.PAD_TOKEN}
  assert not parsed["hist_gap_s"][6].any()


def test_session_is_same_session_within_window(parsed):
  assert parsed["sess_len"].tolist() == [0, 1, 2, 0, 3, 1, 0]
  # Row 4 skips the interleaved s2 row and keeps recency order.
  assert _ids(parsed["sess_track_ids"][4], 4) == ["t3", "t2", "t1", ""]
  np.testing.assert_allclose(parsed["sess_gap_s"][4, :3], [400, 500, 600])
  # Row 5 is exactly SESSION_WINDOW_S after row 4 (kept), older s1 rows are out.
  assert _ids(parsed["sess_track_ids"][5], 2) == ["t4", ""]
  np.testing.assert_allclose(parsed["sess_gap_s"][5, 0], feature_spec.SESSION_WINDOW_S)
  np.testing.assert_allclose(parsed["sess_completion"][2, :3], [0.5, 1.0, 0.0])


def test_candidate_and_context(parsed):
  assert _ids(parsed["cand_tags"][0], 3) == ["rock", "pop", ""]
  assert parsed["cand_num_tags"].tolist() == [2, 0, 0, 2, 1, 1, 0]
  np.testing.assert_allclose(parsed["cand_duration_s"], [200, 0, 100, 200, 300, 400, 0])
  np.testing.assert_allclose(parsed["cand_popularity"][:3], [1.5, 2.0, 0.0])
  assert parsed["cand_is_promo"].tolist() == [0, 0, 0, 0, 1, 0, 0]
  # Unknown track: padded tags; missing artist stays empty (no track row to fill it).
  assert parsed["cand_track_id"][6] == b"zzz" and parsed["cand_artist_id"][6] == b""
  assert set(parsed["cand_tags"][6].tolist()) == {feature_spec.PAD_TOKEN}
  # 1970-01-03 was a Saturday (weekday 5); 05:00:59 UTC.
  assert parsed["context_hour"][6] == 5 and parsed["context_weekday"][6] == 5
  assert parsed["user_segment"][6] == b"paid"
  assert parsed["impression_ts"][0] == 1000


def test_missing_artist_is_filled_from_the_track_table():
  rows = [_event("c", "s", 10, "t2", None)]
  records = example_io.events_to_examples(
      pa.Table.from_pylist(rows, schema=events_lib.EVENT_SCHEMA), TRACKS)
  got = tf.io.parse_example(records, feature_spec.raw_feature_spec())
  assert got["cand_artist_id"].numpy().tolist() == [b"a2"]


def test_null_label_has_weight_zero(parsed):
  like, like_w = parsed["interest_like"], parsed["interest_like_weight"]
  assert like.tolist() == [0, 1, 0, 0, 0, 0, 0]
  assert like_w.tolist() == [0, 1, 0, 0, 0, 0, 0]
  assert parsed["interest_completion_weight"][2] == 0
  assert parsed["interest_completion"][2] == 0
  assert parsed["interest_completion_weight"][1] == 1
  assert parsed["interest_completion"][1] == pytest.approx(0.5)
  assert not parsed["subscription_weight"].any()
  assert parsed["exposure_weight"].all()


def _parsed_rows(rows, tracks=TRACKS):
  records = example_io.events_to_examples(
      pa.Table.from_pylist(rows, schema=events_lib.EVENT_SCHEMA), tracks)
  return {k: v.numpy() for k, v in
          tf.io.parse_example(records, feature_spec.raw_feature_spec()).items()}


def test_skip_profile_is_a_class_id_and_unknown_without_one():
  names = (None, "very_brief", "brief", "most", "full", "bogus")
  got = _parsed_rows([_event("c", "s", 10 * i, "t1", "a1", skip_profile=p)
                      for i, p in enumerate(names)])
  unknown = feature_spec.UNKNOWN_CLASS
  assert got[feature_spec.SKIP_PROFILE].tolist() == [unknown, 0, 1, 2, 3, unknown]
  assert feature_spec.CLASS_LABELS[feature_spec.SKIP_PROFILE] == events_lib.SKIP_PROFILES


def _skip_profile_column(table, tracks):
  batch = raw_features.events_to_record_batch(table, raw_features.TrackIndex(tracks))
  return np.asarray(batch.column(feature_spec.SKIP_PROFILE).flatten())


def test_simulator_examples_carry_the_events_skip_profile():
  from simulation.world import World  # pylint: disable=g-import-not-at-top
  world = World(seed=7)
  table = next(world.iter_events(40, 2, chunk_users=40))
  got = _skip_profile_column(table, world.tracks_table())
  names = table.column("skip_profile").to_pylist()
  expected = [feature_spec.SKIP_PROFILES.index(p) if p is not None else
              feature_spec.UNKNOWN_CLASS for p in names]
  assert got.tolist() == expected
  assert set(got.tolist()) >= {0, 1, 2, 3}   # every profile occurs in a day of plays


def test_real_data_examples_have_an_unknown_skip_profile(fixtures_dir):
  from features.datasets import registry  # pylint: disable=g-import-not-at-top
  frame, tracks, _ = registry.load("hetrec", os.path.join(fixtures_dir, "hetrec"))
  frame = frame.sort_values(["user_id", "ts"], kind="stable").reset_index(drop=True)
  table = pa.Table.from_pandas(frame, schema=events_lib.EVENT_SCHEMA, preserve_index=False)
  got = _skip_profile_column(table, tracks)
  assert len(got) == len(frame) > 0
  assert (got == feature_spec.UNKNOWN_CLASS).all()


def test_windows_truncate_to_fixed_lengths():
  n = feature_spec.HISTORY_LEN + 10
  rows = [_event("u", "s", 100 + 10 * i, f"t{i}", "a") for i in range(n)]
  records = example_io.events_to_examples(
      pa.Table.from_pylist(rows, schema=events_lib.EVENT_SCHEMA), TRACKS)
  got = tf.io.parse_example(records[-1:], feature_spec.raw_feature_spec())
  assert got["hist_len"].numpy()[0] == feature_spec.HISTORY_LEN
  hist = got["hist_track_ids"].numpy()[0]
  assert hist[0] == f"t{n - 2}".encode()
  assert hist[-1] == f"t{n - 1 - feature_spec.HISTORY_LEN}".encode()
  assert got["sess_len"].numpy()[0] == feature_spec.SESSION_LEN
  assert got["sess_track_ids"].numpy()[0][-1] == f"t{n - 1 - feature_spec.SESSION_LEN}".encode()


def test_fast_encoder_matches_the_proto_reference(parsed):
  row = 4
  reference = example_io.reference_example({k: v[row] for k, v in parsed.items()})
  again = tf.io.parse_example([reference], feature_spec.raw_feature_spec())
  for name, value in again.items():
    np.testing.assert_array_equal(value.numpy()[0], parsed[name][row], err_msg=name)


def test_unsorted_or_ungrouped_events_are_rejected():
  rows = [_event("a", "s", 10, "t1", "a1"), _event("b", "s", 10, "t1", "a1"),
          _event("a", "s", 20, "t1", "a1")]
  with pytest.raises(ValueError, match="grouped by user_id"):
    example_io.events_to_examples(
        pa.Table.from_pylist(rows, schema=events_lib.EVENT_SCHEMA), TRACKS)
  rows = [_event("a", "s", 20, "t1", "a1"), _event("a", "s", 10, "t1", "a1")]
  with pytest.raises(ValueError, match="sorted by ts"):
    example_io.events_to_examples(
        pa.Table.from_pylist(rows, schema=events_lib.EVENT_SCHEMA), TRACKS)


def test_eval_split_is_a_stable_user_hash():
  users = [f"user{i}" for i in range(2000)]
  mask = splits.eval_mask(users, 10)
  assert mask.tolist() == splits.eval_mask(users, 10).tolist()
  assert 0.07 < mask.mean() < 0.13
  assert not splits.eval_mask(users, 0).any() and splits.eval_mask(users, 100).all()
  with pytest.raises(ValueError, match="101"):
    splits.eval_mask(users, 101)


def test_beam_tfrecord_round_trip(tmp_path):
  events, tracks = toy_events.toy_events(n_users=8, events_per_user=15)
  chunks = [events.slice(0, 60), events.slice(60)]  # 4 whole users each
  expected = example_io.events_to_examples(events, tracks)
  counts = examples_beam.write_examples(chunks, tracks, str(tmp_path), shards=2,
                                        beam_args=["--direct_running_mode=in_memory"])
  assert sorted(os.listdir(tmp_path)) == [
      f"{split}-0000{i}-of-00002.tfrecord.gz" for split in ("eval", "train") for i in (0, 1)]
  train = list(example_io.iter_records(str(tmp_path / "train-*-of-00002.tfrecord.gz")))
  evals = list(example_io.iter_records(str(tmp_path / "eval-*-of-00002.tfrecord.gz")))
  assert counts == {"events": 120, "train": len(train), "eval": len(evals)}
  assert sorted(map(example_io.canonical, train + evals)) == sorted(
      map(example_io.canonical, expected))
  eval_users = set(tf.io.parse_example(evals, feature_spec.raw_feature_spec())["user_id"].numpy()
                   .tolist()) if evals else set()
  train_users = set(tf.io.parse_example(train, feature_spec.raw_feature_spec())["user_id"].numpy()
                    .tolist())
  assert not eval_users & train_users
  parsed = tf.io.parse_example(train, feature_spec.raw_feature_spec())
  assert parsed["hist_track_ids"].shape == (len(train), feature_spec.HISTORY_LEN)


def test_span_layout_groups_by_utc_day():
  rows = [_event("a", "s", 86400 * 3 + 10, "t1", "a1"), _event("a", "s", 86400 * 4, "t2", "a2"),
          _event("a", "s", None, "t2", "a2")]
  table = pa.Table.from_pylist(rows, schema=events_lib.EVENT_SCHEMA)
  table = table.take([2, 0, 1])  # the null-ts row first keeps (user, ts) order
  out = splits.split_examples(table, raw_features.TrackIndex(TRACKS), eval_percent=0,
                              span_days=[3, 4])
  assert {k: len(v) for k, v in out.items()} == {
      "span-19700104/train": 2, "span-19700104/eval": 0,
      "span-19700105/train": 1, "span-19700105/eval": 0}


def test_tfrecord_framing_matches_tensorflow_writer(tmp_path):
  records = [b"", b"x", bytes(range(256)) * 3]
  path = str(tmp_path / "tf.tfrecord")
  with tf.io.TFRecordWriter(path) as w:
    for r in records:
      w.write(r)
  with open(path, "rb") as f:
    assert example_io.tfrecord_frames(records) == f.read()
  shard = str(tmp_path / "ours.tfrecord.gz")
  # Record sequences and ready gzip members mix; the members concatenate to one file.
  size = example_io.write_shard(shard, [records[:1], [], example_io.gzip_member(records[1:])])
  assert size == os.path.getsize(shard)
  assert list(example_io.iter_records(shard)) == records
  empty = str(tmp_path / "empty.tfrecord.gz")
  example_io.write_shard(empty, [])
  assert not list(example_io.iter_records(empty))


def test_track_index_exposes_plain_columns():
  # serving.signatures builds its in-graph catalogue from these attributes.
  index = raw_features.TrackIndex(TRACKS)
  assert list(index.ids) == ["t1", "t2", "t3", "t4", "t5"]
  assert index.artist_ids.tolist() == ["a1", "a2", "a3", "a4", "a5"]
  tags = np.asarray(index.tag_dictionary.to_pylist(), dtype=object)[index.tag_codes]
  assert tags[0, :3].tolist() == [b"rock", b"pop", b""]
  assert index.num_tags.tolist() == [2, 0, 0, 1, 1]
  np.testing.assert_allclose(index.duration_s, [200, 0, 100, 300, 400])
  assert index.rows(np.array(["t4", "nope"], dtype=object)).tolist() == [3, -1]


def test_subscription_label_is_a_conversion_within_the_window():
  day = 86400
  users = np.array([0, 0, 0, 0, 1, 1, 2, 2])
  ts = np.array([0, 2 * day, 9 * day, 10 * day, 0, day, 0, day])
  valid = np.ones(8, bool)
  converted = np.array([0, 0, 0, 1, 0, 0, 0, 1], np.float32)
  present = np.ones(8, bool)
  paid = np.array([0, 0, 0, 0, 1, 1, 0, 0], bool)
  label, weight = windows.subscription_within_window(users, ts, valid, converted, present,
                                                     paid, window_s=7 * day)
  # user 0 converts at day 10: impressions from day 3 on are positive, day 0 and 2 not.
  assert label.tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
  # paid listeners are not at risk; user 1 never converts anyway
  assert weight.tolist() == [1, 1, 1, 1, 0, 0, 1, 1]
  # a conversion of another user never leaks across the user boundary
  label, _ = windows.subscription_within_window(
      np.array([0, 1]), np.array([0, 10]), np.ones(2, bool), np.array([0, 1], np.float32),
      np.ones(2, bool), np.zeros(2, bool))
  assert label.tolist() == [0, 1]
