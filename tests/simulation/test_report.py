"""Tests of simulation.report and ``melody simulate``: the files exist (markdown, JSON,
PNG figures), the frontier marks exactly the floor-respecting points, recommendations
keep the floor, the same seed gives the same report numbers, and the CLI writes it."""

import argparse
import dataclasses
import json
import os

import numpy as np
import pytest

from ranking.fusion import policy_file
from simulation import cli
from simulation import report as report_lib

TINY = report_lib.ReportConfig(users=400, days=2, seed=1, grid_step=0.5, floor=0.55,
                       chunk_users=200, ope_logs=1500, ope_truth=4000)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("report"))
  return out, report_lib.run(out, TINY)


def test_report_files_exist(report):
  out, _ = report
  for name in ("report.md", "report.json") + report_lib.FIGURES:
    path = os.path.join(out, name)
    assert os.path.getsize(path) > 0, name
  for name in report_lib.FIGURES:
    with open(os.path.join(out, name), "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"
  md = open(os.path.join(out, "report.md"), encoding="utf-8").read()
  for fig in report_lib.FIGURES:
    assert f"]({fig})" in md
  for heading in ("Trade-off frontier", "Recommended alpha/beta/gamma per segment",
                  "Bandits", "Promo-share controller", "Off-policy evaluation"):
    assert heading in md


def test_frontier_marks_floor_respecting_points(report):
  out, res = report
  rows = res["grid"]
  assert len(rows) == 6
  marks = [r["meets_floor"] for r in rows]
  assert any(marks) and not all(marks)       # the floor splits this grid
  for r in rows:
    assert r["meets_floor"] == (r["completion_rate"] >= TINY.floor)
  md_rows = [line for line in open(os.path.join(out, "report.md"), encoding="utf-8")
             if line.startswith("| ") and line.count("|") == 13
             and line.split("|")[1].strip()[0].isdigit()]
  assert len(md_rows) == 6
  for line, r in zip(md_rows, rows):
    assert ("**below**" in line) == (not r["meets_floor"])
  # Frontier points are not dominated on (completion, conversions, exposure).
  pts = np.array([[r["completion_rate"], r["expected_conversions_per_1k_sessions"],
                   r["exposure_per_session"]] for r in rows])
  for i, r in enumerate(rows):
    dominated = any((pts[j] >= pts[i]).all() and (pts[j] > pts[i]).any()
                    for j in range(len(rows)))
    assert r["frontier"] == (not dominated)


def test_recommendations_keep_the_floor(report):
  _, res = report
  assert set(res["recommended"]) <= {"new", "free", "free_veteran", "trial", "paid"}
  for seg, r in res["recommended"].items():
    assert len(r["weights"]) == 3 and abs(sum(r["weights"]) - 1) < 1e-9
    if r["meets_floor"]:
      assert r["completion_rate"] >= TINY.floor
      seg_rows = [g["by_segment"][seg] for g in res["grid"] if seg in g["by_segment"]]
      best = max(s["expected_reward_per_session"] for s in seg_rows
                 if s["completion_rate"] >= TINY.floor)
      assert r["expected_reward_per_session"] == best


def test_same_seed_same_report_numbers_other_seed_differs(report, tmp_path):
  _, res = report
  again = json.loads(json.dumps(report_lib.run(str(tmp_path / "again"), TINY)))
  assert again == json.loads(json.dumps(res))
  other = report_lib.run(str(tmp_path / "other"), dataclasses.replace(TINY, seed=2))
  assert other["grid"][0]["completion_rate"] != res["grid"][0]["completion_rate"]


def test_pareto_golden():
  pts = np.array([[1, 1, 1], [0, 0, 0], [2, 0, 1], [1, 1, 0]])
  assert report_lib.pareto(pts).tolist() == [True, False, True, False]


def test_cli_writes_the_report(tmp_path):
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command"))
  args = parser.parse_args([
      "simulate", "--users", "200", "--days", "1", "--grid-step", "1", "--ope-logs", "500",
      "--ope-truth", "1000", "--scorer", "oracle", "--out", str(tmp_path / "cli")])
  assert args.handler(args) == 0
  assert os.path.exists(tmp_path / "cli" / "report.md")
  assert policy_file.load(str(tmp_path / "cli" / "policy.json")).version
  with pytest.raises(SystemExit):
    parser.parse_args(["simulate", "--runner", "spark"])


def test_cli_model_scorer_needs_a_model(tmp_path, capsys):
  """The default scorer is the trained model: with nothing pushed it stops with a clear
  error before simulating anything."""
  parser = argparse.ArgumentParser()
  cli.register(parser.add_subparsers(dest="command"))
  args = parser.parse_args(["simulate", "--serving-dir", str(tmp_path / "none"),
                            "--out", str(tmp_path / "out")])
  assert args.scorer == "model"
  assert args.handler(args) == 2
  err = capsys.readouterr().err
  assert "no pushed model under" in err and "--scorer oracle" in err
  assert not os.path.exists(tmp_path / "out")


def test_report_writes_its_recommendation_as_a_policy(report):
  out, res = report
  policy = policy_file.load(os.path.join(out, "policy.json"))
  assert policy.version == res["policy_version"]
  for seg, r in res["recommended"].items():
    want = tuple(r["weights"])
    if seg == "paid":
      want = (want[0], 0.0, want[2])
    assert policy.fusion.weights_for(seg) == want
  prov = policy.provenance.to_dict()
  assert prov["model_version"].startswith("oracle")
  assert prov["constraint"] == {"metric": "completion_rate", "floor": TINY.floor,
                                "met": all(r["meets_floor"] for r in res["recommended"].values())}
  assert prov["metrics"]["completion_rate"] == pytest.approx(
      res["recommended_vs_current"]["recommended"]["completion_rate"])
