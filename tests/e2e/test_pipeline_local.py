"""The local TFX pipeline end to end on small simulated data.

One work directory goes through three runs, in order:
1. a normal run: validated, trained, evaluated, blessed, infra-validated and pushed;
2. a deliberately worse model (one training step; the unchanged ExampleGen,
   statistics and Transform come from the TFX cache): not blessed, with each failed
   threshold named, not pushed — the serving directory still holds only the first
   model;
3. a shard with a schema anomaly: the run stops at the AnomaliesGate with a message
   naming the feature, and earlier artifacts and the pushed model stay intact.
"""

import glob
import json
import os
import re
import shutil

import pytest

pytestmark = pytest.mark.slow

# "<head> <metric> (overall): candidate 0.5012, baseline 0.6204[, change …]; … fails …"
_FAILED_THRESHOLD = re.compile(
    r" \(overall\): candidate -?\d+\.\d{4}, baseline -?\d+\.\d{4}[,;].* fails ")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  from simulation import datagen
  root = tmp_path_factory.mktemp("pipeline_e2e")
  assert datagen.run(users=240, days=2, out=str(root / "data"), seed=11, shards=2,
                     tracks=1500) == 0
  return root


def _config(root, data="data", **overrides):
  from pipeline import configs
  return configs.local_config(str(root / data), str(root / "work"), **overrides)


def _versions(root):
  serving = root / "work" / "serving_model"
  return sorted(os.listdir(serving)) if serving.exists() else []


@pytest.fixture(scope="module")
def first_run(workdir):
  from pipeline import local_runner
  summary = local_runner.run(_config(workdir, train_steps=120, eval_steps=5), verbose=False)
  return summary


def test_first_run_is_blessed_and_pushed(first_run, workdir):
  assert first_run.state == "COMPLETE", first_run.components
  nodes = {c.node for c in first_run.components}
  for node in ("ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
               "AnomaliesGate", "Transform", "Trainer", "Evaluator",
               "LocalInfraValidator", "Pusher"):
    assert node in nodes, node
  assert first_run.blessed is True
  assert first_run.infra_blessed is True
  assert first_run.pushed is True
  assert len(_versions(workdir)) == 1
  pushed = workdir / "work" / "serving_model" / _versions(workdir)[0]
  assert (pushed / "assets.extra" / "tf_serving_warmup_requests").exists()
  import tensorflow as tf
  signatures = set(tf.saved_model.load(str(pushed)).signatures)
  assert {"serving_default", "rank", "recommend", "score_examples",
          "transform_features"} <= signatures, signatures
  for head in ("interest_skip", "interest_like"):
    assert first_run.metrics[(head, "overall", "auc")] > 0.55, head
  assert ("subscription", "overall", "auc") in first_run.metrics
  segments = {s for (_, s, _) in first_run.metrics if s.startswith("user_segment=")}
  assert len(segments) >= 3, segments
  # The run's directory: the runner's record (finished, no error) and the run's log.
  run_dir = workdir / "work" / "runs" / first_run.run_id.replace(":", "-")
  record = json.loads((run_dir / "run.json").read_text())
  assert record["finished"] is not None and record["error"] == ""
  assert "Component ImportExampleGen is running" in (run_dir / "pipeline.log").read_text()


def test_worse_model_is_neither_blessed_nor_pushed(first_run, workdir):
  from pipeline import local_runner, runs
  before = _versions(workdir)
  summary = local_runner.run(_config(workdir, train_steps=1, eval_steps=1, enable_cache=True),
                             verbose=False)
  assert summary.state == "COMPLETE"
  states = {c.node: c.state for c in summary.components}
  for node in ("ImportExampleGen", "StatisticsGen", "Transform"):
    assert states[node] == "CACHED", states
  assert states["Trainer"] == states["Evaluator"] == "COMPLETE", states
  assert summary.blessed is False
  assert summary.pushed is False
  assert _versions(workdir) == before
  # It says why: each failed threshold with the candidate's and the baseline's values.
  assert summary.blessing_failures
  for line in summary.blessing_failures:
    assert _FAILED_THRESHOLD.search(line), line
  table = runs.format_runs(runs.list_runs(str(workdir / "work" / "metadata" / "metadata.sqlite")))
  assert table.count("\n") >= 3  # header, rule, two runs
  assert f"{summary.run_id} not blessed:\n  {summary.blessing_failures[0]}" in table


def test_schema_anomaly_stops_the_run_and_keeps_earlier_artifacts(first_run, workdir):
  import tensorflow as tf
  from pipeline import local_runner
  bad = workdir / "bad_data"
  shutil.copytree(workdir / "data", bad)
  src = sorted(glob.glob(str(bad / "examples" / "train-*")))[0]
  records = [r.numpy() for r in tf.data.TFRecordDataset(src, compression_type="GZIP").take(50)]
  with tf.io.TFRecordWriter(str(bad / "examples" / "train-99999-bad.tfrecord.gz"),
                            options="GZIP") as w:
    for raw in records:
      ex = tf.train.Example.FromString(raw)
      ex.features.feature["user_segment"].bytes_list.value[:] = [b"vip"]
      w.write(ex.SerializeToString())
  pushed_before = _versions(workdir)
  model_dirs_before = sorted(glob.glob(str(workdir / "work" / "pipeline_root" / "Trainer" /
                                           "model" / "*")))
  with pytest.raises(RuntimeError) as err:
    local_runner.run(_config(workdir, data="bad_data"), verbose=False)
  message = str(err.value)
  assert message.startswith("pipeline run failed in AnomaliesGate: AnomaliesFoundError: "
                            "ExampleValidator found")
  assert "user_segment" in message
  assert "Traceback (most recent call last)" in open(err.value.log_path).read()
  assert _versions(workdir) == pushed_before
  for d in model_dirs_before:
    assert os.path.isdir(d), d
