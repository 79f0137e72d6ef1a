"""Learned fusion against the hand-set grid, on the same rollouts of the served model.

This module owns ``melody fusion``: it logs training sessions by rolling out a few
hand-set weight points through an exported model's ``rank`` signature, trains the
learned fusion (``simulation.fusion_training``) once per exposure target (the
Lagrangian's constraint; the completion and conversion floors hold for every run),
rolls out every grid point and every learned variant on the same evaluation listeners
(the grid through the served graph, the learned variants over the served heads with the
numpy twin of the learned kernel, ``simulation.fusion_policy``), and compares the two
frontiers at the completion floor. With a model exported from the written
``policy.json`` (``melody export --policy``), it also rolls that model out with
``fusion = "learned"`` through its signature, next to the numpy rollout of the same
parameters. It writes ``fusion.json``, ``fusion_frontier.png`` and ``policy.json``.
"""

import dataclasses
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np

from ranking.fusion import learned as learned_lib
from ranking.fusion import policy_file
from simulation import bandits
from simulation import fusion_policy
from simulation import fusion_training
from simulation import rollout as rollout_lib
from simulation import scorers as scorers_lib
from simulation.weight_choice import pareto
from simulation.world import World
from simulation.world_config import WorldConfig

METRICS = ("completion_rate", "expected_conversions_per_1k_sessions", "exposure_per_session",
           "promo_share", "expected_reward_per_session")


@dataclasses.dataclass(frozen=True)
class CompareConfig:
  """What ``melody fusion`` rolls out and trains.

  Attributes:
    users, days: listeners and days per rollout.
    train_seed: seed of the logging rollouts (training sessions).
    eval_seed: seed of the evaluation rollouts (the same for every grid point and
      variant: common random numbers).
    world_seed, n_tracks: the world.
    grid_step: the hand-set simplex grid's step.
    floor: the completion-rate floor the comparison is made at.
    log_points: the weight points whose rollouts are the training sessions.
    exposure_targets: one learned variant per target, in multiples of the logged
      promo exposure per play.
    conversion_tolerance: conversions per play stay >= this times the logged ones.
    completion_floor: the training's floor on the softmax-expected completion per
      play (None: none).
    train: optimiser settings.
  """
  users: int = 400
  days: int = 3
  train_seed: int = 1
  eval_seed: int = 0
  world_seed: int = 7
  n_tracks: int = 5000
  grid_step: float = 0.25
  floor: float = 0.545
  log_points: Tuple[Tuple[float, float, float], ...] = (
      (1.0, 0.0, 0.0), (0.5, 0.25, 0.25), (0.25, 0.25, 0.5))
  exposure_targets: Tuple[float, ...] = (0.0, 1.0, 1.5, 2.0, 2.5)
  conversion_tolerance: float = 0.97
  completion_floor: Optional[float] = None
  train: fusion_training.TrainConfig = fusion_training.TrainConfig()

  def rollout_config(self, seed: int) -> rollout_lib.RolloutConfig:
    return rollout_lib.RolloutConfig(users=self.users, days=self.days, seed=seed,
                                     chunk_users=self.users)


def _point(label: str, kind: str, res: rollout_lib.RolloutResult, **extra) -> Dict[str, object]:
  summary = res.summary()
  return {"label": label, "kind": kind, **{m: summary[m] for m in METRICS}, **extra}


def training_data(world: World, base: fusion_policy.ServedFusionPolicy,
                  config: CompareConfig) -> fusion_training.ListwiseData:
  """Training lists from rollouts of ``config.log_points`` through the served model."""
  parts = []
  for weights in config.log_points:
    recorder = fusion_policy.RecordingWorld(world)
    policy = base.variant("weights", weights=scorers_lib.segment_table(weights), record=True)
    rollout_lib.rollout(recorder, policy, config.rollout_config(config.train_seed))
    parts.append(fusion_policy.listwise_data(policy.log, recorder.responses))
  return fusion_training.ListwiseData(**{
      f.name: np.concatenate([getattr(p, f.name) for p in parts])
      for f in dataclasses.fields(fusion_training.ListwiseData)})


