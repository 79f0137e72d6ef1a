"""``melody data import``: convert a real dataset to the common event schema.

Only argument parsing lives here; the handler imports ``features.datasets.importer``,
which does the work, when the command runs.
"""

# The default of --max-bad-fraction (``registry.DEFAULT_MAX_BAD_FRACTION``), spelled out
# here so that building the parser does not import pandas.
DEFAULT_MAX_BAD_FRACTION = 0.01


def _import(args):
  # pylint: disable=import-outside-toplevel
  from features.datasets import importer, registry
  return importer.run_import(args.source, args.data_dir or registry.default_data_dir(),
                             args.out, max_bad_fraction=args.max_bad_fraction)


def register_data(subparsers) -> None:
  """Adds ``import`` to the sub-commands of ``melody data``."""
  p = subparsers.add_parser("import", help="convert a real dataset to the common event schema")
  p.add_argument("--source", required=True, choices=["kkbox", "30music", "hetrec", "jamendo"])
  p.add_argument("--out", required=True,
                 help="output directory (events/tracks parquet, quarantine, report)")
  p.add_argument("--data-dir", default=None, help="default: $MELODY_DATA_DIR or ../shared/data")
  p.add_argument("--max-bad-fraction", type=float, default=DEFAULT_MAX_BAD_FRACTION,
                 help="fail when a source file has more malformed lines than this fraction "
                      "of its lines (duplicates do not count); default %(default)s")
  p.set_defaults(handler=_import)
