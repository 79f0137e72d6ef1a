"""A play-only log end to end: plays -> next-play examples -> pipeline -> next-play blessing.

A small CSV log with only ``user_id, track_id, ts`` (what a team that logs plays but not
impressions has): ``melody data examples`` sees that it records no feedback and writes
every play with popularity-sampled negatives and their q (``features.sampled_negatives``),
without being told; the pipeline then blesses on next-play Recall@10/NDCG@10 of held-out
plays of the newest span against the popularity baseline of the training window
(``pipeline.next_play_eval``), pushes only when the model beats it, and ``melody pipeline
runs`` shows the comparison. (The comparison with a previously blessed model is
``tests/pipeline/test_next_play.py``'s.)

The listeners have tastes (a cluster of tracks each) and play a cluster's tracks in
order, so the history tells the next play; global popularity does not.
"""

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

DAY = 86400
DAY1 = 19723 * DAY   # 2024-01-01
N_TRACKS, CLUSTERS = 120, 6


def _play_log(users: int = 70, plays_per_day: int = 24, days: int = 2, seed: int = 3):
  rng = np.random.default_rng(seed)
  per_cluster = N_TRACKS // CLUSTERS
  rows = []
  for u in range(users):
    cluster = u % CLUSTERS
    position = int(rng.integers(per_cluster))
    for day in range(days):
      ts = DAY1 + day * DAY + int(rng.integers(6 * 3600, 10 * 3600))
      for _ in range(plays_per_day):
        if rng.random() < 0.9:   # the next track of the listener's cluster
          position = (position + 1) % per_cluster
          track = cluster * per_cluster + position
        else:                    # now and then anything, the popular ones more often
          track = int(min(rng.zipf(1.6) - 1, N_TRACKS - 1))
        rows.append((f"u{u}", f"t{track}", ts))
        ts += int(rng.integers(150, 300))
  return pd.DataFrame(rows, columns=["user_id", "track_id", "ts"])


@pytest.fixture(scope="module")
def play_only_run(tmp_path_factory):
  from features import own_logs
  from pipeline import configs, window_runs
  root = tmp_path_factory.mktemp("play_only")
  (root / "logs").mkdir()
  _play_log().to_csv(root / "logs" / "plays.csv", index=False)
  pd.DataFrame({"track_id": [f"t{i}" for i in range(N_TRACKS)],
                "artist_id": [f"a{i // 4}" for i in range(N_TRACKS)]}).to_csv(
                    root / "tracks.csv", index=False)
  manifest = own_logs.build_examples(str(root / "logs"), str(root / "tracks.csv"),
                                     str(root / "data"), shards=1, eval_percent=20)
  # Transform's own statistics are for people to read: no check here reads them.
  base = configs.local_config(str(root / "data"), str(root / "work"), train_steps=150,
                              eval_steps=2, batch_size=128, transform_statistics=False)
  # The first scheduled run takes the newest span; its window holds both days.
  outcomes = window_runs.run_spans(base, 2, verbose=False)
  return manifest, base, outcomes


def test_a_play_only_log_gets_sampled_negatives_without_a_flag(play_only_run):
  manifest, base, _ = play_only_run
  assert manifest["next_play"]["per_positive"] == 4
  assert manifest["counts"]["train_examples"] + manifest["counts"]["eval_examples"] > (
      4 * manifest["counts"]["events"])
  assert base.next_play_k == 10


def test_next_play_metrics_and_the_popularity_comparison_are_recorded(play_only_run):
  from pipeline import runs
  _, base, outcomes = play_only_run
  assert [(o.span, o.spans) for o in outcomes] == [(20240102, (20240101, 20240102))]
  (run,) = runs.list_runs(base.metadata_path)
  assert run.state == "COMPLETE", run.components
  assert "NextPlayEvaluator" in [c.node for c in run.components]
  result = run.next_play
  assert result["k"] == 10 and result["candidates"] == 100 and result["plays"] > 50
  assert result["train_tracks"] == N_TRACKS
  mine, pop = result["metrics"]["candidate"], result["metrics"]["popularity"]
  beats = mine["recall_at_10"] > pop["recall_at_10"] and mine["ndcg_at_10"] > pop["ndcg_at_10"]
  assert run.blessed is beats and run.pushed is beats
  table = runs.format_runs([run])
  assert "candidate recall@10" in table and "popularity recall@10" in table
  print(table)
