"""Export of the serving SavedModel: numbered versions, warmup records, server configs.

This module owns how a trained ``RankingModel`` becomes something a model server loads:

* :func:`export_serving_model` writes ``BASE/<version>/`` (the SavedModel of
  ``serving.signatures.RankerServingModule``, with
  ``assets.extra/tf_serving_warmup_requests`` built from real examples for every
  signature, ``assets.extra/melody_serving.json`` describing the export and, when it
  was exported with a policy, ``assets.extra/policy.json``), publishing
  the version atomically (written under a temporary name, then renamed). Next to the
  base directory, in ``dirname(BASE)``, it writes ``models.config`` (model
  ``basename(BASE)`` by default, labels ``stable`` and ``canary``),
  ``batching_parameters.txt`` and ``monitoring.config`` with ``serving.model_config``.
  The layout:

      models/                       <- dirname(BASE): the server's config directory
        models.config  batching_parameters.txt  monitoring.config
        melody/                     <- BASE: the model's base_path
          1/  2/  ...               <- versions (saved_model.pb, variables/, assets.extra/)

  A new version becomes ``canary``; ``stable`` stays on the version it labelled before
  (the first export labels itself both), and both are loaded (a ``specific`` version
  policy), so a client can pick either label.
* :func:`export_from_training` is the one-call entry point for a Trainer ``run_fn``:
  the SavedModel directly in ``serving_model_dir`` (TFX's Pusher adds the version
  number), warmup included, no config files.
* :func:`restore_trained_model` rebuilds a trained model from the checkpoints of a
  ``melody train`` output directory, for ``melody export`` (``serving.export_cli``).
"""

import json
import os
import shutil
import sys
from typing import Dict, Optional, Sequence, Union

import pandas as pd
import tensorflow as tf

from serving import model_config
from serving import request_schema
from serving import signatures as signatures_lib
from serving import warmup as warmup_lib

