"""Choosing the weights to ship: grid rollouts, the frontier, per-segment recommendations.

This module owns the part of ``melody simulate`` that turns rollouts into a choice, for
either scorer of ``simulation.scorers``: it rolls out every point of an (alpha, beta,
gamma) simplex grid, flags the Pareto frontier (completion, conversions, exposure) and
the points above the completion floor, recommends a weight row per segment (and per
(segment, activity) pair) as the best objective among floor-respecting points on that
group's sessions, and rolls the recommended table out against the current one. With
both scorers it also says where they disagree (:func:`disagreement`): a model's errors
move the frontier, the recommended rows and the promo share.
"""

from typing import Dict, List, Sequence

import numpy as np

from features import feature_spec
from ranking.fusion import spec as fusion_spec
from simulation import rollout as rollout_lib
from simulation import scorers as scorers_lib
from simulation.world_config import SIM_ACTIVITIES, WorldConfig


def pareto(points: np.ndarray) -> np.ndarray:
  """Bool mask of points no other point beats on every column (maximization)."""
  p = np.asarray(points, np.float64)
  ge = (p[:, None, :] >= p[None, :, :]).all(-1)
  gt = (p[:, None, :] > p[None, :, :]).any(-1)
  dominated = (ge & gt).any(axis=0)
  return ~dominated


def grid_row(weights, res: rollout_lib.RolloutResult) -> Dict[str, object]:
  """One grid point's numbers: the summary, per segment, per pair and per day."""
  return {"weights": [float(x) for x in weights], **res.summary(),
          "last_day_expected_reward": res.summary(res.cube[-1])[
              "expected_reward_per_session"],
          "by_segment": res.by_segment(),
          "by_segment_activity": res.by_segment_activity(),
          "by_day_expected_reward": [d["expected_reward_per_session"] for d in res.by_day()]}


class _FusionFactory:
  """Picklable policy factory for Beam workers."""

  def __init__(self, table, slate_len):
    self.table, self.slate_len = table, slate_len

  def __call__(self):
    return scorers_lib.OracleScorer(slate_len=self.slate_len).policy(self.table)


def grid_rows(world, cfg, grid, scorer, runner: str = "direct",
              beam_args: Sequence[str] = ()) -> List[Dict[str, object]]:
  """Rolls out every grid point (one weight row for every segment) with ``scorer``;
  ``runner`` "beam" or "dask" (``rollout.BEAM_RUNNERS``) runs the oracle's rollouts as
  Beam pipelines, with ``beam_args``."""
  rows = []
  rollout_config = scorer.rollout_config(cfg.rollout_config())
  for g in grid:
    table = scorers_lib.segment_table(g)
    if runner in rollout_lib.BEAM_RUNNERS and isinstance(scorer, scorers_lib.OracleScorer):
      res = rollout_lib.rollout_beam(cfg.world_seed, WorldConfig(n_tracks=cfg.n_tracks),
                                     _FusionFactory(table, cfg.slate_len), rollout_config,
                                     list(beam_args), runner=rollout_lib.BEAM_RUNNERS[runner])
    else:
      res = rollout_lib.rollout(world, scorer.policy(table), rollout_config)
    rows.append(grid_row(g, res))
  pts = np.array([[r["completion_rate"], r["expected_conversions_per_1k_sessions"],
                   r["exposure_per_session"]] for r in rows])
  for r, f in zip(rows, pareto(pts)):
    r["frontier"] = bool(f)
    r["meets_floor"] = bool(r["completion_rate"] >= cfg.floor)
  return rows


def recommend(rows: List[Dict[str, object]], floor: float, by: str = "by_segment",
              keys=feature_spec.SEGMENTS) -> Dict[str, Dict[str, object]]:
  """Per group (a segment, or ``"segment/activity"`` with ``by="by_segment_activity"``):
  the grid point with the best expected objective on that group's sessions among those
  keeping its completion rate >= floor (the best completion rate if none does)."""
  out = {}
  for seg in keys:
    cand = [(r[by][seg], r["weights"]) for r in rows if seg in r[by]]
    if not cand:
      continue
    ok = [c for c in cand if c[0]["completion_rate"] >= floor]
    if ok:
      best = max(ok, key=lambda c: c[0]["expected_reward_per_session"])
    else:
      best = max(cand, key=lambda c: c[0]["completion_rate"])
    out[seg] = {"weights": best[1], "meets_floor": bool(ok),
                "completion_rate": best[0]["completion_rate"],
                "expected_reward_per_session": best[0]["expected_reward_per_session"]}
  return out


def recommended_table(recommended: Dict[str, Dict[str, object]]) -> np.ndarray:
  """``[segments, 3]``: the recommended rows, the current table's row for a segment
  the rollouts never saw."""
  current = fusion_spec.segment_table(fusion_spec.FusionConfig())
  return np.array([recommended[s]["weights"] if s in recommended else current[i]
                   for i, s in enumerate(feature_spec.SEGMENTS)], np.float64)


