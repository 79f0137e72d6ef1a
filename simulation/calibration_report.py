"""Simulator vs real data: the comparison table, its limits, and the figure.

This module owns the report of a calibration: every fitted statistic simulated with a
parameter set and set beside the real data (quantiles and a KS distance against the
limit the tests enforce, :func:`compare`), how well the simulated catalogue keeps the
real tag co-occurrence (:func:`cooc_agreement`), the table as text or markdown, and
the comparison figure (ECDFs, Lorenz curves, tag shares and rates, and the skip
panels of ``simulation.calibration_skip_report``) as a PNG.
"""

import collections
import dataclasses
from typing import Dict, List

import numpy as np
import pandas as pd

from simulation import calibration_skip_report
from simulation import calibration_stats
from simulation import skip_targets
from simulation.calibration_data import RealData, split_tag

REPORT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)
# KS thresholds the test enforces (see docs/data.md for why each is what it is).
THRESHOLDS = {
    "session length (plays)": 0.10,
    "gap between plays (s)": 0.15,
    "track popularity log1p(listens)": 0.05,
    "track duration (s)": 0.05,
    "tags per track": 0.05,
    "tag frequency rank": 0.05,
    "artist play concentration (Lorenz)": 0.12,
    "skip proxy rate (gap < 30 s)": 0.01,
    "repeat-listen / like rate": 0.03,
}
# Listeners and days of the simulation every report row and panel is measured on.
REPORT_USERS, REPORT_DAYS = 3000, 5


@dataclasses.dataclass
class Row:
  """One line of the simulator-vs-real table."""
  name: str
  real_source: str
  real_q: List[float]
  sim_q: List[float]
  ks: float
  threshold: float
  note: str = ""


def report_plays(params, seed: int, n_users: int = REPORT_USERS, days: int = REPORT_DAYS):
  """The world of ``params`` and the plays every report row and panel is measured on."""
  return calibration_stats.world_plays(params, seed, n_users, days, seed + 1000)


def _numeric(values) -> pd.Series:
  return pd.to_numeric(values, errors="coerce").dropna()


def compare(params: Dict[str, object], real: RealData, seed: int = 7,
            n_users: int = REPORT_USERS, days: int = REPORT_DAYS) -> List[Row]:
  """Simulates with ``params`` and compares every fitted statistic with the real data."""
  world, cols = report_plays(params, seed, n_users, days)
  lengths, gaps, proxy = calibration_stats.scrobble_view(cols)
  q = list(REPORT_QUANTILES)
  rows = []

  def add(name, source, real_x, sim_x, note=""):
    rows.append(Row(name, source, np.quantile(real_x, q).tolist(),
                    np.quantile(sim_x, q).tolist(),
                    calibration_stats.ks_distance(real_x, sim_x), THRESHOLDS[name], note))

  add("session length (plays)", "30Music", real.session_lengths, lengths,
      "simulated sessions seen through the Last.fm scrobble filter")
  add("gap between plays (s)", "30Music", real.gaps_s, gaps,
      "start-to-start, logged plays of one session")
  jam = real.jamendo_tracks
  add("track popularity log1p(listens)", "Jamendo", _numeric(jam["popularity"]),
      world.track_pop)
  add("track duration (s)", "Jamendo", _numeric(jam["duration_s"]), world.track_duration)
  real_ntags = np.minimum([len(t) for t in jam["tags"] if len(t)], 8)
  add("tags per track", "Jamendo", real_ntags, world.track_num_tags,
      "capped at MAX_TAGS = 8")
  # Tag frequency: the real-frequency rank of a random tag assignment.
  names = params["tags"]["names"]
  rank = {n: i for i, n in enumerate(names)}
  real_ranks = [rank[split_tag(t)[1]] for tl in jam["tags"] for t in tl
                if split_tag(t)[1] in rank]
  sim_tags = world.track_tags[world.track_tags >= 0]
  sim_ranks = np.array([rank[world.tag_names[i]] for i in range(len(world.tag_names))])[
      sim_tags]
  add("tag frequency rank", "Jamendo", real_ranks, sim_ranks,
      "rank 0 = most frequent real tag")
  counts = calibration_stats.artist_play_counts(world, cols)
  lz = calibration_stats.lorenz_ks(counts, real.artist_plays)
  grid = np.linspace(0, 1, 201)
  rq = np.interp(q, grid, calibration_stats.lorenz(real.artist_plays)).tolist()
  sq = np.interp(q, grid, calibration_stats.lorenz(counts)).tolist()
  rows.append(Row("artist play concentration (Lorenz)", "HetRec", rq, sq, lz,
                  THRESHOLDS["artist play concentration (Lorenz)"],
                  "share of plays held by the least played q of artists"))
  rows.append(Row("skip proxy rate (gap < 30 s)", "30Music", [real.skip_proxy_rate] * 5,
                  [proxy] * 5, abs(real.skip_proxy_rate - proxy),
                  THRESHOLDS["skip proxy rate (gap < 30 s)"],
                  f"censored in the real log; uncensored simulated skip rate "
                  f"{cols['skip'].mean():.3f} (target {skip_targets.EARLY_SKIP})"))
  logged = ~cols["skip"]
  sim_like = float(cols["like"][logged].mean())
  rows.append(Row("repeat-listen / like rate", "KKBox", [real.like_rate] * 5,
                  [sim_like] * 5, abs(real.like_rate - sim_like),
                  THRESHOLDS["repeat-listen / like rate"],
                  "rate over unskipped plays; |difference| in the KS column"))
  return rows


