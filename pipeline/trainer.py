"""The TFX Trainer ``run_fn`` of the ranking model and the training loop it shares with
``melody train``.

This module owns the I/O around the model (``ranking.model`` owns the math): reading
transformed TFRecords into batches, the training loop with progress (steps,
examples/s, ETA), checkpoints and TensorBoard logs, and the export of a SavedModel with
two signatures:

* ``serving_default``: serialized raw ``tf.Example`` s (input ``examples``, string
  ``[B]``) -> the TFT layer -> the model -> one ``[B]`` output per head
  (``interest_completion``, ``interest_skip``, ``interest_like``, ``subscription``,
  ``exposure`` and the interest score ``interest``), so TFMA evaluates raw examples;
* ``transform_features``: serialized raw examples -> the transformed features.

The exported object also carries ``encode_listener(listener_features)`` and
``score(encoding, candidate_features)`` as saved functions on transformed features (the
listener encoded once, N candidates scored against it), and the model itself.

``custom_config`` keys (all optional): ``model_config`` ("mmoe", "ple",
"shared_bottom", "single:<task>"), ``batch_size``, ``seed``, ``learning_rate``,
``interest_only_steps``, ``ramp_steps``, ``dynamic_weighting``, ``completion_floor``.
"""

import dataclasses
import os
import sys
import time
from typing import Dict, List, Optional, Sequence

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import tensorflow as tf

from features import feature_spec as feature_spec_lib
from ranking import config as config_lib
from ranking import model as model_lib

LABEL_AND_WEIGHT_KEYS = frozenset(feature_spec_lib.PASSTHROUGH_KEYS)
SERVING_INPUT = "examples"


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
  return model_config, config_lib.TrainConfig(**train_kwargs)


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


def build_model(model_config: config_lib.ModelConfig,
                train_config: config_lib.TrainConfig) -> model_lib.RankingModel:
  tf.keras.utils.set_random_seed(train_config.seed)
  model = model_lib.RankingModel(model_config, train_config)
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
  os.makedirs(run_dir, exist_ok=True)
  ckpt = tf.train.Checkpoint(model=model, optimizer=model.optimizer)
  manager = tf.train.CheckpointManager(ckpt, os.path.join(run_dir, "checkpoints"),
                                       max_to_keep=3)
  progress = Progress(train_steps, batch_size, log_every)
  epochs = max(1, min(10, train_steps // max(log_every, 1)))
  steps_per_epoch = train_steps // epochs
  epochs = train_steps // steps_per_epoch   # whole epochs; a remainder is dropped below
  callbacks = [
      progress,
      ScalarLogger(os.path.join(run_dir, "logs"), every=log_every),
      tf.keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: manager.save()),
  ]
  progress.total_steps = epochs * steps_per_epoch
  history = model.fit(train_ds, epochs=epochs, steps_per_epoch=steps_per_epoch,
                      callbacks=callbacks, verbose=0)
  result = {k: float(v[-1]) for k, v in history.history.items()}
  if eval_ds is not None and eval_steps > 0:
    ev = model.evaluate(eval_ds, steps=eval_steps, return_dict=True, verbose=0,
                        callbacks=[callbacks[1]])
    result.update({f"eval_{k}": float(v) for k, v in ev.items()})
  result["examples_per_s"] = progress.examples_per_s
  result["steps"] = float(progress.total_steps)
  _log("done: " + ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.items())))
  return result


def raw_serving_spec(with_labels: bool) -> Dict[str, object]:
  """Parse spec of raw examples (``feature_spec.raw_feature_spec``, scalars with
  defaults); without labels for ``serving_default`` (requests carry no labels)."""
  return {k: v for k, v in feature_spec_lib.raw_feature_spec().items()
          if with_labels or k not in LABEL_AND_WEIGHT_KEYS}


