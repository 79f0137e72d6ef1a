"""The ``melody serve`` process: its flags, the server they describe, and ``main``.

This module owns the command line of the model server and the process around a
:class:`~serving.server.ModelServer`: the flags (those the stock ``tensorflow_model_server``
also has keep its names, Melody's own are kebab-case), building the server from them,
the gRPC I/O setting of ``serving.grpc_env`` applied before anything imports ``grpc``,
and running until SIGTERM or SIGINT, then draining within the grace period. It imports
nothing heavy at import time, so ``melody --help`` stays fast; TensorFlow and gRPC load
when :func:`main` runs.
"""

import argparse
import importlib
import logging
import os
import sys
from typing import Callable, Sequence, Tuple, Union

from serving import grpc_env
from serving import stop_signals
from serving import tls


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
  parser.add_argument("--rest_api_port", type=int, default=8501,
                      help="TF Serving REST API port, also serving the metrics page "
                           "(0: no REST)")
  parser.add_argument("--rest_api_timeout_in_ms", type=int, default=30000,
                      help="deadline of each REST call (0: none)")
  parser.add_argument("--metrics-port", type=int, default=-1,
                      help="a separate port serving only the metrics page (0: pick a free "
                           "one, -1: none)")
  parser.add_argument("--monitoring_config_file", default=None,
                      help="monitoring.config (prometheus_config enable/path)")
  parser.add_argument("--enable_batching", action="store_true",
                      help="merge concurrent Predict calls per model signature")
  parser.add_argument("--batching_parameters_file", default=None,
                      help="batching_parameters.txt (implies --enable_batching)")
  parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                      help="how often base paths are polled for new versions (0: never)")
  parser.add_argument("--grace-seconds", type=float, default=10.0,
                      help="on SIGTERM/SIGINT, how long in-flight requests may finish")
  parser.add_argument("--input-validator", action="append", default=[],
                      metavar="MODEL:SIGNATURE=module:function",
                      help="per-request input check raising ValueError (repeatable)")
  parser.add_argument("--request-log", default=None, metavar="FILE",
                      help="append each answered request's inputs to FILE as JSON lines "
                           "(off by default; rotated past --request-log-max-mb)")
  parser.add_argument("--request-log-max-mb", type=float, default=64.0,
                      help="size of the request log before it is rotated (3 old files kept)")
  tls.add_tls_arguments(parser)


def load_validator(spec: str) -> Tuple[str, str, Callable]:
  """Parses ``MODEL:SIGNATURE=package.module:function`` into a validator.

  Returns:
    ``(model, signature, function)``.

  Raises:
    ValueError: ``spec`` is malformed or the function cannot be imported.
  """
  target, sep, dotted = spec.partition("=")
  model, sep2, signature = target.partition(":")
  module_name, sep3, attr = dotted.partition(":")
  if not (sep and sep2 and sep3 and model and signature and module_name and attr):
    raise ValueError(f"--input-validator {spec!r} is not MODEL:SIGNATURE=module:function")
  try:
    fn = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"--input-validator {spec!r}: cannot import {dotted}: {e}") from e
  return model, signature, fn


