"""Configuration of Melody's TFX pipeline: paths, Beam arguments, training sizes and the
engine choices (local vs Kubeflow).

Everything a runner needs is a field of :class:`PipelineConfig`; ``create_pipeline`` only
reads it. Beam arguments for the embedded DirectRunner and for Dataflow/Flink are built
here so that their shape is unit-tested in one place.
"""

import dataclasses
import os
from typing import Dict, Optional, Sequence, Tuple

from features import examples_beam
from pipeline import measurability

PIPELINE_NAME = "melody"
# Module paths (not module files): the project is installed in the image and the venv,
# so the Kubeflow compiler never has to stage user code to the pipeline root.
PREPROCESSING_FN = "features.preprocessing.preprocessing_fn"
RUN_FN = "pipeline.trainer.run_fn"
INTENT_RUN_FN = "pipeline.intent_trainer.run_fn"
CURATED_SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema")
# The cut-off of the next-play metrics that bless a model of a play-only source.
NEXT_PLAY_K = 10


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
  """Everything a Melody pipeline run depends on.

  Attributes:
    data_root: directory written by ``melody data generate`` (holds ``examples/``).
    pipeline_root: where TFX writes artifacts (local dir or ``gs://…``).
    serving_dir: the Pusher's filesystem destination (numbered versions inside).
    metadata_path: SQLite ML Metadata file (local runs only).
    runs_dir: the local runner's run directories (record and log per run; default
      ``runs/`` beside the metadata directory).
    schema_dir: a curated schema (``schema.pbtxt``) to import; None infers one with
      SchemaGen (first run).
    use_spans: read ``examples/span-{SPAN}/…`` (scheduled runs) instead of one span.
    train_steps / eval_steps / batch_size / model_config: passed to the Trainer.
    subscription_auc_floor: blessing floor on the subscription AUC (None: reported
      only; small eval splits may hold no conversion).
    auc_drop_tolerance: the largest interest-AUC drop against the last blessed model
      that does not block a push (``eval_config.Floors``); None: the Evaluator's
      default, ``eval_config.AUC_DROP_TOLERANCE``.
    with_intent / intent_steps: also train the text-intent model (IntentTrainer) and
      compose it into the ranker's serving SavedModel (``intent_candidates`` and text
      requests in ``recommend``).
    beam_args: Beam pipeline options for every Beam-using component.
    enable_cache: reuse a component's earlier outputs when its inputs and parameters
      are unchanged (TFX caching), e.g. statistics and Transform when only training
      settings change.
    unmeasured: label keys the data cannot measure (``pipeline.measurability``): the
      Evaluator reports their heads without blessing thresholds.
    examples_root: where ImportExampleGen finds ``examples/`` when not in
      ``data_root`` (a rolling window's inputs, ``pipeline.window_runs``).
    next_play_k: for next-play examples of a play-only log, the cut-off k of the
      next-play Recall@k/NDCG@k that bless the model (``pipeline.next_play_eval``, in
      place of TFMA); 0 for every other dataset.
    transform_statistics: Transform also computes TFDV statistics of its input and
      output (``pre_transform_stats``, ``post_transform_stats`` and anomalies), for a
      person to inspect; no component reads them. False skips them (a quicker run).
    policy_json: a validated ``policy.json``'s text (``ranking.fusion.policy_file``)
      the Trainer bakes into the exported model's fusion and mixing tables; "" keeps
      the defaults. The text, not a path, so a remote Trainer needs no file.
  """
  data_root: str
  pipeline_root: str
  serving_dir: str
  metadata_path: str = ""
  runs_dir: str = ""
  schema_dir: Optional[str] = None
  use_spans: bool = False
  train_steps: int = 600
  eval_steps: int = 50
  batch_size: int = 256
  model_config: str = "mmoe"
  seed: int = 7
  beam_args: Tuple[str, ...] = ()
  extra_trainer_config: Tuple[Tuple[str, object], ...] = ()
  subscription_auc_floor: Optional[float] = None
  auc_drop_tolerance: Optional[float] = None
  with_intent: bool = False
  intent_steps: int = 300
  enable_cache: bool = False
  transform_statistics: bool = True
  unmeasured: Tuple[str, ...] = ()
  examples_root: str = ""
  policy_json: str = ""
  next_play_k: int = 0

  def __post_init__(self):
    for name in ("train_steps", "eval_steps", "batch_size"):
      if getattr(self, name) <= 0:
        raise ValueError(f"{name} must be positive, got {getattr(self, name)}")

  def input_root(self) -> str:
    """The directory holding the ``examples/`` ImportExampleGen reads."""
    return self.examples_root or self.data_root

  def catalog_path(self) -> str:
    return os.path.join(self.data_root, "tracks.parquet")

  def intent_custom_config(self) -> Dict[str, object]:
    return {"catalog_path": self.catalog_path(), "seed": self.seed}

  def trainer_custom_config(self) -> Dict[str, object]:
    cfg = {"model_config": self.model_config, "batch_size": self.batch_size,
           "seed": self.seed,
           # The catalog the serving graph scores and retrieves from.
           "catalog_path": self.catalog_path()}
    if self.policy_json:
      cfg["policy_json"] = self.policy_json
    cfg.update(dict(self.extra_trainer_config))
    return cfg


