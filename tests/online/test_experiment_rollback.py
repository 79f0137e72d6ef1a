"""The canary experiment through the real gateway and model server over gRPC: listeners
split by the gateway, their sessions' outcomes (online.experiment_metrics) fed to the
sequential test, its decision applied to the version labels. A canary that makes
listeners skip is rolled back by the skip guardrail; the next, better canary is promoted;
the day's report shows the arms."""

import numpy as np
import pytest

from melody_testing import canary_stack
from online import canary_labels
from online import experiment_metrics
from online import experiment_report
from online import experiment_split
from online import sequential_test
from serving import model_config

LISTENERS = [f"listener-{i}" for i in range(160)]
# What each version does to listeners: (skip probability, mean completion).
OUTCOMES = {1: (0.25, 0.50), 2: (0.45, 0.50), 3: (0.25, 0.65)}
MAX_BATCHES = 12


def _run_until_decision(client, test, rng, events):
  """Every listener calls the gateway once per batch; returns (decision, batches)."""
  for batch in range(1, MAX_BATCHES + 1):
    start = len(events)
    for user in LISTENERS:
      response = client.recommend(user_id=user, k=3)
      assert response.source == "model"
      skip_p, completion = OUTCOMES[response.model_version]
      skip = float(rng.random() < skip_p)
      done = float(np.clip(rng.normal(completion, 0.15), 0.0, 1.0))
      events.append({"user_id": user, "session_id": f"b{batch}", "arm": response.arm,
                     "user_segment": response.segment, "completion": done, "skip": skip,
                     "model_version": response.model_version})
    for arm, observations in experiment_metrics.arm_observations(events[start:]).items():
      test.add(arm, {name: observations[name] for name in ("completion", "skip_rate")})
    decision = test.decide()
    if decision.action != sequential_test.KEEP:
      return decision, batch
  return decision, MAX_BATCHES


def _canary_test():
  return sequential_test.CanaryTest(
      "completion", [sequential_test.Guardrail("skip_rate", tolerance=0.02)],
      min_samples=50)


@pytest.mark.slow
def test_a_bad_canary_is_rolled_back_and_a_good_one_promoted(tmp_path):
  split = experiment_split.ExperimentSplit("rollback-drill", 0.5, "s")
  rng = np.random.default_rng(2023)
  events, decisions = [], []
  with canary_stack.canary_stack(str(tmp_path), {"stable": 1}, split) as stack:
    server, client, config, entry = (stack.server, stack.client, stack.config_path,
                                     stack.entry)
    # Version 2 makes listeners skip more: the skip guardrail rolls it back.
    entry = canary_labels.push_canary(entry, 2)
    canary_labels.apply([entry], config, server.target)
    decision, batches = _run_until_decision(client, _canary_test(), rng, events)
    assert (decision.action, decision.failed_guardrail) == ("rollback", "skip_rate")
    assert batches <= 6
    decisions.append(dict(decision.as_dict(), day=1))
    day1 = len(events)
    entry = canary_labels.after_decision(entry, decision.action)
    canary_labels.apply([entry], config, server.target)
    assert server.loaded_versions("melody") == (1,)
    rolled_back = client.recommend(user_id=LISTENERS[0], k=3)
    assert (rolled_back.arm, rolled_back.model_version) == ("stable", 1)
    # Version 3 completes more at the same skip rate: promoted to stable.
    entry = canary_labels.push_canary(entry, 3)
    canary_labels.apply([entry], config, server.target)
    decision, batches = _run_until_decision(client, _canary_test(), rng, events)
    assert decision.action == "promote" and batches <= 6
    assert decision.evidence["completion"].lower > 0
    decisions.append(dict(decision.as_dict(), day=2))
    entry = canary_labels.after_decision(entry, decision.action)
    canary_labels.apply([entry], config, server.target)
    assert model_config.read_model_config(config)[0].labels == {"stable": 3}
    assert {client.recommend(user_id=u, k=3).model_version for u in LISTENERS[:20]} == {3}
  table = experiment_report.arm_segment_table(events[:day1])
  assert table.loc[("canary", "new"), "skip_rate"] > table.loc[("stable", "new"), "skip_rate"]
  for day, day_events, expected in ((1, events[:day1], "**rollback** (day 1): guardrail "
                                     "skip_rate"),
                                    (2, events[day1:], "**promote** (day 2): completion +")):
    paths = experiment_report.write_report(str(tmp_path / "report"), day_events, (),
                                           decisions[day - 1:day], name=f"day-{day}")
    with open(paths["markdown"], encoding="utf-8") as f:
      assert expected in f.read()
