"""The 30Music slices end to end: import -> example spans -> scheduled pipeline -> push.

30Music is a play log: it records no completion, like, conversion or promo exposure, and
its skip proxy is 0 on every play (Last.fm's scrobble filter, docs/data_adapters.md).
`melody data examples` therefore writes it as next-play examples, each play with
popularity-sampled negatives and their q (``features.sampled_negatives``), and the
pipeline blesses on next-play Recall@10/NDCG@10 of held-out plays of the newest span
against the popularity baseline of the training window (``pipeline.next_play_eval``).
The model learns from the listeners' histories which track comes next, beats popularity
and is pushed.

The examples are built from the last three full days of the newest slice (every
listener of those days; the slice's final day holds only its last hours, too few
held-out plays to tell two scorers apart), and the run's window covers the newest two
of them, which keeps the test small. Skips visibly without the shared data
(MELODY_DATA_DIR).
"""

import io
import os
import time

import pandas as pd
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]
DAYS = ("20141218", "20141219", "20141220")


def _slice(events_path: str, out_dir) -> str:
  events = pd.read_parquet(events_path)
  day = pd.to_datetime(events["ts"], unit="s").dt.strftime("%Y%m%d")
  out_dir.mkdir()
  path = str(out_dir / "events.parquet")
  events[day.isin(DAYS)].to_parquet(path)
  return path


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
  manifest = own_logs.build_examples(
      _slice(str(tmp_path / "import" / "events.parquet"), tmp_path / "slice"),
      str(tmp_path / "import" / "tracks.parquet"), str(tmp_path / "data"), shards=1)
  seconds["examples"] = time.perf_counter() - t0
  assert manifest["counts"]["events"] == 19405
  assert manifest["spans"] == [f"span-{d}" for d in DAYS]
  assert manifest["label_counts"]["interest_skip"]["positive"] == 0
  # A play-only log: its plays come with sampled negatives, without a flag.
  assert manifest["next_play"]["per_positive"] == 4
  assert manifest["counts"]["train_examples"] + manifest["counts"]["eval_examples"] > (
      4 * manifest["counts"]["events"])

  # Transform's own statistics are for people to read: no check here reads them.
  base = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"),
                              train_steps=150, eval_steps=2, transform_statistics=False)
  assert dict.fromkeys(base.unmeasured) == dict.fromkeys(
      ("exposure", "interest_completion", "interest_like", "interest_skip", "subscription"))
  assert base.next_play_k == 10
  t0 = time.perf_counter()
  (outcome,) = window_runs.run_spans(base, 2, verbose=False)
  seconds["pipeline"] = time.perf_counter() - t0
  seconds.update({c.node: c.seconds for c in outcome.run.components})
  print("30Music stage seconds:", {k: round(v, 1) for k, v in seconds.items()})

  assert [window_runs.span_name(s) for s in outcome.spans] == manifest["spans"][-2:]
  assert outcome.run.state == "COMPLETE", outcome.run.components
  # The next-play evaluation against popularity is recorded and decides the push.
  result = outcome.run.next_play
  assert result["k"] == 10 and result["candidates"] == 100 and result["plays"] > 300
  mine, pop = result["metrics"]["candidate"], result["metrics"]["popularity"]
  for metric in ("recall_at_10", "ndcg_at_10"):
    assert 0 < pop[metric] <= 1 and 0 < mine[metric] <= 1
    # A clear margin, far above what the draw of the candidates moves.
    assert mine[metric] > 1.25 * pop[metric], (metric, mine, pop)
  assert outcome.run.blessed and outcome.run.pushed, outcome.run.next_play["reasons"]
  assert len(os.listdir(base.serving_dir)) == 1
  table = runs.format_runs([outcome.run])
  assert "candidate recall@10" in table and "popularity recall@10" in table
  print(table)
