"""``melody serve`` and ``melody query``: the serving side's sub-commands.

Only argument parsing lives here. ``serve`` takes its flags from ``serving.server_main``
(the flags the stock ``tensorflow_model_server`` also has keep its names, so the same
command line mostly carries over); ``query`` asks a running server (or a SavedModel in
process) for one listener's list, over gRPC or REST. The handlers import TensorFlow and
gRPC only when the command runs, so ``melody --help`` stays fast.
"""

import argparse
import os
import sys

from serving import server_main


def _serve(args):
  return server_main.main(args)


def _query(args):
  from serving import query  # pylint: disable=import-outside-toplevel
  code = query.main(args)
  # The answer is printed and the channel closed. Interpreter teardown with TensorFlow's
  # and gRPC's native threads alive can abort ("terminate called without an active
  # exception", exit 134) after a successful query, so the command ends the process here.
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(code)  # pylint: disable=protected-access


def add_query_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the ``melody query`` flags to ``parser``."""
  parser.add_argument("--user", required=True, help="user id in the data directory")
  parser.add_argument("--context", required=True,
                      help="listening activity: unknown, commute, workout, focus, explore")
  parser.add_argument("--data", required=True,
                      help="melody data generate/import directory (events/, tracks.parquet)")
  parser.add_argument("--server", default="127.0.0.1:8500",
                      help="model server gRPC HOST:PORT")
  parser.add_argument("--rest", nargs="?", const="127.0.0.1:8501", default=None,
                      metavar="HOST:PORT",
                      help="ask over the TF Serving REST API instead of gRPC (default "
                           "address 127.0.0.1:8501)")
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
  """Adds ``serve`` and ``query`` to the ``melody`` sub-commands."""
  serve = subparsers.add_parser(
      "serve", help="serve SavedModels over the TF Serving gRPC and REST APIs",
      description="Serve directories of numbered SavedModel versions over the TF Serving "
                  "gRPC API (PredictionService, ModelService, health) and REST API "
                  "(/v1/models/...), with hot swap of new versions, optional batching "
                  "and Prometheus metrics.")
  server_main.add_serve_arguments(serve)
  serve.set_defaults(handler=_serve)
  query = subparsers.add_parser(
      "query", help="rank or recommend tracks for one listener and print the list",
      description="Build a rank/recommend request from a listener's recent plays in a data "
                  "directory, send it to the model server (or a SavedModel) and print the "
                  "tracks with per-head scores, fused score and reasons.")
  add_query_arguments(query)
  query.set_defaults(handler=_query)
