"""`melody live` end to end on a small twin: a bootstrap model served as stable, a day of
100 listeners (two sessions each) through the real gateway, nearline updater and model
server (subprocesses) with a model-server outage halfway through, then the scheduled
pipeline's candidate, the canary labels, the controller's override, the day's event
accounting and its report."""

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
      users=100, days=1, workdir=str(workdir), history_days=2,
      canary_share=0.5, day=live_day.DayOptions(bad_fraction=0.05, sessions=2),
      training=live_pipeline.TrainingOptions(steps=20, warm_steps=10, window_days=2),
      test=live_experiment.TestSettings(min_samples=10), outage_day=1)
  summary = live_loop.LiveLoop(config).run()
  return summary, str(workdir)


def test_the_day_logs_events_that_reach_the_state_store(run):
  summary, workdir = run
  (day,) = summary["days"]
  assert day["day"] == 1 and day["sessions"] > 0 and day["plays"] > 0
  assert day["nearline_caught_up"]
  with open(live_day.day_log_path(os.path.join(workdir, "events"), 1),
            encoding="utf-8") as f:
    assert sum(1 for _ in f) >= day["plays"]
  with stores.open_store(os.path.join(workdir, "state.db")) as store:
    assert store.listener_count() > 0
    assert store.quarantined()
  assert sum(day["bad_events"].values()) > 0


def test_the_served_catalogue_knows_the_promoted_tracks(run):
  import pandas as pd
  _, workdir = run
  tracks = pd.read_parquet(os.path.join(workdir, "tracks.parquet"))
  assert 0 < tracks["is_promo"].sum() < len(tracks)


def test_the_day_candidate_becomes_the_canary_exactly_when_it_was_pushed(run):
  summary, workdir = run
  (day,) = summary["days"]
  assert "span-" in day["candidate_note"]
  # Whether the Evaluator blesses a 20-step candidate is the pipeline's call; what the
  # loop must do with either answer is fixed.
  if day["candidate"] is not None:
    assert day["canary_pushed"] and "pushed" in day["candidate_note"]
    assert day["labels"]["canary"] == day["candidate"] != day["labels"]["stable"]
  else:
    assert not day["canary_pushed"] and "not blessed" in day["candidate_note"]
    assert set(day["labels"]) == {"stable"}
  with open(os.path.join(workdir, "live.json"), encoding="utf-8") as f:
    state = json.load(f)
  assert state["labels"] == day["labels"]
  assert os.path.exists(os.path.join(workdir, "weights_override.json"))


def test_the_outage_is_absorbed_by_the_fallback_and_reported(run):
  summary, workdir = run
  (outage,) = summary["days"]
  assert outage["drill"] == "model server outage"
  assert outage["fallbacks"] > 0 and outage["errors"] == 0
  # Every event of the day, of calls the model and the fallback answered, reached the
  # event log and the state store once.
  accounting = outage["accounting"]
  assert accounting["calls"]["fallback_popularity"] == outage["fallbacks"]
  assert accounting["events"]["fallback_popularity"] > 0
  assert sum(accounting["events"].values()) == outage["plays"]
  assert accounting["held"] == accounting["counted"] == outage["plays"]
  assert accounting["lost"] == accounting["doubled"] == 0
  assert accounting["balanced"]
  report = os.path.join(workdir, "reports", "day-01")
  assert os.path.getsize(report + ".png") > 0
  with open(report + ".md", encoding="utf-8") as f:
    text = f.read()
  assert "| stable |" in text and "## Bad events" in text
