"""The 30Music slices end to end: import -> example spans -> scheduled pipeline -> push.

30Music is a play log: it records no completion, like, conversion or promo exposure, and
its skip proxy is 0 on every play (Last.fm's scrobble filter, docs/data_adapters.md).
Those heads are reported "not measurable" / "n/a (no positives)" and leave the blessing
thresholds, so the run completes instead of failing on an AUC of 0; the one gate left is
a non-empty eval split, on which it is blessed and pushes. The window covers the newest
two days of the slices, which keeps the run small.
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
  from pipeline import configs, measurability, runs, window_runs
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

  base = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"),
                              train_steps=20, eval_steps=2)
  assert dict.fromkeys(base.unmeasured) == dict.fromkeys(
      ("exposure", "interest_completion", "interest_like", "interest_skip", "subscription"))
  t0 = time.perf_counter()
  (outcome,) = window_runs.run_spans(base, 2, verbose=False)
  seconds["pipeline"] = time.perf_counter() - t0
  print("30Music stage seconds:", {k: round(v, 1) for k, v in seconds.items()})

  newest = manifest["spans"][-1]
  assert window_runs.span_name(outcome.span) == newest
  assert outcome.run.state == "COMPLETE", outcome.run.components
  assert outcome.run.blessed is True and outcome.run.pushed is True
  assert len(os.listdir(base.serving_dir)) == 1
  # No head is measurable here: each reads as such, never as an AUC of 0.
  table = runs.format_runs([outcome.run])
  row = table.splitlines()[2]
  assert "0.0000" not in row
  assert "not measurable" in row or "n/a (no positives)" in row
  skip_auc = measurability.display(
      "auc", outcome.run.metrics.get(("interest_skip", "overall", "auc")),
      outcome.run.metrics.get(("interest_skip", "overall", "weighted_example_count")),
      outcome.run.metrics.get(("interest_skip", "overall", "mean_label")))
  assert skip_auc == "n/a (no positives)"
