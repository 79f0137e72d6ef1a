"""The ranking benchmark's report: the section of ``docs/benchmarks.md`` between its
markers and ``docs/ranking_benchmark.png``, both rendered from the results alone.
"""

import json
import os
from typing import Dict, List

import numpy as np

from bench import common
from bench import ranking_convergence
from bench import ranking_input_path
from bench import ranking_models
from bench import ranking_notes
from bench import ranking_next_track
from bench import ranking_sequence_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "benchmarks.md")
PNG = os.path.join(REPO, "docs", "ranking_benchmark.png")
BEGIN, END = "<!-- ranking:begin -->", "<!-- ranking:end -->"

def mean_table(mean, heads) -> str:
  """Markdown table: mean ± sd over seeds per metric, and steady-state examples/s."""
  cols = [h for h in heads if any(h in r for r in mean)]
  rows = []
  for r in mean:
    row = {"model": r["model"], "seeds": r["seeds"]}
    for h in cols:
      if h in r:
        sd = r.get(f"{h}_std", 0.0)
        row[h] = f"{r[h]:.4f} ± {sd:.4f}" if r["seeds"] > 1 else f"{r[h]:.4f}"
    row["train_examples_per_s"] = f"{r.get('train_examples_per_s', float('nan')):,.0f}"
    rows.append(row)
  return common.table(rows, ["model", "seeds"] + cols + ["train_examples_per_s"])


def _fmt_diff(p: Dict[str, float]) -> str:
  per = ", ".join(f"{x:+.4f}" for x in p["per_seed"])
  return f"{p['mean']:+.4f} (se {p['se']:.4f}; per seed {per})"


def _profile_lines(block) -> List[str]:
  prof = block.get("label_profile")
  if not prof:
    return []
  o, p = prof["organic"], prof["promo"]
  lines = ["Labels by candidate type (train split, weighted means): the conflict the "
           "simulator builds in.", "",
           "| candidates | rows | completion | skip | like | subscription | exposure |",
           "|---|---|---|---|---|---|---|"]
  for name, d in (("organic", o), ("promo", p)):
    lines.append(f"| {name} | {d['rows']:,} | {d['interest_completion']:.3f} | "
                 f"{d['interest_skip']:.3f} | {d['interest_like']:.3f} | "
                 f"{d['subscription']:.4f} | {d['exposure']:.3f} |")
  if "corr_exposure_completion" in p:
    lines += ["", f"A promo costs completion, skips and likes and earns exposure; subscription "
              "barely differs by candidate type (the label is a conversion within 7 days, "
              "a property of the listener more than of the candidate). On promo rows "
              f"exposure and completion correlate at r = {p['corr_exposure_completion']:.2f} "
              "(exposure = the track's exposure value x completion): the exposure head "
              "needs the interest signal, plus a per-track value learnt from the few promo "
              "rows. Whether sharing costs a head is measured below: single-task minus "
              "shared-bottom under Targets."]
  return lines


def _baseline_lines(t) -> List[str]:
  base = t.get("float32_baseline")
  if not base:
    return []
  return [f"- `train_precision` {t.get('train_precision', '?')}; the same config in float32, "
          f"measured in the same process right after: "
          f"{base['examples_per_s']:,.0f} examples/s wall, "
          f"{base['examples_per_s_2_dedicated_cores_est']:,.0f} est. on 2 dedicated cores; "
          f"ratio {t['speedup_vs_float32']:.2f}x"]


