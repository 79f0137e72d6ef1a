"""``melody data import``: convert a real dataset to the common event schema.

Only argument parsing lives here; the handler imports ``features.datasets.registry``,
which does the work, when the command runs.
"""


def _import(args):
  from features.datasets import registry  # pylint: disable=import-outside-toplevel
  return registry.run_import(args.source, args.data_dir or registry.default_data_dir(),
                             args.out, max_bad_fraction=args.max_bad_fraction)


def register_data(subparsers) -> None:
  """Adds ``import`` to the sub-commands of ``melody data``."""
  p = subparsers.add_parser("import", help="convert a real dataset to the common event schema")
  p.add_argument("--source", required=True, choices=["kkbox", "30music", "hetrec", "jamendo"])
  p.add_argument("--out", required=True, help="output directory (events/tracks parquet)")
  p.add_argument("--data-dir", default=None, help="default: $MELODY_DATA_DIR or ../shared/data")
  p.add_argument("--max-bad-fraction", type=float, default=0.05,
                 help="fail when more than this fraction of rows is malformed")
  p.set_defaults(handler=_import)
