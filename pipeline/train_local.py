"""``melody train``: transform generated raw examples with TFT, then train like the TFX
Trainer does (the same :func:`pipeline.trainer.run_fn`), on this machine.

Layout under ``--out``: ``transform/`` (the TFT output and transformed TFRecords),
``run/`` (checkpoints and TensorBoard logs), ``serving_model/`` (the SavedModel with
``serving_default`` and ``transform_features``) and ``metrics.json``.
"""

import json
import os
import sys

from features import feature_spec as fs  # noqa: F401  (Keras 2 guard via the package)


def _raw_patterns(data_dir: str):
  ex = os.path.join(data_dir, "examples")
  train = os.path.join(ex, "train-*.tfrecord.gz")
  evals = os.path.join(ex, "eval-*.tfrecord.gz")
  import glob  # pylint: disable=g-import-not-at-top
  if not glob.glob(train):
    # The span layout of `melody data generate --spans`.
    train = os.path.join(ex, "span-*", "train-*.tfrecord.gz")
    evals = os.path.join(ex, "span-*", "eval-*.tfrecord.gz")
  if not glob.glob(train):
    raise ValueError(f"no raw training examples under {ex} (run `melody data generate`)")
  return train, (evals if glob.glob(evals) else None)


def main(args) -> int:
  """Runs ``melody train``.

  Args:
    args: namespace with ``data``, ``out``, ``steps``, ``batch_size``, ``config``,
      ``seed`` (see ``pipeline/cli.py``).

  Returns:
    Process exit code.
  """
  from features import preprocessing  # pylint: disable=g-import-not-at-top
  from pipeline import trainer  # pylint: disable=g-import-not-at-top

  if args.steps <= 0:
    raise ValueError(f"--steps must be positive, got {args.steps}")
  if args.batch_size <= 0:
    raise ValueError(f"--batch-size must be positive, got {args.batch_size}")
  out = os.path.abspath(args.out)
  train_pattern, eval_pattern = _raw_patterns(os.path.abspath(args.data))
  print(f"[train] transforming {train_pattern}", file=sys.stderr, flush=True)
  xf = preprocessing.transform_dataset(train_pattern, os.path.join(out, "transform"),
                                       eval_file_pattern=eval_pattern)
  fn_args = trainer.TrainerArgs(
      train_files=[xf["train"]],
      eval_files=[xf["eval"]] if xf.get("eval") else [],
      transform_output=xf["transform_output"],
      serving_model_dir=os.path.join(out, "serving_model"),
      model_run_dir=os.path.join(out, "run"),
      train_steps=args.steps,
      eval_steps=max(1, min(50, args.steps // 10)),
      custom_config={"model_config": args.config, "batch_size": args.batch_size,
                     "seed": args.seed})
  metrics = trainer.run_fn(fn_args)
  with open(os.path.join(out, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, sort_keys=True)
  print(f"[train] wrote {out}/serving_model and {out}/metrics.json", file=sys.stderr)
  return 0
