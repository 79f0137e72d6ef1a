"""The canary experiment's daily report: per arm and listener segment, what a team watches.

This module owns turning one day of the live loop's logs into a Markdown page and a PNG.
Inputs are JSON lines: play events (the columns of ``features.events.EVENT_SCHEMA`` plus
the ``arm`` the gateway answered), gateway requests (``arm``, ``segment``,
``latency_ms``, ``source``, ``code``), the sequential test's decisions
(``online.sequential_test.Decision.as_dict``) and the promo controller's actions
(``online.promo_controller.Action.as_dict``), and the bad event lines (the nearline
updater's quarantine and duplicates). Per arm x segment the table has sessions,
plays, completion rate, skip rate and the share of skips in the ``very_brief``/``brief``
profiles, like and conversion rates and counts, the promo exposure share, requests,
latency p50/p99, errors and fallbacks; below it, the decisions with their evidence, the
controller's actions and the bad events by reason.
"""

import collections
import json
import os
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd

_EARLY_SKIPS = ("very_brief", "brief")
_PANELS = (("completion_rate", "completion rate"), ("skip_rate", "skip rate"),
           ("promo_share", "promo exposure share"), ("latency_p50_ms", "latency p50 (ms)"))


def read_jsonl(paths: Iterable[str]) -> List[Dict[str, object]]:
  """The JSON objects of the files' lines (blank lines and unparsable ones are skipped:
  the nearline quarantine counts bad lines, the report reads what is good)."""
  docs = []
  for path in paths:
    with open(path, encoding="utf-8") as f:
      for line in f:
        try:
          doc = json.loads(line)
        except ValueError:
          continue
        if isinstance(doc, dict):
          docs.append(doc)
  return docs


def _column(frame: pd.DataFrame, name: str, default=np.nan) -> pd.Series:
  if name in frame:
    return pd.to_numeric(frame[name], errors="coerce") if default is np.nan else frame[name]
  return pd.Series(default, index=frame.index)


def arm_segment_table(events: Sequence[Dict[str, object]],
                      requests: Sequence[Dict[str, object]] = ()) -> pd.DataFrame:
  """One row per (arm, segment) with the day's experiment metrics.

  Args:
    events: Play events with ``arm`` and ``user_segment`` (missing: ``none`` and
      ``unknown``).
    requests: Gateway requests with ``arm``, ``segment``, ``latency_ms``, ``source``,
      ``code``.

  Returns:
    A frame indexed by ``(arm, segment)``, rows sorted.
  """
  ev = pd.DataFrame(list(events))
  if ev.empty:
    ev = pd.DataFrame(columns=["arm", "user_segment"])
  ev["arm"] = _column(ev, "arm", "none").fillna("none")
  ev["segment"] = _column(ev, "user_segment", "unknown").fillna("unknown")
  ev["session"] = (_column(ev, "user_id", "").astype(str) + "/" +
                   _column(ev, "session_id", "").astype(str))
  # A column the log lacks stays NaN in the table ("-"), never a made-up 0.
  profile = _column(ev, "skip_profile", None)
  ev["early_skip"] = profile.isin(_EARLY_SKIPS).astype(float).where(profile.notna())
  for name in ("completion", "skip", "like", "subscription"):
    ev[name] = _column(ev, name)
  ev["promo"] = _column(ev, "is_promo").astype(float)
  g = ev.groupby(["arm", "segment"])
  table = pd.DataFrame({
      "sessions": g["session"].nunique(),
      "plays": g.size(),
      "completion_rate": g["completion"].mean(),
      "skip_rate": g["skip"].mean(),
      "early_skip_share": (g["early_skip"].sum(min_count=1) /
                           g["skip"].sum(min_count=1).replace(0, np.nan)),
      "likes": g["like"].sum(min_count=1),
      "like_rate": g["like"].mean(),
      "conversions": g["subscription"].sum(min_count=1),
      "conversion_rate": g["subscription"].mean(),
      "promo_share": g["promo"].mean(),
  })
  rq = pd.DataFrame(list(requests))
  if not rq.empty:
    rq["arm"] = _column(rq, "arm", "none").fillna("none")
    rq["segment"] = _column(rq, "segment", "unknown").fillna("unknown")
    rq["latency_ms"] = _column(rq, "latency_ms")
    rq["error"] = (_column(rq, "code", "OK").fillna("OK") != "OK").astype(int)
    rq["fallback"] = (_column(rq, "source", "") == "fallback_popularity").astype(int)
    r = rq.groupby(["arm", "segment"])
    table = table.join(pd.DataFrame({
        "requests": r.size(),
        "latency_p50_ms": r["latency_ms"].quantile(0.5),
        "latency_p99_ms": r["latency_ms"].quantile(0.99),
        "errors": r["error"].sum(),
        "fallbacks": r["fallback"].sum(),
    }), how="outer")
  return table.sort_index()


