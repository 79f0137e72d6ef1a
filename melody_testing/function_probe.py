"""Counts the TensorFlow runtime functions a piece of code instantiates.

A loaded SavedModel signature builds its runtime function (graph optimization, kernel
creation) on its first call; warmup exists to pay that before live traffic. While run
metadata is enabled, TensorFlow adds one ``function_graphs`` entry per function it
instantiates and none for a function it already has, so a test can tell, without timing
anything, whether a call found its function ready. The count is process-wide: calls
made meanwhile on other threads (e.g. a model server's) count too.
"""

from typing import Callable

from tensorflow.python.eager import context as eager_context


def functions_built_by(call: Callable[[], object]) -> int:
  """How many runtime functions TensorFlow instantiated while ``call()`` ran.

  Args:
    call: The code to run (its result is dropped).

  Returns:
    The number of functions instantiated, 0 when every function it ran was ready.
  """
  eager_context.export_run_metadata()  # Drops anything collected before.
  eager_context.enable_run_metadata()
  try:
    call()
  finally:
    eager_context.disable_run_metadata()
  return len(eager_context.export_run_metadata().function_graphs)