def cooc_agreement(params: Dict[str, object], seed: int = 7) -> Dict[str, float]:
  """How well the simulated catalog keeps the real tag co-occurrence.

  Returns:
    ``spearman``: rank correlation between the real and the simulated lift over the
    stored top pairs that occur at least 5 times in the simulated catalog; ``pairs``:
    how many pairs that is; ``share_above_1``: share of those pairs whose simulated
    lift is above 1 (tags that go together in the real data go together in the world).
  """
  from scipy import stats  # pylint: disable=g-import-not-at-top
  world = calibration_stats.calibrated_world(params, seed)
  tags = world.track_tags
  onehot = np.zeros((len(tags), len(world.tag_names)))
  r, c = np.nonzero(tags >= 0)
  onehot[r, tags[r, c]] = 1.0
  pair = onehot.T @ onehot
  occ = np.diag(pair)
  index = {n: i for i, n in enumerate(world.tag_names)}
  names = params["tags"]["names"]
  real, sim = [], []
  for a, b, lift in params["tags"]["cooc"]:
    i, j = index.get(names[a]), index.get(names[b])
    if i is None or j is None or pair[i, j] < 5 or lift <= 1:
      continue
    real.append(lift)
    sim.append(pair[i, j] * len(tags) / (occ[i] * occ[j]))
  sim = np.asarray(sim)
  return {"spearman": round(float(stats.spearmanr(real, sim)[0]), 4), "pairs": len(real),
          "share_above_1": round(float((sim > 1).mean()), 4)}


def format_table(rows: List[Row], markdown: bool = False) -> str:
  """The comparison as a text or markdown table."""
  qn = "/".join(f"p{int(100 * x)}" for x in REPORT_QUANTILES)

  def fmt(v):
    return "/".join(f"{x:.3g}" for x in v) if len(set(v)) > 1 else f"{v[0]:.3g}"

  head = ["statistic", "real source", f"real {qn}", f"sim {qn}", "KS", "limit", "ok"]
  body = [[r.name, r.real_source, fmt(r.real_q), fmt(r.sim_q), f"{r.ks:.3f}",
           f"{r.threshold:.2f}", "yes" if r.ks <= r.threshold else "NO"] for r in rows]
  return calibration_stats.text_table(head, body, markdown)


def _ecdf(ax, rows: List[Row], real_x, sim_x, title: str, logx: bool = False) -> None:
  for x, label, style in ((real_x, "real", "-"), (sim_x, "simulated", "--")):
    x = np.sort(np.asarray(x, np.float64))
    ax.plot(x, np.arange(1, len(x) + 1) / len(x), style, label=label)
  if logx:
    ax.set_xscale("log")
  ks = {r.name: r.ks for r in rows}.get(title.split(" [")[0])
  ax.set_title(title + (f"\nKS = {ks:.3f}" if ks is not None else ""), fontsize=10)
  ax.set_ylabel("ECDF")
  ax.legend(fontsize=8)


