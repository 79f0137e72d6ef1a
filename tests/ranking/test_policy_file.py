"""``policy.json``: round trips, strict validation, and per-context fusion in both kernels."""

import copy
import json

import ranking  # noqa: F401  (Keras 2 before TensorFlow)
import numpy as np
import pytest
import tensorflow as tf

from features import feature_spec
from ranking.fusion import kernel_np
from ranking.fusion import policy_file
from ranking.fusion import spec
from ranking.fusion.kernel_tf import ScoreFusion
from ranking.layers.mixing import MixingConfig

PROVENANCE = {"simulation_run": "users=500 days=2 seed=0", "world_version": "seed=7 tracks=300",
              "model_version": "oracle",
              "metrics": {"completion_rate": 0.55, "expected_reward_per_session": 5.2},
              "constraint": {"metric": "completion_rate", "floor": 0.545, "met": True}}
FUSION = spec.FusionConfig(
    segment_weights={"new": (0.5, 0.0, 0.5), "free": (0.5, 0.25, 0.25),
                     "free_veteran": (0.5, 0.25, 0.25), "trial": (0.75, 0.25, 0.0),
                     "paid": (1.0, 0.0, 0.0)},
    exploration=0.03,
    context_weights={("free", "focus"): (0.25, 0.0, 0.75), ("paid", "explore"): (0.4, 0.0, 0.6),
                     ("new", "commute"): (1.0, 0.0, 0.0)})
MIXING = MixingConfig(max_promos_per_window=3, window=10, max_per_artist=2)


@pytest.fixture
def policy():
  return policy_file.from_configs(FUSION, MIXING, PROVENANCE)


def test_round_trip_through_the_file(policy, tmp_path):
  path = policy.dump(str(tmp_path / "policy.json"))
  back = policy_file.load(path)
  assert back == policy
  assert back.fusion == FUSION and back.mixing_config() == MIXING
  assert back.to_json() == policy.to_json()
  d = json.loads(open(path, encoding="utf-8").read())
  assert d["schema_version"] == 1 and d["version"].startswith("p-")
  assert d["weights"]["free"] == {"default": [0.5, 0.25, 0.25], "focus": [0.25, 0.0, 0.75]}
  assert d["mixing"]["no_consecutive_promos"] is True
  # The version follows the content, not the provenance.
  other = policy_file.from_configs(FUSION, MIXING, {**PROVENANCE, "model_version": "7"})
  assert other.version == policy.version
  changed = policy_file.from_configs(spec.FusionConfig(), MIXING, PROVENANCE)
  assert changed.version != policy.version


def test_weights_for_a_session(policy):
  assert policy.weights_for("free", "focus") == (0.25, 0.0, 0.75)
  assert policy.weights_for("free", "commute") == (0.5, 0.25, 0.25)
  assert policy.weights_for("paid", "explore") == (0.4, 0.0, 0.6)
  with pytest.raises(ValueError, match="unknown activity 'gym'"):
    policy.weights_for("free", "gym")


def _broken(policy, edit):
  d = copy.deepcopy(policy.to_dict())
  edit(d)
  return json.dumps(d)


