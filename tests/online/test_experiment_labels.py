"""Tests of moving the canary experiment's version labels (online.canary_labels) on a
running model server (serving.reconfigure through TF Serving's config reload), seen
through the gateway's split."""

import grpc
import pytest

from melody_testing import canary_stack
from online import canary_labels
from online import experiment_split
from serving import model_config

SPLIT = experiment_split.ExperimentSplit("labels", 0.5, "s")
USERS = [f"u{i}" for i in range(24)]


def _entry(base, labels):
  return model_config.ModelEntry(
      "melody", base, model_config.VersionPolicy("specific", versions=tuple(labels.values())),
      labels)


def test_push_promote_and_rollback_move_labels_and_policy():
  entry = _entry("/m", {"stable": 1})
  pushed = canary_labels.push_canary(entry, 2)
  assert pushed.labels == {"stable": 1, "canary": 2}
  assert pushed.version_policy.versions == (1, 2)
  promoted = canary_labels.after_decision(pushed, "promote")
  assert promoted.labels == {"stable": 2} and promoted.version_policy.versions == (2,)
  rolled = canary_labels.after_decision(pushed, "rollback")
  assert rolled.labels == {"stable": 1} and rolled.version_policy.versions == (1,)
  assert canary_labels.after_decision(pushed, "keep") is None
  with pytest.raises(ValueError, match="already 'stable'"):
    canary_labels.push_canary(entry, 1)
  with pytest.raises(ValueError, match="no 'canary' label"):
    canary_labels.promote(entry)
  with pytest.raises(ValueError, match="no 'stable' label"):
    canary_labels.rollback(_entry("/m", {"canary": 2}))


def _versions_by_arm(client):
  out = {}
  for user in USERS:
    response = client.recommend(user_id=user, k=2)
    assert response.source == "model"
    out.setdefault(response.arm, set()).add(response.model_version)
  return out


@pytest.mark.slow
def test_a_canary_is_pushed_promoted_and_a_next_one_rolled_back_without_a_restart(
    tmp_path):
  with canary_stack.canary_stack(str(tmp_path), {"stable": 1}, SPLIT) as stack:
    server, client, config, entry = (stack.server, stack.client, stack.config_path,
                                     stack.entry)
    # No canary yet: every listener is served (and counted) as stable.
    assert _versions_by_arm(client) == {"stable": {1}}
    entry = canary_labels.push_canary(entry, 2)
    canary_labels.apply([entry], config, server.target)
    assert server.loaded_versions("melody") == (1, 2)
    assert _versions_by_arm(client) == {"stable": {1}, "canary": {2}}
    entry = canary_labels.promote(entry)
    canary_labels.apply([entry], config, server.target)
    assert server.loaded_versions("melody") == (2,)
    assert _versions_by_arm(client) == {"stable": {2}}
    entry = canary_labels.push_canary(entry, 3)
    canary_labels.apply([entry], config, server.target)
    assert _versions_by_arm(client) == {"stable": {2}, "canary": {3}}
    entry = canary_labels.rollback(entry)
    canary_labels.apply([entry], config, server.target)
    assert server.loaded_versions("melody") == (2,)
    assert _versions_by_arm(client) == {"stable": {2}}
    assert model_config.read_model_config(config) == (entry,)
    # A label on a version that is not there is refused; what is served stays.
    with pytest.raises(grpc.RpcError) as e:
      canary_labels.apply([canary_labels.push_canary(entry, 7)], config, server.target)
    assert e.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "[7]" in e.value.details()
    assert server.loaded_versions("melody") == (2,)
    assert model_config.read_model_config(config) == (entry,)
    # What needs a restart is refused by name.
    base = entry.base_path
    with pytest.raises(ValueError, match="adding or removing"):
      server.reload_config([entry, model_config.ModelEntry("other", base)])
    with pytest.raises(ValueError, match="base path"):
      server.reload_config([_entry(str(tmp_path / "elsewhere"), {"stable": 2})])
    with pytest.raises(ValueError, match="selects none"):
      server.reload_config([_entry(base, {"stable": 9})])
    assert server.loaded_versions("melody") == (2,)
