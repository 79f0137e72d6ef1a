"""``melody pipeline run --policy``: the policy reaches the Trainer as validated text, a
bad one stops the run before it starts, and ``melody pipeline runs`` shows each run's
policy version."""

import json
import os

import pytest

from pipeline import configs
from pipeline import runs
from pipeline import trainer
from ranking.fusion import policy_file
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig

PROVENANCE = {"simulation_run": "test", "world_version": "seed=7", "model_version": "oracle",
              "metrics": {"completion_rate": 0.5},
              "constraint": {"metric": "completion_rate", "floor": 0.5, "met": True}}


@pytest.fixture
def policy():
  fusion = FusionConfig(segment_weights={"new": (1, 0, 0), "free": (0.5, 0.5, 0),
                                         "free_veteran": (0.5, 0.25, 0.25),
                                         "trial": (0.5, 0.5, 0), "paid": (0.5, 0, 0.5)})
  return policy_file.from_configs(fusion, MixingConfig(), PROVENANCE)


def test_the_trainer_gets_the_policy_text(policy, tmp_path):
  cfg = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"),
                             policy_json=policy.to_json())
  custom = cfg.trainer_custom_config()
  assert trainer.trained_policy(custom) == policy
  assert trainer.trained_policy(configs.local_config(
      str(tmp_path / "data"), str(tmp_path / "work")).trainer_custom_config()) is None
  broken = json.loads(policy.to_json())
  broken["epsilon"] = -1
  with pytest.raises(ValueError, match="custom_config policy_json: epsilon: must be in"):
    trainer.trained_policy({"policy_json": json.dumps(broken)})


def test_a_bad_policy_stops_the_run_before_it_starts(tmp_path, capsys):
  from melody_cli import main as cli  # pylint: disable=import-outside-toplevel
  bad = tmp_path / "policy.json"
  bad.write_text("{}")
  workdir = tmp_path / "work"
  assert cli.main(["pipeline", "run", "--data", str(tmp_path / "data"), "--workdir",
                   str(workdir), "--policy", str(bad)]) == 2
  assert f"{bad}: schema_version: is missing" in capsys.readouterr().err
  assert not os.path.exists(workdir)


def test_runs_show_the_policy_version(policy, tmp_path):
  model_uri = tmp_path / "Trainer" / "model" / "3"
  extra = model_uri / "Format-Serving" / "assets.extra"
  extra.mkdir(parents=True)
  (extra / "melody_serving.json").write_text(json.dumps({"policy_version": policy.version}))
  assert runs.model_policy_version(str(model_uri)) == policy.version
  assert runs.model_policy_version(str(tmp_path / "absent")) == ""
  with_policy = runs.RunSummary("r1", 0.0, [], policy_version=policy.version)
  table = runs.format_runs([with_policy, runs.RunSummary("r2", 0.0, [])])
  header, _, first, second = table.splitlines()[:4]
  assert header.split()[-1] == "policy"
  assert first.split()[-1] == policy.version and second.split()[-1] == "-"