class ServingModule(tf.Module):
  """The exported object: the model, the TFT layer and the raw-example signatures."""

  def __init__(self, model: model_lib.RankingModel, tft_output):
    super().__init__(name="melody_ranker")
    self.model = model
    self.tft_layer = tft_output.transform_features_layer()
    self._serving_spec = raw_serving_spec(with_labels=False)
    self._transform_spec = raw_serving_spec(with_labels=True)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
  def serve_examples(self, examples):
    raw = tf.io.parse_example(examples, self._serving_spec)
    transformed = self.tft_layer(raw)
    return self.model(transformed, training=False)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=SERVING_INPUT)])
  def transform_features(self, examples):
    raw = tf.io.parse_example(examples, self._transform_spec)
    return self.tft_layer(raw)

  def encode_listener(self, listener_features):
    """Listener features (transformed, batch B) -> the listener encoding."""
    return self.model.encode_listener(listener_features, training=False)

  def score(self, encoding, candidate_features):
    """A listener encoding (batch 1 or N) x N transformed candidates -> ``[N]`` scores."""
    return self.model.score(encoding, candidate_features, training=False)


def _attach_scoring_functions(module: "ServingModule") -> None:
  # Saved as plain functions (not signatures) with transformed-feature inputs, so a
  # loaded model can still encode a listener once and score candidates against it.
  config = module.model.config
  module.encode_listener = tf.function(
      module.encode_listener, input_signature=[model_lib.listener_input_spec(None)])
  module.score = tf.function(
      module.score, input_signature=[model_lib.encoding_spec(config, None),
                                     model_lib.candidate_input_spec(None)])


def export(model: model_lib.RankingModel, tft_output, serving_model_dir: str) -> str:
  """Saves the SavedModel with ``serving_default`` and ``transform_features``."""
  module = ServingModule(model, tft_output)
  _attach_scoring_functions(module)
  signatures = {
      "serving_default": module.serve_examples.get_concrete_function(),
      "transform_features": module.transform_features.get_concrete_function(),
  }
  tf.saved_model.save(module, serving_model_dir, signatures=signatures)
  _log(f"saved model to {serving_model_dir}")
  return serving_model_dir


def run_fn(fn_args) -> Dict[str, float]:
  """TFX Trainer entry point (``pipeline.trainer.run_fn``).

  Args:
    fn_args: TFX ``FnArgs`` (or :class:`TrainerArgs`): ``train_files``,
      ``eval_files``, ``transform_output``, ``serving_model_dir``,
      ``model_run_dir``, ``train_steps``, ``eval_steps``, ``custom_config``.

  Returns:
    The final metrics (also logged).
  """
  import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top

  model_config, train_config = configs_from_custom(getattr(fn_args, "custom_config", None))
  transform_output = (getattr(fn_args, "transform_output", None)
                      or getattr(fn_args, "transform_graph_path"))
  tft_output = tft.TFTransformOutput(transform_output)
  spec = tft_output.transformed_feature_spec()
  bs = train_config.batch_size
  train_ds = input_fn(fn_args.train_files, spec, bs, seed=train_config.seed)
  eval_ds = (input_fn(fn_args.eval_files, spec, bs, seed=train_config.seed, shuffle=False)
             if fn_args.eval_files else None)
  model = build_model(model_config, train_config)
  run_dir = fn_args.model_run_dir or os.path.join(fn_args.serving_model_dir, "..", "run")
  steps = int(fn_args.train_steps)
  metrics = train(model, train_ds, eval_ds, steps, int(fn_args.eval_steps or 0), run_dir, bs,
                  log_every=max(1, min(50, steps // 10)))
  catalog = dict(getattr(fn_args, "custom_config", None) or {}).get("catalog_path")
  if catalog:
    # The full serving graph (rank = serving_default, recommend, score_examples,
    # transform_features) with warmup records: what the InfraValidator serves and the
    # Pusher pushes. Without a catalog, the raw-example signatures only.
    from serving import export as serving_export  # pylint: disable=g-import-not-at-top
    from serving import tensors as serving_tensors  # pylint: disable=g-import-not-at-top
    intent = None
    base_model = getattr(fn_args, "base_model", None)
    if base_model:
      # The IntentTrainer's SavedModel: its `candidates` function is composed into
      # this export (intent_candidates, text requests in recommend).
      intent = serving_tensors.load_saved_model(base_model)
      _log(f"composing the intent model from {base_model}")
    serving_export.export_from_training(model, transform_output, str(catalog),
                                        fn_args.serving_model_dir, intent=intent)
  else:
    export(model, tft_output, fn_args.serving_model_dir)
  return metrics