def train_variants(data: fusion_training.ListwiseData, init: learned_lib.LearnedFusionParams,
                   config: CompareConfig) -> List[Dict[str, object]]:
  """One trained variant per exposure target, with its final surrogates and multipliers."""
  logged = data.logged_means()
  out = []
  for target in config.exposure_targets:
    constraints = fusion_training.Constraints(
        completion=config.completion_floor, exposure=target * logged["exposure"],
        conversion=config.conversion_tolerance * logged["conversion"])
    result = fusion_training.train(data, init, constraints, config.train)
    out.append({"exposure_target": target, "params": result.params,
                "constraints": constraints.active(), "final": result.history[-1],
                "start": result.history[0]})
  return out


def at_floor(points: List[Dict[str, object]], floor: float) -> Optional[Dict[str, object]]:
  """The point with the best expected objective among those at or above ``floor``."""
  ok = [p for p in points if p["completion_rate"] >= floor]
  return max(ok, key=lambda p: p["expected_reward_per_session"]) if ok else None


def _lift(grid_best, learned_best) -> Dict[str, Optional[float]]:
  if grid_best is None or learned_best is None:
    return {m: None for m in METRICS}
  return {m: (learned_best[m] / grid_best[m] - 1.0) if grid_best[m] else None
          for m in METRICS}


