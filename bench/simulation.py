"""Simulation benchmark (``python -m bench.run simulation``): rollout scale, OPE, bandits.

Measurements, each next to a baseline from the same process and run:

(a) scale: a vectorized rollout of the production fusion policy (fusion + mixing twins,
    slates of 10, one session per active listener-day) for ``BENCH_SIM_USERS`` listeners
    (default 100,000) x 7 days, as listener-days per second (wall and per CPU-second);
    target: 100k x 7 in at most 10 minutes on 2 cores. Baseline: the same rollout code
    run one listener at a time (``chunk_users=1``, a per-listener Python loop) on
    ``BENCH_SIM_BASELINE_USERS`` (default 100) listeners.
(b) Beam: the same rollout split into listener chunks on the Beam DirectRunner, on
    ``BENCH_SIM_BEAM_USERS`` (default 4,000) listeners, vs the in-process rollout of
    the same listeners (same totals, checked).
(c) the report at its defaults (5,000 listeners x 7 days, grid step 0.25): doubly
    robust relative error per held-out target (target <= 5% each), the per-segment
    bandits' last-day objective over the best fixed grid point's (target >= 95%), and
    the frontier's floor marks (every point marked iff its completion >= the floor).
"""

import os
import tempfile
import time

import numpy as np

import simulation  # noqa: F401  (Keras 2 guard before TensorFlow)
from bench import common

DAYS = 7
SCALE_TARGET_S = 600.0
DR_TARGET = 0.05
BANDIT_TARGET = 0.95


def _rollout_rate(world, users: int, chunk_users: int):
  from simulation import policies  # pylint: disable=import-outside-toplevel
  from simulation import rollout  # pylint: disable=import-outside-toplevel
  cfg = rollout.RolloutConfig(users=users, days=DAYS, seed=11, chunk_users=chunk_users)
  cpu0, t0 = time.process_time(), time.perf_counter()
  res = rollout.rollout(world, policies.FusionPolicy(), cfg)
  cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
  return {"users": users, "days": DAYS, "chunk_users": chunk_users, "wall_s": wall,
          "cpu_s": cpu, "listener_days_per_s": users * DAYS / wall,
          "listener_days_per_cpu_s": users * DAYS / cpu,
          "sessions": res.summary()["sessions"]}, res


def bench_scale(world, users: int, baseline_users: int):
  fast, _ = _rollout_rate(world, users, chunk_users=10_000)
  slow, _ = _rollout_rate(world, baseline_users, chunk_users=1)
  return {"vectorized": fast, "per_listener_loop": slow,
          "ratio": fast["listener_days_per_s"] / slow["listener_days_per_s"],
          "extrapolated_100k_x7_s": 100_000 * DAYS / fast["listener_days_per_s"],
          "measured_full_scale": users >= 100_000,
          "meets_target": 100_000 * DAYS / fast["listener_days_per_s"] <= SCALE_TARGET_S}


def bench_beam(world, users: int):
  from simulation import policies  # pylint: disable=import-outside-toplevel
  from simulation import rollout  # pylint: disable=import-outside-toplevel
  from simulation.world_config import WorldConfig  # pylint: disable=import-outside-toplevel
  cfg = rollout.RolloutConfig(users=users, days=DAYS, seed=11, chunk_users=1000)
  t0 = time.perf_counter()
  beam = rollout.rollout_beam(7, WorldConfig(n_tracks=5000), policies.FusionPolicy, cfg)
  beam_s = time.perf_counter() - t0
  t0 = time.perf_counter()
  direct = rollout.rollout(world, policies.FusionPolicy(), cfg)
  direct_s = time.perf_counter() - t0
  return {"users": users, "beam_wall_s": beam_s, "direct_wall_s": direct_s,
          "beam_listener_days_per_s": users * DAYS / beam_s,
          "direct_listener_days_per_s": users * DAYS / direct_s,
          "ratio": direct_s / beam_s,
          "same_totals": bool(np.allclose(beam.cube, direct.cube))}