def _speed_lines(t) -> List[str]:
  prof = t.get("step_profile_ms", {})
  when = f", re-measured {t['measured_at']}" if t.get("measured_at") else ""
  lines = ["", "### Training speed (default config, batch 512, the `melody train` path"
           f"{when})", "",
           f"- steady state: **{t['examples_per_s']:,.0f} examples/s** wall "
           f"({t['wall_s_per_step'] * 1e3:.0f} ms/step wall, "
           f"{t['cpu_s_per_step'] * 1e3:.0f} ms/step CPU over {t['steps']} steps; "
           f"1-min load {t['load_average_1m']:.1f})",
           f"- 2 dedicated cores, estimated from CPU time: "
           f"**{t['examples_per_s_2_dedicated_cores_est']:,.0f} examples/s** (target 3,000)",
           *_baseline_lines(t),
           f"- one whole `fit()` call of {t['steps'] + 1} steps (graph tracing, steps, "
           f"teardown): {t.get('fit_call_examples_per_s', float('nan')):,.0f} examples/s; "
           f"the teardown after the last step took {t.get('fit_teardown_s', float('nan')):.1f} s "
           "(idle time, not training).",
           ""]
  if prof:
    lines += ["One step by parts (ms; the input and optimizer parts as in training, "
              "forward = `compute_loss` in training mode, gradients = forward + backward; each "
              "part timed alone in its own `tf.function`, without the overlap a `fit()` "
              "step gets, so they add up to more than a step):", "",
              "| part | wall_ms | cpu_ms |", "|---|---|---|"]
    for k in ("input", "forward", "gradients", "optimizer", "metrics"):
      if k in prof:
        lines.append(f"| {k} | {prof[k]['wall_ms']:.1f} | {prof[k]['cpu_ms']:.1f} |")
  lines += ranking_input_path.lines(t.get("input_path"))
  lines += ["", ranking_notes.SPEED_NOTES]
  return lines


def _curve_lines(curves) -> List[str]:
  if not curves or not curves.get("rows"):
    return []
  heads = [h for h in ranking_models.metric_columns() if any(h in r for r in curves["rows"])]
  rows = [dict(model=r["model"], steps=r["steps"],
               **{h: f"{r[h]:.4f}" for h in heads if h in r}) for r in curves["rows"]]
  return ["Learning curves (seed 1; listeners held out of the training split, 15% of them, "
          "their ids sent to the OOV buckets as a new listener's are; the eval split "
          f"untouched; {curves['fit_examples']:,} training / {curves['holdout_examples']:,} "
          "held-out examples):", "", common.table(rows, ["model", "steps"] + heads)]


def _stale_lines(results, part: str) -> List[str]:
  """A warning when a part's numbers come from an older run than this section's parts."""
  parts = results.get("parts", {})
  if not parts or part in parts:
    return []
  return ["", f"*Not re-measured by the parts listed at the end of this section: these "
          f"numbers come from an earlier run of `bench-ranking` (its own date and code; "
          f"the host above is not the one they ran on). Re-run with "
          f"`MELODY_BENCH_RANKING_ONLY={part}`.*", ""]


def _part_lines(parts) -> List[str]:
  if not parts:
    return []
  lines = ["", "Parts of this run (each can run alone: `MELODY_BENCH_RANKING_ONLY=<part>`):", "",
           "| part | measured_at | runtime_s | load average before | load average after | cpu |",
           "|---|---|---|---|---|---|"]
  for name, p in parts.items():
    lines.append(f"| {name} | {p['measured_at']} | {p['runtime_s']:,.0f} | "
                 + " ".join(f"{x:.1f}" for x in p["load_average_before"]) + " | "
                 + " ".join(f"{x:.1f}" for x in p["load_average_after"]) + " | "
                 + f"{p.get('host', {}).get('cpu_model', '?')} |")
  return lines


