"""Rollouts through Beam's DaskRunner on a 2-worker local Dask cluster give the same
outcome cube, bit for bit, as Beam's local runner (which tests/simulation/test_rollout.py
checks against the in-process loop)."""

import dataclasses

import numpy as np
import pytest

from simulation import policies
from simulation import rollout as rollout_lib
from simulation.world_config import WorldConfig

SMALL = rollout_lib.RolloutConfig(users=60, days=2, seed=3, chunk_users=15)
WORLD = WorldConfig(n_tracks=800)


@pytest.mark.slow
def test_dask_rollout_equals_the_direct_runner():
  direct = rollout_lib.rollout_beam(5, WORLD, policies.FusionPolicy, SMALL)
  dask = rollout_lib.rollout_beam(5, WORLD, policies.FusionPolicy, SMALL,
                                  runner="DaskRunner", dask_workers=2)
  np.testing.assert_array_equal(dask.cube, direct.cube)
  assert dask.cube[..., rollout_lib.METRICS.index("impressions")].sum() > 0
  assert dask.policy == direct.policy


def test_a_scheduler_address_needs_the_dask_runner(tmp_path, capsys):
  from melody_cli import main as melody_main
  assert melody_main.main(["simulate", "--runner", "beam", "--dask-address", "127.0.0.1:1",
                           "--out", str(tmp_path / "report")]) == 2
  assert "--dask-address needs --runner dask" in capsys.readouterr().err
  assert not (tmp_path / "report").exists()
