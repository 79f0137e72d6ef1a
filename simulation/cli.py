"""``melody simulate`` and the simulator's ``melody data`` sub-commands.

``simulate`` writes the offline policy report (frontier, weights, bandits, OPE) and
the recommended ``policy.json``, rolling out the trained model by default;
``data generate`` simulates listeners and writes a dataset with training examples
(``simulation.datagen``); ``data calibrate`` fits the simulator to the real data
(``simulation.calibration``). Only argument parsing lives here; each handler imports
the module that does the work (and with it numpy, TensorFlow, Beam or matplotlib) only
when the command runs.
"""

import argparse
import os
import sys

from simulation import bandit_args
from simulation import fusion_cli
from simulation import live_args


def _simulate(args) -> int:
  if args.bandit:
    return bandit_args.run(args)
  from simulation import report  # pylint: disable=import-outside-toplevel
  config = report.ReportConfig(users=args.users, days=args.days, seed=args.seed,
                               world_seed=args.world_seed, n_tracks=args.tracks,
                               grid_step=args.grid_step, floor=args.floor,
                               ope_logs=args.ope_logs, ope_truth=args.ope_truth)
  try:
    result = report.run(args.out, config, model_dir=args.model, runner=args.runner,
                        scorer=args.scorer, serving_dir=args.serving_dir,
                        model_users=args.model_users, beam_args=_rollout_beam_args(args))
  except ValueError as e:
    print(f"melody simulate: error: {e}", file=sys.stderr)
    return 2
  best = result["bandits"]["best_grid_point"]
  print(f"[simulate] wrote {args.out}/report.md and {args.out}/policy.json (policy "
        f"{result['policy_version']}, scorer {result['scorer']['name']}; best fixed grid "
        f"point {'/'.join(f'{w:g}' for w in best)}; figures: {', '.join(report.FIGURES)})")
  return 0


def _rollout_beam_args(args) -> list:
  if args.dask_address and args.runner != "dask":
    raise ValueError("--dask-address needs --runner dask")
  return [f"--dask_client_address={args.dask_address}"] if args.dask_address else []


def _generate(args) -> int:
  from simulation import datagen  # pylint: disable=import-outside-toplevel
  return datagen.run(users=args.users, days=args.days, out=args.out, seed=args.seed,
                     shards=args.shards, tracks=args.tracks, runner=args.runner,
                     beam_args=args.beam_args, span_layout=args.span_layout)


def _calibrate(args) -> int:
  # pylint: disable=import-outside-toplevel
  from features.datasets import registry
  from simulation import calibration
  return calibration.run(args.data_dir or registry.default_data_dir(), args.out,
                         seed=args.seed)


def _live(args) -> int:
  from simulation import live_loop  # pylint: disable=import-outside-toplevel
  return live_loop.run(live_loop.config_from_args(args))


def register(subparsers) -> None:
  """Adds ``simulate`` to the top-level commands of ``melody``."""
  parser = subparsers.add_parser(
      "simulate", help="offline policy simulation report (weights, bandits, OPE)",
      description="Roll out fusion weights, bandits and the promo-share controller "
                  "against the seeded world simulator, validate off-policy estimators, "
                  "and write report.md, report.json and PNG figures.")
  parser.add_argument("--users", type=int, default=5000, help="listeners per rollout")
  parser.add_argument("--days", type=int, default=7, help="simulated days")
  parser.add_argument("--seed", type=int, default=0, help="rollout seed")
  parser.add_argument("--world-seed", type=int, default=7, help="world (catalog) seed")
  parser.add_argument("--tracks", type=int, default=5000, help="catalog size")
  parser.add_argument("--grid-step", type=float, default=0.25,
                      help="alpha/beta/gamma simplex grid step")
  parser.add_argument("--floor", type=float, default=0.545, help="completion-rate floor")
  parser.add_argument("--ope-logs", type=int, default=20_000, help="logged OPE slates")
  parser.add_argument("--ope-truth", type=int, default=100_000,
                      help="fresh slates per target policy for the OPE ground truth")
  parser.add_argument("--out", default="simulation_report", help="output directory")
  parser.add_argument("--scorer", choices=("model", "oracle", "both"), default="model",
                      help="who scores the grid rollouts: the trained model's rank signature "
                           "(default), the stand-in oracle head scorer, or both side by side")
  parser.add_argument("--model", default=None, metavar="SAVED_MODEL_DIR",
                      help="the exported SavedModel version to roll out (default: the latest "
                           "one pushed under --serving-dir)")
  parser.add_argument("--serving-dir", default=os.path.join("runs", "pipeline",
                                                            "serving_model"),
                      help="where `melody pipeline run` pushes models")
  parser.add_argument("--model-users", type=int, default=1000,
                      help="listeners per model rollout at most (the model ranks slower "
                           "than the oracle)")
  parser.add_argument("--runner", choices=("direct", "beam", "dask"), default="direct",
                      help="in-process rollouts, or the oracle grid's rollouts as Beam jobs "
                           "per listener chunk: beam (local runner) or dask (Beam's "
                           "DaskRunner; a local 2-worker cluster unless --dask-address)")
  parser.add_argument("--dask-address", default="", metavar="HOST:PORT",
                      help="with --runner dask: the scheduler of a running Dask cluster")
  bandit_args.add_arguments(parser)
  parser.set_defaults(handler=_simulate)

  live = subparsers.add_parser(
      "live", help="run the whole loop day by day against the simulated listeners",
      description="Bootstrap a model on simulated history, then each day serve the "
                  "twin's listeners through the gateway and model server, update their "
                  "state nearline, test the canary, adjust promotion, train a candidate "
                  "with the scheduled pipeline, and write the day's report.")
  live_args.add_arguments(live)
  live.set_defaults(handler=_live)

  fusion_cli.add_arguments(subparsers.add_parser(
      "fusion", help="train learned fusion on rollouts and compare it with the grid",
      description="Train the learned fusion on rollouts of an exported model, compare its "
                  "frontier with the hand-set grid's at the completion floor, and write "
                  "fusion.json, fusion_frontier.png and a learned-fusion policy.json."))


def register_data(subparsers) -> None:
  """Adds ``generate`` and ``calibrate`` to the sub-commands of ``melody data``."""
  p = subparsers.add_parser("generate", help="simulate listeners and write training examples")
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

  p = subparsers.add_parser("calibrate", help="fit the simulator to the real data; report + PNG")
  p.add_argument("--out", default="docs/calibration")
  p.add_argument("--data-dir", default=None)
  p.add_argument("--seed", type=int, default=7)
  p.set_defaults(handler=_calibrate)
