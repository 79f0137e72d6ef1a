"""The TFX Trainer ``run_fn`` of the ranking model and the training loop it shares with
``melody train``.

This module owns the I/O around the model (``ranking.model`` owns the math, and
``serving.export`` the SavedModel): reading transformed TFRecords into batches, the
training loop with progress (steps, examples/s, ETA), checkpoints and TensorBoard logs.
:func:`fit` trains; :func:`run_fn` trains and saves the serving SavedModel of
``serving.export.export_from_training`` in ``serving_model_dir`` (``serving_default`` =
``rank``, ``recommend``, ``score_examples`` over raw ``tf.Example`` s for TFMA and the
InfraValidator, ``transform_features``, warmup records), composed with the
IntentTrainer's model when there is one.

``custom_config`` keys: ``catalog_path`` (required by :func:`run_fn`: the
``tracks.parquet`` the serving graph scores and retrieves from); optional
``model_config`` ("mmoe", "ple", "shared_bottom", "single:<task>"), ``batch_size``,
``seed``, ``learning_rate``, ``interest_only_steps``, ``ramp_steps``,
``dynamic_weighting``, ``completion_floor``, ``sequence_level`` (train on sequence
examples, ``pipeline.sequence_input``; the model becomes the causal one),
``sequence_context``.

Under a ``TF_CONFIG`` that names two or more workers (Kubeflow's TFJob, Vertex AI) the
model trains under ``MultiWorkerMirroredStrategy`` with ``batch_size`` as the global
batch, and only the chief keeps checkpoints, logs and the export (``pipeline.distribute``).
"""

import contextlib
import dataclasses
import os
import sys
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from pipeline import distribute
from pipeline import measurability
from pipeline import sequence_input
from pipeline import warm_start
from ranking import config as config_lib
from ranking import model as model_lib
from ranking import sequence_training

CATALOG_PATH = "catalog_path"


