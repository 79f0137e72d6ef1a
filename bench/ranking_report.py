"""The ranking benchmark's report: the section of ``docs/benchmarks.md`` between its
markers and ``docs/ranking_benchmark.png``, both rendered from the results alone.
"""

import json
import os
from typing import Dict, List

import numpy as np

from bench import common
from bench import ranking_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(REPO, "docs", "benchmarks.md")
PNG = os.path.join(REPO, "docs", "ranking_benchmark.png")
BEGIN, END = "<!-- ranking:begin -->", "<!-- ranking:end -->"

# Why a real source lacks a head, beyond the counts the benchmark measures.
SOURCE_NOTES = {
    "30music": (
        "30Music: no head can be measured, and completion cannot be made one. The slices "
        "(`30music-200ks_test.*.txt`: user, session, track, start time, artist) carry no "
        "track duration and no play time, so completion = play time / duration is not "
        "computable; the derived `percentage_played` of the source repository is broken "
        "(see `../shared/data/30music_slices/PROVENANCE.md`), and the 30Music "
        "`tracks.idomaar` durations are not in the shared data. The gap to the next play "
        "is no substitute without durations, and the skip proxy (next play < 30 s later, "
        "`features/datasets/thirty_music.py`) is 0 on every row because Last.fm logs a "
        "scrobble only after ~30 s of playback (shortest gap: exactly 30 s). Like, "
        "subscription and exposure are not in the data."),
    "kkbox": (
        "KKBox: only `target` (a repeat listen within a month) maps to a head "
        "(`interest_like`); the sample has no play time, skip, subscription or exposure."),
}


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
  lines += ["", SPEED_NOTES]
  return lines


STEPS_NOTE = """Why 300 steps (about half an epoch): learning curves on listeners held out of
the training split (15% of them; shared-bottom and MMoE, seeds 1-2, scored every 100
steps up to 800; the eval split untouched) show the subscription AUC peaking at 100-300
steps and then falling (shared-bottom 0.763 at 300 steps, 0.551 at 800: the head learns
the training listeners' ids, which say nothing about new listeners), while from 300 to
800 steps the interest AUCs still gain 0.003-0.007 and the exposure RMSE improves by
0.003-0.004. 300 steps keeps the subscription head near its peak at a small cost to the
others. On those curves MMoE's exposure lead over shared-bottom holds at 800 steps
(0.1138 vs 0.1169) and is 0.004 at 300 (0.1168 vs 0.1211). Those curves were taken
without the listener-id dropout (`ModelConfig.user_id_dropout`, 0.25 by default), which
trains the OOV rows the held-out listeners map to; the row `mmoe|user_id_dropout=0`
measures what it adds."""


