"""``melody train`` and ``melody pipeline …`` sub-commands (argument parsing only)."""


def _train(args):
  from pipeline import train_local
  return train_local.main(args)


def register(subparsers) -> None:
  p = subparsers.add_parser("train", help="train the ranking model on generated examples")
  p.add_argument("--data", required=True,
                 help="directory written by `melody data generate` (raw TFRecord examples)")
  p.add_argument("--out", default="runs/train", help="checkpoints, TensorBoard logs, SavedModel")
  p.add_argument("--steps", type=int, default=2000)
  p.add_argument("--batch-size", type=int, default=512)
  p.add_argument("--config", default="mmoe", help="mmoe | ple | shared_bottom | single:<task>")
  p.add_argument("--seed", type=int, default=7)
  p.set_defaults(handler=_train)
