"""``melody serve``: runs the TF Serving-compatible gRPC model server.

Only argument parsing lives here; the handler imports ``serving.server`` (and with it
TensorFlow) only when the command runs. Flag names follow ``tensorflow_model_server`` so
the same command line mostly carries over to the stock server.
"""

import argparse


def _serve(args):
  from serving import server  # pylint: disable=import-outside-toplevel
  return server.main(args)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the ``melody serve`` flags to ``parser``."""
  parser.add_argument("--model_config_file", default=None,
                      help="models.config (ModelServerConfig text); or use --model_name "
                           "with --model_base_path")
  parser.add_argument("--model_name", default=None, help="name of the single served model")
  parser.add_argument("--model_base_path", default=None,
                      help="directory of numbered SavedModel versions of that model")
  parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
  parser.add_argument("--port", type=int, default=8500, help="gRPC port (0: pick a free one)")
  parser.add_argument("--metrics_port", type=int, default=8501,
                      help="Prometheus HTTP port (0: pick a free one, -1: no metrics)")
  parser.add_argument("--monitoring_config_file", default=None,
                      help="monitoring.config (prometheus_config enable/path)")
  parser.add_argument("--enable_batching", action="store_true",
                      help="merge concurrent Predict calls per model signature")
  parser.add_argument("--batching_parameters_file", default=None,
                      help="batching_parameters.txt (implies --enable_batching)")
  parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                      help="how often base paths are polled for new versions (0: never)")
  parser.add_argument("--grace_seconds", type=float, default=10.0,
                      help="on SIGTERM/SIGINT, how long in-flight requests may finish")
  parser.add_argument("--input_validator", action="append", default=[],
                      metavar="MODEL:SIGNATURE=module:function",
                      help="per-request input check raising ValueError (repeatable)")


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "serve", help="serve SavedModels over the TF Serving gRPC API",
      description="Serve directories of numbered SavedModel versions over the TF Serving "
                  "gRPC API (PredictionService, ModelService, health), with hot swap of "
                  "new versions, optional batching and Prometheus metrics.")
  add_serve_arguments(parser)
  parser.set_defaults(handler=_serve)