def choose(world, cfg, grid, scorer, runner: str = "direct",
           beam_args: Sequence[str] = ()) -> Dict[str, object]:
  """The grid, the recommendations and the recommended-vs-current rollouts of ``scorer``.

  Args:
    world: the world.
    cfg: a ``report.ReportConfig``.
    grid: ``[G, 3]`` weight rows.
    scorer: an ``OracleScorer`` or ``ModelScorer``.
    runner: "direct", "beam" or "dask" (oracle grid rollouts only).
    beam_args: more Beam flags for "beam" and "dask" (e.g. the Dask scheduler's
      ``--dask_client_address``).

  Returns:
    ``grid`` rows, ``recommended`` per segment, ``recommended_context`` per pair,
    ``recommended_vs_current`` (whole-table rollouts, same listeners) and ``scorer``.
  """
  rows = grid_rows(world, cfg, grid, scorer, runner, beam_args)
  recommended = recommend(rows, cfg.floor)
  pairs = [f"{s}/{a}" for s in feature_spec.SEGMENTS for a in SIM_ACTIVITIES]
  rec_context = recommend(rows, cfg.floor, by="by_segment_activity", keys=pairs)
  table = recommended_table(recommended)
  rollout_config = scorer.rollout_config(cfg.rollout_config())
  rec_result = rollout_lib.rollout(world, scorer.policy(table), rollout_config)
  ctx_policy = scorer.policy(scorers_lib.context_table(
      {k: r["weights"] for k, r in rec_context.items()}, table))
  compare = {
      "current": rollout_lib.rollout(world, scorer.policy(None), rollout_config).summary(),
      "recommended": rec_result.summary(),
      "context_rules": rollout_lib.rollout(world, ctx_policy, rollout_config).summary(),
      "recommended_by_segment": rec_result.by_segment(),
      "recommended_by_activity": rec_result.by_activity()}
  return {"scorer": {"name": scorer.name, "version": scorer.version,
                     "users": rollout_config.users},
          "grid": rows, "recommended": recommended, "recommended_context": rec_context,
          "recommended_vs_current": compare}


def disagreement(model: Dict[str, object], oracle: Dict[str, object]) -> Dict[str, object]:
  """Where the model's and the oracle's choices differ: frontier membership per grid
  point, the recommended row per segment, and the recommended table's outcomes."""
  keys = ("completion_rate", "promo_share", "exposure_per_session",
          "expected_conversions_per_1k_sessions", "expected_reward_per_session")
  return {
      "frontier": [{"weights": m["weights"], "model": m["frontier"], "oracle": o["frontier"],
                    "model_meets_floor": m["meets_floor"], "oracle_meets_floor": o["meets_floor"]}
                   for m, o in zip(model["grid"], oracle["grid"])],
      "recommended": {s: {"model": model["recommended"].get(s, {}).get("weights"),
                          "oracle": oracle["recommended"].get(s, {}).get("weights")}
                      for s in feature_spec.SEGMENTS},
      "recommended_outcomes": {
          name: {k: choice["recommended_vs_current"]["recommended"][k] for k in keys}
          for name, choice in (("model", model), ("oracle", oracle))},
  }


def _w(weights) -> str:
  return "/".join(f"{w:g}" for w in weights) if weights is not None else "-"


def markdown(res: Dict[str, object]) -> List[str]:
  """The report's scorer section: which scorer chose the weights and, when both ran,
  where the model and the oracle disagree."""
  s = res["scorer"]
  lines = ["\n## Scorer\n",
           f"The frontier and the recommendations above come from the **{s['name']}** "
           f"scorer (`{s['version']}`, {s['users']} listeners per rollout). Bandits, the "
           "controller and the off-policy checks use the oracle."]
  d = res.get("scorer_disagreement")
  if not d:
    return lines
  lines += ["\n### Model vs oracle scorer\n",
            "| grid point | frontier (model) | frontier (oracle) | floor (model) | "
            "floor (oracle) |", "|---|---|---|---|---|"]
  for r in d["frontier"]:
    lines.append(f"| {_w(r['weights'])} | {'yes' if r['model'] else ''} | "
                 f"{'yes' if r['oracle'] else ''} | {'ok' if r['model_meets_floor'] else 'below'}"
                 f" | {'ok' if r['oracle_meets_floor'] else 'below'} |")
  lines += ["", "| segment | recommended (model) | recommended (oracle) |", "|---|---|---|"]
  for seg, r in d["recommended"].items():
    same = "" if r["model"] == r["oracle"] else " **differs**"
    lines.append(f"| {seg} | {_w(r['model'])}{same} | {_w(r['oracle'])} |")
  lines += ["", "| recommended table rolled out by | completion | promo share | "
            "exposure/session | exp. conv/1k | objective |", "|---|---|---|---|---|---|"]
  for name, o in d["recommended_outcomes"].items():
    lines.append(f"| {name} | " + " | ".join(f"{o[k]:.4g}" for k in (
        "completion_rate", "promo_share", "exposure_per_session",
        "expected_conversions_per_1k_sessions", "expected_reward_per_session")) + " |")
  return lines
