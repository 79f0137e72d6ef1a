"""``melody simulate``: the offline policy report that picks weights before an A/B test.

This module owns the report: the weight choice of ``simulation.weight_choice`` (grid
rollouts, the trade-off frontier of interest vs subscription vs exposure with the
points above the completion floor marked, a recommended weight row per segment, checked
against the current fusion table) with the trained model or the oracle scorer of
``simulation.scorers``, or both side by side; the LinUCB / Thompson / random bandits
over the same grid with their regret curves against the best fixed grid point; the
promo-share controller; and the validation of the off-policy estimators against the
simulator (relative-error table). Output: ``report.md``, ``report.json``,
``policy.json`` (the recommended table as a ``ranking.fusion.policy_file`` artifact)
and the PNG figures in one directory. Every number depends only on the config (seeded),
so two runs give identical JSON."""

import dataclasses
import json
import os
from typing import Dict, Optional, Sequence

import numpy as np

from features import feature_spec
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig
from simulation import bandits
from simulation import estimators
from simulation import policies
from simulation import rollout as rollout_lib
from simulation import policy_output
from simulation import scorers as scorers_lib
from simulation import weight_choice
from simulation.weight_choice import pareto  # noqa: F401  (part of this module's API)
from simulation.world import World
from simulation.world_config import SIM_ACTIVITIES, WorldConfig

FIGURES = ("frontier.png", "regret.png", "ope.png")
CONTROLLER_START_PROMOS = 4   # promos per mixing window the controller starts from