def bad_event_counts(quarantined: Iterable[object] = (), duplicates: int = 0
                     ) -> Dict[str, int]:
  """Bad event lines by reason: quarantined lines (``state_store.Quarantined``, read by
  their ``reason``) and ``duplicate`` plays, most frequent first."""
  counts = collections.Counter(q.reason for q in quarantined)
  if duplicates:
    counts["duplicate"] += duplicates
  return dict(counts.most_common())


def _cell(value) -> str:
  if isinstance(value, (float, np.floating)):
    if np.isnan(value):
      return "-"
    return f"{value:.0f}" if float(value).is_integer() and abs(value) >= 1 else f"{value:.4g}"
  return str(value)


def markdown(table: pd.DataFrame, decisions: Sequence[Dict[str, object]] = (),
             actions: Sequence[Dict[str, object]] = (), title: str = "Canary experiment",
             png_name: Optional[str] = None,
             bad_events: Optional[Mapping[str, int]] = None) -> str:
  """The report page: the arm x segment table, the decisions, the controller actions and
  (given ``bad_events``, reason -> lines) the bad events."""
  lines = [f"# {title}", "", "Per arm and listener segment:", ""]
  columns = ["arm", "segment"] + list(table.columns)
  lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  for (arm, segment), row in table.iterrows():
    lines.append("| " + " | ".join([arm, segment] + [_cell(v) for v in row]) + " |")
  if png_name:
    lines += ["", f"![{title}]({png_name})"]
  lines += ["", "## Decisions", ""]
  if not decisions:
    lines.append("No decision was taken.")
  for d in decisions:
    head = f"- **{d['action']}**"
    if "day" in d:
      head += f" (day {d['day']})"
    lines.append(f"{head}: {d['reason']}")
    for metric, e in d.get("evidence", {}).items():
      lines.append(f"  - {metric}: n {e['n_stable']}/{e['n_canary']} (stable/canary), "
                   f"means {e['mean_stable']:.4g}/{e['mean_canary']:.4g}, difference "
                   f"{e['difference']:.4g} in [{e['lower']:.4g}, {e['upper']:.4g}], "
                   f"p {e['p_value']:.3g}")
  lines += ["", "## Promo controller", ""]
  if not actions:
    lines.append("No action was taken.")
  for a in actions:
    lines.append(f"- window {a['window']}, {a['segment']}: {a['kind']} (completion "
                 f"{a['completion']:.3f} over {a['sessions']} sessions, floor "
                 f"{a['floor']:.3f}); scale {a['scale_before']:.2f} -> "
                 f"{a['scale_after']:.2f}, gamma {a['weights'][2]:.3f}, promo share "
                 f"{a['promo_share']:.3f}")
  if bad_events is not None:
    lines += ["", "## Bad events", "",
              f"{sum(bad_events.values())} lines set aside" + (": " if bad_events else ".")
              + ", ".join(f"{reason} {n}" for reason, n in bad_events.items())]
  return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: str, title: str = "Canary experiment") -> None:
  """Bar charts per segment, one bar per arm, of the metrics of ``_PANELS``."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  panels = [(c, label) for c, label in _PANELS if c in table]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
  arms = sorted(table.index.get_level_values(0).unique())
  segments = sorted(table.index.get_level_values(1).unique())
  width = 0.8 / max(1, len(arms))
  x = np.arange(len(segments))
  for ax, (column, label) in zip(axes[0], panels):
    for i, arm in enumerate(arms):
      values = [table[column].get((arm, s), np.nan) for s in segments]
      ax.bar(x + i * width, values, width, label=arm)
    ax.set_xticks(x + width * (len(arms) - 1) / 2, segments, rotation=30, fontsize=8)
    ax.set_title(label, fontsize=10)
  axes[0][0].legend(fontsize=8)
  fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


def write_report(out_dir: str, events: Sequence[Dict[str, object]],
                 requests: Sequence[Dict[str, object]] = (),
                 decisions: Sequence[Dict[str, object]] = (),
                 actions: Sequence[Dict[str, object]] = (), name: str = "report",
                 title: str = "Canary experiment",
                 bad_events: Optional[Mapping[str, int]] = None) -> Dict[str, str]:
  """Writes ``out_dir/<name>.md`` and ``out_dir/<name>.png``; returns their paths."""
  os.makedirs(out_dir, exist_ok=True)
  table = arm_segment_table(events, requests)
  png = os.path.join(out_dir, f"{name}.png")
  plot(table, png, title)
  md = os.path.join(out_dir, f"{name}.md")
  with open(md, "w", encoding="utf-8") as f:
    f.write(markdown(table, decisions, actions, title, os.path.basename(png), bad_events))
  return {"markdown": md, "png": png}