def write_doc(results: Dict[str, object]) -> None:
  lines = [BEGIN, "## Ranking (`make bench-ranking`, `bench/ranking.py`)", ""]
  s = results["settings"]
  lines.append(
      f"Measured {results['written_at']} on {os.cpu_count()} shared cores. Every model of a "
      f"dataset trains the same number of steps of batch {s['batch_size']} (simulator "
      f"{s['steps']}, real data {s.get('real_steps', s['steps'])}; default architecture: "
      "2 layers, d_model 64, history 50; default optimiser and loss weights; no model "
      "selection) and is scored once on the eval split, whose users never appear in "
      f"training. Simulator numbers are mean ± sd over {s['seeds']} seeds (paired: every "
      "model runs the same seeds). AUC: higher is better; RMSE: lower is better; "
      "examples/s is the steady-state training speed of that run (batch "
      f"{s['batch_size']}, shared machine"
      + (f"; {s['workers']} single-threaded runs at a time" if s.get("workers", 1) > 1
         else "") + ").")
  lines += ["", common.host_line(results.get("host", {}))]
  order = {"simulator": 0, "kkbox": 1, "30music": 2}
  for name, block in sorted(results["datasets"].items(), key=lambda kv: order.get(kv[0], 9)):
    lines += ["", f"### {name} ({block.get('train_examples', 0):,} train / "
              f"{block.get('eval_examples', 0):,} eval examples)", ""]
    if "error" in block:
      lines.append(f"Not measured: {block['error']}")
      continue
    lines += _stale_lines(results, "simulator" if name == "simulator" else "real")
    if name == "simulator" and "generator" in s:
      g = s["generator"]
      lines += [f"Simulator: {g['users']:,} listeners, {g['days']} days, seed 7, "
                f"{g['eval_percent']}% of listeners in the eval split; the calibrated world "
                f"except the conversion hazard, scaled x{g['conversion_scale']:g} "
                "(`datagen.run(world_overrides={'base_hazard': ...})`) so that the "
                f"subscription head has enough converting listeners to measure "
                f"({g.get('converting_listeners', '?')} listeners convert, "
                f"{g.get('eval_converting_listeners', '?')} of them in the eval split; "
                "every impression in the 7 days before a conversion is a positive).", ""]
      lines += _profile_lines(block) + [""] + _curve_lines(results.get("curves")) + [""]
    cov = block.get("coverage", {})
    missing = [(h, c) for h, c in cov.items() if not c["covered"]]
    if not cov:
      missing = [(h, {"reason": "label absent, or too few positives or negatives"})
                 for h, ok in block.get("covered_heads", {}).items() if not ok]
    if missing:
      lines += ["Heads not measured here: " + "; ".join(
          f"{h} ({c['reason']})" for h, c in missing) + ".", ""]
    if name in ranking_notes.SOURCE_NOTES:
      lines += [ranking_notes.SOURCE_NOTES[name], ""]
    if block["mean"]:
      lines.append(mean_table(block["mean"], ranking_models.metric_columns()))
    else:
      lines.append("No model trained: no head is measurable on this source.")
  lines += ranking_next_track.lines(results.get("next_track"))
  lines += ranking_sequence_report.lines(results.get("sequence"),
                                         results.get("parts", {}).get("sequence"))
  lines += ranking_convergence.lines(results.get("convergence"),
                                     results.get("parts", {}).get("convergence"))
  lines += _speed_lines(results["throughput"])
  lines += _stale_lines(results, "throughput")
  lines += ["", "### Scoring latency (one listener encoded once, N candidates broadcast)", "",
            "`RankingModel.score_candidates` as one `tf.function`, default config, in a "
            "fresh child process (one intra-op thread as in the model server, heap frozen "
            "out of the garbage collector as the server does), 300 timed calls per N"
            + (f"; re-measured at {results['latency_measured_at']}"
               if results.get("latency_measured_at") else "") + ".", "",
            common.table([dict(candidates=int(n), **v) for n, v in
                          sorted(results["latency"].items(), key=lambda kv: int(kv[0]))],
                         ["candidates", "p50_ms", "p99_ms", "mean_ms", "n"]),
            *_stale_lines(results, "latency"), "", "### Targets", ""]
  tg = results["targets"]
  for k, v in tg.items():
    if k == "best_baseline":
      lines.append(f"- `{k}`: " + "; ".join(f"{h} {b['model']} ({b['mean']:.4f})"
                                             for h, b in v.items()))
    elif k == "sequence_encoder_contribution":
      for ablation, per_head in v.items():
        lines.append(f"- `mmoe {ablation}` (paired over seeds): " + "; ".join(
            f"{h} {_fmt_diff(p)}" for h, p in per_head.items()))
    elif k in ("mmoe_minus_shared_bottom", "single_minus_shared_bottom",
               "mmoe_minus_mmoe_without_id_dropout", "default_minus_best_baseline"):
      lines.append(f"- `{k}` (paired over seeds): " + "; ".join(
          f"{h} {_fmt_diff(p)}" for h, p in v.items()))
    elif k == "mmoe_minus_single_interest_auc":
      lines.append(f"- `{k}`: " + ", ".join(f"{h} {g:+.4f}" for h, g in v.items()))
    else:
      lines.append(f"- `{k}`: {v}")
  lines += _part_lines(results.get("parts", {}))
  lines += ["", f"![ranking benchmark]({os.path.basename(PNG)})", "", END]
  section = "\n".join(lines) + "\n"
  old = open(DOC).read() if os.path.exists(DOC) else "# Benchmarks\n\n"
  if BEGIN in old and END in old:
    new = old[:old.index(BEGIN)] + section + old[old.index(END) + len(END) + 1:]
  else:
    new = old.rstrip("\n") + "\n\n" + section
  with open(DOC, "w") as f:
    f.write(new)


