"""Melody's Beam jobs on Dask: the options Beam's DaskRunner needs, and a local cluster.

Beam's ``DaskRunner`` (``apache_beam.runners.dask``) turns a pipeline into a Dask bag
graph and computes it on a ``dask.distributed`` cluster. This module owns the choice of
that cluster: the scheduler address given with ``--dask_client_address`` (a real
cluster), or otherwise a ``LocalCluster`` of worker processes started for the job and
shut down after it, so that ``--runner DaskRunner`` works on one machine as it does on
many.
"""

import contextlib
from typing import Iterator, List, Sequence

DASK_RUNNER = "DaskRunner"
ADDRESS_FLAG = "--dask_client_address"
DEFAULT_LOCAL_WORKERS = 2
# Beam knows the DaskRunner only by its module path.
DASK_RUNNER_PATH = "apache_beam.runners.dask.dask_runner.DaskRunner"


def runner_flag(runner: str) -> str:
  """The ``--runner`` value Beam accepts for ``runner`` (DaskRunner by module path)."""
  return DASK_RUNNER_PATH if runner == DASK_RUNNER else runner


def has_address(beam_args: Sequence[str]) -> bool:
  """Whether the Beam flags already name a scheduler."""
  return any(a.startswith(ADDRESS_FLAG) or a.startswith("--dask_scheduler_file")
             for a in beam_args)


@contextlib.contextmanager
def local_cluster(workers: int = DEFAULT_LOCAL_WORKERS) -> Iterator[str]:
  """A ``dask.distributed.LocalCluster`` of ``workers`` single-threaded processes.

  Yields:
    The scheduler address for ``--dask_client_address``.
  """
  if workers < 1:
    raise ValueError(f"workers must be >= 1, got {workers}")
  import dask  # pylint: disable=g-import-not-at-top
  from dask import distributed  # pylint: disable=g-import-not-at-top
  # One thread per process: the example builder is numpy and gzip work that holds the
  # GIL part of the time, so processes are what gives parallelism.
  # Forked workers start with the modules this process has already imported (Melody's
  # jobs import TensorFlow through the feature spec and the ranking layers); spawned
  # ones would import them again, tens of seconds per worker on a busy machine.
  with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}):
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=None)
  try:
    yield cluster.scheduler_address
  finally:
    cluster.close()


@contextlib.contextmanager
def beam_args_for(runner: str, beam_args: Sequence[str],
                  workers: int = DEFAULT_LOCAL_WORKERS) -> Iterator[List[str]]:
  """``beam_args``, with a local cluster's address added for a DaskRunner without one.

  For any other runner, or a DaskRunner that already has an address, the flags are
  yielded unchanged and nothing is started.
  """
  args = list(beam_args)
  if runner != DASK_RUNNER or has_address(args):
    yield args
    return
  with local_cluster(workers) as address:
    yield args + [f"{ADDRESS_FLAG}={address}"]


def run_to_completion(pipeline):
  """Runs a Beam ``pipeline`` and waits for it; closes the DaskRunner's own client to
  its cluster, which would otherwise outlive the job.

  Returns:
    The pipeline result.
  """
  result = pipeline.run()
  result.wait_until_finish()
  client = getattr(result, "client", None)
  if client is not None:
    client.close()
  return result
