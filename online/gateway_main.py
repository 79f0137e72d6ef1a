"""The ``melody gateway`` process: its flags, the gateway they describe, and ``main``.

This module owns the command line of the recommendation gateway and the process around
an :class:`~online.gateway_server.GatewayServer`: open the state store, connect to the
model server (plaintext or TLS), bind the gRPC and HTTP ports (loopback by default, TLS
or mutual TLS by flag), and serve until SIGTERM or SIGINT, then drain within the grace
period. TensorFlow Serving's API modules and gRPC load when :func:`main` runs.
"""

import argparse
import gc
import logging
import sys
from typing import Sequence, Union

from serving import grpc_env
from serving import stop_signals
from serving import tls


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the ``melody gateway`` flags to ``parser``."""
  parser.add_argument("--store", required=True,
                      help="state store: a path or sqlite:///PATH, or redis://HOST:PORT/DB")
  parser.add_argument("--model-server", default="127.0.0.1:8500",
                      help="gRPC HOST:PORT of the model server (TF Serving API)")
  parser.add_argument("--model-name", default="melody", help="served model name")
  parser.add_argument("--version-label", default="",
                      help="model version label when a request names no experiment")
  parser.add_argument("--experiment", default="",
                      help="canary experiment name: split listeners by a salted hash between "
                      "the stable and canary version labels")
  parser.add_argument("--canary-share", type=float, default=0.1,
                      help="fraction of listeners in the canary arm of --experiment")
  parser.add_argument("--salt", default="", help="salt of the --experiment split")
  parser.add_argument("--weights-override", default="",
                      help="the promo controller's override file (per-segment fusion "
                      "weights), re-read within a second of a change")
  parser.add_argument("--deadline-ms", type=float, default=1000.0,
                      help="deadline of a model call, its one retry included")
  parser.add_argument("--model-server-ca", default=None,
                      help="PEM CA of the model server's certificate: call it over TLS")
  parser.add_argument("--model-server-cert", default=None,
                      help="PEM client certificate for a model server requiring mTLS")
  parser.add_argument("--model-server-key", default=None, help="PEM key of that certificate")
  parser.add_argument("--host", default="127.0.0.1", help="interface to bind")
  parser.add_argument("--port", type=int, default=8600, help="gRPC port (0: a free one)")
  parser.add_argument("--http-port", type=int, default=8601,
                      help="HTTP/JSON and metrics port (0: a free one, -1: none)")
  parser.add_argument("--max-k", type=int, default=200, help="largest k a request may ask")
  parser.add_argument("--max-request-bytes", type=int, default=64 << 10,
                      help="largest request message or body")
  parser.add_argument("--grace-seconds", type=float, default=5.0,
                      help="on SIGTERM/SIGINT, how long running calls may finish")
  parser.add_argument("--policy", default=None, metavar="POLICY_JSON",
                      help="policy.json whose weights a request without its own gets as "
                           "the per-request override (reloaded when the file changes; a "
                           "file that fails validation keeps the policy in force)")
  tls.add_tls_arguments(parser)


def build(args: argparse.Namespace):
  """The (not started) ``GatewayServer`` the flags describe, and its store.

  Raises:
    ValueError: contradicting flags.
    OSError: a file or the store cannot be opened.
  """
  # pylint: disable=import-outside-toplevel
  from online import experiment_split
  from online import gateway
  from online import gateway_metrics
  from online import gateway_server
  from online import model_caller
  from online import promo_controller
  from online import stores
  # pylint: enable=import-outside-toplevel
  split = (experiment_split.ExperimentSplit(args.experiment, args.canary_share, args.salt)
           if args.experiment else None)
  server_tls = tls.from_args(args)
  credentials = None
  if args.model_server_ca:
    credentials = tls.grpc_channel_credentials(args.model_server_ca,
                                               args.model_server_cert or "",
                                               args.model_server_key or "")
  elif args.model_server_cert or args.model_server_key:
    raise ValueError("--model-server-cert/--model-server-key need --model-server-ca")
  metrics = gateway_metrics.GatewayMetrics()
  caller = model_caller.ModelCaller(args.model_server, args.model_name, "recommend",
                                    args.deadline_ms / 1000.0, credentials,
                                    on_retry=metrics.retries.inc)
  store = stores.open_store(args.store)
  options = gateway.GatewayOptions(max_k=args.max_k, version_label=args.version_label,
                                   split=split)
  ports = gateway_server.PortOptions(
      host=args.host, grpc_port=args.port,
      http_port=None if args.http_port < 0 else args.http_port, tls=server_tls,
      max_request_bytes=args.max_request_bytes, grace_seconds=args.grace_seconds)
  recommender = gateway.Gateway(store, caller, metrics, options)
  if args.weights_override:
    recommender.overrides = promo_controller.OverrideFile(args.weights_override)
  if args.policy:
    from online import policy_source  # pylint: disable=import-outside-toplevel
    recommender.policy = policy_source.PolicySource(args.policy)
  return gateway_server.GatewayServer(recommender, ports), store


def main(args: Union[argparse.Namespace, Sequence[str], None] = None) -> int:
  """Runs ``melody gateway`` until SIGTERM or SIGINT; 0 after a clean stop, 2 for bad
  flags or ports."""
  grpc_env.prefer_polling_io()
  if not isinstance(args, argparse.Namespace):
    parser = argparse.ArgumentParser(prog="melody gateway")
    add_gateway_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if args is None else list(args))
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  try:
    server, store = build(args)
  except (ValueError, OSError) as e:
    print(f"melody gateway: error: {e}", file=sys.stderr)
    return 2
  # TensorFlow's protos and the gRPC stack leave ~350k long-lived Python objects: frozen,
  # no automatic full collection walks them again (each walk is a GIL pause of 0.1-0.2 s
  # landing in whichever calls are running).
  gc.collect()
  gc.freeze()
  with stop_signals.stop_on_signals() as stop:
    try:
      server.start()
      scheme = "https" if args.tls_cert else "http"
      print(f"melody gateway: gRPC on {server.grpc_target}", flush=True)
      if server.http_port:
        print(f"melody gateway: HTTP on {scheme}://{args.host}:{server.http_port}"
              "/v1/recommend, metrics on /metrics", flush=True)
      while not stop.wait(0.5):
        pass
      print("melody gateway: draining", flush=True)
    except OSError as e:
      print(f"melody gateway: error: {e}", file=sys.stderr)
      return 2
    finally:
      server.stop()
      server.gateway.model.close()
      store.close()
  print("melody gateway: stopped", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
