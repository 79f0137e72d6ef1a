"""Learned fusion end to end: ``melody fusion`` trains on rollouts of the session's tiny
exported ranker and writes a learned-fusion ``policy.json``; ``serving.export`` bakes it
in; the served ``rank`` fuses with it (``fusion = "learned"`` or the policy's default)
exactly as the numpy learned kernel does over the served heads, keeps the weight table
for ``"weights"``, rejects a bad selector, and a rollout through the served graph gives
the numbers of the numpy rollout of the same parameters."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from bench import serving as bench_serving
from melody_testing import served_world
from ranking.fusion import kernel_np
from ranking.fusion import learned
from ranking.fusion import policy_file
from ranking.fusion.spec import FusionConfig
from serving import export
from serving import fusion_select
from serving import request_schema
from simulation import fusion_compare
from simulation import fusion_policy
from simulation import fusion_training
from simulation import policies
from simulation import slates as slates_lib
from simulation.world import World
from simulation.world_config import WorldConfig

pytestmark = pytest.mark.slow
N_TRACKS = 300   # the ranker_export world's catalogue
CONFIG = fusion_compare.CompareConfig(
    users=30, days=1, world_seed=bench_serving.SEED, n_tracks=N_TRACKS, grid_step=1.0,
    floor=0.3, log_points=((1.0, 0.0, 0.0), (0.25, 0.25, 0.5)), exposure_targets=(0.0, 3.0),
    train=fusion_training.TrainConfig(steps=30))


@pytest.fixture(scope="module")
def env(ranker_export, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("fusion"))
  result = fusion_compare.run(out, ranker_export["v1"], CONFIG, log=lambda _: None)
  policy = policy_file.load(os.path.join(out, "policy.json"))
  base = str(tmp_path_factory.mktemp("learned_export") / "models" / "melody")
  version = export.export_serving_model(ranker_export["model"], ranker_export["paths"]["tft"],
                                        ranker_export["paths"]["tracks"], base, n_max=64,
                                        warmup_examples=None, policy=policy)
  loaded = tf.saved_model.load(version)
  return {"out": out, "result": result, "policy": policy, "version": version,
          "rank": loaded.signatures["rank"]}


def _call(fn, inputs):
  _, spec = fn.structured_input_signature
  out = fn(**{k: tf.constant(v, dtype=spec[k].dtype) for k, v in inputs.items()})
  return {k: v.numpy() for k, v in out.items()}


def _requests(model_dir: str, choice):
  """Rank inputs for one listener per segment x activity pair, with some history (so
  some candidates are familiar) and exploration on."""
  setup = served_world.segment_activity_listeners(bench_serving.SEED, 5)
  world, listeners, tracks, valid, activity = (
      setup.world, setup.listeners, setup.tracks, setup.valid, setup.activity)
  n = len(activity)
  ts = np.full(n, 1_700_000_000)
  history = {"track": tracks[:, :4].astype(np.int64), "ts": np.repeat(ts[:, None] - 60, 4, 1),
             "completion": np.ones((n, 4)), "skip": np.zeros((n, 4))}
  ctx = policies.Context(activity=activity, hour=np.full(n, 9), weekday=np.zeros(n, int),
                         ts=ts, seed=np.arange(n) * 7 + 1)
  policy = fusion_policy.ServedFusionPolicy(model_dir)
  req = policy.requests(policies.ListenerState(world, listeners, history),
                        policies.Candidates(tracks, valid), ctx)
  req["fusion"] = np.array([choice[i % len(choice)] for i in range(n)], object)
  return req, {"world": world, "tracks": tracks, "valid": valid, "activity": activity,
               "segment": listeners.segment.astype(np.int64), "promo": world.track_promo[tracks]}


def test_fusion_writes_the_comparison_and_a_learned_policy(env):
  res, out = env["result"], env["out"]
  assert len(res["grid"]) == 3 and len(res["learned"]) == len(CONFIG.exposure_targets)
  assert res["training_sessions"] > 0 and res["policy_version"] == env["policy"].version
  with open(os.path.join(out, "fusion.json"), encoding="utf-8") as f:
    assert json.load(f)["at_floor"].keys() == {"grid", "learned", "lift"}
  with open(os.path.join(out, "fusion_frontier.png"), "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  assert env["policy"].select == "learned" and env["policy"].learned is not None
  info = export.read_info(env["version"])
  assert info["learned_fusion"] and info["default_fusion"] == "learned"


def test_served_learned_fusion_equals_the_numpy_kernel(env):
  policy = env["policy"]
  req, ctx = _requests(env["version"], ["learned", "weights", ""])
  out = _call(env["rank"], req)
  assert out["familiar"][ctx["valid"]].max() == 1.0   # the history made some familiar
  valid = ctx["valid"]
  act = slates_lib.FUSION_ACTIVITY[ctx["activity"]]
  inputs = {"interest": out["interest"], "subscription": out["subscription"],
            "exposure": out["exposure"], "segment": ctx["segment"], "activity": act,
            "familiar": out["familiar"], "promo": ctx["promo"].astype(np.float64),
            "seed": req["exploration_seed"],
            "candidate_ids": np.where(valid, ctx["tracks"], N_TRACKS)}
  want_learned = learned.fuse_learned(inputs, policy.learned, policy.fusion.exploration)
  want_table = kernel_np.fuse({k: v for k, v in inputs.items() if k != "promo"}, policy.fusion)
  rows = np.arange(len(valid))
  for r in rows:
    want = want_table if r % 3 == 1 else want_learned   # "" = the policy's "learned"
    np.testing.assert_allclose(out["fused_score"][r][valid[r]], want["score"][r][valid[r]],
                               atol=2e-5, err_msg=f"row {r}")
    np.testing.assert_allclose(out["weights"][r], want["weights"][r], atol=1e-6)
  # The two fusions differ, so the rows above tell them apart.
  assert np.abs(want_learned["score"] - want_table["score"])[valid].max() > 1e-3


def test_a_bad_fusion_selector_is_rejected(env):
  req, _ = _requests(env["version"], ["weights", "bogus"])
  with pytest.raises(ValueError, match="input 'fusion' row 1 must be one of"):
    request_schema.validate_rank(req, 64)
  # (TF escapes the quotes of an assert's message.)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"input .?'fusion.?' must be one of"):
    _call(env["rank"], req)
  # A graph built without a learned fusion refuses "learned", naming the input.
  request_schema.validate_rank({**req, "fusion": np.full(len(req["fusion"]), "learned", object)},
                               64)
  selector = fusion_select.FusionSelector(FusionConfig())
  heads = {h: tf.zeros([2, 3]) for h in ("interest", "subscription", "exposure")}
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"input .?'fusion.?' asks for .?'learned.?'"):
    selector({**heads, "segment": tf.zeros([2], tf.int64), "activity": tf.zeros([2], tf.int64)},
             tf.constant(["learned", ""]))


def test_a_served_learned_rollout_reproduces_the_numpy_rollout(env):
  world = World(WorldConfig(n_tracks=N_TRACKS), seed=bench_serving.SEED)
  check = fusion_compare.served_check(world, env["version"],
                                      CONFIG.rollout_config(CONFIG.eval_seed))
  served, numpy = check["served"], check["numpy"]
  for key in fusion_compare.METRICS:
    assert served[key] == pytest.approx(numpy[key], rel=1e-6, abs=1e-9), key
