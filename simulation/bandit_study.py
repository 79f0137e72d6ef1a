"""The bandit study: weight bandits by context against the best fixed table per segment.

This module owns ``melody simulate --bandit``: it rolls out every simplex grid point as
one fixed table through the chosen scorer (the served model's ``rank`` signature by
default, or the oracle), picks the best grid point per segment in hindsight
(``simulation.bandit_regret``), rolls that table out as the baseline, then rolls out
each requested bandit (LinUCB, Thompson) with each requested context (listener state,
or segment only) and the random-arm reference, all on the same listeners, contexts and
candidates. It writes ``bandits.json`` (every number, the regret curves, the host and
load), ``bandits.md`` (the table) and ``bandit_regret.png`` (cumulative regret per
round, and the final regret per segment) into one directory.
"""

import dataclasses
import json
import os
import platform
import time
from typing import Dict, Optional, Sequence

import numpy as np

from features import feature_spec
from simulation import bandit_arms
from simulation import bandit_context
from simulation import bandit_regret
from simulation import bandits
from simulation import rollout as rollout_lib
from simulation import scorers as scorers_lib
from simulation.world import World
from simulation.world_config import WorldConfig

BANDITS = ("linucb", "thompson")
FILES = ("bandits.json", "bandits.md", "bandit_regret.png")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
  """What the bandit study rolls out.

  Attributes:
    users, days, seed: rollout size and seed (shared by every policy of the study).
    world_seed, n_tracks: the world.
    grid_step: simplex grid step of the arms.
    chunk_users: listeners per round (the bandits update after each round).
    slate_len: tracks per session.
    bandits: which of ``BANDITS`` to run.
    contexts: which of ``bandit_context.CONTEXTS`` each bandit sees.
    ucb_alpha, thompson_noise: the bandits' exploration.
  """
  users: int = 1000
  days: int = 7
  seed: int = 0
  world_seed: int = 7
  n_tracks: int = 5000
  grid_step: float = 0.25
  chunk_users: int = 200
  slate_len: int = 10
  bandits: Sequence[str] = BANDITS
  contexts: Sequence[str] = bandit_context.CONTEXTS
  ucb_alpha: float = 1.0
  thompson_noise: float = 1.0

  def __post_init__(self):
    for name in ("users", "days", "n_tracks", "chunk_users", "slate_len"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    for b in self.bandits:
      if b not in BANDITS:
        raise ValueError(f"bandit must be one of {BANDITS}, got {b!r}")
    for c in self.contexts:
      if c not in bandit_context.CONTEXTS:
        raise ValueError(f"bandit context must be one of {bandit_context.CONTEXTS}, got {c!r}")
    if not self.bandits or not self.contexts:
      raise ValueError("need at least one bandit and one context")

  def rollout_config(self) -> rollout_lib.RolloutConfig:
    return rollout_lib.RolloutConfig(users=self.users, days=self.days, seed=self.seed,
                                     slate_len=self.slate_len, chunk_users=self.chunk_users)


def make_bandit(kind: str, n_arms: int, dim: int, config: StudyConfig):
  """A fresh bandit of ``kind`` (``BANDITS`` or ``"random"``)."""
  if kind == "linucb":
    return bandits.LinUCB(n_arms, dim, alpha=config.ucb_alpha)
  if kind == "thompson":
    return bandits.LinearThompson(n_arms, dim, noise=config.thompson_noise)
  if kind == "random":
    return bandits.RandomArms(n_arms, dim)
  raise ValueError(f"bandit must be one of {BANDITS + ('random',)}, got {kind!r}")


def _scorer(scorer: str, model_dir: Optional[str], serving_dir: str, model_users: int,
            config: StudyConfig):
  if scorer not in ("model", "oracle"):
    raise ValueError(f"the bandit study rolls out one scorer, model or oracle; got {scorer!r}")
  path = scorers_lib.resolve_model(scorer, model_dir, serving_dir)
  if path is None:
    return scorers_lib.OracleScorer(slate_len=config.slate_len), bandit_arms.OracleArms(
        slate_len=config.slate_len)
  fixed = scorers_lib.ModelScorer(path, slate_len=config.slate_len, max_users=model_users,
                                  n_tracks=config.n_tracks)
  return fixed, bandit_arms.ServedArms(path, slate_len=config.slate_len)


def _log(msg: str) -> None:
  print(f"[bandits {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(out_dir: str, config: StudyConfig = StudyConfig(), scorer: str = "model",
        model_dir: Optional[str] = None,
        serving_dir: str = scorers_lib.DEFAULT_SERVING_DIR,
        model_users: int = scorers_lib.DEFAULT_MODEL_USERS) -> Dict[str, object]:
  """Runs the study and writes ``FILES`` into ``out_dir``.

  Args:
    out_dir: output directory (created).
    config: the study.
    scorer: ``model`` (a SavedModel's ``rank`` signature) or ``oracle``.
    model_dir: the SavedModel version (default: the latest pushed under ``serving_dir``).
    serving_dir: where the pipeline pushes models.
    model_users: listeners per model rollout at most.

  Returns:
    The JSON-ready result.

  Raises:
    ValueError: a bad scorer, no model, or a model of another catalogue.
  """
  start = time.time()
  world = World(WorldConfig(n_tracks=config.n_tracks), seed=config.world_seed)
  fixed, ranker = _scorer(scorer, model_dir, serving_dir, model_users, config)
  cfg = fixed.rollout_config(config.rollout_config())
  grid = bandits.simplex_grid(config.grid_step)

  rewards, sessions, last_day, grid_rounds = [], [], [], []
  for g in grid:
    res = rollout_lib.rollout(world, fixed.policy(scorers_lib.segment_table(g)), cfg)
    grid_rounds.append(res.rounds)
    r, s = bandit_regret.segment_totals(res)
    rewards.append(r.sum(0))
    sessions.append(s.sum(0))
    last_day.append(res.summary(res.cube[-1])["expected_reward_per_session"])
    _log(f"grid {'/'.join(f'{w:g}' for w in g)}: "
         f"{res.summary()['expected_reward_per_session']:.3f} per session")
  rewards, sessions = np.array(rewards), np.array(sessions)
  best = bandit_regret.best_fixed_per_segment(rewards, sessions)
  table = bandit_regret.best_table(grid, best)
  baseline = rollout_lib.rollout(world, fixed.policy(table), cfg)
  overall = int(np.argmax(rewards.sum(1) / np.maximum(sessions.sum(1), 1)))
  _log(f"best per segment: {baseline.summary()['expected_reward_per_session']:.3f}")

  runs = [(kind, ctx) for kind in config.bandits for ctx in config.contexts]
  runs.append(("random", "segment"))
  out_bandits = {}
  for kind, ctx_name in runs:
    context = bandit_context.make_context(ctx_name)
    name = "random arms" if kind == "random" else f"{kind}/{ctx_name}"
    policy = bandits.BanditPolicy(make_bandit(kind, len(grid), context.dim, config), grid,
                                  seed=config.seed, context=context, ranker=ranker, name=name)
    res = rollout_lib.rollout(world, policy, cfg)
    entry = bandit_regret.summarize(baseline, res, min(last_day))
    entry["cumulative_regret_vs_best_single"] = bandit_regret.round_regret(
        grid_rounds[overall], res.rounds).tolist()
    # Random arms hold no estimate to read a choice from (null in the JSON).
    entry["segment_weights"] = {s: None if np.isnan(w).any() else w.tolist()
                                for s, w in zip(feature_spec.SEGMENTS, policy.segment_choice())}
    entry["last_day_arm_counts"] = np.sum(
        policy.choices[-len(policy.choices) // config.days:], axis=0).tolist()
    out_bandits[name] = entry
    _log(f"{name}: {entry['expected_reward_per_session']:.3f} per session, regret "
         f"{entry['cumulative_regret'][-1]:.0f}")

  result = {
      "config": {**dataclasses.asdict(config), "bandits": list(config.bandits),
                 "contexts": list(config.contexts), "rollout_users": cfg.users},
      "scorer": {"name": fixed.name, "version": fixed.version},
      "state_features": list(bandit_context.STATE_FEATURES),
      "grid": grid.tolist(),
      "grid_reward_per_session_by_segment": {
          s: (rewards[:, i] / np.maximum(sessions[:, i], 1)).tolist()
          for i, s in enumerate(feature_spec.SEGMENTS)},
      "best_per_segment": {s: table[i].tolist() for i, s in enumerate(feature_spec.SEGMENTS)},
      "best_single_grid_point": grid[overall].tolist(),
      "best_single_grid_reward_per_session": float(
          rewards[overall].sum() / max(sessions[overall].sum(), 1)),
      "baseline": {"expected_reward_per_session": baseline.summary()[
          "expected_reward_per_session"], "last_day_expected_reward": baseline.summary(
              baseline.cube[-1])["expected_reward_per_session"],
                   "completion_rate": baseline.summary()["completion_rate"]},
      "worst_grid_last_day": min(last_day),
      "bandits": out_bandits,
      "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
               "python": platform.python_version(), "load_average": list(os.getloadavg())},
      "wall_s": time.time() - start,
  }
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, "bandits.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  with open(os.path.join(out_dir, "bandits.md"), "w", encoding="utf-8") as f:
    f.write(markdown(result))
  figure(result, os.path.join(out_dir, "bandit_regret.png"))
  return result


def _w(w) -> str:
  return "/".join(f"{x:g}" for x in w)


def markdown(result: Dict[str, object]) -> str:
  """The study's tables: bandits against the baseline, and regret per segment."""
  base = result["baseline"]
  lines = [f"Baseline (best fixed grid point per segment, in hindsight): "
           + ", ".join(f"{s} {_w(w)}" for s, w in result["best_per_segment"].items())
           + f"; {base['expected_reward_per_session']:.3f} per session, last day "
           f"{base['last_day_expected_reward']:.3f}. Best single grid point "
           f"{_w(result['best_single_grid_point'])}: "
           f"{result['best_single_grid_reward_per_session']:.3f}.\n",
           "| bandit | objective / session | last day | last day / baseline | gap closed | "
           "final regret | vs best single point |", "|---|---|---|---|---|---|---|"]
  for name, b in result["bandits"].items():
    lines.append(f"| {name} | {b['expected_reward_per_session']:.3f} | "
                 f"{b['last_day_expected_reward']:.3f} | "
                 f"{b['ratio_to_baseline_last_day']:.3f} | {b['gap_closed_last_day']:.2f} | "
                 f"{b['cumulative_regret'][-1]:,.0f} | "
                 f"{b['cumulative_regret_vs_best_single'][-1]:,.0f} |")
  segs = list(result["best_per_segment"])
  lines += ["", "Regret per 1,000 sessions, by segment:", "",
            "| bandit | " + " | ".join(segs) + " |", "|---|" + "---|" * len(segs)]
  for name, b in result["bandits"].items():
    lines.append(f"| {name} | " + " | ".join(
        f"{b['segment_regret_per_1k_sessions'][s]:,.0f}" for s in segs) + " |")
  return "\n".join(lines) + "\n"


def figure(result: Dict[str, object], path: str) -> None:
  """Cumulative regret per round (left) and final regret per segment (right)."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  names = list(result["bandits"])
  for name in names:
    b = result["bandits"][name]
    left.plot(b["cumulative_sessions"], b["cumulative_regret"], label=name)
  left.axhline(0, color="grey", lw=0.8)
  left.set_xlabel("sessions")
  left.set_ylabel("cumulative regret vs best fixed\ngrid point per segment (exp. objective)")
  left.set_title(f"Bandits through the {result['scorer']['name']} scorer")
  left.legend(fontsize=8)
  segs = list(result["best_per_segment"])
  width = 0.8 / len(names)
  for k, name in enumerate(names):
    vals = [result["bandits"][name]["segment_regret_per_1k_sessions"][s] for s in segs]
    right.bar(np.arange(len(segs)) + k * width, vals, width, label=name)
  right.set_xticks(np.arange(len(segs)) + 0.4 - width / 2, segs)
  right.axhline(0, color="grey", lw=0.8)
  right.set_ylabel("regret per 1,000 sessions")
  right.set_title("Final regret by segment")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
