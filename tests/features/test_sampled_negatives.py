"""Tests of the play-only path (features.sampled_negatives): which logs are play-only,
the span's popularity-smoothed noise distribution, and the examples each play gets: the
play (next-play label 1) followed by K negatives drawn from that distribution (label 0),
each with its q, the same on every run."""

import collections

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from features import example_io
from features import feature_spec
from features import raw_features
from features import sampled_negatives
from melody_testing import toy_events

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order

LABEL = sampled_negatives.NEXT_PLAY_LABEL


def _counts(**present_positive):
  out = {k: {"present": 0, "positive": 0} for k in feature_spec.LABEL_KEYS}
  for label, (present, positive) in present_positive.items():
    out[label] = {"present": present, "positive": positive}
  return out


def test_play_only_is_decided_by_what_the_log_records():
  assert sampled_negatives.is_play_only(_counts())                          # plays only
  assert sampled_negatives.is_play_only(_counts(interest_skip=(100, 0)))    # 30Music
  assert sampled_negatives.is_play_only(_counts(subscription=(100, 3)))
  assert not sampled_negatives.is_play_only(_counts(interest_like=(100, 30)))   # KKBox
  assert not sampled_negatives.is_play_only(_counts(interest_skip=(100, 40)))
  assert not sampled_negatives.is_play_only(_counts(interest_completion=(100, 80)))


def test_noise_distribution_is_unigram_to_the_three_quarters_per_day():
  day = 20000 * 86400
  events = pd.DataFrame({"track_id": ["a", "a", "a", "a", "b", "c", "c"],
                         "ts": [day, day + 5, day + 9, day + 10, day + 20, day + 86400,
                                day + 86401],
                         "plays": [1, 1, 1, 5, 1, 1, 1]})
  sampling = sampled_negatives.from_events(events, per_positive=3)
  assert sorted(sampling.track_ids) == [20000, 20001]
  assert sampling.track_ids[20000].tolist() == ["a", "b"]
  np.testing.assert_allclose(sampling.probs[20000], np.array([8, 1]) ** 0.75
                             / (8 ** 0.75 + 1))
  assert sampling.track_ids[20001].tolist() == ["c"]
  np.testing.assert_allclose(sampling.probs[20001], [1.0])


@pytest.fixture(scope="module")
def toy_chunk():
  events, tracks = toy_events.toy_events(n_users=4, events_per_user=30, n_tracks=12)
  index = raw_features.TrackIndex(tracks)
  batch = raw_features.events_to_record_batch(events, index)
  sampling = sampled_negatives.from_events(events.to_pandas(), per_positive=3, seed=5)
  return batch, index, sampling


def _columns(batch: pa.RecordBatch):
  records = example_io.encode_record_batch(batch)
  return {k: v.numpy() for k, v in
          tf.io.parse_example(records, feature_spec.raw_feature_spec()).items()}


def test_each_play_is_followed_by_its_negatives(toy_chunk):
  batch, index, sampling = toy_chunk
  out = sampled_negatives.with_negatives(batch, index, sampling)
  cols, plays = _columns(out), _columns(batch)
  is_play = cols[LABEL] == 1
  assert is_play.sum() == batch.num_rows
  # Up to K negatives per play (a draw of the played track twice over is dropped).
  assert batch.num_rows * 2 < out.num_rows <= batch.num_rows * 4
  starts = np.flatnonzero(is_play)
  np.testing.assert_array_equal(cols["cand_track_id"][starts], plays["cand_track_id"])
  for i, j in zip(starts, list(starts[1:]) + [out.num_rows]):
    negatives = slice(i + 1, j)
    # Same listener, history and context as its play, another track, label 0.
    for name in ("user_id", "hist_track_ids", "sess_len", "impression_ts"):
      assert (cols[name][negatives] == cols[name][i]).all(), name
    assert (cols["cand_track_id"][negatives] != cols["cand_track_id"][i]).all()
    assert (cols[LABEL][negatives] == 0).all()
  # Every example trains the next-play label only; q is the candidate's noise probability.
  np.testing.assert_array_equal(cols[feature_spec.weight_key(LABEL)], 1.0)
  for label in ("interest_completion", "interest_skip"):
    np.testing.assert_array_equal(cols[feature_spec.weight_key(label)], 0.0)
  q_of = {(day, t): q for day in sampling.track_ids
          for t, q in zip(sampling.track_ids[day], sampling.probs[day])}
  for track, ts, q in zip(cols["cand_track_id"], cols["impression_ts"],
                          cols[feature_spec.SAMPLE_Q]):
    assert q == pytest.approx(q_of[(ts // 86400, track.decode())], rel=1e-6)
  # A negative carries its own track's catalogue features.
  neg = np.flatnonzero(~is_play)[0]
  row = index.rows(np.array([cols["cand_track_id"][neg].decode()], object))[0]
  assert cols["cand_duration_s"][neg] == pytest.approx(index.duration_s[row])
  assert cols["cand_is_promo"][neg] == 0


def test_draws_follow_q_and_are_seeded(toy_chunk):
  batch, index, sampling = toy_chunk
  first = sampled_negatives.with_negatives(batch, index, sampling)
  assert first.equals(sampled_negatives.with_negatives(batch, index, sampling))
  cols = _columns(first)
  drawn = collections.Counter(t.decode() for t in cols["cand_track_id"][cols[LABEL] == 0])
  # Popular tracks are drawn more often: the most played track beats the least played.
  day = min(sampling.track_ids)
  ids, q = sampling.track_ids[day], sampling.probs[day]
  assert drawn[ids[np.argmax(q)]] > drawn[ids[np.argmin(q)]]