def bench_report():
  from simulation import report  # pylint: disable=import-outside-toplevel
  cfg = report.ReportConfig()
  with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    res = report.run(tmp, cfg)
    wall = time.perf_counter() - t0
  ope = {r["target"]: {"truth": r["truth"], "dr": r["dr"], "dr_rel_err": r["dr_rel_err"],
                       "ips_rel_err": r["ips_rel_err"], "snips_rel_err": r["snips_rel_err"],
                       "pbm_rel_err": r["pbm_rel_err"]} for r in res["ope"]}
  b = res["bandits"]
  bandits = {name: {"ratio_to_best_grid_last_day": v["ratio_to_best_grid_last_day"],
                    "gap_closed_last_day": v["gap_closed_last_day"],
                    "final_cumulative_regret": v["cumulative_regret"][-1],
                    "last_day_objective": v["last_day_expected_reward"]}
             for name, v in b["bandits"].items()}
  marks_ok = all(r["meets_floor"] == (r["completion_rate"] >= cfg.floor)
                 for r in res["grid"])
  return {
      "wall_s": wall, "users": cfg.users, "days": cfg.days, "grid_points": len(res["grid"]),
      "floor": cfg.floor, "ope": ope,
      "dr_max_rel_err": max(v["dr_rel_err"] for v in ope.values()),
      "dr_meets_target": all(v["dr_rel_err"] <= DR_TARGET for v in ope.values()),
      "best_grid_point": b["best_grid_point"],
      "best_grid_last_day_objective": b["best_grid_last_day"], "bandits": bandits,
      "bandits_meet_target": {n: v["ratio_to_best_grid_last_day"] >= BANDIT_TARGET
                              for n, v in bandits.items()},
      "frontier_points_meeting_floor": sum(r["meets_floor"] for r in res["grid"]),
      "frontier_marks_match_floor": marks_ok,
      "recommended": {s: r["weights"] for s, r in res["recommended"].items()},
  }


def main() -> None:
  from simulation.world import World  # pylint: disable=import-outside-toplevel
  from simulation.world_config import WorldConfig  # pylint: disable=import-outside-toplevel
  users = int(os.environ.get("BENCH_SIM_USERS", "100000"))
  baseline_users = int(os.environ.get("BENCH_SIM_BASELINE_USERS", "100"))
  beam_users = int(os.environ.get("BENCH_SIM_BEAM_USERS", "4000"))
  world = World(WorldConfig(n_tracks=5000), seed=7)

  scale = bench_scale(world, users, baseline_users)
  v = scale["vectorized"]
  print(f"[simulation] rollout {users:,} x {DAYS} days in {v['wall_s']:.1f} s "
        f"({v['listener_days_per_s']:,.0f} listener-days/s); per-listener loop "
        f"{scale['per_listener_loop']['listener_days_per_s']:,.0f}/s", flush=True)
  beam = bench_beam(world, beam_users)
  print(f"[simulation] beam {beam['beam_listener_days_per_s']:,.0f} listener-days/s, "
        f"same totals: {beam['same_totals']}", flush=True)
  rep = bench_report()
  print(f"[simulation] DR max relative error {rep['dr_max_rel_err']:.4f}; bandits / best "
        f"grid: " + ", ".join(f"{n} {b['ratio_to_best_grid_last_day']:.3f}"
                              for n, b in rep["bandits"].items()), flush=True)

  rows = [
      {"measure": f"(a) rollout listener-days/s ({users:,} x {DAYS})",
       "value": v["listener_days_per_s"],
       "baseline": scale["per_listener_loop"]["listener_days_per_s"],
       "baseline_is": f"same rollout one listener at a time ({baseline_users} listeners)",
       "ratio": scale["ratio"],
       "check": f"100k x 7 in {scale['extrapolated_100k_x7_s']:.0f} s <= {SCALE_TARGET_S:.0f}: "
                f"{scale['meets_target']}"},
      {"measure": f"(b) Beam DirectRunner listener-days/s ({beam_users:,} x {DAYS})",
       "value": beam["beam_listener_days_per_s"],
       "baseline": beam["direct_listener_days_per_s"], "baseline_is": "in-process rollout",
       "ratio": beam["ratio"], "check": f"same totals: {beam['same_totals']}"},
      {"measure": "(c) DR max relative error over 3 held-out targets",
       "value": rep["dr_max_rel_err"], "baseline": DR_TARGET, "baseline_is": "target",
       "ratio": rep["dr_max_rel_err"] / DR_TARGET, "check": f"<= 5%: {rep['dr_meets_target']}"},
  ]
  for name, b in rep["bandits"].items():
    rows.append({"measure": f"(c) {name} last-day objective / best fixed grid point",
                 "value": b["ratio_to_best_grid_last_day"], "baseline": BANDIT_TARGET,
                 "baseline_is": "target", "ratio": b["ratio_to_best_grid_last_day"] / BANDIT_TARGET,
                 "check": f">= 95%: {rep['bandits_meet_target'][name]}"})
  print(common.table(rows, ["measure", "value", "baseline", "baseline_is", "ratio", "check"]))
  common.write_results("simulation", {"scale": scale, "beam": beam, "report": rep,
                                      "table": rows})


if __name__ == "__main__":
  main()