def local_config(data_root: str, workdir: str, **overrides) -> PipelineConfig:
  """A config for the embedded engines: everything under ``workdir``."""
  workdir = os.path.abspath(workdir)
  defaults = dict(
      data_root=os.path.abspath(data_root),
      pipeline_root=os.path.join(workdir, "pipeline_root"),
      serving_dir=os.path.join(workdir, "serving_model"),
      metadata_path=os.path.join(workdir, "metadata", "metadata.sqlite"),
      runs_dir=os.path.join(workdir, "runs"),
      beam_args=direct_beam_args("in_memory"),
      schema_dir=curated_schema_dir(),
      unmeasured=tuple(sorted(measurability.from_data_root(data_root))),
      next_play_k=NEXT_PLAY_K if measurability.is_next_play(data_root) else 0,
  )
  defaults.update(overrides)
  return PipelineConfig(**defaults)


def curated_schema_dir() -> Optional[str]:
  """The checked-in schema's folder, or None before one was curated (first run)."""
  if os.path.exists(os.path.join(CURATED_SCHEMA_DIR, "schema.pbtxt")):
    return CURATED_SCHEMA_DIR
  return None


# Unless the Beam args name the workers' dependencies, every TFX Beam executor builds an
# sdist of the installed TFX for the workers before its job (10-15 s a component). The
# in-process modes run the SDK harness in this interpreter, which already has TFX and
# Melody: this flag says so, and the FnApiRunner never reads it.
IN_PROCESS_HARNESS_FLAG = "--sdk_container_image=in-process"


def direct_beam_args(mode: str = "multi_processing", workers: int = 0) -> Tuple[str, ...]:
  """Local runner options: in_memory for small runs, multi_processing for large ones.

  The runner is ``examples_beam.direct_runner_flag(mode)`` (the FnApiRunner for the
  in-process modes, which also get ``IN_PROCESS_HARNESS_FLAG``).
  """
  if mode not in ("in_memory", "multi_threading", "multi_processing"):
    raise ValueError(f"unknown direct_running_mode {mode!r}")
  workers = workers or os.cpu_count() or 1
  args = (f"--runner={examples_beam.direct_runner_flag(mode)}", f"--direct_running_mode={mode}",
          f"--direct_num_workers={workers if mode != 'in_memory' else 1}")
  if mode != "multi_processing":
    args += (IN_PROCESS_HARNESS_FLAG,)
  return args


def dataflow_beam_args(project: str, region: str, temp_location: str,
                       max_workers: int = 8, machine_type: str = "n2-standard-4",
                       sdk_container_image: str = "") -> Tuple[str, ...]:
  """Dataflow options for the same Beam code (ExampleGen, StatisticsGen, Transform,
  Evaluator and the example writer)."""
  for name, value in (("project", project), ("region", region),
                      ("temp_location", temp_location)):
    if not value:
      raise ValueError(f"{name} is required for Dataflow")
  if not temp_location.startswith("gs://"):
    raise ValueError(f"temp_location must be a gs:// path, got {temp_location!r}")
  args = ["--runner=DataflowRunner", f"--project={project}", f"--region={region}",
          f"--temp_location={temp_location}", f"--max_num_workers={max_workers}",
          f"--machine_type={machine_type}", "--experiments=use_runner_v2"]
  if sdk_container_image:
    args.append(f"--sdk_container_image={sdk_container_image}")
  return tuple(args)


def flink_beam_args(flink_master: str, parallelism: int = 4,
                    environment_type: str = "DOCKER",
                    environment_config: str = "") -> Tuple[str, ...]:
  """Portable Flink options (job server at ``flink_master``, e.g. ``host:8081``)."""
  if not flink_master:
    raise ValueError("flink_master is required for Flink")
  if parallelism <= 0:
    raise ValueError(f"parallelism must be positive, got {parallelism}")
  if environment_type not in ("DOCKER", "PROCESS", "EXTERNAL", "LOOPBACK"):
    raise ValueError(f"unknown environment_type {environment_type!r}")
  args = ["--runner=FlinkRunner", f"--flink_master={flink_master}",
          f"--parallelism={parallelism}", f"--environment_type={environment_type}"]
  if environment_config:
    args.append(f"--environment_config={environment_config}")
  return tuple(args)


def parse_beam_flags(flags: Sequence[str]) -> Dict[str, str]:
  """``--key=value`` flags as a dict (for checks and display)."""
  out = {}
  for flag in flags:
    if not flag.startswith("--") or "=" not in flag:
      raise ValueError(f"Beam flag must look like --key=value, got {flag!r}")
    key, value = flag[2:].split("=", 1)
    out[key] = value
  return out