def server_from_args(args: argparse.Namespace):
  """Builds (without starting) the ``serving.server.ModelServer`` ``melody serve`` describes.

  Raises:
    ValueError: the flags contradict each other or a config file is invalid.
    OSError: a config file cannot be read.
  """
  # pylint: disable=import-outside-toplevel
  from serving import model_config
  from serving import server as server_lib
  # pylint: enable=import-outside-toplevel
  if args.model_config_file:
    if args.model_name or args.model_base_path:
      raise ValueError("give either --model_config_file or --model_name with "
                       "--model_base_path, not both")
    models = model_config.read_model_config(args.model_config_file)
  elif args.model_name and args.model_base_path:
    models = (model_config.ModelEntry(args.model_name, args.model_base_path),)
  else:
    raise ValueError("give --model_config_file, or --model_name with --model_base_path")
  batching_params = model_config.BatchingParameters()
  if args.batching_parameters_file:
    batching_params = model_config.read_batching_parameters(args.batching_parameters_file)
  monitoring = model_config.MonitoringConfig()
  if args.monitoring_config_file:
    monitoring = model_config.read_monitoring_config(args.monitoring_config_file)
  metrics_port = None if args.metrics_port is not None and args.metrics_port < 0 \
      else args.metrics_port
  if args.rest_api_port < 0 or args.rest_api_timeout_in_ms < 0:
    raise ValueError("--rest_api_port and --rest_api_timeout_in_ms must be >= 0")
  if args.rest_api_port and args.rest_api_port == args.port:
    raise ValueError(f"--rest_api_port and --port are both {args.port}; give two ports")
  options = server_lib.ServerOptions(
      host=args.host, port=args.port, rest_api_port=args.rest_api_port or None,
      rest_api_timeout_seconds=args.rest_api_timeout_in_ms / 1000.0,
      metrics_port=metrics_port, monitoring=monitoring,
      enable_batching=bool(args.enable_batching or args.batching_parameters_file),
      batching=batching_params,
      file_system_poll_wait_seconds=args.file_system_poll_wait_seconds,
      grace_seconds=args.grace_seconds, tls=tls.from_args(args))
  server = server_lib.ModelServer(models, options)
  for spec in args.input_validator or ():
    model, signature, fn = load_validator(spec)
    server.register_validator(model, signature, fn)
  if getattr(args, "request_log", None):
    from serving import request_log  # pylint: disable=import-outside-toplevel
    if args.request_log_max_mb <= 0:
      raise ValueError(f"--request-log-max-mb must be positive, got {args.request_log_max_mb}")
    server.log_requests(request_log.RequestLog(
        args.request_log, max_bytes=int(args.request_log_max_mb * 1024 * 1024)))
  return server


def main(args: Union[argparse.Namespace, Sequence[str], None] = None) -> int:
  """Runs ``melody serve`` until SIGTERM or SIGINT, then drains and exits 0.

  Sets the gRPC I/O path first (``serving.grpc_env.prefer_polling_io``): it takes effect
  only if nothing in this process has imported ``grpc`` yet, and an explicit
  ``GRPC_EXPERIMENTS`` in the environment wins.

  Args:
    args: Parsed ``melody serve`` arguments, or an argv list to parse.

  Returns:
    The exit status: 0 after a clean drain, 2 for a bad configuration or port. When
    model calls are still running after the grace period, the process exits (status 0)
    without waiting for them, and this function does not return.
  """
  grpc_env.prefer_polling_io()
  if not isinstance(args, argparse.Namespace):
    parser = argparse.ArgumentParser(prog="melody serve")
    add_serve_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if args is None else list(args))
  from serving import server as server_lib  # pylint: disable=import-outside-toplevel
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  try:
    server = server_from_args(args)
  except (ValueError, OSError) as e:
    print(f"melody serve: error: {e}", file=sys.stderr)
    return 2
  with stop_signals.stop_on_signals() as stop:
    try:
      server.start()
      host = server_lib.bracket_host(args.host)
      metrics = (f", metrics on http://{host}:{server.metrics_port}"
                 f"{server.options.monitoring.path}" if server.metrics_port else "")
      print(f"melody serve: gRPC on {server.target}{metrics}", flush=True)
      if server.rest_api_port:
        rest = f"http{'s' if args.tls_cert else ''}://{host}:{server.rest_api_port}"
        monitoring = server.options.monitoring
        page = f", metrics on {rest}{monitoring.path}" if monitoring.enable else ""
        print(f"melody serve: REST on {rest}/v1/models{page}", flush=True)
      print(f"melody serve: transport: {grpc_env.describe()}", flush=True)
      while not stop.wait(0.5):
        pass
      print("melody serve: draining in-flight requests", flush=True)
    except OSError as e:
      print(f"melody serve: error: {e}", file=sys.stderr)
      return 2
    finally:
      running = server.stop()
  if running:
    print(f"melody serve: stopped; {running} model call(s) still running are abandoned",
          flush=True)
    _exit_now(0)
  print("melody serve: stopped", flush=True)
  return 0


def _exit_now(status: int) -> None:
  """Ends the process at once: a normal exit would join threads stuck in model calls."""
  logging.shutdown()
  sys.stdout.flush()
  sys.stderr.flush()
  os._exit(status)  # pylint: disable=protected-access


if __name__ == "__main__":
  sys.exit(main())
