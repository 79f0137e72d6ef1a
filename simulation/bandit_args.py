"""The ``melody simulate --bandit`` flags and their handler.

This module owns the command-line surface of the bandit study
(``simulation.bandit_study``): which bandits and contexts to roll out, the round size,
and the translation of the parsed flags (shared with ``melody simulate``: ``--users``,
``--days``, ``--seed``, ``--world-seed``, ``--tracks``, ``--grid-step``, ``--scorer``,
``--model``, ``--serving-dir``, ``--model-users``, ``--out``) into a study run. Heavy
modules are imported only when the study runs.
"""

import sys

BANDIT_CHOICES = ("linucb", "thompson", "all")
CONTEXT_CHOICES = ("state", "segment", "both")


def add_arguments(parser) -> None:
  """Adds the bandit-study flags to ``melody simulate``."""
  parser.add_argument("--bandit", choices=BANDIT_CHOICES, default=None,
                      help="run the bandit study instead of the report: this bandit (or "
                           "all) against the best fixed grid point per segment, plus random "
                           "arms; writes bandits.json, bandits.md and bandit_regret.png")
  parser.add_argument("--bandit-context", choices=CONTEXT_CHOICES, default="both",
                      help="what the bandit sees: the listener's state from its logged plays "
                           "with the segment and activity one-hots, the one-hots only, or "
                           "both side by side")
  parser.add_argument("--bandit-chunk", type=int, default=200,
                      help="listeners per bandit round (the bandits update after each)")


def run(args) -> int:
  """Runs the study the flags describe; 2 on a bad argument or a missing model."""
  from simulation import bandit_study  # pylint: disable=import-outside-toplevel
  try:
    config = bandit_study.StudyConfig(
        users=args.users, days=args.days, seed=args.seed, world_seed=args.world_seed,
        n_tracks=args.tracks, grid_step=args.grid_step, chunk_users=args.bandit_chunk,
        bandits=bandit_study.BANDITS if args.bandit == "all" else (args.bandit,),
        contexts=(("state", "segment") if args.bandit_context == "both"
                  else (args.bandit_context,)))
    result = bandit_study.run(args.out, config, scorer=args.scorer, model_dir=args.model,
                              serving_dir=args.serving_dir, model_users=args.model_users)
  except ValueError as e:
    print(f"melody simulate: error: {e}", file=sys.stderr)
    return 2
  best = min(result["bandits"].items(), key=lambda kv: kv[1]["cumulative_regret"][-1])
  print(f"[simulate] wrote {', '.join(bandit_study.FILES)} to {args.out} (scorer "
        f"{result['scorer']['name']}; lowest regret: {best[0]}, "
        f"{best[1]['cumulative_regret'][-1]:.0f}; {result['wall_s']:.0f} s)")
  return 0