def write_png(results: Dict[str, object]) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  sim = results["datasets"].get("simulator", {})
  fig, axes = plt.subplots(1, 4, figsize=(22, 4.8))
  if sim.get("mean"):
    models = [r["model"] for r in sim["mean"]]
    for ax, kind in ((axes[0], "_auc"), (axes[1], "_rmse")):
      heads = [h for h in ranking_models.metric_columns()
               if h.endswith(kind) and any(h in r for r in sim["mean"])]
      width = 0.8 / max(1, len(models))
      for i, r in enumerate(sim["mean"]):
        ax.bar(np.arange(len(heads)) + i * width, [r.get(h, np.nan) for h in heads], width,
               yerr=[r.get(f"{h}_std", 0.0) if h in r else 0.0 for h in heads],
               label=r["model"], capsize=2)
      ax.set_xticks(np.arange(len(heads)) + 0.4 - width / 2)
      ax.set_xticklabels([h.replace(kind, "") for h in heads], fontsize=8)
      vals = [r.get(h, np.nan) for r in sim["mean"] for h in heads]
      if kind == "_auc":
        ax.set_ylabel("AUC (simulator eval, mean ± sd)")
        ax.set_ylim(max(0.4, np.nanmin(vals) - 0.05), np.nanmax(vals) + 0.12)   # legend room
      else:
        ax.set_ylabel("RMSE (simulator eval, mean ± sd)")
        ax.set_ylim(0, np.nanmax(vals) * 1.6)
      ax.legend(fontsize=6, ncol=2, loc="upper center")
  lat = results["latency"]
  ns = sorted(int(n) for n in lat)
  axes[2].plot(ns, [lat[str(n)]["p50_ms"] for n in ns], "o-", label="p50")
  axes[2].plot(ns, [lat[str(n)]["p99_ms"] for n in ns], "o-", label="p99")
  axes[2].axhline(10, color="grey", ls="--", lw=1, label="target p99 @500")
  axes[2].set_xlabel("candidates per request")
  axes[2].set_ylabel("ms (in process)")
  axes[2].legend()
  curves = results.get("curves", {}).get("rows", [])
  for name in dict.fromkeys(r["model"] for r in curves):
    mine = [r for r in curves if r["model"] == name and "interest_skip_auc" in r]
    axes[3].plot([r["steps"] for r in mine], [r["interest_skip_auc"] for r in mine], "o-",
                 label=name)
  if not curves:
    axes[3].text(0.5, 0.5, "learning curves not measured\n(MELODY_BENCH_RANKING_ONLY=curves)",
                 ha="center", va="center", transform=axes[3].transAxes)
    axes[3].set_axis_off()
  else:
    axes[3].set_xlabel("training steps (batch %d)" % results["settings"]["batch_size"])
    axes[3].set_ylabel("skip AUC, held-out training listeners")
    axes[3].legend(fontsize=7)
  fig.tight_layout()
  fig.savefig(PNG, dpi=110)
  plt.close(fig)


def render(path: str = os.path.join(common.RESULTS_DIR, "ranking.json")) -> None:
  """Rewrites the docs section and the PNG from a results file (no training)."""
  with open(path) as f:
    results = json.load(f)
  write_doc(results)
  write_png(results)

