"""The pipeline benchmark's report: ``docs/benchmarks_pipeline.md`` and its PNG, rendered
from ``bench/results/pipeline.json`` alone (``python -m bench.pipeline_report``)."""

import json
import os
from typing import Dict, List

from bench import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "benchmarks_pipeline.md")
PNG = os.path.join(ROOT, "docs", "benchmarks_pipeline.png")
RESULTS = os.path.join(common.RESULTS_DIR, "pipeline.json")


def _runner_table(rows: List[Dict[str, object]]) -> List[str]:
  out = ["| runner | examples | seconds | examples/s | vs in_memory | same examples |",
         "|---|---|---|---|---|---|"]
  for r in rows:
    out.append(f"| {r['runner']} | {r['examples']:,} | {r['seconds']:.1f} | "
               f"{r['examples_per_s']:,.0f} | {r['ratio_vs_in_memory']:.2f} | "
               f"{'yes' if r['same_examples_as_baseline'] else 'NO'} |")
  return out


def _auc(row: Dict[str, object], model: str, label: str) -> str:
  value = row.get(f"{model}_{label}_auc")
  if value is None:
    return "n/a (not recorded)"
  return value if isinstance(value, str) else f"{value:.4f}"


def _warm_table(rows: List[Dict[str, object]]) -> List[str]:
  out = ["| data | window | budget | cold final eval loss | warm final eval loss | "
         "warm steps to cold's final loss | goal ≤ 50% | skip AUC cold / warm | "
         "like AUC cold / warm |", "|---|---|---|---|---|---|---|---|---|"]
  for r in rows:
    reached = r["warm_steps_to_cold_final_loss"]
    share = "never" if reached is None else f"{reached} ({100 * reached / r['budget_steps']:.0f}%)"
    out.append(
        f"| {r['dataset']} | {', '.join(r['window'])} | {r['budget_steps']} | "
        f"{r['cold_final_eval_loss']:.4f} | {r['warm_final_eval_loss']:.4f} | {share} | "
        f"{'yes' if r['meets_goal_half_budget'] else 'no'} | "
        f"{_auc(r, 'cold', 'interest_skip')} / {_auc(r, 'warm', 'interest_skip')} | "
        f"{_auc(r, 'cold', 'interest_like')} / {_auc(r, 'warm', 'interest_like')} |")
  return out


def plot(results: Dict[str, object], path: str = PNG) -> None:
  """Eval loss by step, warm vs cold, one panel per dataset; examples/s per runner."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  warm = results["warm_vs_cold"]
  fig, axes = plt.subplots(1, len(warm) + 1, figsize=(5 * (len(warm) + 1), 3.6))
  for ax, r in zip(axes, warm):
    for name in ("cold", "warm"):
      curve = r[f"{name}_curve"]
      ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], marker="o",
              label=name)
    ax.axhline(r["cold_final_eval_loss"], color="grey", linestyle=":", linewidth=1)
    ax.set_title(f"{r['dataset']}: eval loss")
    ax.set_xlabel("training steps")
    ax.legend()
  runners = results["runners"]
  ax = axes[-1]
  ax.barh([r["runner"] for r in runners], [r["examples_per_s"] for r in runners])
  ax.set_title(f"examples/s ({results['runners_data']})")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def _measured(results: Dict[str, object], part: str) -> str:
  """When and at what load a part was measured (a partial run keeps the other's)."""
  load = results.get(f"{part}_load_average", results.get("load_average", {}))
  when = results.get(f"{part}_measured_at", results.get("written_at", "?"))
  return (f"Measured {when}; load average (1, 5, 15 min) before "
          f"{tuple(round(x, 1) for x in load.get('before', ()))}, after "
          f"{tuple(round(x, 1) for x in load.get('after', ()))}.")


def render(results: Dict[str, object]) -> str:
  lines = [
      "# Pipeline benchmark",
      "",
      "`make bench-pipeline` (`bench/pipeline.py`); numbers from "
      "`bench/results/pipeline.json`, written " + str(results.get("written_at", "?")) + ".",
      common.host_line(results.get("host", {})) + " The machine was shared, so absolute "
      "speeds are low; the ratios were measured in the same run.",
      "",
      f"## Examples job per Beam runner ({results['runners_data']} events)",
      "",
      "The same events (whole listeners per chunk) through `features.examples_beam`; the "
      "baseline is the DirectRunner in_memory. \"same examples\": every runner wrote "
      "exactly the baseline's examples. " + _measured(results, "runners"),
      "",
      *_runner_table(results["runners"]),
      "",
      "## Warm vs cold start",
      "",
      "A model trained on the earliest span stands for the pushed model; on the window of "
      "the next two spans a cold model and a warm-started one train for the same budget, "
      f"evaluated every {results['eval_every']} steps on the newest span's whole eval "
      f"split (training batches of {results['batch_size']}). A head whose eval labels have "
      "one class shows \"n/a (no positives)\". 30Music is a play-only log: its examples are "
      "the plays with sampled negatives, labelled on the next-play label (`interest_like`, "
      "trained with the log q correction), so its like AUC is the next-play AUC and its "
      "loss is mostly that head's. " + _measured(results, "warm"),
      "",
      *_warm_table(results["warm_vs_cold"]),
      "",
      "![warm vs cold eval loss, examples/s per runner](benchmarks_pipeline.png)",
      "",
  ]
  return "\n".join(lines)


def main() -> None:
  with open(RESULTS, encoding="utf-8") as f:
    results = json.load(f)
  plot(results)
  with open(DOC, "w", encoding="utf-8") as f:
    f.write(render(results))
  print(f"[bench] wrote {DOC} and {PNG}")


if __name__ == "__main__":
  main()
