"""The rolling window on Kubeflow: the compiled KFP v2 spec reads its examples from
WindowExampleGen (the scheduled date a runtime parameter), and the component, run as
the Kubeflow container runs it, assembles the window's splits and records its spans."""

import argparse
import json
import os

import pytest
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor

from pipeline import kubeflow_v2_runner as kv2
from pipeline import schedule
from pipeline import window_example_gen

DAYS = ("20240101", "20240102", "20240103")
EXAMPLE_READERS = ("StatisticsGen", "Transform", "Evaluator", "LocalInfraValidator",
                   "IntentTrainer")


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
  """The spec as an operator compiles it: ``melody pipeline compile --window-days 2``."""
  from melody_cli import main as melody_main
  out = tmp_path_factory.mktemp("kfp_window") / "melody.json"
  assert melody_main.main(["pipeline", "compile", "--window-days", "2", "--data-root",
                           "gs://bucket/data", "--out", str(out)]) == 0
  return json.loads(out.read_text())


def _tasks(spec):
  return spec["pipelineSpec"]["root"]["dag"]["tasks"]


def test_the_window_component_replaces_import_example_gen(spec):
  tasks = _tasks(spec)
  assert window_example_gen.COMPONENT_ID in tasks
  assert "ImportExampleGen" not in tasks
  for reader in EXAMPLE_READERS:
    source = tasks[reader]["inputs"]["artifacts"]["examples"]["taskOutputArtifact"]
    assert source == {"producerTask": window_example_gen.COMPONENT_ID,
                      "outputArtifactKey": "examples"}, reader


def test_the_window_parameters_and_the_scheduled_date(spec):
  params = _tasks(spec)[window_example_gen.COMPONENT_ID]["inputs"]["parameters"]
  assert params["data_root"]["runtimeValue"]["constantValue"] == {
      "stringValue": "gs://bucket/data"}
  assert params["window_days"]["runtimeValue"]["constantValue"] == {"intValue": "2"}
  # The date is the pipeline's own parameter, which a recurring run fills.
  assert params["scheduled_date"] == {"componentInputParameter": "scheduled_date"}
  root_params = spec["pipelineSpec"]["root"]["inputDefinitions"]["parameters"]
  assert root_params["scheduled_date"]["type"] == "STRING"
  executor = spec["pipelineSpec"]["deploymentSpec"]["executors"][
      f"{window_example_gen.COMPONENT_ID}_executor"]["container"]
  assert "pipeline.window_example_gen.WindowExampleGen_Executor" in executor["args"]


def test_a_recurring_run_fills_the_date_and_catches_up(spec, tmp_path, capsys):
  path = tmp_path / "melody.json"
  path.write_text(json.dumps(spec))
  request = schedule.schedule(str(path), "0 3 * * *", dry_run=True)
  assert request["params"] == {"scheduled_date": "[[ScheduledTime.20060102]]"}
  assert request["no_catchup"] is False and request["max_concurrency"] == 1
  assert "[[ScheduledTime.20060102]]" in capsys.readouterr().out
  # A spec without the window keeps one run per tick and no parameters.
  single = schedule.schedule(str(tmp_path / "not_compiled.json"), "0 3 * * *", dry_run=True)
  assert "params" not in single and single["no_catchup"] is True


def test_without_a_window_import_example_gen_reads_one_span(tmp_path):
  from pipeline import pipeline as melody_pipeline
  config = kv2.pipeline_config(kv2.KubeflowConfig())
  ids = [c.id for c in melody_pipeline.create_pipeline(config).components]
  assert ids[0] == "ImportExampleGen" and window_example_gen.COMPONENT_ID not in ids
  with pytest.raises(ValueError, match="window_days"):
    window_example_gen.create("gs://bucket/data", 0)


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
  """Three day spans whose files hold their own names."""
  root = tmp_path_factory.mktemp("window_data")
  for day in DAYS:
    folder = root / "examples" / f"span-{day}"
    folder.mkdir(parents=True)
    for split in ("train", "eval"):
      for shard in range(2):
        name = f"{split}-{shard:05d}-of-00002.tfrecord.gz"
        (folder / name).write_text(f"{day}/{name}")
  return root


def _run_as_kubeflow(spec, data_root, out, scheduled_date):
  """Runs the compiled task's executor through the KFP v2 container entrypoint."""
  task = _tasks(spec)[window_example_gen.COMPONENT_ID]
  component = spec["pipelineSpec"]["components"][task["componentRef"]["name"]]
  artifact_type = component["outputDefinitions"]["artifacts"]["examples"]["artifactType"]
  # The compiled constants as the pipeline spec 2.0 sends them, the data root of the
  # fixture in place of the bucket, and the date as a recurring run fills it.
  params = {k: v["runtimeValue"]["constantValue"] for k, v in task["inputs"]["parameters"].items()
            if "runtimeValue" in v}
  params["data_root"] = {"stringValue": str(data_root)}
  params["scheduled_date"] = {"stringValue": scheduled_date}
  invocation = {
      "inputs": {"parameters": params},
      "outputs": {"artifacts": {"examples": {"artifacts": [{
          "name": "projects/p/locations/l/metadataStores/default/artifacts/1",
          "type": artifact_type, "uri": str(out / "examples")}]}},
                  "outputFile": str(out / "executor_output.json")}}
  container = spec["pipelineSpec"]["deploymentSpec"]["executors"][
      f"{window_example_gen.COMPONENT_ID}_executor"]["container"]
  path = container["args"][container["args"].index("--executor_class_path") + 1]
  kubeflow_v2_run_executor._run_executor(  # pylint: disable=protected-access
      argparse.Namespace(executor_class_path=path,
                         json_serialized_invocation_args=json.dumps(invocation)), [])
  with open(out / "executor_output.json", encoding="utf-8") as f:
    return json.load(f)["artifacts"]["examples"]["artifacts"][0]["metadata"]


def test_the_component_assembles_the_window_and_records_its_spans(spec, spans, tmp_path):
  recorded = _run_as_kubeflow(spec, spans, tmp_path, "20240103")
  split = {s: sorted(os.listdir(tmp_path / "examples" / f"Split-{s}")) for s in ("train", "eval")}
  assert split["train"] == [f"train-{day}-{shard:05d}-of-00002.tfrecord.gz"
                            for day in ("20240102", "20240103") for shard in range(2)]
  assert split["eval"] == [f"eval-20240103-{shard:05d}-of-00002.tfrecord.gz"
                           for shard in range(2)]
  copied = tmp_path / "examples" / "Split-train" / "train-20240102-00001-of-00002.tfrecord.gz"
  assert copied.read_text() == "20240102/train-00001-of-00002.tfrecord.gz"
  assert recorded["window_spans"] == "span-20240102,span-20240103"
  assert int(recorded["window_days"]) == 2
  assert int(recorded["span"]) == 20240103
  assert json.loads(recorded["split_names"]) == ["train", "eval"]


def test_a_missing_scheduled_span_fails_and_latest_takes_the_newest(spans):
  available = [int(d) for d in DAYS]
  with pytest.raises(ValueError, match="no span-20240104 .* newest span is span-20240103"):
    window_example_gen.scheduled_spans(available, "20240104", 2)
  with pytest.raises(ValueError, match="YYYYMMDD"):
    window_example_gen.scheduled_spans(available, "2024-01-03", 2)
  assert window_example_gen.scheduled_spans(available, "latest", 2) == (20240102, 20240103)
  assert window_example_gen.scheduled_spans(available, "20240101", 3) == (20240101,)