INFO_FILE = os.path.join("assets.extra", "melody_serving.json")
POLICY_FILE = os.path.join("assets.extra", "policy.json")
DEFAULT_MODEL_NAME = "melody"
# Batching: a request carries up to N_max candidates per listener, so a few listeners
# already make a large batch. No timeout: a request never waits for others (a lone one
# runs at once); requests that arrive while the batch threads are busy run together,
# which shares the listener encoder, the TFT layer and the mixing ops between them.
# One batch thread per two cores: a model call already spreads its ops over two cores
# (TF's inter-op pool), and fewer concurrent calls make fuller batches, so the server
# spends less CPU per request (docs/benchmarks.md has the timings).
DEFAULT_BATCHING = model_config.BatchingParameters(
    max_batch_size=8, batch_timeout_micros=0,
    num_batch_threads=max(1, (os.cpu_count() or 1) // 2), max_enqueued_batches=64)


def _log(msg: str) -> None:
  print(f"[export] {msg}", file=sys.stderr, flush=True)


def next_version(base_dir: str) -> int:
  """1 + the highest numbered version under ``base_dir`` (1 when there is none)."""
  versions = [int(n) for n in (os.listdir(base_dir) if os.path.isdir(base_dir) else ())
              if n.isdigit()]
  return max(versions, default=0) + 1


def default_example_pattern(catalog_path: str) -> Optional[str]:
  """Raw examples next to a ``tracks.parquet`` (the ``melody data generate`` layout)."""
  data_dir = os.path.dirname(os.path.abspath(catalog_path))
  pattern = os.path.join(data_dir, "examples", "**", "*.tfrecord.gz")
  import glob  # pylint: disable=g-import-not-at-top
  return pattern if glob.glob(pattern, recursive=True) else None


def save_module(module: signatures_lib.RankerServingModule, path: str,
                warmup_examples: Union[None, str, Sequence[bytes]] = None,
                num_warmup_records: int = warmup_lib.DEFAULT_RECORDS,
                model_name: str = DEFAULT_MODEL_NAME,
                max_batch_size: int = DEFAULT_BATCHING.max_batch_size) -> str:
  """Saves ``module`` with its signatures to ``path`` plus warmup and info files.

  Args:
    module: the serving module.
    path: target directory (must not exist).
    warmup_examples: raw examples (glob or serialized records) for the warmup file;
      None writes no warmup file.
    num_warmup_records: warmup requests to write (at least one per signature, <= 1000).
    model_name: ``ModelSpec.name`` in the warmup requests.
    max_batch_size: the server's largest batch, one of the warmed-up batch sizes.

  Returns:
    ``path``.
  """
  functions = module.signatures()
  tf.saved_model.save(module, path, signatures=functions)
  signatures = sorted(functions)
  if warmup_examples is not None:
    # Every saved signature gets records, so a new one cannot be left cold.
    records = warmup_lib.read_examples(warmup_examples)
    requests = warmup_lib.warmup_requests(
        records, model_name, module.n_max, warmup_lib.signature_inputs(functions),
        num_warmup_records, catalog_ids=module.catalog_track_ids.numpy(),
        max_batch_size=max_batch_size)
    warmup_lib.write_warmup(path, requests)
  policy = getattr(module, "policy", None)
  selector = module._py.fusion  # pylint: disable=protected-access
  info = {"n_max": module.n_max, "catalog_size": module.catalog_size,
          "policy_version": policy.version if policy is not None else None,
          "signatures": signatures, "labels": list(module.model.config.labels),
          "fusion": module.fusion_config.to_dict(), "mixing": module.mixing_config.to_dict(),
          "intent": module.intent is not None,
          "learned_fusion": selector.learned is not None, "default_fusion": selector.default,
          "model_config": module.model.config.to_dict()}
  os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
  with open(os.path.join(path, INFO_FILE), "w", encoding="utf-8") as f:
    json.dump(info, f, indent=2, sort_keys=True, default=list)
  if policy is not None:
    policy.dump(os.path.join(path, POLICY_FILE))
  return path


def read_info(version_dir: str) -> Dict[str, object]:
  """The ``melody_serving.json`` of an exported version (N_max, signatures, configs)."""
  with open(os.path.join(version_dir, INFO_FILE), encoding="utf-8") as f:
    return json.load(f)


def _labels(config_dir: str, model_name: str, base_dir: str, version: int) -> Dict[str, int]:
  """stable = what it labelled before (if that version exists), canary = ``version``."""
  stable = None
  path = os.path.join(config_dir, model_config.MODELS_CONFIG)
  if os.path.isfile(path):
    try:
      for entry in model_config.read_model_config(path):
        if entry.name == model_name:
          stable = entry.labels.get("stable")
    except ValueError:
      stable = None
  existing = set(model_config.list_versions(base_dir))
  if stable is None or stable not in existing or stable == version:
    older = sorted(v for v in existing if v < version)
    stable = older[-1] if older else version
  return {"stable": stable, "canary": version}


def write_configs(base_dir: str, model_name: str, labels: Dict[str, int],
                  batching: model_config.BatchingParameters = DEFAULT_BATCHING,
                  monitoring: model_config.MonitoringConfig = model_config.MonitoringConfig()
                  ) -> Dict[str, str]:
  """Writes models.config / batching_parameters.txt / monitoring.config next to
  ``base_dir`` (in its parent); returns their paths by file name."""
  base_dir = os.path.abspath(base_dir)
  entry = model_config.ModelEntry(
      name=model_name, base_path=base_dir,
      version_policy=model_config.VersionPolicy("specific",
                                                versions=tuple(sorted(set(labels.values())))),
      version_labels=tuple(labels.items()))
  return model_config.write_server_configs(os.path.dirname(base_dir), [entry], batching,
                                           monitoring)


def export_serving_model(model,
                         tft_output_dir: str,
                         catalog_path_or_df: Union[str, pd.DataFrame],
                         base_dir: str,
                         version: Optional[int] = None,
                         intent: Optional[tf.Module] = None,
                         warmup_examples: Union[None, str, Sequence[bytes]] = "auto",
                         model_name: Optional[str] = None,
                         n_max: int = request_schema.DEFAULT_N_MAX,
                         fusion_config=None,
                         mixing_config=None,
                         num_warmup_records: int = warmup_lib.DEFAULT_RECORDS,
                         batching: model_config.BatchingParameters = DEFAULT_BATCHING,
                         policy=None) -> str:
  """Exports a numbered version under ``base_dir`` and the server configs beside it.

  Args:
    model: a built ``ranking.model.RankingModel``.
    tft_output_dir: the TFT output (``transform_fn/``, ``transformed_metadata/``).
    catalog_path_or_df: ``tracks.parquet`` or its frame (row order = catalogue rows).
    base_dir: the model's base path (versions go in ``base_dir/<version>``).
    version: version number; None takes the next free integer.
    intent: optional intent module (``candidates(texts, k)``), see
      ``serving.signatures``.
    warmup_examples: raw examples for the warmup file: a glob, serialized records,
      ``"auto"`` (the ``examples/`` next to a ``tracks.parquet`` path, none for a
      frame) or None (no warmup file).
    model_name: served model name; default ``basename(base_dir)``.
    n_max: most candidates per listener.
    fusion_config: a ``FusionConfig`` (default weights when None).
    mixing_config: a ``MixingConfig`` (default rules when None).
    num_warmup_records: warmup requests (at least one per signature, <= 1000).
    batching: the batching parameters file's content (its ``max_batch_size`` is one
      of the warmed-up batch sizes).
    policy: a loaded ``ranking.fusion.policy_file.PolicyFile``: its weights, epsilon
      and mixing rules replace ``fusion_config`` and ``mixing_config``, and the version
      carries it as an asset and a ``policy`` signature.

  Returns:
    The version directory.

  Raises:
    ValueError: the version exists already, or a bad argument (a policy together with
      a fusion or mixing config).
  """
  from ranking.fusion.spec import FusionConfig  # pylint: disable=g-import-not-at-top
  from ranking.layers import mixing as mixing_lib  # pylint: disable=g-import-not-at-top
  if policy is not None and (fusion_config is not None or mixing_config is not None):
    raise ValueError("give a policy or a fusion/mixing config, not both")
  base_dir = os.path.abspath(base_dir)
  model_name = model_name or os.path.basename(base_dir) or DEFAULT_MODEL_NAME
  os.makedirs(base_dir, exist_ok=True)
  version = next_version(base_dir) if version is None else int(version)
  if version < 1:
    raise ValueError(f"version must be >= 1, got {version}")
  final = os.path.join(base_dir, str(version))
  if os.path.exists(final):
    raise ValueError(f"version {version} exists already at {final}")
  if isinstance(warmup_examples, str) and warmup_examples == "auto":
    warmup_examples = (default_example_pattern(catalog_path_or_df)
                       if isinstance(catalog_path_or_df, str) else None)
  module = signatures_lib.RankerServingModule(
      model, tft_output_dir, catalog_path_or_df,
      fusion_config or FusionConfig(), mixing_config or mixing_lib.MixingConfig(),
      n_max=n_max, intent=intent, policy=policy)
  tmp = os.path.join(base_dir, f".tmp-{version}-{os.getpid()}")
  shutil.rmtree(tmp, ignore_errors=True)
  try:
    save_module(module, tmp, warmup_examples, num_warmup_records, model_name,
                batching.max_batch_size)
    os.rename(tmp, final)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
  labels = _labels(os.path.dirname(base_dir), model_name, base_dir, version)
  write_configs(base_dir, model_name, labels, batching)
  _log(f"exported {model_name} version {version} to {final} (labels {labels}"
       + (f", policy {policy.version})" if policy is not None else ")"))
  return final


def export_from_training(model, tft_output_dir: str, catalog_path: str,
                         serving_model_dir: str, intent: Optional[tf.Module] = None,
                         policy=None) -> str:
  """The Trainer's export: the serving SavedModel directly in ``serving_model_dir``.

  Call it at the end of ``run_fn`` instead of the raw-example-only export:
  ``export_from_training(model, fn_args.transform_output, DATA/tracks.parquet,
  fn_args.serving_model_dir)``. Signatures: ``serving_default`` (= ``rank``),
  ``rank``, ``recommend``, ``transform_features`` and ``score_examples`` (the raw
  ``tf.Example`` signature TFMA and the InfraValidator should name). Warmup records come
  from the ``examples/`` next to ``catalog_path`` when there are any. No version
  directory and no config files: TFX's Pusher versions the pushed copy. ``intent``
  (e.g. the IntentTrainer's reloaded SavedModel) adds ``intent_candidates`` and text
  requests in ``recommend``. ``policy`` (a loaded ``policy.json``) sets the fusion and
  mixing tables and adds the policy asset and signature.

  Returns:
    ``serving_model_dir``.
  """
  module = signatures_lib.RankerServingModule(model, tft_output_dir, catalog_path,
                                              intent=intent, policy=policy)
  if tf.io.gfile.exists(os.path.join(serving_model_dir, "saved_model.pb")):
    raise ValueError(f"{serving_model_dir} holds a SavedModel already")
  save_module(module, serving_model_dir, default_example_pattern(catalog_path))
  _log(f"saved the serving model to {serving_model_dir}")
  return serving_model_dir


def restore_trained_model(train_out: str, config_name: str = "mmoe"):
  """A ``RankingModel`` with the latest checkpoint of a ``melody train`` output dir.

  Args:
    train_out: ``melody train --out`` (holds ``run/checkpoints``).
    config_name: the ``--config`` it was trained with.

  Raises:
    ValueError: no checkpoint found.
  """
  from ranking import config as config_lib  # pylint: disable=g-import-not-at-top
  from ranking import model as model_lib  # pylint: disable=g-import-not-at-top
  ckpt = tf.train.latest_checkpoint(os.path.join(train_out, "run", "checkpoints"))
  if ckpt is None:
    raise ValueError(f"no checkpoint under {train_out}/run/checkpoints")
  model = model_lib.RankingModel(config_lib.model_config_from_name(config_name))
  model.build_variables()
  tf.train.Checkpoint(model=model).restore(ckpt).expect_partial()
  return model
