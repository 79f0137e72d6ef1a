"""`melody live` end to end on a small twin: a bootstrap model served as stable, two days
of listeners through the real gateway, nearline updater and model server (subprocesses),
the scheduled pipeline after each day, the canary labels and decisions, the controller's
override, the daily reports; day 2 also drills a model-server outage."""

import json
import os

import pytest

from online import stores
from simulation import live_day
from simulation import live_experiment
from simulation import live_loop
from simulation import live_pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("live")
  config = live_loop.LiveConfig(
      users=100, days=2, workdir=str(workdir), history_days=2,
      canary_share=0.5, day=live_day.DayOptions(bad_fraction=0.05),
      training=live_pipeline.TrainingOptions(steps=20, window_days=2),
      test=live_experiment.TestSettings(min_samples=10), outage_day=2)
  summary = live_loop.LiveLoop(config).run()
  return summary, str(workdir)


def test_every_day_logs_events_that_reach_the_state_store(run):
  summary, workdir = run
  days = summary["days"]
  assert [d["day"] for d in days] == [1, 2]
  assert all(d["sessions"] > 0 and d["plays"] > 0 and d["nearline_caught_up"] for d in days)
  for day in (1, 2):
    with open(live_day.day_log_path(os.path.join(workdir, "events"), day),
              encoding="utf-8") as f:
      assert sum(1 for _ in f) >= days[day - 1]["plays"]
  with stores.open_store(os.path.join(workdir, "state.db")) as store:
    assert store.listener_count() > 0
    assert store.quarantined()
  assert sum(sum(d["bad_events"].values()) for d in days) > 0


def test_a_candidate_is_trained_each_day_and_a_pushed_one_is_tried_as_canary(run):
  summary, workdir = run
  days = summary["days"]
  assert all("span-" in d["candidate_note"] for d in days)
  pushed = [d for d in days if d["canary_pushed"]]
  assert pushed, [d["candidate_note"] for d in days]
  first = pushed[0]
  assert first["labels"]["canary"] == first["candidate"]
  if first["day"] == 1:
    decision = summary["decisions"][0]
    assert decision["day"] == 2 and decision["canary"] == first["candidate"]
    assert decision["action"] in ("promote", "rollback", "keep")
    assert "completion" in decision["evidence"]
  with open(os.path.join(workdir, "live.json"), encoding="utf-8") as f:
    state = json.load(f)
  assert state["labels"] == days[-1]["labels"]


def test_the_outage_is_absorbed_by_the_fallback_and_reported(run):
  summary, workdir = run
  outage = summary["days"][1]
  assert outage["drill"] == "model server outage"
  assert outage["fallbacks"] > 0 and outage["errors"] == 0
  for day in (1, 2):
    report = os.path.join(workdir, "reports", f"day-{day:02d}")
    assert os.path.getsize(report + ".png") > 0
    with open(report + ".md", encoding="utf-8") as f:
      text = f.read()
    assert "| stable |" in text and "## Bad events" in text
