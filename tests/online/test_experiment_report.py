"""Tests of the canary experiment's daily report (online.experiment_report) on a small
synthetic day of events, requests, decisions and controller actions."""

import json

import numpy as np
import pytest

from online import experiment_report
from online import promo_controller
from online import sequential_test
from online import state_store


def _events():
  """Stable 'free': 2 sessions, 4 plays; canary 'free': 1 session, 2 plays; stable 'paid'."""
  rows = [
      ("stable", "free", "u1", "s1", 1.0, 0.0, 1.0, 0.0, False, "full"),
      ("stable", "free", "u1", "s1", 0.2, 1.0, 0.0, 0.0, True, "very_brief"),
      ("stable", "free", "u2", "s1", 0.6, 0.0, 0.0, 1.0, False, "most"),
      ("stable", "free", "u2", "s1", 0.2, 1.0, 0.0, 0.0, True, "most"),
      ("canary", "free", "u3", "s9", 0.9, 0.0, 1.0, 0.0, True, "full"),
      ("canary", "free", "u3", "s9", 0.1, 1.0, 0.0, 0.0, False, "brief"),
      ("stable", "paid", "u4", "s2", 0.5, 0.0, None, 0.0, False, "most"),
  ]
  keys = ("arm", "user_segment", "user_id", "session_id", "completion", "skip", "like",
          "subscription", "is_promo", "skip_profile")
  return [dict(zip(keys, r), track_id="t", ts=1) for r in rows]


def _requests():
  out = [{"arm": "stable", "segment": "free", "latency_ms": float(ms), "source": "model",
          "code": "OK"} for ms in range(1, 101)]
  out.append({"arm": "canary", "segment": "free", "latency_ms": 30.0,
              "source": "fallback_popularity", "code": "OK"})
  out.append({"arm": "canary", "segment": "free", "latency_ms": 50.0, "source": "",
              "code": "INTERNAL"})
  return out


def test_the_table_has_the_metrics_per_arm_and_segment():
  table = experiment_report.arm_segment_table(_events(), _requests())
  assert list(table.index) == [("canary", "free"), ("stable", "free"), ("stable", "paid")]
  stable = table.loc[("stable", "free")]
  assert (stable.sessions, stable.plays) == (2, 4)
  assert stable.completion_rate == pytest.approx(0.5)
  assert stable.skip_rate == pytest.approx(0.5)
  assert stable.early_skip_share == pytest.approx(0.5)   # 1 of 2 skips was very brief.
  assert (stable.likes, stable.conversions) == (1, 1)
  assert stable.promo_share == pytest.approx(0.5)
  assert stable.requests == 100
  assert stable.latency_p50_ms == pytest.approx(50.5)
  assert stable.latency_p99_ms == pytest.approx(99.01)
  assert (stable.errors, stable.fallbacks) == (0, 0)
  canary = table.loc[("canary", "free")]
  assert (canary.sessions, canary.completion_rate, canary.early_skip_share) == (1, 0.5, 1.0)
  assert (canary.requests, canary.errors, canary.fallbacks) == (2, 1, 1)
  paid = table.loc[("stable", "paid")]
  assert np.isnan(paid.like_rate) and np.isnan(paid.early_skip_share)
  assert np.isnan(paid.requests)


def test_the_report_writes_markdown_with_decisions_and_actions_and_a_png(tmp_path):
  test = sequential_test.CanaryTest("completion",
                                    [sequential_test.Guardrail("skip_rate", tolerance=0.01)])
  rng = np.random.default_rng(0)
  for arm, skip in (("stable", 0.2), ("canary", 0.4)):
    test.add(arm, {"completion": rng.random(400), "skip_rate": rng.binomial(1, skip, 400)})
  decision = dict(test.decide().as_dict(), day=3)
  controller = promo_controller.PromoController()
  actions = [a.as_dict() for a in controller.observe(5, {"trial": (300, 0.2)})]
  # The logs arrive as JSON lines; the report reads them back, skipping a torn line.
  path = tmp_path / "events.jsonl"
  path.write_text("\n".join(json.dumps(e) for e in _events()) + "\n{\"torn\n")
  events = experiment_report.read_jsonl([str(path)])
  assert len(events) == len(_events())
  bad = experiment_report.bad_event_counts(
      [state_store.Quarantined("a.jsonl", 3, "{", "not JSON"),
       state_store.Quarantined("a.jsonl", 9, "{}", "missing user_id"),
       state_store.Quarantined("b.jsonl", 1, "{", "not JSON")], duplicates=4)
  assert bad == {"duplicate": 4, "not JSON": 2, "missing user_id": 1}
  paths = experiment_report.write_report(str(tmp_path / "out"), events, _requests(),
                                         [decision], actions, name="day-3",
                                         title="Day 3", bad_events=bad)
  text = open(paths["markdown"], encoding="utf-8").read()
  assert text.startswith("# Day 3\n")
  assert "| canary | free | 1 | 2 | 0.5 | 0.5 |" in text
  assert "![Day 3](day-3.png)" in text
  assert "- **rollback** (day 3): guardrail skip_rate" in text
  assert "  - skip_rate: n 400/400 (stable/canary)" in text
  assert "- window 5, trial: lower (completion 0.200 over 300 sessions" in text
  assert "7 lines set aside: duplicate 4, not JSON 2, missing user_id 1" in text
  with open(paths["png"], "rb") as f:
    assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_an_empty_day_still_renders():
  table = experiment_report.arm_segment_table([], [])
  text = experiment_report.markdown(table)
  assert "No decision was taken." in text and "No action was taken." in text
  assert "Bad events" not in text
  assert "0 lines set aside." in experiment_report.markdown(table, bad_events={})
