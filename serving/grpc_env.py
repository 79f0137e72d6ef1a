"""The gRPC core setting Melody's server and client apply before ``grpc`` is imported.

Since 1.60 grpcio moves the socket I/O of channels and servers onto EventEngine threads,
so a unary call hands work between threads several times; on a small VM each hand-off
after an idle gap is slow, and a model server is idle on its socket while the model runs.
With the three EventEngine I/O experiments off, the thread waiting on a completion queue
polls the socket itself, which makes a call on such a machine faster (measurements in
``docs/benchmarks_serving.md``, "gRPC I/O path").

``GRPC_EXPERIMENTS`` is read once, when ``grpc`` is first imported, so the setting is
applied at entry points, not on ``import serving``: ``melody serve``
(``serving.server_main.main``) and ``serving.client.ModelClient`` call
:func:`prefer_polling_io`. A process that imported ``grpc`` earlier keeps grpcio's
defaults, and a value already in the environment, even an empty one, is left alone, so
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
