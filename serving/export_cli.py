"""``melody export``: a ``melody train`` output directory -> a served model base path.

Only argument parsing lives here; the handler imports ``serving.export`` (and with it
TensorFlow) only when the command runs. It restores the latest checkpoint under
``TRAIN_OUT/run/checkpoints``, exports a new numbered version of the serving SavedModel
under ``--base-dir`` with warmup records from the data's examples, and writes
``models.config``, ``batching_parameters.txt`` and ``monitoring.config`` beside it (see
``serving.export.export_serving_model``). ``melody train`` already writes such a
version; this verb re-exports, e.g. into a server's model directory or with another
``--n-max``, or with a ``--policy`` file (``policy.json`` from ``melody simulate``)
baked into its fusion and mixing tables; a policy that fails validation stops the
export before anything is written.
"""

import os
import sys


def _export(args) -> int:
  from serving import export  # pylint: disable=import-outside-toplevel
  from ranking.fusion import policy_file  # pylint: disable=import-outside-toplevel
  options = {"n_max": args.n_max} if args.n_max is not None else {}
  try:
    if args.policy:
      options["policy"] = policy_file.load(args.policy)
    model = export.restore_trained_model(args.train_out, args.config)
    path = export.export_serving_model(
        model, os.path.join(args.train_out, "transform"),
        os.path.join(args.data, "tracks.parquet"), args.base_dir, version=args.version,
        model_name=args.model_name, **options)
  except ValueError as e:
    print(f"melody export: error: {e}", file=sys.stderr)
    return 2
  print(path)
  return 0


def register(subparsers) -> None:
  """Adds ``melody export`` to the ``melody`` sub-commands."""
  parser = subparsers.add_parser(
      "export", help="export a trained ranker as a served model version",
      description="Export the latest checkpoint of a `melody train` output directory as a "
                  "new numbered SavedModel version (rank, recommend, score_examples, "
                  "transform_features, warmup records) under a model base path, with "
                  "models.config, batching_parameters.txt and monitoring.config beside it.")
  parser.add_argument("--train-out", required=True,
                      help="`melody train --out` directory (transform/, run/checkpoints)")
  parser.add_argument("--data", required=True,
                      help="`melody data generate` directory (tracks.parquet, examples/)")
  parser.add_argument("--base-dir", required=True,
                      help="the model's base path, e.g. models/melody (versions go inside, "
                           "the server configs in its parent)")
  parser.add_argument("--config", default="mmoe",
                      help="model config it was trained with: mmoe | ple | shared_bottom | "
                           "single:<task>")
  parser.add_argument("--version", type=int, default=None,
                      help="version number (default: the next free one)")
  parser.add_argument("--model-name", default=None,
                      help="served model name (default: the base directory's name)")
  parser.add_argument("--n-max", type=int, default=None,
                      help="most candidates per listener in `rank` (default: the "
                           "export's, serving.signatures.DEFAULT_N_MAX)")
  parser.add_argument("--policy", default=None, metavar="POLICY_JSON",
                      help="policy.json (from `melody simulate`) to bake into the fusion and "
                           "mixing tables; the version then carries it as an asset and a "
                           "`policy` signature")
  parser.set_defaults(handler=_export)
