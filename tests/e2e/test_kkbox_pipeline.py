"""The KKBox sample end to end: import -> examples -> pipeline -> push, on a slice of
listeners.

KKBox records a like proxy (the listener played the song again within a month) but no
completion, skip, conversion or promo exposure, and no timestamps (one flat split, no
day spans). The like head is measured and gated; the other heads are "not measurable"
and leave the blessing thresholds, so the run is judged on what the log records. Not a
play-only log (its like label has both outcomes): no sampled negatives, TFMA evaluates.
Skips visibly without the shared data (MELODY_DATA_DIR).
"""

import io
import os

import pyarrow.parquet as pq
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.realdata]
LISTENERS = 400   # the first listeners (by id) of the sample: keeps the run small


def test_kkbox_import_examples_pipeline_push(shared_data, tmp_path):
  from features import own_logs
  from features.datasets import importer
  from pipeline import configs, local_runner, runs
  assert importer.run_import("kkbox", shared_data, str(tmp_path / "import"),
                             stream=io.StringIO()) == 0
  events = pq.read_table(tmp_path / "import" / "events.parquet").to_pandas()
  keep = sorted(events["user_id"].unique())[:LISTENERS]
  (tmp_path / "slice").mkdir()
  events[events["user_id"].isin(keep)].to_parquet(tmp_path / "slice" / "events.parquet")

  manifest = own_logs.build_examples(str(tmp_path / "slice" / "events.parquet"),
                                     str(tmp_path / "import" / "tracks.parquet"),
                                     str(tmp_path / "data"), span_by="none", shards=1)
  assert manifest["counts"]["users"] == LISTENERS
  assert "next_play" not in manifest             # like is recorded: not play-only
  like = manifest["label_counts"]["interest_like"]
  assert 0 < like["positive"] < like["present"]

  config = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"),
                                train_steps=60, eval_steps=2, transform_statistics=False)
  unmeasured = ("exposure", "interest_completion", "interest_skip", "subscription")
  assert tuple(config.unmeasured) == unmeasured and config.next_play_k == 0
  run = local_runner.run(config, verbose=False)
  assert run.state == "COMPLETE", run.components
  for head in unmeasured:
    assert runs._shown(run.metrics, head, "overall",  # pylint: disable=protected-access
                       "auc" if head in ("interest_skip", "subscription") else
                       "root_mean_squared_error" if head == "interest_completion" else
                       "mean_absolute_error") == "not measurable", head
  like_auc = run.metrics[("interest_like", "overall", "auc")]
  assert 0 < like_auc < 1
  # Blessed on the like head alone (AUC floor), and pushed exactly when blessed.
  assert run.blessed is (like_auc >= 0.55), (like_auc, run.blessing_failures)
  assert run.pushed is run.blessed
  assert len(os.listdir(config.serving_dir)) == int(run.blessed)
  for line in run.blessing_failures:
    assert line.startswith("interest_like"), line
  print(runs.format_runs([run]))
