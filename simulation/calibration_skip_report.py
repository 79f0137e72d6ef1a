"""Skip behaviour of the calibrated world against its published targets: table and panels.

This module owns the skip part of the ``melody data calibrate`` report: the skip
statistics of the report's simulation (``simulation.skip_stats``) set beside every
target of ``simulation.skip_targets`` with its source and distance
(:func:`compare`), that table as text or markdown, and four figure panels (momentum by
lag, skip runs, skip profiles, skip rate by context and shuffle) drawn into the
calibration PNG.
"""

from typing import Dict, List

import numpy as np

from simulation import calibration_stats
from simulation import skip_dynamics
from simulation import skip_stats
from simulation import skip_targets
from simulation.world_config import ORGANIC_SURFACES, SIM_ACTIVITIES


def stats(cols: Dict[str, np.ndarray]) -> Dict[str, object]:
  """``skip_stats.summarize`` of a ``World.simulate`` log with the world's names."""
  return skip_stats.summarize(cols, list(ORGANIC_SURFACES) + ["promo"], SIM_ACTIVITIES,
                              skip_dynamics.SKIP_PROFILES)


def compare(cols: Dict[str, np.ndarray]) -> List[Dict[str, object]]:
  """Every skip target beside the simulated value (``skip_targets.evaluate``)."""
  return skip_targets.evaluate(stats(cols))


def _short(source: str) -> str:
  """The first author and year of a source, or the whole text when it has none."""
  head = source.split(";")[0]
  return head if len(head) <= 90 else head[:87] + "..."


def format_table(rows: List[Dict[str, object]], markdown: bool = False) -> str:
  """The skip comparison as text (short sources) or markdown (full sources)."""
  head = ["skip statistic", "target", "kind", "simulated", "distance", "tolerance", "ok"]
  body = [[r["name"], f"{r['target']:.3g}", r["kind"], f"{r['sim']:.3g}",
           f"{r['distance']:.3f}", f"{r['tolerance']:.2f}", "yes" if r["ok"] else "NO"]
          for r in rows]
  source = (lambda r: r["source"]) if markdown else (lambda r: _short(r["source"]))
  return calibration_stats.text_table(head + ["source"],
                                      [b + [source(r)] for b, r in zip(body, rows)], markdown)


def plot_panels(axes, cols: Dict[str, np.ndarray]) -> None:
  """Draws the four skip panels into ``axes`` (four matplotlib axes)."""
  s = stats(cols)
  ax = axes[0]
  lags = sorted(s["momentum"])
  ax.plot(lags, [s["momentum"][k] for k in lags], "o--", label="simulated")
  ax.plot([1], [skip_targets.MOMENTUM_LAG1], "s", color="crimson", label="target (lag 1)")
  ax.set_ylim(0, max(0.6, max(s["momentum"].values()) + 0.05))
  ax.set_xlabel("lag (plays)")
  ax.set_ylabel("P(skip | skip k ago) - P(skip | no skip k ago)")
  ax.set_title("skip momentum by lag", fontsize=10)
  ax.legend(fontsize=8)
  ax = axes[1]
  runs = skip_stats.skip_runs(cols["session"], cols["skip"])
  k = np.arange(1, 11)
  share = np.bincount(np.minimum(runs, 10), minlength=11)[1:] / max(len(runs), 1)
  ax.bar(k, share)
  ax.set_xticks(k)
  ax.set_xticklabels([str(x) for x in k[:-1]] + ["10+"])
  ax.set_title(f"runs of consecutive skips: mean {runs.mean():.2f} (target 2.6), "
               f"\n>= 3: {(runs >= 3).mean():.2f} (target 0.33)", fontsize=10)
  ax.set_xlabel("run length (plays)")
  ax = axes[2]
  names = list(skip_dynamics.SKIP_PROFILES)
  sim = [s["profile_shares"][n] for n in names]
  early = skip_targets.EARLY_SKIP
  target = [early * skip_targets.VERY_BRIEF_OF_EARLY,
            early * (1 - skip_targets.VERY_BRIEF_OF_EARLY),
            1 - early - skip_targets.FULL_LISTEN, skip_targets.FULL_LISTEN]
  x = np.arange(len(names))
  ax.bar(x - 0.2, target, 0.4, label="target")
  ax.bar(x + 0.2, sim, 0.4, label="simulated")
  ax.set_xticks(x)
  ax.set_xticklabels(names, fontsize=8)
  ax.set_title("skip profiles (MSSD skip_1/2/3, not_skipped)", fontsize=10)
  ax.legend(fontsize=8)
  ax = axes[3]
  groups = {**{f"{k}": v for k, v in s["by_surface"].items()},
            **{f"shuffle {k}": v for k, v in s.get("by_shuffle", {}).items()}}
  ax.barh(np.arange(len(groups)), list(groups.values()))
  ax.set_yticks(np.arange(len(groups)))
  ax.set_yticklabels(list(groups), fontsize=8)
  ax.invert_yaxis()
  ax.set_xlabel("early skip rate")
  ax.set_title("skip rate by surface and shuffle", fontsize=10)