@pytest.mark.parametrize("edit,field", [
    (lambda d: d["weights"].update(vip={"default": [1, 0, 0]}), "weights.vip"),
    (lambda d: d["weights"]["free"].update(gym=[1, 0, 0]), "weights.free.gym"),
    (lambda d: d["weights"]["free"].update(default=[1, -0.1, 0]), "weights.free.default"),
    (lambda d: d["weights"]["trial"].update(focus=[1, float("nan"), 0]), "weights.trial.focus"),
    (lambda d: d["weights"]["new"].update(default=[1, 0]), "weights.new.default"),
    (lambda d: d["weights"]["paid"].update(default=[0.5, 0.5, 0]), "weights.paid.default"),
    (lambda d: d["weights"].pop("trial"), "weights.trial"),
    (lambda d: d.update(epsilon=float("inf")), "epsilon"),
    (lambda d: d.update(epsilon=-0.01), "epsilon"),
    (lambda d: d["activity_familiarity"].update(focus=2.0), "activity_familiarity.focus"),
    (lambda d: d["mixing"].update(max_promos_per_window=11), "mixing.max_promos_per_window"),
    (lambda d: d["mixing"].update(max_promos_per_window=-1), "mixing.max_promos_per_window"),
    (lambda d: d["mixing"].update(window=0), "mixing.window"),
    (lambda d: d["mixing"].update(max_per_artist=1.5), "mixing.max_per_artist"),
    (lambda d: d["mixing"].update(no_consecutive_promos=False), "mixing.no_consecutive_promos"),
    (lambda d: d["provenance"].pop("world_version"), "provenance.world_version"),
    (lambda d: d["provenance"].update(model_version=""), "provenance.model_version"),
    (lambda d: d["provenance"]["constraint"].pop("met"), "provenance.constraint.met"),
    (lambda d: d["provenance"].update(metrics={}), "provenance.metrics"),
    (lambda d: d.update(schema_version=2), "schema_version"),
    (lambda d: d.update(version="has space"), "version"),
    (lambda d: d.update(colour="blue"), "colour"),
])
def test_a_bad_field_is_named_with_the_file(policy, tmp_path, edit, field):
  path = tmp_path / "policy.json"
  path.write_text(_broken(policy, edit))
  with pytest.raises(policy_file.PolicyError) as e:
    policy_file.load(str(path))
  assert e.value.field == field
  assert str(e.value).startswith(f"{path}: {field}: ")


def test_unreadable_or_not_json(tmp_path):
  with pytest.raises(policy_file.PolicyError, match="file: cannot be read"):
    policy_file.load(str(tmp_path / "absent.json"))
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(policy_file.PolicyError, match=r"bad.json: file: is not valid JSON"):
    policy_file.load(str(tmp_path / "bad.json"))


def test_context_rows_are_validated_by_the_fusion_config():
  with pytest.raises(ValueError, match="unknown activity 'gym'"):
    spec.FusionConfig(context_weights={("free", "gym"): (1, 0, 0)})
  with pytest.raises(ValueError, match="3 finite weights"):
    spec.FusionConfig(context_weights={("free", "focus"): (1, -1, 0)})
  with pytest.raises(ValueError, match="context_weights row for 'focus' has beta"):
    spec.FusionConfig(context_weights={("paid", "focus"): (0.5, 0.5, 0)})
  assert spec.FusionConfig.from_dict(FUSION.to_dict()) == FUSION
  legacy = {k: v for k, v in spec.FusionConfig().to_dict().items() if k != "context_weights"}
  assert spec.FusionConfig.from_dict(legacy) == spec.FusionConfig()


def test_both_kernels_use_the_context_rows():
  """Every (segment, activity) pair, with and without a row of its own: the TF layer and
  the numpy kernel pick the same weights and give the same scores."""
  rng = np.random.default_rng(5)
  pairs = [(s, a) for s in range(len(feature_spec.SEGMENTS))
           for a in range(len(feature_spec.ACTIVITIES))]
  b, n = len(pairs), 6
  inputs = {h: rng.random((b, n)).astype(np.float32) for h in spec.HEADS}
  inputs["segment"] = np.array([p[0] for p in pairs], np.int64)
  inputs["activity"] = np.array([p[1] for p in pairs], np.int64)
  inputs["familiar"] = (rng.random((b, n)) < 0.5).astype(np.float32)
  inputs["seed"] = np.arange(b, dtype=np.int64)
  want = np.array([FUSION.weights_in(feature_spec.SEGMENTS[s], feature_spec.ACTIVITIES[a])
                   for s, a in pairs])
  got_np = kernel_np.fuse(inputs, FUSION)
  got_tf = {k: v.numpy() for k, v in ScoreFusion(FUSION)(
      {k: tf.constant(v) for k, v in inputs.items()}).items()}
  np.testing.assert_allclose(got_np["weights"], want)
  np.testing.assert_allclose(got_tf["weights"], want, atol=1e-7)
  np.testing.assert_allclose(got_tf["score"], got_np["score"], atol=1e-6)
  # A layer rebuilt from its config keeps the rows.
  again = ScoreFusion.from_config(ScoreFusion(FUSION).get_config())
  assert again.config == FUSION
