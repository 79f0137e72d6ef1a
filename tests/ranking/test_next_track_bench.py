"""Tests of the ranking benchmark's 30Music next-track comparison (bench/ranking_next_track*.py)
on hand-made plays: the chronological split and its cases, the item-kNN scorer, and both
trained scorers learning a deterministic next track."""

import numpy as np
import pytest

from bench import ranking_next_track
from bench import ranking_next_track_models
from pipeline import next_play_metrics


def _cyclic_plays(users=12, plays_per_user=40, tracks=30):
  """Every listener plays tracks in the cycle 1 -> 2 -> ... -> tracks -> 1, one per
  minute from a listener-specific start; artist = (track + 1) // 2; a session per 10."""
  user, session, track, ts = [], [], [], []
  for u in range(users):
    start = (7 * u) % tracks
    for i in range(plays_per_user):
      user.append(u)
      session.append(u * 100 + i // 10)
      track.append((start + i) % tracks + 1)
      ts.append(1000 + 60 * i + u)
  track = np.array(track, np.int64)
  return {"user": np.array(user, np.int64), "session": np.array(session, np.int64),
          "track": track, "artist": (track + 1) // 2, "ts": np.array(ts, np.int64)}


@pytest.fixture(scope="module")
def data():
  return ranking_next_track.split(_cyclic_plays(), max_len=8, max_cases=200, candidates=12)


def test_split_is_chronological_with_histories_before_each_case(data):
  plays = _cyclic_plays()
  cutoff = np.quantile(plays["ts"], 0.8)
  assert data["train_plays"] == int((plays["ts"] < cutoff).sum())
  assert data["cases_n"] == min(200, data["eligible_cases"])
  cases = data["cases"]
  assert cases["tracks"].shape == (data["cases_n"], 8)
  assert cases["cand_tracks"].shape == (data["cases_n"], 12)
  # The last play of every history precedes the played track in the cycle.
  assert np.all(cases["tracks"][:, -1] % 30 + 1 == cases["cand_tracks"][:, 0])
  assert np.all(cases["cand_tracks"][:, 1:] != cases["cand_tracks"][:, :1])
  assert np.all(cases["cand_artists"] == (cases["cand_tracks"] + 1) // 2)
  # Training windows are left-padded and hold only training plays' order.
  tr = data["train"]["tracks"]
  assert tr.shape[1] == 9
  real = tr[:, 1:] * tr[:, :-1] > 0
  assert np.all((tr[:, :-1] % 30 + 1 == tr[:, 1:])[real])


def test_item_knn_ranks_the_track_played_next_in_sessions_first(data):
  scores = ranking_next_track.item_knn_scores(data["train_sessions"], data["counts"],
                                              data["cases"])
  recall, _ = next_play_metrics.per_play(scores, k=1)
  assert recall.mean() > 0.9   # chance is 1/12


@pytest.mark.slow
@pytest.mark.parametrize("name", ranking_next_track_models.MODELS)
def test_trained_scorers_learn_the_cycle(data, name):
  scores = ranking_next_track_models.train_and_score(
      name, data["train"], data["cases"], data["vocab"], data["artist_vocab"], steps=60,
      batch_size=16, negatives=8, seed=1)
  assert scores.shape == data["cases"]["cand_tracks"].shape and np.isfinite(scores).all()
  recall, _ = next_play_metrics.per_play(scores, k=1)
  # Chance is 1/12; popularity is flat on a cycle.
  assert recall.mean() > 0.5


def test_lines_show_the_table_or_the_reason():
  assert ranking_next_track.lines(None) == []
  assert "Not measured: FileNotFoundError" in "\n".join(
      ranking_next_track.lines({"error": "FileNotFoundError: x"}))


def test_summarize_means_each_scorer_and_the_target_ratio(data):
  rows = [{"model": "popularity", "seed": None, "recall_at_10": 0.4, "ndcg_at_10": 0.2},
          {"model": "item-kNN", "seed": None, "recall_at_10": 0.5, "ndcg_at_10": 0.4},
          {"model": "melody", "seed": 1, "recall_at_10": 0.6, "ndcg_at_10": 0.5},
          {"model": "melody", "seed": 2, "recall_at_10": 0.7, "ndcg_at_10": 0.5}]
  block = ranking_next_track.summarize(rows, data, {"steps": 1})
  melody = next(m for m in block["mean"] if m["model"] == "melody")
  assert melody["seeds"] == 2 and melody["recall_at_10"] == pytest.approx(0.65)
  assert melody["recall_at_10_std"] == pytest.approx(np.std([0.6, 0.7], ddof=1))
  assert [m["model"] for m in block["mean"]] == ["popularity", "item-kNN", "melody"]
  assert block["melody_recall_over_best_baseline"] == {"best_baseline": "item-kNN",
                                                       "ratio": pytest.approx(1.3)}


def test_a_real_part_run_of_some_sources_is_recorded_by_them(monkeypatch):
  from bench import ranking  # pylint: disable=g-import-not-at-top
  part_key = ranking._part_key   # pylint: disable=protected-access
  monkeypatch.setenv("MELODY_BENCH_RANKING_REAL_SOURCES", "30music_next_track")
  some = ranking._settings()     # pylint: disable=protected-access
  assert some["real_sources"] == ["30music_next_track"]
  assert part_key("real", some) == "real (30music_next_track)"
  assert part_key("sequence", some) == "sequence"
  monkeypatch.delenv("MELODY_BENCH_RANKING_REAL_SOURCES")
  assert part_key("real", ranking._settings()) == "real"   # pylint: disable=protected-access
