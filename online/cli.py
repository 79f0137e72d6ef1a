"""``melody nearline`` and ``melody gateway``: the online side's sub-commands.

Only argument parsing lives here; the flags come from ``online.nearline_main`` and
``online.gateway_main``, whose ``main`` functions import gRPC, TF Serving's APIs and the
stores only when the command runs, so ``melody --help`` stays fast.
"""

from online import gateway_main
from online import nearline_main


def register(subparsers) -> None:
  """Adds ``nearline`` and ``gateway`` to the ``melody`` sub-commands."""
  nearline = subparsers.add_parser(
      "nearline", help="apply play events to the listener state store in micro-batches",
      description="Tail a directory of JSON-lines event logs and apply each play exactly "
                  "once to the listener state store (SQLite or Redis), every --interval "
                  "seconds; malformed lines are quarantined with their reason.")
  nearline_main.add_nearline_arguments(nearline)
  nearline.set_defaults(handler=nearline_main.main)
  gateway = subparsers.add_parser(
      "gateway", help="serve Recommend(user, context, k, text) over gRPC and HTTP/JSON",
      description="Read the listener's state, build the model's recommend request, call "
                  "the model server over the TF Serving API (deadline, one retry) and fall "
                  "back to the segment's popularity list when it cannot answer.")
  gateway_main.add_gateway_arguments(gateway)
  gateway.set_defaults(handler=gateway_main.main)
