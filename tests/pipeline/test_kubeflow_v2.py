"""The compiled Kubeflow V2 spec holds every component with the right image and args."""

import json

import pytest

from pipeline import configs
from pipeline import kubeflow_v2_runner as kv2

EXPECTED_TASKS = {"ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
                  "AnomaliesGate", "Transform", "Trainer", "Evaluator",
                  "LocalInfraValidator", "Pusher", "IntentTrainer"}
BEAM_EXECUTORS = ("ImportExampleGen", "StatisticsGen", "Transform", "Evaluator")


@pytest.fixture(scope="module")
def dataflow_spec(tmp_path_factory):
  out = tmp_path_factory.mktemp("kfp") / "melody.json"
  beam = configs.dataflow_beam_args("proj-1", "europe-west4", "gs://tmp-bucket/beam")
  spec = kv2.compile_pipeline(kv2.KubeflowConfig(image="registry.example/melody:1.2.3",
                                                 beam_args=beam), str(out))
  on_disk = json.loads(out.read_text())
  assert on_disk == spec
  return spec


def test_every_component_is_a_task(dataflow_spec):
  tasks = set(dataflow_spec["pipelineSpec"]["root"]["dag"]["tasks"])
  assert EXPECTED_TASKS <= tasks
  assert any("resolver" in t for t in tasks)


def test_every_executor_uses_the_melody_image(dataflow_spec):
  executors = dataflow_spec["pipelineSpec"]["deploymentSpec"]["executors"]
  containers = [e["container"] for e in executors.values() if "container" in e]
  assert len(containers) >= len(EXPECTED_TASKS)
  assert {c["image"] for c in containers} == {"registry.example/melody:1.2.3"}


def test_beam_components_get_dataflow_args(dataflow_spec):
  executors = dataflow_spec["pipelineSpec"]["deploymentSpec"]["executors"]
  for name in BEAM_EXECUTORS:
    args = executors[f"{name}_executor"]["container"]["args"]
    assert "--runner=DataflowRunner" in args, name
    assert "--project=proj-1" in args and "--region=europe-west4" in args, name
    assert "--temp_location=gs://tmp-bucket/beam" in args, name


def _params(spec, task):
  params = spec["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"]
  return {k: next(iter(v["runtimeValue"]["constantValue"].values())) for k, v in params.items()}


def test_trainer_and_transform_use_module_paths_not_files(dataflow_spec):
  trainer = _params(dataflow_spec, "Trainer")
  assert trainer["run_fn"] == configs.RUN_FN
  assert "module_file" not in trainer
  assert json.loads(trainer["train_args"]) == {"num_steps": 5000}
  assert json.loads(trainer["custom_config"])["model_config"] == "mmoe"
  transform = _params(dataflow_spec, "Transform")
  assert transform["preprocessing_fn"] == configs.PREPROCESSING_FN
  assert "module_file" not in transform


def test_transform_statistics_stay_in_production_and_are_optional(dataflow_spec, tmp_path):
  from pipeline import pipeline as melody_pipeline
  assert int(_params(dataflow_spec, "Transform")["disable_statistics"]) == 0
  quick = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"),
                               transform_statistics=False)
  transform = next(c for c in melody_pipeline.create_pipeline(quick).components
                   if c.id == "Transform")
  assert transform.exec_properties["disable_statistics"] == 1
  assert "post_transform_stats" not in transform.outputs


def test_intent_trainer_feeds_the_ranker_trainer(dataflow_spec):
  tasks = dataflow_spec["pipelineSpec"]["root"]["dag"]["tasks"]
  base = tasks["Trainer"]["inputs"]["artifacts"]["base_model"]["taskOutputArtifact"]
  assert base["producerTask"] == "IntentTrainer"
  intent = _params(dataflow_spec, "IntentTrainer")
  assert intent["run_fn"] == configs.INTENT_RUN_FN
  assert json.loads(intent["custom_config"])["catalog_path"].endswith("tracks.parquet")


def test_pipeline_root_and_spans(dataflow_spec):
  assert dataflow_spec["runtimeConfig"]["gcsOutputDirectory"] == "gs://melody-pipelines/root"
  text = json.dumps(dataflow_spec)
  assert "span-{SPAN}" in text
