"""The flags of ``melody live`` (argument parsing only: no heavy imports, so that
``melody --help`` stays fast; ``simulation.live_loop.config_from_args`` reads them)."""


def add_arguments(parser) -> None:
  """The flags of ``melody live``."""
  parser.add_argument("--users", type=int, default=1000, help="listeners of the twin")
  parser.add_argument("--days", type=int, default=5, help="live days after the bootstrap")
  parser.add_argument("--workdir", default="runs/live", help="output directory")
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--tracks", type=int, default=1500, help="catalogue size")
  parser.add_argument("--history-days", type=int, default=1,
                      help="simulated days the first model trains on")
  parser.add_argument("--canary-share", type=float, default=0.1,
                      help="share of listeners on the canary arm")
  parser.add_argument("--steps", type=int, default=60,
                      help="Trainer steps of a cold start (the bootstrap, the drill)")
  parser.add_argument("--warm-steps", type=int, default=30,
                      help="Trainer steps of a daily run (warm-started)")
  parser.add_argument("--window-days", type=int, default=2,
                      help="days of spans each daily run trains on")
  parser.add_argument("--bad-fraction", type=float, default=0.01,
                      help="share of event lines followed by a bad line (malformed, "
                           "duplicated or late)")
  parser.add_argument("--min-samples", type=int, default=100,
                      help="sessions per arm before the canary test judges a metric")
  parser.add_argument("--outage-day", type=int, default=0,
                      help="drill: kill the model server halfway through this day's "
                           "traffic and restart it (the gateway falls back meanwhile)")
  parser.add_argument("--sessions-per-day", type=int, default=3,
                      help="sessions each returning listener opens a day")
  parser.add_argument("--bad-candidate-day", type=int, default=0,
                      help="drill: at the end of this day, train a model on the day's "
                           "plays with corrupted labels and force it to canary")
  parser.add_argument("--bad-candidate-kind", default="inverted",
                      choices=("inverted", "shuffled"),
                      help="the drill's label fault: interest labels mirrored (completion "
                           "1-c, skip and like flipped) or outcomes permuted across plays")
  parser.add_argument("--promo-dislike-day", type=int, default=0,
                      help="from this day on, listeners of --promo-dislike-segment dislike "
                           "promotions (an injected change of taste for the controller)")
  parser.add_argument("--promo-dislike-segment", default="free",
                      help="the segment whose listeners start disliking promotions")
  parser.add_argument("--promo-dislike-cost", type=float, default=1.0,
                      help="utility a promo track loses for them (the world's base promo "
                           "penalty is 0.3)")
  parser.add_argument("--completion-floor", type=float, default=0.45,
                      help="the promo controller's floor of completion per session: a "
                           "segment below it gets less promotion")
  parser.add_argument("--policy", default="", metavar="POLICY_JSON",
                      help="a policy.json (the format `melody simulate` writes) the gateway "
                           "serves: its weights per segment and context go with every "
                           "request, and its segment rows are the promo controller's base")
  parser.add_argument("--restart-day", type=int, default=0,
                      help="drill: stop the model server, then the gateway, halfway "
                           "through this day's traffic and start them again (the day's "
                           "row accounts for every event)")
  parser.add_argument("--nearline-crash-day", type=int, default=0,
                      help="drill: kill the nearline updater while it applies this day's "
                           "log and restart it")
  parser.add_argument("--stable-model", default="",
                      help="serve the newest version another run pushed under this "
                           "serving directory as the first stable instead of training "
                           "one (its data's --tracks and --seed must be this run's)")
  parser.add_argument("--no-last-day-run", action="store_true",
                      help="skip the last day's pipeline run (its candidate would serve "
                           "no one in this run)")