@dataclasses.dataclass(frozen=True)
class ReportConfig:
  """What the report simulates.

  Attributes:
    users, days, seed: rollout size and seed (each grid point sees the same
      listeners, contexts and candidate draws).
    world_seed, n_tracks: the world.
    grid_step: simplex grid step of (alpha, beta, gamma).
    floor: completion-rate floor (frontier marks, recommendations, controller); the
      default sits about 4% below the interest-only policy's completion rate.
    chunk_users: listeners per bandit round.
    ope_logs, ope_truth: logged slates, and fresh slates per target for the truth.
    objective: per-session business objective.
    slate_len: tracks per session.
  """
  users: int = 5000
  days: int = 7
  seed: int = 0
  world_seed: int = 7
  n_tracks: int = 5000
  grid_step: float = 0.25
  floor: float = 0.545
  chunk_users: int = 1000
  ope_logs: int = 20_000
  ope_truth: int = 100_000
  objective: rollout_lib.Objective = rollout_lib.Objective()
  slate_len: int = 10

  def __post_init__(self):
    for name in ("users", "days", "n_tracks", "chunk_users", "ope_logs", "ope_truth",
                 "slate_len"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not 0 <= self.floor <= 1:
      raise ValueError(f"floor must be in [0, 1], got {self.floor}")

  def rollout_config(self) -> rollout_lib.RolloutConfig:
    return rollout_lib.RolloutConfig(users=self.users, days=self.days, seed=self.seed,
                            slate_len=self.slate_len, chunk_users=self.chunk_users,
                            objective=self.objective)


def uniform_fusion(weights, base: FusionConfig = FusionConfig()) -> FusionConfig:
  """The fusion config giving every segment ``weights`` (beta 0 where it must be)."""
  w = tuple(float(x) for x in weights)
  return table_fusion({s: w for s in feature_spec.SEGMENTS}, base)


def table_fusion(rows: Dict[str, tuple], base: FusionConfig = FusionConfig()) -> FusionConfig:
  """A fusion config with ``rows`` per segment (beta zeroed for zero-beta segments)."""
  table = {s: (w[0], 0.0 if s in base.zero_beta_segments else w[1], w[2])
           for s, w in rows.items()}
  return dataclasses.replace(base, segment_weights=table)


def _bandits(world, cfg: ReportConfig, grid, rows) -> Dict[str, object]:
  dim = policies.N_SEG + policies.N_ACT
  best = int(np.argmax([r["expected_reward_per_session"] for r in rows]))
  best_day = np.array(rows[best]["by_day_expected_reward"])
  worst_last = min(r["last_day_expected_reward"] for r in rows)
  out = {"best_grid_point": rows[best]["weights"],
         "best_grid_expected_reward": rows[best]["expected_reward_per_session"],
         "best_grid_last_day": rows[best]["last_day_expected_reward"],
         "worst_grid_last_day": worst_last, "bandits": {}}
  makers = {
      "linucb": lambda: bandits.LinUCB(len(grid), dim, alpha=1.0),
      "thompson": lambda: bandits.LinearThompson(len(grid), dim, noise=1.0),
      "random": lambda: bandits.RandomArms(len(grid), dim),
  }
  for name, make in makers.items():
    policy = bandits.BanditPolicy(make(), grid, seed=cfg.seed, slate_len=cfg.slate_len,
                             name=name)
    res = rollout_lib.rollout(world, policy, cfg.rollout_config())
    r = res.rounds
    regret = r["sessions"] * best_day[r["day"]] - r["expected_reward"]
    last = res.summary(res.cube[-1])["expected_reward_per_session"]
    out["bandits"][name] = {
        "expected_reward_per_session": res.summary()["expected_reward_per_session"],
        "last_day_expected_reward": last,
        "ratio_to_best_grid_last_day": last / out["best_grid_last_day"],
        "gap_closed_last_day": (last - worst_last) / max(
            out["best_grid_last_day"] - worst_last, 1e-12),
        "cumulative_regret": np.cumsum(regret).tolist(),
        "cumulative_sessions": np.cumsum(r["sessions"]).tolist(),
        "segment_weights": {s: w.tolist() for s, w in zip(feature_spec.SEGMENTS,
                                                          policy.segment_choice())},
    }
  return out


def _controller(world, cfg: ReportConfig, weights) -> Dict[str, object]:
  """The controller on the objective's favourite (promo-heavy) weights with a generous
  starting promo cap: it should pull the promo share down to defend the floor."""
  fusion = uniform_fusion(weights)
  mixing = MixingConfig(max_promos_per_window=CONTROLLER_START_PROMOS)
  fixed = rollout_lib.rollout(world, policies.FusionPolicy(fusion=fusion, mixing=mixing,
                                             slate_len=cfg.slate_len), cfg.rollout_config())
  ctrl = policies.PromoShareController(floor=cfg.floor, fusion=fusion, mixing=mixing,
                                  slate_len=cfg.slate_len)
  res = rollout_lib.rollout(world, ctrl, cfg.rollout_config())
  return {"floor": cfg.floor, "weights": [float(x) for x in weights],
          "start_promos_per_window": CONTROLLER_START_PROMOS,
          "share_by_day": {s: [float(h[i]) for h in ctrl.history]
                           for i, s in enumerate(feature_spec.SEGMENTS)},
          "fixed": fixed.summary(), "controlled": res.summary()}


def _figures(out_dir: str, cfg: ReportConfig, rows, frontier, bandit, ope) -> None:
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  x = np.array([r["completion_rate"] for r in rows])
  y = np.array([r["expected_conversions_per_1k_sessions"] for r in rows])
  c = np.array([r["exposure_per_session"] for r in rows])
  ok = x >= cfg.floor
  fig, ax = plt.subplots(figsize=(7.5, 5.2))
  sc = ax.scatter(x[ok], y[ok], c=c[ok], cmap="viridis", s=70, marker="o",
                  vmin=c.min(), vmax=c.max(), label=f"completion >= floor {cfg.floor:g}")
  ax.scatter(x[~ok], y[~ok], c=c[~ok], cmap="viridis", s=70, marker="X",
             vmin=c.min(), vmax=c.max(), label="below the floor")
  front = np.flatnonzero(frontier)
  ax.scatter(x[front], y[front], s=170, facecolors="none", edgecolors="crimson",
             label="Pareto frontier (interest, subscription, exposure)")
  for i, r in enumerate(rows):
    ax.annotate("{:g}/{:g}/{:g}".format(*r["weights"]), (x[i], y[i]), fontsize=6,
                xytext=(3, 3), textcoords="offset points")
  ax.axvline(cfg.floor, color="gray", ls="--", lw=1)
  fig.colorbar(sc, ax=ax, label="promo exposure value per session")
  ax.set_xlabel("completion rate (interest)")
  ax.set_ylabel("expected conversions per 1k sessions (subscription)")
  ax.set_title("Trade-off frontier over alpha/beta/gamma (labels: a/b/g)")
  ax.legend(fontsize=7, loc="best")
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "frontier.png"), dpi=110)
  plt.close(fig)

  fig, ax = plt.subplots(figsize=(7, 4.2))
  for name, b in bandit["bandits"].items():
    ax.plot(b["cumulative_sessions"], b["cumulative_regret"], label=name)
  ax.axhline(0, color="gray", lw=0.8)
  ax.set_xlabel("sessions played")
  ax.set_ylabel("cumulative regret vs best fixed grid point\n(expected objective)")
  ax.set_title("Bandits over (alpha, beta, gamma) per segment")
  ax.legend()
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "regret.png"), dpi=110)
  plt.close(fig)

  names = ["ips", "snips", "dr", "pbm", "dm"]
  fig, ax = plt.subplots(figsize=(7, 4.2))
  width = 0.8 / len(names)
  for j, n in enumerate(names):
    ax.bar(np.arange(len(ope)) + j * width, [100 * r[f"{n}_rel_err"] for r in ope],
           width, label=n.upper())
  ax.axhline(5, color="crimson", ls="--", lw=1, label="5% target (DR)")
  ax.set_xticks(np.arange(len(ope)) + 0.4 - width / 2)
  ax.set_xticklabels([r["target"] for r in ope])
  ax.set_ylabel("relative error vs simulator truth (%)")
  ax.set_title("Off-policy estimates of held-out target policies")
  ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(out_dir, "ope.png"), dpi=110)
  plt.close(fig)