def _paired_bars(ax, x, real_v, sim_v, real_label: str = "real") -> None:
  ax.bar(x - 0.2, real_v, 0.4, label=real_label)
  ax.bar(x + 0.2, sim_v, 0.4, label="simulated")


def plot(rows: List[Row], params, real: RealData, path: str, seed: int = 7) -> None:
  """Writes the comparison figure (PNG) to ``path``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  world, cols = report_plays(params, seed)
  lengths, gaps, _ = calibration_stats.scrobble_view(cols)
  jam = real.jamendo_tracks
  fig, axes = plt.subplots(3, 4, figsize=(18, 13))
  _ecdf(axes[0, 0], rows, real.session_lengths, lengths,
        "session length (plays) [30Music]", True)
  _ecdf(axes[0, 1], rows, real.gaps_s, gaps, "gap between plays (s) [30Music]", True)
  _ecdf(axes[0, 2], rows, _numeric(jam["popularity"]), world.track_pop,
        "track popularity log1p(listens) [Jamendo]")
  _ecdf(axes[0, 3], rows, _numeric(jam["duration_s"]), world.track_duration,
        "track duration (s) [Jamendo]", True)
  ax = axes[1, 0]
  counts = calibration_stats.artist_play_counts(world, cols)
  grid = np.linspace(0, 1, 201)
  ax.plot(grid, calibration_stats.lorenz(real.artist_plays), "-", label="HetRec artists")
  ax.plot(grid, calibration_stats.lorenz(counts), "--", label="simulated artists")
  ax.plot(grid, grid, ":", color="grey")
  ax.set_title("artist play concentration (Lorenz) [HetRec]\nKS = "
               f"{calibration_stats.lorenz_ks(counts, real.artist_plays):.3f}", fontsize=10)
  ax.set_xlabel("least played fraction of artists")
  ax.set_ylabel("share of plays")
  ax.legend(fontsize=8)
  ax = axes[1, 1]
  real_n = np.minimum([len(t) for t in jam["tags"] if len(t)], 8)
  k = np.arange(1, 9)
  _paired_bars(ax, k, np.bincount(real_n, minlength=9)[1:] / len(real_n),
               np.bincount(world.track_num_tags, minlength=9)[1:] / world.config.n_tracks)
  ax.set_title("tags per track [Jamendo]", fontsize=10)
  ax.legend(fontsize=8)
  ax = axes[1, 2]
  top = 25
  names = params["tags"]["names"][:top]
  real_f = np.asarray(params["tags"]["freq"][:top])
  sim_counts = collections.Counter(world.tag_names[i] for i in
                                   world.track_tags[world.track_tags >= 0])
  total = sum(sim_counts.values())
  sim_f = np.array([sim_counts.get(n, 0) / total for n in names])
  y = np.arange(top)
  ax.barh(y - 0.2, real_f, 0.4, label="real")
  ax.barh(y + 0.2, sim_f, 0.4, label="simulated")
  ax.set_yticks(y)
  ax.set_yticklabels(names, fontsize=7)
  ax.invert_yaxis()
  ax.set_title(f"top {top} tag shares [Jamendo]", fontsize=10)
  ax.legend(fontsize=8)
  ax = axes[1, 3]
  labels = ["skip proxy\n(gap<30 s)", "like /\nrepeat-listen", "skip rate\n(uncensored)"]
  byname = {r.name: r for r in rows}
  real_v = [byname["skip proxy rate (gap < 30 s)"].real_q[0],
            byname["repeat-listen / like rate"].real_q[0], skip_targets.EARLY_SKIP]
  sim_v = [byname["skip proxy rate (gap < 30 s)"].sim_q[0],
           byname["repeat-listen / like rate"].sim_q[0], float(cols["skip"].mean())]
  x = np.arange(3)
  _paired_bars(ax, x, real_v, sim_v, real_label="real / target")
  ax.set_xticks(x)
  ax.set_xticklabels(labels, fontsize=8)
  ax.set_title("rates (30Music, KKBox, skip target)", fontsize=10)
  ax.legend(fontsize=8)
  calibration_skip_report.plot_panels(axes[2], cols)
  fig.suptitle(f"Melody world simulator vs real data (seed {seed})")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)
