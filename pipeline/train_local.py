"""``melody train``: transform generated raw examples with TFT, train like the TFX
Trainer does (the same :func:`pipeline.trainer.fit`), and export for serving, on this
machine.

Layout under ``--out``: ``transform/`` (the TFT output and transformed TFRecords),
``run/`` (checkpoints and TensorBoard logs), ``metrics.json``, and what
``serving.export.export_serving_model`` writes: ``serving_model/<version>/`` (the
serving SavedModel with warmup records; each run adds a version) with
``models.config``, ``batching_parameters.txt`` and ``monitoring.config`` beside it, so
``melody serve --model_name melody --model_base_path OUT/serving_model`` (or
``--model_config_file OUT/models.config``) serves it as it is.
"""

import glob
import json
import os
import sys

SERVING_MODEL = "serving_model"
MODEL_NAME = "melody"


def _raw_patterns(data_dir: str):
  ex = os.path.join(data_dir, "examples")
  train = os.path.join(ex, "train-*.tfrecord.gz")
  evals = os.path.join(ex, "eval-*.tfrecord.gz")
  if not glob.glob(train):
    # The span layout of `melody data generate --spans`.
    train = os.path.join(ex, "span-*", "train-*.tfrecord.gz")
    evals = os.path.join(ex, "span-*", "eval-*.tfrecord.gz")
  if not glob.glob(train):
    raise ValueError(f"no raw training examples under {ex} (run `melody data generate`)")
  return train, (evals if glob.glob(evals) else None)


def _catalog(data_dir: str) -> str:
  path = os.path.join(data_dir, "tracks.parquet")
  if not os.path.isfile(path):
    raise ValueError(f"no catalogue at {path}: the serving model scores and retrieves "
                     "from it (`melody data generate` writes it)")
  return path


def main(args) -> int:
  """Runs ``melody train``.

  Args:
    args: namespace with ``data``, ``out``, ``steps``, ``batch_size``, ``config``,
      ``seed``, ``sequence_level`` (see ``pipeline/cli.py``).

  Returns:
    Process exit code.
  """
  if args.steps <= 0:
    raise ValueError(f"--steps must be positive, got {args.steps}")
  if args.batch_size <= 0:
    raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
  data = os.path.abspath(args.data)
  out = os.path.abspath(args.out)
  train_pattern, eval_pattern = _raw_patterns(data)
  catalog = _catalog(data)

  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from pipeline import trainer  # pylint: disable=g-import-not-at-top
  from serving import export  # pylint: disable=g-import-not-at-top

  print(f"[train] transforming {train_pattern}", file=sys.stderr, flush=True)
  xf = preprocessing.transform_dataset(train_pattern, os.path.join(out, "transform"),
                                       eval_file_pattern=eval_pattern)
  fn_args = trainer.TrainerArgs(
      train_files=[xf["train"]],
      eval_files=[xf["eval"]] if xf.get("eval") else [],
      transform_output=xf["transform_output"],
      serving_model_dir=os.path.join(out, SERVING_MODEL),
      model_run_dir=os.path.join(out, "run"),
      train_steps=args.steps,
      eval_steps=max(1, min(50, args.steps // 10)),
      custom_config={"model_config": args.config, "batch_size": args.batch_size,
                     "seed": args.seed, trainer.CATALOG_PATH: catalog,
                     "sequence_level": bool(getattr(args, "sequence_level", False))})
  trained = trainer.fit(fn_args)
  with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(trained.metrics, f, indent=2, sort_keys=True)
  version_dir = export.export_serving_model(trained.model, trained.transform_output, catalog,
                                            fn_args.serving_model_dir, model_name=MODEL_NAME)
  print(f"[train] wrote {version_dir} and {out}/metrics.json", file=sys.stderr)
  return 0
