"""The ``melody nearline`` process: its flags and ``main``.

This module owns the command line of the nearline updater and the process around an
:class:`~online.nearline.Updater`: open the source and the store, optionally expose the
Prometheus page, run micro-batches until SIGTERM or SIGINT (the batch in progress
commits first), or drain once with ``--once``.
"""

import argparse
import logging
import sys
from typing import Sequence, Union

from serving import stop_signals


def add_nearline_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds the ``melody nearline`` flags to ``parser``."""
  parser.add_argument("--events", required=True,
                      help="directory of *.jsonl event logs being appended")
  parser.add_argument("--store", required=True,
                      help="state store: a path or sqlite:///PATH (SQLite), or "
                           "redis://HOST:PORT/DB")
  parser.add_argument("--interval", type=float, default=5.0,
                      help="seconds between passes once the logs are drained")
  parser.add_argument("--max-batch", type=int, default=20_000,
                      help="most event lines per micro-batch (one store transaction)")
  parser.add_argument("--max-lateness", type=int, default=7 * 86400,
                      help="seconds an event may lag its listener's newest event before "
                           "it is quarantined")
  parser.add_argument("--cache-states", type=int, default=50_000,
                      help="most committed listener profiles kept in memory between "
                           "batches (0: read every profile from the store)")
  parser.add_argument("--once", action="store_true",
                      help="apply what the logs hold now, then exit")
  parser.add_argument("--metrics-port", type=int, default=-1,
                      help="port of the Prometheus page (0: pick a free one, -1: none)")
  parser.add_argument("--host", default="127.0.0.1", help="interface of the metrics page")


def main(args: Union[argparse.Namespace, Sequence[str], None] = None) -> int:
  """Runs ``melody nearline``; returns 0 after a clean stop, 2 for bad flags."""
  if not isinstance(args, argparse.Namespace):
    parser = argparse.ArgumentParser(prog="melody nearline")
    add_nearline_arguments(parser)
    args = parser.parse_args(sys.argv[1:] if args is None else list(args))
  # pylint: disable=import-outside-toplevel
  import prometheus_client
  from online import event_source
  from online import nearline
  from online import stores
  # pylint: enable=import-outside-toplevel
  logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
  try:
    options = nearline.NearlineOptions(args.interval, args.max_batch, args.max_lateness,
                                       args.cache_states)
    source = event_source.DirectorySource(args.events)
    store = stores.open_store(args.store)
  except (ValueError, OSError) as e:
    print(f"melody nearline: error: {e}", file=sys.stderr)
    return 2
  with store:
    updater = nearline.Updater(source, store, options)
    if args.metrics_port >= 0:
      server, _ = prometheus_client.start_http_server(args.metrics_port, args.host,
                                                      registry=updater.registry)
      print(f"melody nearline: metrics on http://{args.host}:{server.server_port}/metrics",
            flush=True)
    print(f"melody nearline: {args.events} -> {store.url}", flush=True)
    if args.once:
      total = updater.drain()
      print(f"melody nearline: {total.applied} applied, {total.duplicates} duplicate, "
            f"{total.quarantined} quarantined", flush=True)
      return 0
    with stop_signals.stop_on_signals() as stop:
      updater.run(stop)
  print("melody nearline: stopped", flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
