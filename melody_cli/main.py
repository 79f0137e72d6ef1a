"""Entry point of the ``melody`` console script.

Holds no logic: each package exposes a ``cli`` module with ``register(subparsers)``,
which adds its sub-commands and binds each to a handler; heavy imports happen inside
the handlers so that ``melody --help`` stays fast.
"""

import argparse
import importlib
import sys
from typing import Optional, Sequence

# Packages whose `cli` module adds sub-commands, in the order `--help` lists them.
_COMMAND_MODULES = (
    "features.cli",
    "pipeline.cli",
    "serving.export_cli",
    "serving.cli",
    "simulation.cli",
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="melody",
      description="Melody: multi-task Transformer ranking engine for music streaming.")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  for name in _COMMAND_MODULES:
    importlib.import_module(name).register(subparsers)
  return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  if not getattr(args, "handler", None):
    parser.print_help()
    return 0 if args.command is None else 2
  return int(args.handler(args) or 0)


if __name__ == "__main__":
  sys.exit(main())
