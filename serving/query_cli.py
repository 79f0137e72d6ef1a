"""``melody query``: argument parsing only; ``serving.query`` does the work.

Register it in ``melody_cli.main`` as ``"serving.query_cli"``. TensorFlow is imported
only when the command runs, so ``melody --help`` stays fast.
"""

import argparse


def _query(args):
  from serving import query  # pylint: disable=import-outside-toplevel
  return query.main(args)


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the ``melody query`` flags to ``parser``."""
  parser.add_argument("--user", required=True, help="user id in the data directory")
  parser.add_argument("--context", required=True,
                      help="listening activity: unknown, commute, workout, focus, explore")
  parser.add_argument("--data", required=True,
                      help="melody data generate/import directory (events/, tracks.parquet)")
  parser.add_argument("--server", default="127.0.0.1:8500", help="model server HOST:PORT")
  parser.add_argument("--model", default="melody", help="served model name")
  parser.add_argument("--version-label", default=None, help="e.g. stable or canary")
  parser.add_argument("--signature", default="rank", choices=["rank", "recommend"])
  parser.add_argument("--text", default=None,
                      help="free-text request for recommend (needs an intent module)")
  parser.add_argument("--k", type=int, default=20, help="positions to show (recommend: k)")
  parser.add_argument("--candidates", type=int, default=100,
                      help="rank: how many popular catalogue tracks to rank")
  parser.add_argument("--surface", default="home", help="context surface (home, radio, ...)")
  parser.add_argument("--saved-model", default=None,
                      help="call this SavedModel version directory in process instead of "
                           "a server")


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "query", help="rank or recommend tracks for one listener and print the list",
      description="Build a rank/recommend request from a listener's recent plays in a data "
                  "directory, send it to the model server (or a SavedModel) and print the "
                  "tracks with per-head scores, fused score and reasons.")
  add_query_arguments(parser)
  parser.set_defaults(handler=_query)