SPEED_NOTES = """How the default config reaches the 3,000 examples/s target, batch 512,
this machine (2 vCPUs of an AMD EPYC with AVX512-BF16; runs of the same code vary by
about ±10% with the other jobs on the host):

- `ModelConfig.train_precision = "mixed_bfloat16"` (what the default `"auto"` picks on a
  CPU with AVX512-BF16 or AMX; on AVX2/FMA-only CPUs, where bfloat16 steps are slower, it
  picks float32, so the float32 baseline above runs the same precision): in training steps the
  history and session Transformer blocks run their projections, attention and
  feed-forward in bfloat16 from float32 weights (cast per step; gradients come back
  float32), with float32 LayerNorms and residual stream. Inference (evaluation, export,
  serving, the latency below) is float32, so scores do not depend on it; the golden
  loss after 8 training steps is the same in both precisions within its 0.2%
  tolerance. A 25,600 x 64 x 64 matmul takes 0.90 ms in bf16 vs 1.63 ms in fp32 here.
  The float32 baseline above is the same config with `train_precision="float32"`.
- LayerNorms in training steps use a closed-form gradient
  (`sequence_encoder.layer_norm`) instead of differentiating Keras' unfused path (~15
  elementwise ops): about a third less CPU for forward + backward on [25,600, 64] and
  ~10% of a step (157 vs 174 ms in alternating rounds); inference uses the Keras layer.
- TF profiler, one bf16 training step with Keras' LayerNorm gradient (CPU ms summed
  over both threads, ~320 in all): matmuls 120, LayerNorms 76, optimizer 21, bias
  gradients 19, transposes 11. In float32 the matmuls take 218 of ~420.
- Tried and not adopted (whole training steps timed in alternating rounds in one
  process): one attention head (-12%), `ff_mult` 1; fused QKV projections (one 64 x 192
  matmul; the encoder was 10-20% slower); XLA on the encoder, forward and backward
  (within noise), on the LayerNorms or the attention core alone (slower); a fused
  LayerNorm (epsilon >= 1.001e-5; within noise);
  splitting the weight-gradient matmuls over K (no change: x^T dy already runs at the
  forward matmul's ~95 GFLOP/s); inter-op/intra-op threads 2/1, 1/2, 1/1 (slower);
  `TF_ENABLE_ONEDNN_OPTS=0` (25% slower). `compile(jit_compile=True)` fails:
  `ResourceSparseApplyAdagradV2` (the sparse Adagrad of the id tables) has no XLA kernel.
- Input (`pipeline.trainer.input_fn`, gzip + parse) costs ~10-15 ms CPU per batch, on
  the same two cores. Per-head metric updates: 0.5 ms per step.
The one-off costs of a `fit()` call are real but not throughput: graph tracing, and, on
this machine, an idle teardown of up to ~10 s when tf.data autotuning is on."""


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
      lines += _profile_lines(block) + ["", STEPS_NOTE, ""]
    cov = block.get("coverage", {})
    missing = [(h, c) for h, c in cov.items() if not c["covered"]]
    if not cov:
      missing = [(h, {"reason": "label absent, or too few positives or negatives"})
                 for h, ok in block.get("covered_heads", {}).items() if not ok]
    if missing:
      lines += ["Heads not measured here: " + "; ".join(
          f"{h} ({c['reason']})" for h, c in missing) + ".", ""]
    if name in SOURCE_NOTES:
      lines += [SOURCE_NOTES[name], ""]
    if block["mean"]:
      lines.append(mean_table(block["mean"], ranking_models.metric_columns()))
    else:
      lines.append("No model trained: no head is measurable on this source.")
  lines += _speed_lines(results["throughput"])
  lines += ["", "### Scoring latency (one listener encoded once, N candidates broadcast)", "",
            "`RankingModel.score_candidates` as one `tf.function`, default config, in a "
            "fresh child process (one intra-op thread as in the model server, heap frozen "
            "out of the garbage collector as the server does), 300 timed calls per N"
            + (f"; re-measured at {results['latency_measured_at']}"
               if results.get("latency_measured_at") else "") + ".", "",
            common.table([dict(candidates=int(n), **v) for n, v in
                          sorted(results["latency"].items(), key=lambda kv: int(kv[0]))],
                         ["candidates", "p50_ms", "p99_ms", "mean_ms", "n"]),
            "", "### Targets", ""]
  tg = results["targets"]
  for k, v in tg.items():
    if k in ("mmoe_minus_shared_bottom", "single_minus_shared_bottom",
             "mmoe_minus_mmoe_without_id_dropout"):
      lines.append(f"- `{k}` (paired over seeds): " + "; ".join(
          f"{h} {_fmt_diff(p)}" for h, p in v.items()))
    elif k == "mmoe_minus_single_interest_auc":
      lines.append(f"- `{k}`: " + ", ".join(f"{h} {g:+.4f}" for h, g in v.items()))
    else:
      lines.append(f"- `{k}`: {v}")
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
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
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
        ax.set_ylim(max(0.4, np.nanmin(vals) - 0.05), None)
      else:
        ax.set_ylabel("RMSE (simulator eval, mean ± sd)")
        ax.set_ylim(0, np.nanmax(vals) * 1.15)
      ax.legend(fontsize=7)
  lat = results["latency"]
  ns = sorted(int(n) for n in lat)
  axes[2].plot(ns, [lat[str(n)]["p50_ms"] for n in ns], "o-", label="p50")
  axes[2].plot(ns, [lat[str(n)]["p99_ms"] for n in ns], "o-", label="p99")
  axes[2].axhline(10, color="grey", ls="--", lw=1, label="target p99 @500")
  axes[2].set_xlabel("candidates per request")
  axes[2].set_ylabel("ms (in process)")
  axes[2].legend()
  fig.tight_layout()
  fig.savefig(PNG, dpi=110)
  plt.close(fig)


def render(path: str = os.path.join(common.RESULTS_DIR, "ranking.json")) -> None:
  """Rewrites the docs section and the PNG from a results file (no training)."""
  with open(path) as f:
    results = json.load(f)
  write_doc(results)
  write_png(results)