def run(out_dir: str, model_dir: str, config: CompareConfig = CompareConfig(),
        served_learned: Optional[str] = None, log=print) -> Dict[str, object]:
  """Trains, compares and writes ``fusion.json``, ``fusion_frontier.png``, ``policy.json``.

  Args:
    out_dir: output directory (created).
    model_dir: the exported SavedModel version whose heads are fused.
    config: sizes, seeds, grid, targets and optimiser settings.
    served_learned: optional SavedModel exported with a learned-fusion policy; rolled
      out with ``fusion = "learned"`` and compared with the numpy rollout of its policy.
    log: progress lines.

  Returns:
    What ``fusion.json`` holds.
  """
  os.makedirs(out_dir, exist_ok=True)
  world = World(WorldConfig(n_tracks=config.n_tracks), seed=config.world_seed)
  size = scorers_lib.model_catalog_size(model_dir)
  if size is not None and size != config.n_tracks:
    raise ValueError(f"the model at {model_dir!r} scores {size} tracks, the world has "
                     f"{config.n_tracks} (pass --tracks {size})")
  base = fusion_policy.ServedFusionPolicy(model_dir)
  data = training_data(world, base, config)
  log(f"[fusion] {len(data)} training sessions from {len(config.log_points)} logging points")
  init = learned_lib.LearnedFusionParams.from_fusion(base.fusion_config)
  variants = train_variants(data, init, config)
  evaluation = config.rollout_config(config.eval_seed)

  grid = []
  for g in bandits.simplex_grid(config.grid_step):
    res = rollout_lib.rollout(world, base.variant("weights", weights=scorers_lib.segment_table(g)),
                              evaluation)
    grid.append(_point("/".join(f"{w:g}" for w in g), "grid", res,
                       weights=[float(w) for w in g]))
  log(f"[fusion] rolled out {len(grid)} grid points through the served signature")
  learned_points = []
  for v in variants:
    res = rollout_lib.rollout(world, base.variant("weights", learned=v["params"]), evaluation)
    learned_points.append(_point(f"exposure x{v['exposure_target']:g}", "learned", res,
                                 exposure_target=v["exposure_target"],
                                 train_final=v["final"], train_start=v["start"]))
  for group in (grid, learned_points, grid + learned_points):
    flags = pareto(np.array([[p[m] for m in METRICS[:3]] for p in group]))
    key = "frontier_all" if len(group) == len(grid) + len(learned_points) else "frontier"
    for p, f in zip(group, flags):
      p[key] = bool(f)
  grid_best, learned_best = at_floor(grid, config.floor), at_floor(learned_points, config.floor)
  chosen = learned_best or max(learned_points, key=lambda p: p["completion_rate"])
  params = variants[learned_points.index(chosen)]["params"]
  policy = policy_file.from_configs(
      base.fusion_config, base.mixing, {
          "simulation_run": f"melody fusion users={config.users} days={config.days} "
                            f"train_seed={config.train_seed} eval_seed={config.eval_seed}",
          "world_version": f"world_seed={config.world_seed} tracks={config.n_tracks}",
          "model_version": os.path.abspath(model_dir),
          "metrics": {m: chosen[m] for m in METRICS},
          "constraint": {"metric": "completion_rate", "floor": config.floor,
                         "met": chosen["completion_rate"] >= config.floor}},
      source=os.path.join(out_dir, "policy.json"), learned=params, select="learned")
  policy.dump(os.path.join(out_dir, "policy.json"))
  result = {"config": _config_dict(config), "model": os.path.abspath(model_dir),
            "training_sessions": len(data), "logged": data.logged_means(),
            "grid": grid, "learned": learned_points, "floor": config.floor,
            "at_floor": {"grid": grid_best, "learned": learned_best,
                         "lift": _lift(grid_best, learned_best)},
            "policy_version": policy.version}
  if served_learned:
    result["served_check"] = served_check(world, served_learned, evaluation)
  with open(os.path.join(out_dir, "fusion.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  frontier_png(os.path.join(out_dir, "fusion_frontier.png"), grid, learned_points,
               config.floor, result.get("served_check"))
  return result


def served_check(world: World, model_dir: str,
                 evaluation: rollout_lib.RolloutConfig) -> Dict[str, object]:
  """A learned-fusion export rolled out through its signature (``fusion = "learned"``)
  and, on the same listeners, its policy's parameters fused in numpy over its heads.

  Raises:
    ValueError: the export holds no learned-fusion policy.
  """
  path = os.path.join(model_dir, "assets.extra", "policy.json")
  policy = policy_file.load(path) if os.path.isfile(path) else None
  if policy is None or policy.learned is None:
    raise ValueError(f"{model_dir!r} was not exported with a learned-fusion policy")
  base = fusion_policy.ServedFusionPolicy(model_dir)
  served = rollout_lib.rollout(world, base.variant("learned"), evaluation)
  numpy = rollout_lib.rollout(world, base.variant("weights", learned=policy.learned),
                              evaluation)
  return {"model": os.path.abspath(model_dir), "policy_version": policy.version,
          "served": _point("served learned", "served", served),
          "numpy": _point("numpy learned", "numpy", numpy)}


def _config_dict(config: CompareConfig) -> Dict[str, object]:
  d = dataclasses.asdict(config)
  d["train"] = dataclasses.asdict(config.train)
  return d


def frontier_png(path: str, grid, learned_points, floor: float, check=None) -> None:
  """Completion against exposure and against conversions, grid and learned."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
  for ax, metric, name in ((axes[0], "exposure_per_session", "exposure / session"),
                           (axes[1], "expected_conversions_per_1k_sessions",
                            "expected conversions / 1k sessions")):
    for points, style, color, label in ((grid, "o", "C0", "hand-set grid"),
                                        (learned_points, "s", "C2", "learned fusion")):
      xy = np.array([[p[metric], p["completion_rate"]] for p in points])
      ax.plot(xy[:, 0], xy[:, 1], style, color=color, alpha=0.8, label=label)
      # This panel's own frontier: no other point has more of both.
      front = xy[pareto(xy)]
      front = front[np.argsort(front[:, 0])]
      ax.plot(front[:, 0], front[:, 1], "-", color=color, alpha=0.5)
    if check:
      ax.plot([check["served"][metric]], [check["served"]["completion_rate"]], "k*",
              markersize=12, label="learned, served graph")
    ax.axhline(floor, color="grey", linestyle="--", linewidth=1, label="completion floor")
    ax.set_xlabel(name)
    ax.set_ylabel("completion rate")
  axes[0].legend(fontsize=8)
  fig.suptitle("Learned vs hand-set fusion on the same rollouts of the served model")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
