"""Compiles the Melody pipeline into a Kubeflow Pipelines v2 spec (JSON), offline.

The same ``create_pipeline`` as the local runner, with a container image that has
Melody installed (components refer to module paths, so nothing is staged to the
pipeline root), and Beam arguments for Dataflow or Flink from the config. With a
rolling window (``window_days``), ``WindowExampleGen`` (``pipeline.window_example_gen``)
takes ImportExampleGen's place and the spec gains the runtime parameter
``scheduled_date`` (YYYYMMDD) that names the window's last day.
"""

import dataclasses
import json
import os
from typing import Tuple

from tfx import v1 as tfx
from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner as kv2

from pipeline import configs
from pipeline import pipeline as melody_pipeline
from pipeline import window_example_gen

DEFAULT_IMAGE = "ghcr.io/melody/melody:latest"


@dataclasses.dataclass(frozen=True)
class KubeflowConfig:
  """What the Kubeflow build needs beyond the pipeline config.

  Attributes:
    image: container image with Melody (and the locked dependencies) installed.
    pipeline_root: a ``gs://`` (or other object store) root for artifacts.
    data_root: where the example shards land (``examples/span-{SPAN}/…``).
    serving_dir: the Pusher's destination, watched by the model servers.
    beam_args: Beam options for the Beam-using components (Dataflow/Flink/Direct).
    window_days: N > 0 trains on the spans of the N days ending with the run's
      ``scheduled_date`` and evaluates on that day's span; 0 reads one span with
      ImportExampleGen (its ``{SPAN}`` pattern, the latest span).
  """
  image: str = DEFAULT_IMAGE
  pipeline_root: str = "gs://melody-pipelines/root"
  data_root: str = "gs://melody-data/generated"
  serving_dir: str = "gs://melody-models/ranker"
  beam_args: Tuple[str, ...] = configs.direct_beam_args("multi_processing", 2)
  train_steps: int = 5000
  use_spans: bool = True
  subscription_auc_floor: float = 0.55
  with_intent: bool = True
  window_days: int = 0


def pipeline_config(kf: KubeflowConfig) -> configs.PipelineConfig:
  return configs.PipelineConfig(
      data_root=kf.data_root, pipeline_root=kf.pipeline_root, serving_dir=kf.serving_dir,
      schema_dir=configs.curated_schema_dir(),
      use_spans=kf.use_spans, train_steps=kf.train_steps,
      subscription_auc_floor=kf.subscription_auc_floor, with_intent=kf.with_intent,
      beam_args=tuple(kf.beam_args))


def compile_pipeline(kf: KubeflowConfig, output_file: str) -> dict:
  """Writes the KFP v2 pipeline spec JSON to ``output_file`` and returns it parsed."""
  os.makedirs(os.path.dirname(os.path.abspath(output_file)), exist_ok=True)
  runner = kv2.KubeflowV2DagRunner(
      config=kv2.KubeflowV2DagRunnerConfig(default_image=kf.image),
      output_dir=os.path.dirname(os.path.abspath(output_file)),
      output_filename=os.path.basename(output_file))
  example_gen = (window_example_gen.create(kf.data_root, kf.window_days)
                 if kf.window_days else None)
  runner.run(melody_pipeline.create_pipeline(pipeline_config(kf), example_gen=example_gen),
             write_out=True)
  with open(output_file) as f:
    return json.load(f)