def _fmt(v, digits=4):
  return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _markdown(cfg: ReportConfig, res: Dict[str, object]) -> str:
  L = [f"# Melody offline policy simulation\n",
       f"World seed {cfg.world_seed} ({cfg.n_tracks} tracks); {cfg.users} listeners x "
       f"{cfg.days} days, seed {cfg.seed}; slates of {cfg.slate_len}; objective per "
       f"session = {cfg.objective.interest:g} x completions + "
       f"{cfg.objective.subscription:g} x conversions + {cfg.objective.exposure:g} x "
       f"exposure; completion floor {cfg.floor:g}.\n",
       "## Trade-off frontier\n", "![frontier](frontier.png)\n",
       "| alpha/beta/gamma | completion | skips | min/session | likes | return | "
       "exp. conv/1k | promo share | exposure/session | objective | floor | frontier |",
       "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in res["grid"]:
    L.append("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |".format(
        "/".join(f"{w:g}" for w in r["weights"]), *(_fmt(r[k]) for k in (
            "completion_rate", "skip_rate", "minutes_per_session", "like_rate",
            "return_rate", "expected_conversions_per_1k_sessions", "promo_share",
            "exposure_per_session", "expected_reward_per_session")),
        "ok" if r["meets_floor"] else "**below**", "yes" if r["frontier"] else ""))
  L += ["\n## Recommended alpha/beta/gamma per segment\n",
        "| segment | recommended | meets floor | completion | objective | current table |",
        "|---|---|---|---|---|---|"]
  current = dict(FusionConfig().segment_weights)
  for seg, r in res["recommended"].items():
    L.append(f"| {seg} | {'/'.join(f'{w:g}' for w in r['weights'])} | "
             f"{r['meets_floor']} | {_fmt(r['completion_rate'])} | "
             f"{_fmt(r['expected_reward_per_session'])} | "
             f"{'/'.join(f'{w:g}' for w in current[seg])} |")
  cmp_ = res["recommended_vs_current"]
  L += ["\nRolled out as whole tables (same listeners):\n",
        "| table | completion | exp. conv/1k | exposure/session | return | objective |",
        "|---|---|---|---|---|---|"]
  for name in ("current", "recommended", "context_rules"):
    s = cmp_[name]
    L.append(f"| {name} | " + " | ".join(_fmt(s[k]) for k in (
        "completion_rate", "expected_conversions_per_1k_sessions", "exposure_per_session",
        "return_rate", "expected_reward_per_session")) + " |")
  L += ["\n`context_rules` refines the recommended table per (segment, activity) with the "
        "same rule, measured on that pair's sessions:\n",
        "| segment | " + " | ".join(SIM_ACTIVITIES) + " |",
        "|---|" + "---|" * len(SIM_ACTIVITIES)]
  for seg in feature_spec.SEGMENTS:
    cells = [res["recommended_context"].get(f"{seg}/{a}") for a in SIM_ACTIVITIES]
    L.append(f"| {seg} | " + " | ".join(
        "/".join(f"{w:g}" for w in c["weights"]) + ("" if c["meets_floor"] else " (below)")
        if c else "" for c in cells) + " |")
  L += ["\nOutcomes of the recommended table per segment and per activity context:\n",
        "| group | completion | skips | min/session | likes | return | conversions | "
        "exp. conv/1k | promo share | exposure/session | fatigue |",
        "|---|---|---|---|---|---|---|---|---|---|---|"]
  for part in ("recommended_by_segment", "recommended_by_activity"):
    for name, s in cmp_[part].items():
      L.append(f"| {name} | " + " | ".join(_fmt(s[k]) for k in (
          "completion_rate", "skip_rate", "minutes_per_session", "like_rate", "return_rate",
          "conversions", "expected_conversions_per_1k_sessions", "promo_share",
          "exposure_per_session", "fatigue")) + " |")
  b = res["bandits"]
  L += ["\n## Bandits (per-segment LinUCB / Thompson over the grid)\n",
        "![regret](regret.png)\n",
        f"Best fixed grid point: {'/'.join(f'{w:g}' for w in b['best_grid_point'])} "
        f"(objective {_fmt(b['best_grid_expected_reward'])} per session; last day "
        f"{_fmt(b['best_grid_last_day'])}; worst grid point last day "
        f"{_fmt(b['worst_grid_last_day'])}). Target: a bandit's last-day objective >= 95% "
        f"of the best fixed grid point's on the same day; `random` plays a uniform arm "
        f"(no learning) as the reference, and *gap closed* is (bandit - worst grid "
        f"point) / (best - worst) on the last day.\n",
        "| bandit | objective (all days) | last day | last day / best grid | gap closed | "
        "final regret |", "|---|---|---|---|---|---|"]
  for name, r in b["bandits"].items():
    L.append(f"| {name} | {_fmt(r['expected_reward_per_session'])} | "
             f"{_fmt(r['last_day_expected_reward'])} | "
             f"{_fmt(r['ratio_to_best_grid_last_day'])} | "
             f"{_fmt(r['gap_closed_last_day'])} | {_fmt(r['cumulative_regret'][-1])} |")
  c = res["controller"]
  L += ["\n## Promo-share controller (completion below the floor -> promo share down)\n",
        f"Weights {'/'.join(f'{w:g}' for w in c['weights'])} for everyone, starting at "
        f"{c['start_promos_per_window']} promos per window; the cap moves by one a day.\n",
        "| segment | promo share by day |", "|---|---|"]
  for seg, v in c["share_by_day"].items():
    L.append(f"| {seg} | {' -> '.join(f'{x:g}' for x in v)} |")
  L += ["", "| policy | completion | promo share | exposure/session | objective |",
        "|---|---|---|---|---|"]
  for name in ("fixed", "controlled"):
    s = c[name]
    L.append(f"| {name} | " + " | ".join(_fmt(s[k]) for k in (
        "completion_rate", "promo_share", "exposure_per_session",
        "expected_reward_per_session")) + " |")
  L += ["\n## Off-policy evaluation (relative error vs simulator truth)\n",
        "![ope](ope.png)\n",
        "| target | truth | IPS | SNIPS | DR | PBM | DM | IPS err | SNIPS err | DR err | "
        "PBM err | DM err |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in res["ope"]:
    L.append(f"| {r['target']} | {_fmt(r['truth'])} | " + " | ".join(
        _fmt(r[k]) for k in ("ips", "snips", "dr", "pbm", "dm")) + " | " + " | ".join(
            f"{100 * r[k + '_rel_err']:.2f}%" for k in ("ips", "snips", "dr", "pbm", "dm"))
             + " |")
  L += weight_choice.markdown(res) + policy_output.markdown(res)
  return "\n".join(L) + "\n"


def run(out_dir: str, config: ReportConfig = ReportConfig(), model_dir: Optional[str] = None,
        runner: str = "direct", scorer: Optional[str] = None,
        serving_dir: str = scorers_lib.DEFAULT_SERVING_DIR,
        model_users: int = scorers_lib.DEFAULT_MODEL_USERS,
        beam_args: Sequence[str] = ()) -> Dict[str, object]:
  """Simulates everything, writes ``report.md``, ``report.json``, ``policy.json`` and the
  figures.

  Args:
    out_dir: output directory (created).
    config: the report config.
    model_dir: an exported SavedModel version to roll out (default for the ``model``
      and ``both`` scorers: the latest version pushed under ``serving_dir``).
    runner: "direct" (in-process), or "beam" / "dask" (oracle grid rollouts as Beam
      pipelines on the local runner / on Dask, ``rollout.BEAM_RUNNERS``).
    scorer: "model" (the grid, recommendations and policy come from the model's
      ``rank`` signature), "oracle" (the stand-in head scorer) or "both" (the model's
      choice, plus the oracle's and where they disagree); None: "model" when
      ``model_dir`` is given, else "oracle". Bandits, the controller and the
      off-policy checks always use the oracle.
    serving_dir: where the pipeline pushes models.
    model_users: listeners per model rollout at most.
    beam_args: more Beam flags for "beam" and "dask" (e.g. ``--dask_client_address``).

  Returns:
    The report's numbers (what ``report.json`` holds).

  Raises:
    ValueError: a bad runner or scorer, or no model for a model scorer.
  """
  runners = ("direct",) + tuple(rollout_lib.BEAM_RUNNERS)
  if runner not in runners:
    raise ValueError(f"runner must be one of {runners}, got {runner!r}")
  scorer = scorer or ("model" if model_dir else "oracle")
  model_dir = scorers_lib.resolve_model(scorer, model_dir, serving_dir)
  os.makedirs(out_dir, exist_ok=True)
  world = World(WorldConfig(n_tracks=config.n_tracks), seed=config.world_seed)
  grid = bandits.simplex_grid(config.grid_step)
  oracle = weight_choice.choose(world, config, grid,
                                scorers_lib.OracleScorer(slate_len=config.slate_len), runner,
                                beam_args)
  result = {"config": {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v)
                       for k, v in dataclasses.asdict(config).items()}, **oracle}
  if model_dir:
    model = weight_choice.choose(world, config, grid, scorers_lib.ModelScorer(
        model_dir, config.slate_len, model_users, config.n_tracks))
    if scorer == "both":
      result["oracle"] = oracle
      result["scorer_disagreement"] = weight_choice.disagreement(model, oracle)
    result.update(model)
  bandit = _bandits(world, config, grid, oracle["grid"])
  result["bandits"] = bandit
  result["controller"] = _controller(world, config, bandit["best_grid_point"])
  result["ope"] = estimators.validate(world, n_logs=config.ope_logs,
                                      n_truth=config.ope_truth,
                                      seed=config.seed).to_dict("records")
  policy = policy_output.from_report(result, config)
  result["policy_version"] = policy.version
  policy.dump(os.path.join(out_dir, policy_output.POLICY_FILE))
  _figures(out_dir, config, result["grid"], [r["frontier"] for r in result["grid"]], bandit,
           result["ope"])
  with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1, sort_keys=True)
  with open(os.path.join(out_dir, "report.md"), "w", encoding="utf-8") as f:
    f.write(_markdown(config, result))
  return result
