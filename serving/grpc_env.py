"""gRPC core settings the serving side applies before ``grpc`` is imported.

Since 1.60 grpcio moves the socket I/O of channels and servers onto EventEngine
threads. On a small VM every hand-off between threads after an idle gap costs about
0.1 ms: a TCP echo between two processes takes 20 us back to back and 150 us after a
7 ms sleep, which is how a model server sees each request (idle while the model runs).
A unary call on the EventEngine path makes more of these hand-offs than on the older
polling path, where the thread waiting on a completion queue polls the socket itself.

Measured here (grpcio 1.85, 2 vCPUs, p50; the echo rows in runs back to back, the
`Predict` rows in two timelines an hour apart):

| call | EventEngine | polling |
|---|---|---|
| raw-bytes echo, back to back | 0.44-0.56 ms | 0.35-0.39 ms |
| raw-bytes echo after a 7 ms sleep | 1.18-1.53 ms | 0.70-0.99 ms |
| `Predict` (N=100): client send to handler | 1.02 ms | 0.79 ms |
| `Predict` (N=100): handler return to client | 0.72 ms | 0.52 ms |

So ``import serving`` turns the three EventEngine I/O experiments off for its process
(and the processes it starts). ``GRPC_EXPERIMENTS`` is read once, when ``grpc`` is
imported; a value already in the environment, even an empty one, is left alone, so
``GRPC_EXPERIMENTS= melody serve ...`` runs with grpcio's defaults.
"""

import os
import sys

VAR = "GRPC_EXPERIMENTS"
POLLING_IO = "-event_engine_client,-event_engine_listener,-event_engine_for_all_other_endpoints"


def prefer_polling_io() -> None:
  """Sets ``GRPC_EXPERIMENTS`` to :data:`POLLING_IO` unless it is set or too late."""
  if VAR not in os.environ and "grpc" not in sys.modules:
    os.environ[VAR] = POLLING_IO


def describe() -> str:
  """One line for logs: which I/O path this process's gRPC uses."""
  value = os.environ.get(VAR)
  if value == POLLING_IO:
    return "polling I/O (EventEngine I/O experiments off; GRPC_EXPERIMENTS= restores them)"
  return f"grpcio default I/O (GRPC_EXPERIMENTS={value!r})"
