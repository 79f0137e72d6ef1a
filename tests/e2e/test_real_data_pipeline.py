"""The 30Music slices end to end: import -> example spans -> scheduled pipeline -> push.

30Music is a play log: it records no completion, like, conversion or promo exposure, and
its skip proxy is 0 on every play (Last.fm's scrobble filter, docs/data_adapters.md).
`melody data examples` therefore writes it as next-play examples, each play with
popularity-sampled negatives and their q (``features.sampled_negatives``), and the
pipeline blesses on next-play Recall@10/NDCG@10 of held-out plays of the newest span
against the popularity baseline of the training window (``pipeline.next_play_eval``).
The window covers the newest two days of the slices, which keeps the run small.
Skips visibly without the shared data (MELODY_DATA_DIR).
"""

import io
import os
import time

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]


def test_30music_import_examples_pipeline_push(shared_data, tmp_path):
  from features import own_logs
  from features.datasets import importer
  from pipeline import configs, runs, window_runs
  seconds = {}
  t0 = time.perf_counter()
  assert importer.run_import("30music", shared_data, str(tmp_path / "import"),
                             stream=io.StringIO()) == 0
  seconds["import"] = time.perf_counter() - t0

  t0 = time.perf_counter()
  manifest = own_logs.build_examples(str(tmp_path / "import" / "events.parquet"),
                                     str(tmp_path / "import" / "tracks.parquet"),
                                     str(tmp_path / "data"), shards=1)
  seconds["examples"] = time.perf_counter() - t0
  assert manifest["counts"]["events"] == 118342
  assert len(manifest["spans"]) > 2
  assert manifest["label_counts"]["interest_skip"]["positive"] == 0
  # A play-only log: its plays come with sampled negatives, without a flag.
  assert manifest["next_play"]["per_positive"] == 4
  assert manifest["counts"]["train_examples"] + manifest["counts"]["eval_examples"] > (
      4 * manifest["counts"]["events"])

  base = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"),
                              train_steps=20, eval_steps=2)
  assert dict.fromkeys(base.unmeasured) == dict.fromkeys(
      ("exposure", "interest_completion", "interest_like", "interest_skip", "subscription"))
  assert base.next_play_k == 10
  t0 = time.perf_counter()
  (outcome,) = window_runs.run_spans(base, 2, verbose=False)
  seconds["pipeline"] = time.perf_counter() - t0
  seconds.update({c.node: c.seconds for c in outcome.run.components})
  print("30Music stage seconds:", {k: round(v, 1) for k, v in seconds.items()})

  newest = manifest["spans"][-1]
  assert window_runs.span_name(outcome.span) == newest
  assert outcome.run.state == "COMPLETE", outcome.run.components
  # The next-play evaluation against popularity is recorded, and decides the push.
  result = outcome.run.next_play
  assert result["k"] == 10 and result["candidates"] == 100 and result["plays"] > 20
  mine, pop = result["metrics"]["candidate"], result["metrics"]["popularity"]
  for metric in ("recall_at_10", "ndcg_at_10"):
    assert 0 <= mine[metric] <= 1 and 0 < pop[metric] <= 1
  beats = mine["recall_at_10"] > pop["recall_at_10"] and mine["ndcg_at_10"] > pop["ndcg_at_10"]
  assert outcome.run.blessed is beats
  assert outcome.run.pushed is beats
  assert len(os.listdir(base.serving_dir)) == int(beats)
  table = runs.format_runs([outcome.run])
  assert "candidate recall@10" in table and "popularity recall@10" in table
  if not beats:
    assert "does not beat popularity" in table
