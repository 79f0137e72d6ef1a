"""``melody simulate``: the offline policy report (frontier, weights, bandits, OPE).

Only argument parsing lives here; the handler imports ``simulation.report`` (and with
it numpy, TensorFlow for the config classes and matplotlib) only when the command runs.
"""


def _simulate(args) -> int:
  from simulation import report  # pylint: disable=import-outside-toplevel
  config = report.ReportConfig(users=args.users, days=args.days, seed=args.seed,
                               world_seed=args.world_seed, n_tracks=args.tracks,
                               grid_step=args.grid_step, floor=args.floor,
                               ope_logs=args.ope_logs, ope_truth=args.ope_truth)
  result = report.run(args.out, config, model_dir=args.model, runner=args.runner)
  best = result["bandits"]["best_grid_point"]
  print(f"[simulate] wrote {args.out}/report.md (best fixed grid point "
        f"{'/'.join(f'{w:g}' for w in best)}; figures: {', '.join(report.FIGURES)})")
  return 0


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "simulate", help="offline policy simulation report (weights, bandits, OPE)",
      description="Roll out fusion weights, bandits and the promo-share controller "
                  "against the seeded world simulator, validate off-policy estimators, "
                  "and write report.md, report.json and PNG figures.")
  parser.add_argument("--users", type=int, default=5000, help="listeners per rollout")
  parser.add_argument("--days", type=int, default=7, help="simulated days")
  parser.add_argument("--seed", type=int, default=0, help="rollout seed")
  parser.add_argument("--world_seed", type=int, default=7, help="world (catalog) seed")
  parser.add_argument("--tracks", type=int, default=5000, help="catalog size")
  parser.add_argument("--grid_step", type=float, default=0.25,
                      help="alpha/beta/gamma simplex grid step")
  parser.add_argument("--floor", type=float, default=0.75, help="completion-rate floor")
  parser.add_argument("--ope_logs", type=int, default=20_000, help="logged OPE slates")
  parser.add_argument("--ope_truth", type=int, default=100_000,
                      help="fresh slates per target policy for the OPE ground truth")
  parser.add_argument("--out", default="simulation_report", help="output directory")
  parser.add_argument("--model", default=None, metavar="SAVED_MODEL_DIR",
                      help="also roll out this exported SavedModel's rank signature")
  parser.add_argument("--runner", choices=("direct", "beam"), default="direct",
                      help="in-process rollouts, or Beam (DirectRunner) per listener chunk")
  parser.set_defaults(handler=_simulate)
