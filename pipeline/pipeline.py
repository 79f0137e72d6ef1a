"""``create_pipeline``: wires Melody's TFX components and returns a ``tfx.dsl.Pipeline``.

Pure: it builds components and runs nothing. The graph:

  ImportExampleGen → StatisticsGen → SchemaGen (first run) | ImportSchemaGen (curated)
  → ExampleValidator → AnomaliesGate → Transform (features.preprocessing)
  → [IntentTrainer (pipeline.intent_trainer.run_fn), opt-in, as the Trainer's base_model]
  → Trainer (pipeline.trainer.run_fn; composes ranker + intent into one SavedModel)
  → Resolver(latest blessed) → Evaluator (TFMA), or for a play-only source
    NextPlayEvaluator (pipeline.next_play_eval: next-play ranking against popularity)
  → LocalInfraValidator (loads the model in the serving path with warmup) → Pusher

Runners (``local_runner``, ``kubeflow_v2_runner``) choose the orchestrator and the
metadata store; this module knows neither.
"""

import dataclasses
import os
from typing import List, Optional

from tfx import v1 as tfx

from pipeline import components as melody_components
from pipeline import configs
from pipeline import eval_config
from pipeline import next_play_eval


def example_input_config(use_spans: bool) -> tfx.proto.Input:
  """Where ImportExampleGen reads: one span, or ``span-{SPAN}`` folders (scheduled)."""
  prefix = "examples/span-{SPAN}/" if use_spans else "examples/"
  return tfx.proto.Input(splits=[
      tfx.proto.Input.Split(name="train", pattern=prefix + "train-*"),
      tfx.proto.Input.Split(name="eval", pattern=prefix + "eval-*"),
  ])


def _floors(config: configs.PipelineConfig) -> eval_config.Floors:
  """The blessing thresholds a config asks for (the Evaluator's defaults where unset)."""
  floors = eval_config.Floors(subscription_auc=config.subscription_auc_floor)
  if config.auc_drop_tolerance is None:
    return floors
  return dataclasses.replace(floors, auc_drop_tolerance=config.auc_drop_tolerance)


def create_pipeline(config: configs.PipelineConfig,
                    metadata_connection_config=None,
                    outputs: Optional[dict] = None,
                    example_gen=None) -> tfx.dsl.Pipeline:
  """Builds the Melody training pipeline.

  Args:
    config: paths, Beam arguments, training sizes and engine choices.
    metadata_connection_config: ML Metadata connection (local runs); None on Kubeflow.
    outputs: model output name -> label key for the Evaluator (default: label keys).
    example_gen: a component with an ``examples`` output to read instead of
      ImportExampleGen (the Kubeflow window, ``pipeline.window_example_gen``).

  Returns:
    The pipeline (nothing has run).
  """
  if example_gen is None:
    example_gen = tfx.components.ImportExampleGen(
        input_base=config.input_root(), input_config=example_input_config(config.use_spans))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  if config.schema_dir:
    schema_gen = tfx.components.ImportSchemaGen(
        schema_file=os.path.join(config.schema_dir, "schema.pbtxt"))
  else:
    schema_gen = tfx.components.SchemaGen(
        statistics=statistics_gen.outputs["statistics"], infer_feature_shape=True)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  anomalies_gate = melody_components.AnomaliesGate(
      anomalies=example_validator.outputs["anomalies"])

  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=schema_gen.outputs["schema"],
      preprocessing_fn=configs.PREPROCESSING_FN,
      disable_statistics=not config.transform_statistics)
  transform.add_upstream_node(anomalies_gate)

  intent_trainer = None
  if config.with_intent:
    # The text-intent model trains on the catalogue (its run_fn synthesizes requests
    # from the tracks' real tags); the ranker's Trainer receives it as `base_model` and
    # composes both into the one serving SavedModel that is evaluated and pushed.
    intent_trainer = tfx.components.Trainer(
        run_fn=configs.INTENT_RUN_FN,
        examples=example_gen.outputs["examples"],
        train_args=tfx.proto.TrainArgs(num_steps=config.intent_steps),
        eval_args=tfx.proto.EvalArgs(num_steps=0),
        custom_config=config.intent_custom_config()).with_id("IntentTrainer")

  trainer = tfx.components.Trainer(
      run_fn=configs.RUN_FN,
      base_model=intent_trainer.outputs["model"] if intent_trainer else None,
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema_gen.outputs["schema"],
      train_args=tfx.proto.TrainArgs(num_steps=config.train_steps),
      eval_args=tfx.proto.EvalArgs(num_steps=config.eval_steps),
      custom_config=config.trainer_custom_config())

  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id("latest_blessed_model_resolver")

  if config.next_play_k:
    # A play-only source: no TFMA head can vouch for the model, the next-play ranking does.
    evaluator = next_play_eval.NextPlayEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        k=config.next_play_k)
  else:
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config.create_eval_config(
            outputs, _floors(config),
            unmeasured=config.unmeasured))

  # The stock InfraValidator needs Docker or Kubernetes and the KFP v2 compiler does not
  # support it ("component type InfraValidator is not supported"), so both builds run
  # Melody's own validator: locally in this process, on Kubeflow inside the Melody
  # image, which carries the same serving code.
  infra_validator = melody_components.LocalInfraValidator(
      model=trainer.outputs["model"], examples=example_gen.outputs["examples"])
  infra_blessing = infra_validator.outputs["blessing"]

  pusher = tfx.components.Pusher(
      model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      infra_blessing=infra_blessing,
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=config.serving_dir)))

  components: List = [example_gen, statistics_gen, schema_gen, example_validator,
                      anomalies_gate, transform] + ([intent_trainer] if intent_trainer else []) + [
                          trainer, model_resolver, evaluator, infra_validator, pusher]
  return tfx.dsl.Pipeline(
      pipeline_name=configs.PIPELINE_NAME,
      pipeline_root=config.pipeline_root,
      components=components,
      enable_cache=config.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=list(config.beam_args))
