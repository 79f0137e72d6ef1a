"""Entry point of the ``melody`` console script.

Holds no logic, only two tables: the verb groups it creates (``melody data …``) and the
package modules that add sub-commands, each with the group it adds them to. A package's
register function gets the sub-parsers of its group (or of ``melody`` itself) and binds
every command to a handler; heavy imports happen inside the handlers so that
``melody --help`` stays fast.
"""

import argparse
import importlib
import sys
from typing import Optional, Sequence

# Verb groups that several packages add sub-commands to: name -> help.
_GROUPS = {
    "data": "import, generate and calibrate data",
}

# (group or None for a top-level verb, module, register function), in the order
# `--help` lists them; a group is listed where its first row is.
_REGISTRARS = (
    ("data", "features.cli", "register_data"),
    ("data", "simulation.cli", "register_data"),
    (None, "pipeline.cli", "register"),
    (None, "serving.export_cli", "register"),
    (None, "serving.cli", "register"),
    (None, "online.cli", "register"),
    (None, "simulation.cli", "register"),
)


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="melody",
      description="Melody: multi-task Transformer ranking engine for music streaming.")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
  groups = {}
  for group, module, function in _REGISTRARS:
    target = subparsers
    if group is not None:
      if group not in groups:
        groups[group] = subparsers.add_parser(group, help=_GROUPS[group]).add_subparsers(
            dest=f"{group}_command", metavar=f"{group.upper()}_COMMAND")
      target = groups[group]
    getattr(importlib.import_module(module), function)(target)
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
