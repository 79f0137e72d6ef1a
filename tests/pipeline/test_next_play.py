"""Tests of the next-play metrics and blessing rule (pipeline.next_play_metrics) and of
the next-play Evaluator's ranking (pipeline.next_play_eval): candidate sets, and one
evaluation of an exported ranker against popularity and a previously blessed model."""

import glob
import os

import numpy as np
import pytest

from pipeline import next_play_eval
from pipeline import next_play_metrics


def test_recall_and_ndcg_of_one_ranking():
  # The played track (column 0) is third: two tracks score higher.
  recall, ndcg = next_play_metrics.per_play(np.array([[0.5, 0.9, 0.7, 0.1]]), k=3)
  assert recall.tolist() == [1.0]
  assert ndcg[0] == pytest.approx(1 / np.log2(4))
  recall, ndcg = next_play_metrics.per_play(np.array([[0.5, 0.9, 0.7, 0.1]]), k=2)
  assert recall.tolist() == [0.0] and ndcg.tolist() == [0.0]


def test_ties_count_as_their_expected_value():
  # Four tracks tie at the top: the played one is at position 0..3 with equal odds.
  recall, ndcg = next_play_metrics.per_play(np.array([[1.0, 1.0, 1.0, 1.0, 0.0]]), k=2)
  assert recall[0] == pytest.approx(0.5)
  assert ndcg[0] == pytest.approx((1 + 1 / np.log2(3)) / 4)


def test_the_candidate_must_beat_popularity():
  good = next_play_metrics.per_play(np.array([[0.9, 0.1, 0.2]] * 4), k=1)
  poor = next_play_metrics.per_play(np.array([[0.1, 0.9, 0.2]] * 4), k=1)
  blessed, reasons, _ = next_play_metrics.decide(good, poor, k=1)
  assert blessed and not reasons
  blessed, reasons, _ = next_play_metrics.decide(poor, good, k=1)
  assert not blessed
  assert reasons[0] == ("next_play recall_at_1: candidate 0.0000 does not beat "
                        "popularity 1.0000")
  # A tie with popularity does not beat it either.
  assert not next_play_metrics.decide(good, good, k=1)[0]


def test_the_previous_blessed_model_gates_a_drop_beyond_noise():
  rng = np.random.default_rng(3)
  scores = rng.random((400, 20))
  popularity = next_play_metrics.per_play(np.zeros((400, 20)), k=5)
  previous = next_play_metrics.per_play(scores + np.eye(20)[0] * 0.6, k=5)
  same = next_play_metrics.per_play(scores + np.eye(20)[0] * 0.6, k=5)
  blessed, _, extra = next_play_metrics.decide(same, popularity, previous, k=5)
  assert blessed and extra["ndcg_change_upper_bound"] == pytest.approx(0.0)
  worse = next_play_metrics.per_play(scores + np.eye(20)[0] * 0.2, k=5)
  blessed, reasons, extra = next_play_metrics.decide(worse, popularity, previous, k=5)
  assert not blessed
  assert extra["ndcg_change_upper_bound"] < -next_play_metrics.NDCG_DROP_TOLERANCE
  assert "worse beyond noise" in reasons[-1]


def test_no_held_out_play_never_blesses():
  empty = (np.zeros(0), np.zeros(0))
  assert next_play_metrics.decide(empty, empty) == (
      False, ["no held-out next plays in the eval split"], {})


def test_candidate_sets_hold_the_play_then_distinct_other_tracks():
  pool = np.array([f"t{i}".encode() for i in range(30)], object)
  played = np.array([b"t3", b"t29", b"new"], object)
  sets = next_play_eval.candidate_sets(played, pool, n=10, seed=1)
  assert sets.shape == (3, 10)
  assert sets[:, 0].tolist() == played.tolist()
  for row in sets:
    assert len(set(row.tolist())) == 10
  np.testing.assert_array_equal(sets, next_play_eval.candidate_sets(played, pool, 10, seed=1))
  # A pool smaller than the set: every other track of the pool, once.
  small = next_play_eval.candidate_sets(played[:1], pool[:4], n=10)
  assert sorted(small[0, 1:].tolist()) == [b"t0", b"t1", b"t2"]


@pytest.mark.slow
def test_evaluate_ranks_held_out_plays_with_model_popularity_and_baseline(
    ranker_export, tmp_path):
  # An Examples artifact's layout over the tiny ranker's own simulated examples; their
  # liked plays stand for the next plays.
  examples = tmp_path / "examples"
  for split in ("train", "eval"):
    (examples / f"Split-{split}").mkdir(parents=True)
    for path in glob.glob(os.path.join(ranker_export["paths"]["data"], "examples",
                                       f"{split}-*.tfrecord.gz")):
      os.symlink(path, examples / f"Split-{split}" / os.path.basename(path))
  blessed, result = next_play_eval.evaluate(str(examples), ranker_export["v1"],
                                            baseline_dir=ranker_export["v1"], k=10, n=20)
  assert result["candidates"] == 20 and result["plays"] > 0
  mine = result["metrics"]["candidate"]
  # The baseline is the same model: the same rankings, a change of exactly 0.
  assert {k: v for k, v in mine.items() if k != "ndcg_change_upper_bound"} == (
      result["metrics"]["previous_blessed"])
  assert mine["ndcg_change_upper_bound"] == 0.0
  pop = result["metrics"]["popularity"]
  beats = mine["recall_at_10"] > pop["recall_at_10"] and mine["ndcg_at_10"] > pop["ndcg_at_10"]
  assert blessed is beats and (not result["reasons"]) is beats
