"""The loop from simulation to the served model, as one test module.

``melody simulate`` rolls the session's tiny exported ranker out over a weight grid
through its ``rank`` signature and writes ``policy.json``; ``serving.export`` bakes the
policy into a new version; that version, loaded as the model server loads it, answers
``rank`` with those weights (checked against a numpy fusion of its head scores) and the
``policy`` signature with the policy (``tests/serving/test_serving_e2e.py`` holds the
gRPC answers to the loaded SavedModel's); and the same rollout through the new version,
with no per-request override, gives the numbers the simulation recorded for the policy.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from bench import serving as bench_serving
from melody_testing import served_world
from features import feature_spec
from ranking.fusion import kernel_np
from ranking.fusion import policy_file
from ranking.fusion.spec import FusionConfig
from serving import export
from serving import warmup
from simulation import policies
from simulation import report as report_lib
from simulation import rollout as rollout_lib
from simulation import scorers
from simulation.world import World
from simulation.world_config import SIM_ACTIVITIES, WorldConfig

pytestmark = pytest.mark.slow
N_TRACKS = 300   # the ranker_export world's catalogue
# The grid's corners only, one day: every model rollout is one signature call.
SIM = report_lib.ReportConfig(users=40, days=1, seed=3, world_seed=bench_serving.SEED,
                              n_tracks=N_TRACKS, grid_step=1.0, floor=0.5, chunk_users=40,
                              ope_logs=200, ope_truth=400)


@pytest.fixture(scope="module")
def loop(ranker_export, tmp_path_factory):
  """Simulate with the model scorer, export the policy as version 1 of a new base, and
  load that version once (as the model server would) for every check."""
  out = str(tmp_path_factory.mktemp("simulate"))
  result = report_lib.run(out, SIM, model_dir=ranker_export["v1"], scorer="model")
  policy = policy_file.load(os.path.join(out, "policy.json"))
  base = str(tmp_path_factory.mktemp("policy_export") / "models" / "melody")
  version = export.export_serving_model(ranker_export["model"], ranker_export["paths"]["tft"],
                                        ranker_export["paths"]["tracks"], base, n_max=64,
                                        num_warmup_records=6, policy=policy)
  served = scorers.ModelScorer(version, SIM.slate_len, n_tracks=N_TRACKS)
  return {"out": out, "result": result, "policy": policy, "version": version,
          "served": served}


def _call(loop, signature, inputs):
  fn = loop["served"].policy(None).loaded.signatures[signature]
  _, spec = fn.structured_input_signature
  out = fn(**{k: tf.constant(v, dtype=spec[k].dtype) for k, v in inputs.items()})
  return {k: v.numpy() for k, v in out.items()}


def test_simulate_chose_with_the_model(loop):
  res, policy = loop["result"], loop["policy"]
  assert res["scorer"]["name"] == "model"
  assert policy.provenance.model_version == os.path.abspath(res["scorer"]["version"])
  assert "come from the **model** scorer" in open(os.path.join(loop["out"], "report.md"),
                                                  encoding="utf-8").read()
  # The grid's weights are not the defaults, so the checks below can tell them apart.
  default = FusionConfig()
  assert any(policy.fusion.weights_for(s) != default.weights_for(s)
             for s in feature_spec.SEGMENTS)


def test_the_version_carries_the_policy(loop):
  policy, version = loop["policy"], loop["version"]
  assert policy_file.load(os.path.join(version, export.POLICY_FILE)) == policy
  assert export.read_info(version)["policy_version"] == policy.version
  assert "policy" in export.read_info(version)["signatures"]
  warm = [log.predict_log.request.model_spec.signature_name
          for log in warmup.read_warmup(version)]
  assert "policy" in warm and len(warm) == 6
  out = _call(loop, "policy", {"request_id": np.arange(2, dtype=np.int64)})
  assert [v.decode() for v in out["policy_version"]] == [policy.version] * 2
  assert policy_file.loads(out["policy_json"][0].decode()) == policy


def test_served_rank_fuses_with_the_policy_weights(loop):
  """No override, no exploration, no history (so nothing is familiar): the served fused
  score is the numpy fusion of the served heads with the policy's table."""
  policy = loop["policy"]
  setup = served_world.segment_activity_listeners(bench_serving.SEED, 11)
  world, listeners, tracks, valid, activity = (
      setup.world, setup.listeners, setup.tracks, setup.valid, setup.activity)
  n = len(activity)
  ctx = policies.Context(activity=activity, hour=np.full(n, 9), weekday=np.zeros(n, int),
                         ts=np.full(n, 1_700_000_000), seed=np.arange(n))
  builder = loop["served"].policy(None)   # a copy: no override; exploration off below
  builder.exploration = False
  inputs = builder.requests(policies.ListenerState(world, listeners, {}),
                            policies.Candidates(tracks, valid), ctx)
  out = _call(loop, "rank", inputs)

  segment = listeners.segment.astype(np.int64)
  act = np.array([feature_spec.ACTIVITIES.index(SIM_ACTIVITIES[a]) for a in activity])
  want_w = np.array([policy.weights_for(feature_spec.SEGMENTS[s], feature_spec.ACTIVITIES[a])
                     for s, a in zip(segment, act)])
  np.testing.assert_allclose(out["weights"], want_w, atol=1e-6)
  fused = kernel_np.fuse({"interest": out["interest"], "subscription": out["subscription"],
                          "exposure": out["exposure"], "segment": segment, "activity": act,
                          "familiar": np.zeros(tracks.shape), "seed": np.full(n, -1)},
                         policy.fusion)
  np.testing.assert_allclose(out["fused_score"][valid], fused["score"][valid], atol=1e-5)
  # The default table would have fused differently.
  default = kernel_np.fuse({"interest": out["interest"], "subscription": out["subscription"],
                            "exposure": out["exposure"], "segment": segment, "activity": act,
                            "familiar": np.zeros(tracks.shape), "seed": np.full(n, -1)})
  assert np.abs(default["score"][valid] - out["fused_score"][valid]).max() > 1e-3


def test_rollout_of_the_served_policy_reproduces_the_simulation(loop):
  """The simulation measured the policy's table sent as per-request overrides to the
  first model; the exported version holds it as its own table. The same listeners,
  seeds and sessions give the same numbers (the rollout is seeded, so "within noise"
  is within float rounding here)."""
  res = loop["result"]
  world = World(WorldConfig(n_tracks=N_TRACKS), seed=bench_serving.SEED)
  scorer = loop["served"]
  served = rollout_lib.rollout(world, scorer.policy(None),
                               scorer.rollout_config(SIM.rollout_config())).summary()
  simulated = res["recommended_vs_current"]["recommended"]
  assert served["sessions"] == simulated["sessions"] > 0
  for key in ("completion_rate", "skip_rate", "promo_share", "exposure_per_session",
              "expected_reward_per_session"):
    assert served[key] == pytest.approx(simulated[key], rel=1e-6, abs=1e-9), key
  prov = dict(loop["policy"].provenance.metrics)
  assert prov["completion_rate"] == pytest.approx(served["completion_rate"], rel=1e-6)
