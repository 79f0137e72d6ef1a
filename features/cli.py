"""``melody data …`` sub-commands: import real data, generate simulated data, calibrate.

Only argument parsing lives here; each handler imports the module that does the work.
"""

import argparse
import os

DEFAULT_DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "..", "shared", "data")


def data_dir() -> str:
  """Where the shared real datasets live: $MELODY_DATA_DIR or ../shared/data."""
  return os.path.abspath(os.environ.get("MELODY_DATA_DIR", DEFAULT_DATA_DIR))


def _import(args):
  from features.datasets import registry
  return registry.run_import(args.source, args.data_dir or data_dir(), args.out,
                             max_bad_fraction=args.max_bad_fraction)


def _generate(args):
  from features import generate
  return generate.run(users=args.users, days=args.days, out=args.out, seed=args.seed,
                      shards=args.shards, tracks=args.tracks, runner=args.runner,
                      beam_args=args.beam_args, span_layout=args.span_layout)


def _calibrate(args):
  from simulation import calibration
  return calibration.run(args.data_dir or data_dir(), args.out, seed=args.seed)


def register(subparsers) -> None:
  data = subparsers.add_parser("data", help="import, generate and calibrate data")
  sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")

  p = sub.add_parser("import", help="convert a real dataset to the common event schema")
  p.add_argument("--source", required=True, choices=["kkbox", "30music", "hetrec", "jamendo"])
  p.add_argument("--out", required=True, help="output directory (events/tracks parquet)")
  p.add_argument("--data-dir", default=None, help="default: $MELODY_DATA_DIR or ../shared/data")
  p.add_argument("--max-bad-fraction", type=float, default=0.05,
                 help="fail when more than this fraction of rows is malformed")
  p.set_defaults(handler=_import)

  p = sub.add_parser("generate", help="simulate listeners and write training examples")
  p.add_argument("--users", type=int, default=2000)
  p.add_argument("--days", type=int, default=7)
  p.add_argument("--tracks", type=int, default=5000)
  p.add_argument("--seed", type=int, default=7)
  p.add_argument("--shards", type=int, default=4)
  p.add_argument("--out", required=True)
  p.add_argument("--span-layout", action="store_true",
                 help="write examples/span-YYYYMMDD/ folders (for scheduled pipeline runs)")
  p.add_argument("--runner", default="DirectRunner",
                 help="Beam runner (DirectRunner, DataflowRunner, FlinkRunner)")
  p.add_argument("--beam-args", nargs=argparse.REMAINDER, default=[],
                 help="extra Beam pipeline options, e.g. --project=... --region=...")
  p.set_defaults(handler=_generate)

  p = sub.add_parser("calibrate", help="fit the simulator to the real data; report + PNG")
  p.add_argument("--out", default="docs/calibration")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--seed", type=int, default=7)
  p.set_defaults(handler=_calibrate)
