"""``melody data import`` (a real dataset to the common event schema) and ``melody data
examples`` (event logs to training example spans).

Only argument parsing lives here; the handlers import ``features.datasets.importer`` and
``features.own_logs``, which do the work, when the command runs.
"""

# The default of --max-bad-fraction (``registry.DEFAULT_MAX_BAD_FRACTION``), spelled out
# here so that building the parser does not import pandas.
DEFAULT_MAX_BAD_FRACTION = 0.01


def _import(args):
  # pylint: disable=import-outside-toplevel
  from features.datasets import importer, registry
  return importer.run_import(args.source, args.data_dir or registry.default_data_dir(),
                             args.out, max_bad_fraction=args.max_bad_fraction)


def _examples(args):
  # pylint: disable=import-outside-toplevel
  from features import own_logs
  manifest = own_logs.build_examples(
      args.events, args.tracks, args.out, span_by=args.span_by, shards=args.shards,
      runner=args.runner, beam_args=args.beam_arg or (), eval_percent=args.eval_percent,
      max_bad_fraction=args.max_bad_fraction)
  print(f"wrote {args.out}: {len(manifest['spans']) or 'no'} spans, "
        f"{manifest['counts']['events']:,} events")
  return 0


def register_data(subparsers) -> None:
  """Adds ``import`` and ``examples`` to the sub-commands of ``melody data``."""
  p = subparsers.add_parser("import", help="convert a real dataset to the common event schema")
  p.add_argument("--source", required=True, choices=["kkbox", "30music", "hetrec", "jamendo"])
  p.add_argument("--out", required=True,
                 help="output directory (events/tracks parquet, quarantine, report)")
  p.add_argument("--data-dir", default=None, help="default: $MELODY_DATA_DIR or ../shared/data")
  p.add_argument("--max-bad-fraction", type=float, default=DEFAULT_MAX_BAD_FRACTION,
                 help="fail when a source file has more malformed lines than this fraction "
                      "of its lines (duplicates do not count); default %(default)s")
  p.set_defaults(handler=_import)

  p = subparsers.add_parser("examples", help="event logs (common schema) -> training example "
                                             "spans, with the Beam job of the simulator path")
  p.add_argument("--events", required=True,
                 help="directory (searched recursively) or glob of parquet/CSV event files")
  p.add_argument("--tracks", required=True, help="the catalogue (parquet or CSV)")
  p.add_argument("--out", required=True,
                 help="dataset directory: examples/span-YYYYMMDD/, events/, tracks.parquet, "
                      "manifest.json")
  p.add_argument("--span-by", choices=["day", "none"], default="day",
                 help="one span folder per UTC day (default), or flat train/eval files")
  p.add_argument("--runner", default="DirectRunner",
                 help="Beam runner: DirectRunner, DaskRunner (a local 2-worker cluster "
                      "unless --beam-arg=--dask_client_address=HOST:PORT), DataflowRunner, "
                      "FlinkRunner")
  p.add_argument("--beam-arg", action="append", metavar="--FLAG=VALUE",
                 help="extra Beam flag (repeatable), e.g. --beam-arg=--project=P")
  p.add_argument("--shards", type=int, default=2, help="files per split and span")
  p.add_argument("--eval-percent", type=int, default=10,
                 help="share of listeners (by id hash) in the eval split")
  p.add_argument("--max-bad-fraction", type=float, default=DEFAULT_MAX_BAD_FRACTION,
                 help="fail when more than this fraction of event rows is invalid")
  p.set_defaults(handler=_examples)
