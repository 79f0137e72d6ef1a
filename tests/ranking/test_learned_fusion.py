"""Learned fusion: parameters, the numpy and TF kernels, and its place in ``policy.json``."""

import json

import numpy as np
import pytest
import tensorflow as tf

from features import feature_spec
from ranking.fusion import kernel_np
from ranking.fusion import learned
from ranking.fusion import policy_file
from ranking.fusion.spec import FusionConfig

B, N = 7, 11
MIXING = {"max_promos_per_window": 2, "window": 10, "max_per_artist": 2}
PROVENANCE = {"simulation_run": "test", "world_version": "w", "model_version": "m",
              "metrics": {"completion_rate": 0.6},
              "constraint": {"metric": "completion_rate", "floor": 0.5, "met": True}}


def _inputs(seed: int):
  rng = np.random.default_rng(seed)
  x = {h: rng.random((B, N)).astype(np.float32) for h in ("interest", "subscription",
                                                          "exposure")}
  x.update(segment=rng.integers(0, len(feature_spec.SEGMENTS), B),
           activity=rng.integers(0, len(feature_spec.ACTIVITIES), B),
           familiar=(rng.random((B, N)) < 0.4).astype(np.float32),
           promo=(rng.random((B, N)) < 0.25).astype(np.float32),
           seed=rng.integers(-3, 1000, B), candidate_ids=rng.integers(0, 5000, (B, N)))
  return x


def _perturbed(seed: int) -> learned.LearnedFusionParams:
  table = learned.LearnedFusionParams.from_fusion().table()
  table += np.random.default_rng(seed).normal(0, 0.4, table.shape)
  return learned.LearnedFusionParams.from_table(table)


def test_the_start_scores_as_the_hand_set_table():
  x = _inputs(0)
  got = learned.fuse_learned(x, learned.LearnedFusionParams.from_fusion())
  want = kernel_np.fuse({k: v for k, v in x.items() if k != "promo"})
  np.testing.assert_allclose(got["score"], want["score"], rtol=0, atol=1e-12)
  np.testing.assert_allclose(got["weights"], want["weights"], atol=1e-12)


def test_numpy_and_tf_kernels_agree():
  params = _perturbed(1)
  x = _inputs(2)
  want = learned.fuse_learned(x, params, epsilon=0.05)
  got = learned.LearnedFusion(params, epsilon=0.05)({k: tf.constant(v) for k, v in x.items()})
  for key in ("score", "weights", "context", "exploration"):
    np.testing.assert_allclose(got[key].numpy(), want[key], atol=2e-5, err_msg=key)
  # Golden value of one cell, by hand: theta . (int, sub, exp, promo, 2f - 1).
  s, a = int(x["segment"][0]), int(x["activity"][0])
  feats = [x["interest"][0, 0], x["subscription"][0, 0], x["exposure"][0, 0],
           x["promo"][0, 0], 2 * x["familiar"][0, 0] - 1]
  base = float(np.dot(params.table()[s, a], feats))
  assert want["score"][0, 0] - want["exploration"][0, 0] == pytest.approx(base, abs=1e-12)


def test_layer_config_round_trip():
  layer = learned.LearnedFusion(_perturbed(3), epsilon=0.03)
  again = learned.LearnedFusion.from_config(layer.get_config())
  assert again.params == layer.params and again.epsilon == 0.03
  x = {k: tf.constant(v) for k, v in _inputs(4).items()}
  np.testing.assert_array_equal(layer(x)["score"].numpy(), again(x)["score"].numpy())


def test_parameters_are_validated():
  table = learned.LearnedFusionParams.from_fusion().table()
  paid = feature_spec.SEGMENTS.index("paid")
  bad = table.copy()
  bad[paid, feature_spec.ACTIVITIES.index("commute"), 1] = 0.3
  with pytest.raises(learned.LearnedFusionError, match="cells.paid.commute.subscription"):
    learned.LearnedFusionParams(coefficients=bad)
  bad = table.copy()
  bad[0, 0, 3] = np.nan
  with pytest.raises(learned.LearnedFusionError, match="cells.new.unknown.promo"):
    learned.LearnedFusionParams(coefficients=bad)
  with pytest.raises(learned.LearnedFusionError, match="coefficients"):
    learned.LearnedFusionParams(coefficients=table[:, :, :4])
  d = learned.LearnedFusionParams.from_fusion().to_dict()
  d["cells"]["free"]["focus"] = [1, 0, 0, "x", 0]
  with pytest.raises(learned.LearnedFusionError, match="cells.free.focus.promo"):
    learned.LearnedFusionParams.from_dict(d)
  del d["cells"]["trial"]
  with pytest.raises(learned.LearnedFusionError, match="cells.trial"):
    learned.LearnedFusionParams.from_dict(d)


def test_policy_file_carries_learned_fusion():
  params = _perturbed(5)
  policy = policy_file.from_configs(FusionConfig(), MIXING, PROVENANCE, learned=params,
                                    select="learned")
  again = policy_file.loads(policy.to_json())
  assert again == policy and again.select == "learned"
  np.testing.assert_array_equal(again.learned.table(), params.table())
  plain = policy_file.from_configs(FusionConfig(), MIXING, PROVENANCE)
  assert "fusion" not in plain.to_dict() and plain.learned is None
  assert plain.select == "weights" and plain.version != policy.version
  # A policy without learned fusion keeps the id it had before the field existed.
  assert plain.version == policy_file.content_version(FusionConfig(), MIXING)


@pytest.mark.parametrize("edit, field", [
    (lambda d: d["fusion"].update(select="both"), "fusion.select"),
    (lambda d: d["fusion"].pop("learned"), "fusion.learned"),
    (lambda d: d["fusion"]["learned"]["cells"]["paid"]["explore"].__setitem__(1, 0.5),
     "fusion.learned.cells.paid.explore.subscription"),
    (lambda d: d["fusion"]["learned"].update(features=["interest"]),
     "fusion.learned.features"),
    (lambda d: d["fusion"].update(extra=1), "fusion.extra"),
])
def test_a_bad_learned_policy_names_its_field(edit, field):
  d = policy_file.from_configs(FusionConfig(), MIXING, PROVENANCE, learned=_perturbed(6),
                               select="learned").to_dict()
  edit(d)
  with pytest.raises(policy_file.PolicyError) as e:
    policy_file.loads(json.dumps(d), "p.json")
  assert e.value.field == field and e.value.source == "p.json"
