"""``melody fusion``: the arguments and handler of the learned-fusion comparison.

This module owns the command line of ``simulation.fusion_compare``: its flags and the
handler that runs it and prints where the files went. ``simulation.cli`` registers it;
the handler imports the comparison (TensorFlow, matplotlib) only when the command runs.
"""

import sys


def add_arguments(parser) -> None:
  """The flags of ``melody fusion``."""
  parser.add_argument("--model", required=True, metavar="SAVED_MODEL_DIR",
                      help="exported SavedModel version whose rank signature is rolled out")
  parser.add_argument("--out", default="fusion_report", help="output directory")
  parser.add_argument("--users", type=int, default=400, help="listeners per rollout")
  parser.add_argument("--days", type=int, default=3, help="simulated days per rollout")
  parser.add_argument("--train-seed", type=int, default=1, help="seed of the logged sessions")
  parser.add_argument("--eval-seed", type=int, default=0, help="seed of the compared rollouts")
  parser.add_argument("--world-seed", type=int, default=7, help="world (catalog) seed")
  parser.add_argument("--tracks", type=int, default=5000, help="catalog size")
  parser.add_argument("--grid-step", type=float, default=0.25,
                      help="hand-set alpha/beta/gamma simplex grid step")
  parser.add_argument("--floor", type=float, default=0.545, help="completion-rate floor")
  parser.add_argument("--exposure-targets", type=float, nargs="+",
                      default=[0.0, 1.0, 1.5, 2.0, 2.5],
                      help="one learned variant per target (x the logged exposure per play)")
  parser.add_argument("--steps", type=int, default=300, help="training steps per variant")
  parser.add_argument("--served-learned", default=None, metavar="SAVED_MODEL_DIR",
                      help="a model exported with the written policy.json (melody export "
                           "--policy): rolled out with fusion=learned through its signature")
  parser.set_defaults(handler=_run)


def _run(args) -> int:
  # pylint: disable=import-outside-toplevel
  import dataclasses
  from simulation import fusion_compare
  from simulation import fusion_training
  # pylint: enable=import-outside-toplevel
  config = fusion_compare.CompareConfig(
      users=args.users, days=args.days, train_seed=args.train_seed, eval_seed=args.eval_seed,
      world_seed=args.world_seed, n_tracks=args.tracks, grid_step=args.grid_step,
      floor=args.floor, exposure_targets=tuple(args.exposure_targets),
      train=dataclasses.replace(fusion_training.TrainConfig(), steps=args.steps))
  log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
  try:
    result = fusion_compare.run(args.out, args.model, config,
                                served_learned=args.served_learned, log=log)
  except ValueError as e:
    print(f"melody fusion: error: {e}", file=sys.stderr)
    return 2
  lift = result["at_floor"]["lift"]["expected_reward_per_session"]
  print(f"[fusion] wrote {args.out}/fusion.json, fusion_frontier.png and policy.json "
        f"(policy {result['policy_version']}); objective lift of learned fusion at the "
        f"floor {args.floor:g}: " + ("n/a" if lift is None else f"{100 * lift:+.1f}%"))
  return 0