def _log(msg: str) -> None:
  print(f"[train] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass
class TrainerArgs:
  """The subset of TFX ``FnArgs`` that :func:`run_fn` reads (for local runs and tests)."""
  train_files: List[str]
  eval_files: List[str]
  transform_output: str
  serving_model_dir: str
  model_run_dir: str
  train_steps: int
  eval_steps: int
  custom_config: Optional[Dict[str, object]] = None


def configs_from_custom(custom: Optional[Dict[str, object]]):
  """(ModelConfig, TrainConfig) from a Trainer ``custom_config`` dict."""
  custom = dict(custom or {})
  model_config = config_lib.model_config_from_name(str(custom.pop("model_config", "mmoe")))
  train_fields = {f.name for f in dataclasses.fields(config_lib.TrainConfig)}
  train_kwargs = {k: v for k, v in custom.items() if k in train_fields}
  train_config = config_lib.TrainConfig(**train_kwargs)
  if train_config.sequence_level:
    model_config = dataclasses.replace(model_config, sequence_model="causal")
  return model_config, train_config


def _files(patterns: Sequence[str]) -> List[str]:
  if isinstance(patterns, str):
    patterns = [patterns]
  files = []
  for p in patterns:
    # TFX hands over split directories or glob patterns.
    if tf.io.gfile.isdir(p):
      p = os.path.join(p, "*")
    files.extend(sorted(tf.io.gfile.glob(p)))
  if not files:
    raise ValueError(f"no files match {list(patterns)}")
  return files


def input_fn(file_patterns: Sequence[str], feature_spec: Dict[str, object],
             batch_size: int, seed: int = 7, shuffle: bool = True,
             repeat: bool = True) -> tf.data.Dataset:
  """Batches of transformed features (and labels/weights) from gzip TFRecords.

  Args:
    file_patterns: files, globs or split directories.
    feature_spec: ``TFTransformOutput.transformed_feature_spec()``.
    batch_size: examples per batch (the last partial batch is dropped).
    seed: shuffle seed.
    shuffle: shuffle files and records.
    repeat: repeat forever (training).

  Returns:
    A dataset of dicts name -> ``[B]`` or ``[B, L]`` tensors.
  """
  files = _files(file_patterns)
  ds = tf.data.Dataset.from_tensor_slices(files)
  if shuffle:
    ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
  ds = ds.interleave(lambda f: tf.data.TFRecordDataset(f, compression_type="GZIP"),
                     cycle_length=min(4, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True)
  if shuffle:
    ds = ds.shuffle(max(4 * batch_size, 2048), seed=seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  ds = ds.batch(batch_size, drop_remainder=True)
  ds = ds.map(lambda x: tf.io.parse_example(x, feature_spec),
              num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  return ds.prefetch(tf.data.AUTOTUNE)


class Progress(tf.keras.callbacks.Callback):
  """Logs steps, examples/s and ETA every ``every`` steps."""

  def __init__(self, total_steps: int, batch_size: int, every: int = 50):
    super().__init__()
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.every = max(1, every)
    self.step = 0
    self.examples_per_s = 0.0
    self._t0 = None
    self._t_first = None

  def on_train_begin(self, logs=None):
    self._t0 = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step == 1:   # the first step traces the graph; time the rest
      self._t_first = time.perf_counter()
      return
    if self.step % self.every == 0 or self.step == self.total_steps:
      dt = time.perf_counter() - self._t_first
      self.examples_per_s = (self.step - 1) * self.batch_size / max(dt, 1e-9)
      eta = (self.total_steps - self.step) * self.batch_size / max(self.examples_per_s, 1e-9)
      loss = (logs or {}).get("loss", float("nan"))
      _log(f"step {self.step}/{self.total_steps}  loss {float(loss):.4f}  "
           f"{self.examples_per_s:,.0f} examples/s  ETA {eta:,.0f}s")


class StopAfterSteps(tf.keras.callbacks.Callback):
  """Ends ``fit`` after ``steps`` training batches, mid-epoch if need be (Keras still
  runs the epoch-end callbacks of the shortened epoch)."""

  def __init__(self, steps: int):
    super().__init__()
    self.steps = steps
    self.step = 0

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step >= self.steps:
      self.model.stop_training = True


class ScalarLogger(tf.keras.callbacks.Callback):
  """Writes training scalars as TensorBoard event files every ``every`` steps.

  The venv has no ``tensorboard`` package (so ``tf.keras.callbacks.TensorBoard`` and
  ``tf.summary.scalar`` fail); ``tf.summary.write`` with scalar plugin metadata is core
  TensorFlow and writes the same events TensorBoard reads.
  """

  def __init__(self, log_dir: str, every: int = 50):
    super().__init__()
    from tensorflow.core.framework import summary_pb2  # pylint: disable=g-import-not-at-top
    self.log_dir = log_dir
    self.every = max(1, every)
    self.step = 0
    self._metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))
    self._writers = {}

  def _write(self, split: str, logs) -> None:
    if split not in self._writers:
      self._writers[split] = tf.summary.create_file_writer(os.path.join(self.log_dir, split))
    with self._writers[split].as_default():
      for name, value in (logs or {}).items():
        tf.summary.write(name, tf.constant(float(value), tf.float32), step=self.step,
                         metadata=self._metadata)
    self._writers[split].flush()

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step % self.every == 0:
      self._write("train", logs)

  def on_epoch_end(self, epoch, logs=None):
    self._write("train", logs)

  def on_test_end(self, logs=None):
    self._write("eval", logs)


def build_model(model_config: config_lib.ModelConfig, train_config: config_lib.TrainConfig,
                strategy: Optional[tf.distribute.Strategy] = None) -> model_lib.RankingModel:
  """The compiled model, its variables under ``strategy``'s scope when one is given."""
  tf.keras.utils.set_random_seed(train_config.seed)
  model_class = (sequence_training.SequenceRankingModel if train_config.sequence_level
                 else model_lib.RankingModel)
  with strategy.scope() if strategy is not None else contextlib.nullcontext():
    model = model_class(model_config, train_config)
    model.compile(optimizer=model_lib.make_optimizer(model, train_config))
  return model


def train(model: model_lib.RankingModel, train_ds: tf.data.Dataset,
          eval_ds: Optional[tf.data.Dataset], train_steps: int, eval_steps: int,
          run_dir: str, batch_size: int, log_every: int = 50) -> Dict[str, float]:
  """Trains for ``train_steps`` with checkpoints and TensorBoard logs under ``run_dir``.

  Returns:
    Final training metrics, eval metrics (prefixed ``eval_``) and ``examples_per_s``.
  """
  if train_steps <= 0:
    raise ValueError(f"train_steps must be positive, got {train_steps}")
  run_dir = distribute.worker_dir(run_dir)   # only the chief's checkpoints and logs stay
  os.makedirs(run_dir, exist_ok=True)
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(run_dir, "checkpoints"),
                                       max_to_keep=3)
  progress = Progress(train_steps, batch_size, log_every)
  epochs = max(1, min(10, train_steps // max(log_every, 1)))
  steps_per_epoch = train_steps // epochs
  # Keras epochs all have the same length, so a remainder runs as one more epoch that
  # StopAfterSteps ends early: exactly train_steps optimizer steps, a checkpoint per epoch.
  epochs = -(-train_steps // steps_per_epoch)
  callbacks = [
      progress,
      ScalarLogger(os.path.join(run_dir, "logs"), every=log_every),
      tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: manager.save()),
      StopAfterSteps(train_steps),
  ]
  history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=0)
  result = {k: float(v[-1]) for k, v in history.history.items()}
  # The metrics' state still holds the last epoch (evaluate resets it).
  classes = auc_class_counts(model.metrics)
  if eval_ds is not None and eval_steps > 0:
    ev = model.evaluate(eval_ds, steps=eval_steps, return_dict=True, verbose=0,
                        callbacks=[callbacks[1]])
    result.update({f"eval_{k}": float(v) for k, v in ev.items()})
    classes.update({f"eval_{k}": v for k, v in auc_class_counts(model.metrics).items()})
  result["examples_per_s"] = progress.examples_per_s
  result["steps"] = float(progress.step)
  _log("done: " + summary(result, classes))
  return result


def auc_class_counts(metrics) -> Dict[str, Tuple[float, float]]:
  """Weighted (positives, negatives) each AUC metric has accumulated, by metric name.

  Keras reports the AUC of labels of one class as 0; these counts tell that case apart.
  """
  counts = {}
  for m in metrics:
    if isinstance(m, tf.keras.metrics.AUC):
      # At any one threshold every positive is a TP or an FN, every negative a TN or FP.
      counts[m.name] = (float(m.true_positives[0] + m.false_negatives[0]),
                        float(m.true_negatives[0] + m.false_positives[0]))
  return counts


def summary(result: Dict[str, float], classes: Dict[str, Tuple[float, float]]) -> str:
  """The ``done:`` line: every metric with 4 significant digits, except an AUC over
  one class or no examples, which reads as ``pipeline.measurability.display`` words it.

  Args:
    result: metric name -> value.
    classes: :func:`auc_class_counts` of the same names.

  Returns:
    ``name=value`` pairs joined by commas, in name order.
  """
  parts = []
  for name, value in sorted(result.items()):
    text = f"{value:.4g}"
    pos, neg = classes.get(name, (1.0, 1.0))
    if pos <= 0 or neg <= 0:
      text = measurability.display("auc", value, pos + neg, pos / max(pos + neg, 1e-12))
    parts.append(f"{name}={text}")
  return ", ".join(parts)


class Trained(NamedTuple):
  """What :func:`fit` returns: the trained model, its final metrics and the TFT output
  directory it was trained on."""
  model: model_lib.RankingModel
  metrics: Dict[str, float]
  transform_output: str


def catalog_path(custom_config: Optional[Dict[str, object]]) -> str:
  """The ``catalog_path`` of a Trainer ``custom_config``, checked to exist.

  Raises:
    ValueError: the key is missing, or no file is at that path.
  """
  path = dict(custom_config or {}).get(CATALOG_PATH)
  if not path:
    raise ValueError(f"the Trainer's custom_config has no {CATALOG_PATH!r} (the "
                     "tracks.parquet the serving graph scores and retrieves from)")
  if not tf.io.gfile.exists(str(path)):
    raise ValueError(f"the catalogue {path} does not exist (custom_config "
                     f"{CATALOG_PATH!r}; `melody data generate` writes tracks.parquet)")
  return str(path)


def fit(fn_args) -> Trained:
  """Trains the ranking model as ``fn_args`` says, without exporting it.

  Args:
    fn_args: TFX ``FnArgs`` (or :class:`TrainerArgs`): ``train_files``,
      ``eval_files``, ``transform_output``, ``serving_model_dir``,
      ``model_run_dir``, ``train_steps``, ``eval_steps``, ``custom_config``.

  Returns:
    The trained model, its final metrics (also logged) and the TFT output directory.
  """
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top

  strategy = distribute.strategy_from_env()   # TF_CONFIG with 2+ workers: multi-worker
  model_config, train_config = configs_from_custom(getattr(fn_args, "custom_config", None))
  transform_output = (getattr(fn_args, "transform_output", None)
                      or getattr(fn_args, "transform_graph_path"))
  spec = tft.TFTransformOutput(transform_output).transformed_feature_spec()
  bs = train_config.batch_size
  if train_config.sequence_level:
    train_ds, examples_per_step = sequence_input.sequence_dataset(
        _files(fn_args.train_files), spec, bs, train_config.sequence_context,
        seed=train_config.seed)
  else:
    train_ds = input_fn(fn_args.train_files, spec, bs, seed=train_config.seed)
    examples_per_step = bs
  eval_ds = (input_fn(fn_args.eval_files, spec, bs, seed=train_config.seed, shuffle=False)
             if fn_args.eval_files else None)
  model = build_model(model_config, train_config, strategy)
  # Starts from the last pushed model when the Trainer's custom_config names one.
  warm_start.maybe_warm_start(model, getattr(fn_args, "custom_config", None))
  run_dir = fn_args.model_run_dir or os.path.join(fn_args.serving_model_dir, "..", "run")
  steps = int(fn_args.train_steps)
  metrics = train(model, train_ds, eval_ds, steps, int(fn_args.eval_steps or 0), run_dir,
                  examples_per_step, log_every=max(1, min(50, steps // 10)))
  return Trained(model, metrics, transform_output)


def run_fn(fn_args) -> Dict[str, float]:
  """TFX Trainer entry point (``pipeline.trainer.run_fn``): :func:`fit`, then the
  serving SavedModel in ``fn_args.serving_model_dir``.

  The SavedModel is what the Evaluator evaluates (``score_examples``), the
  InfraValidator serves and the Pusher pushes. An IntentTrainer's SavedModel in
  ``fn_args.base_model`` is composed into it (``intent_candidates``, text requests in
  ``recommend``).

  Args:
    fn_args: as :func:`fit`; ``custom_config`` must name the catalogue.

  Returns:
    The final metrics.

  Raises:
    ValueError: no catalogue, or a ``policy_json`` that fails validation (both
      checked before training).
  """
  from serving import export as serving_export  # pylint: disable=g-import-not-at-top
  from serving import tensors as serving_tensors  # pylint: disable=g-import-not-at-top

  catalog = catalog_path(getattr(fn_args, "custom_config", None))
  policy = trained_policy(getattr(fn_args, "custom_config", None))
  with _timed("fit"):
    trained = fit(fn_args)
  intent = None
  base_model = getattr(fn_args, "base_model", None)
  if base_model:
    intent = serving_tensors.load_saved_model(base_model)
    _log(f"composing the intent model from {base_model}")
  with _timed("export"):
    serving_export.export_from_training(trained.model, trained.transform_output, catalog,
                                        distribute.worker_dir(fn_args.serving_model_dir),
                                        intent=intent, policy=policy)
  return trained.metrics


@contextlib.contextmanager
def _timed(step: str):
  """Logs the wall and process CPU seconds of a step of ``run_fn`` (what a run costs:
  docs/pipeline.md); CPU time stays comparable when other jobs share the machine."""
  wall, cpu = time.perf_counter(), time.process_time()
  yield
  _log(f"{step}: {time.perf_counter() - wall:.1f}s wall, "
       f"{time.process_time() - cpu:.1f}s CPU")


def trained_policy(custom_config: Optional[Dict[str, object]]):
  """The ``policy_json`` of a Trainer ``custom_config``, validated (None: no policy).

  Raises:
    ValueError: the policy fails a check (``ranking.fusion.policy_file.PolicyError``).
  """
  text = dict(custom_config or {}).get("policy_json")
  if not text:
    return None
  from ranking.fusion import policy_file  # pylint: disable=g-import-not-at-top
  policy = policy_file.loads(str(text), "custom_config policy_json")
  _log(f"exporting with policy {policy.version}")
  return policy
