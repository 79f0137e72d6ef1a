"""The report of the ranking benchmark's ``sequence`` part: its table in the ranking
section of ``docs/benchmarks.md`` and ``docs/ranking_sequence.png``, from the results alone.
"""

import os
from typing import Dict, List, Optional, Tuple

from bench import common
from bench import ranking_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = os.path.join(REPO, "docs", "ranking_sequence.png")


def cell(row, key: str, digits: int = 4) -> str:
  """A mean row's value of ``key``, with its sd over seeds when there are two or more."""
  if key not in row:
    return ""
  if row.get("seeds", 1) < 2:   # no spread from one run
    return f"{row[key]:.{digits}f}"
  sd = row.get(f"{key}_std", 0.0)
  return f"{row[key]:.{digits}f} ± {sd:.{digits}f}"


def metric_cells(mean) -> Tuple[List[str], List[Dict[str, str]]]:
  """The measured heads of mean rows, and per row its model, seeds and head cells."""
  heads = [h for h in ranking_models.metric_columns() if any(h in r for r in mean)]
  return heads, [{"model": r["model"], "seeds": r["seeds"], **{h: cell(r, h) for h in heads}}
                 for r in mean]


def lines(block: Optional[Dict[str, object]], part: Optional[Dict[str, object]]) -> List[str]:
  """The section's lines (nothing when the part has not run)."""
  if not block:
    return []
  heads, cells = metric_cells(block["mean"])
  rows = []
  for r, row in zip(block["mean"], cells):
    row["examples_seen"] = f"{r.get('examples_seen', 0):,.0f}"
    row["examples_per_s"] = f"{r['train_examples_per_s']:,.0f}" if (
        "train_examples_per_s" in r) else ""
    row["cpu_ms_per_example"] = cell(r, "cpu_ms_per_example", 2)
    rows.append(row)
  when = ""
  if part:
    load = part.get("load_average_before", [float("nan")])[0]
    when = (f" Measured {part['measured_at']} ({part['runtime_s']:,.0f} s, load average "
            f"{load:.1f} before).")
    gen = part.get("settings", {}).get("generator")
    if gen:
      when += (f" Data: the simulator with {gen['users']:,} listeners over {gen['days']} "
               f"days (conversion hazard x{gen['conversion_scale']:g}).")
  out = ["", "### Sequence-level training (`MELODY_BENCH_RANKING_ONLY=sequence`)", "",
         f"Same simulator split, one process, runs one after another (same CPU, precision "
         f"and threads), seeds {block['seeds']} (mean ± sd over 2 or more). Per-impression "
         "models train "
         f"{block['steps']} steps of batch {block['batch_size']} "
         f"({block['examples_budget']:,} impressions); sequence-level training reads "
         f"{block['chunks']:,} chunks of up to 50 impressions ({block['context']} read-only "
         f"context steps after a listener's first chunk), {block['chunks_per_step']} chunks "
         f"a step (~{block['examples_per_step']:.0f} trained impressions), for the same "
         "impressions seen" + (" and for the default model's training wall time" if any(
             "equal wall time" in r["model"] for r in block["mean"]) else "")
         + ". Every model is "
         "scored on the eval split through the per-impression (serving) path." + when, "",
         common.table(rows, ["model", "seeds"] + heads
                      + ["examples_seen", "examples_per_s", "cpu_ms_per_example"]), "",
         f"- training examples/s, sequence-level over the default Transformer MMoE: "
         f"{block['speedup_vs_default']:.1f}x",
         f"- CPU per trained example, sequence-level over the flat MMoE: "
         f"{block['cpu_per_example_vs_flat_mmoe']:.2f}x"]
  for pair, per_head in block["paired"].items():
    out.append(f"- `{pair}` (paired over seeds): " + "; ".join(
        f"{h} {p['mean']:+.4f}" + (f" (se {p['se']:.4f})" if p["se"] == p["se"] else "")
        for h, p in per_head.items()))
  out += ["", f"![sequence-level training]({os.path.basename(PNG)})"]
  return out


def write_png(block: Optional[Dict[str, object]]) -> None:
  """Per head, each model's mean ± sd, and the training speeds."""
  if not block:
    return
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  heads = [h for h in ranking_models.metric_columns() if any(h in r for r in block["mean"])]
  fig, axes = plt.subplots(1, len(heads) + 1, figsize=(3.2 * (len(heads) + 1), 3.6))
  names = [r["model"] for r in block["mean"]]
  for ax, head in zip(axes, heads + ["train_examples_per_s"]):
    vals = [r.get(head, float("nan")) for r in block["mean"]]
    errs = [r.get(f"{head}_std", 0.0) for r in block["mean"]]
    ax.barh(range(len(names)), vals, xerr=errs, color="#4a7fb5")
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names if ax is axes[0] else [""] * len(names), fontsize=7)
    ax.set_title(head.replace("_", " "), fontsize=8)
    finite = [v for v in vals if v == v]
    if finite and head != "train_examples_per_s":
      lo, hi = min(finite), max(finite)
      ax.set_xlim(lo - 0.2 * (hi - lo + 1e-3), hi + 0.2 * (hi - lo + 1e-3))
    ax.tick_params(axis="x", labelsize=7)
  fig.suptitle("Sequence-level vs per-impression training (simulator, mean ± sd)", fontsize=9)
  fig.tight_layout()
  fig.savefig(PNG, dpi=110)
  plt.close(fig)
