"""Calibration of the listener world against the shared public datasets.

This module owns the fit of ``simulation/calibrated_params.json``: tag vocabulary,
frequencies and co-occurrence (MTG-Jamendo), track durations and the popularity curve
(Jamendo listens, HetRec play counts), session lengths, inter-play gaps and the skip
proxy (30Music), and the repeat-listen ("like") rate (KKBox). Only derived statistics
are written (quantiles, shares, fitted parameters), never raw rows. ``run`` fits, writes
the JSON, simulates with the fitted parameters and reports simulator vs real data side
by side (quantiles and KS distances) as a printed table, a markdown file and a PNG.
"""

import collections
import dataclasses
import itertools
import json
import os
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd

N_QUANTILES = 101
COOC_TOP = 12
REPORT_QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)

# Targets no shared dataset can give (see docs/data.md for the reasoning):
# the share of impressions skipped within 30 s, and the share of unskipped plays that
# run to the end. The 30Music skip proxy is censored (no gap below 30 s is logged).
SKIP_RATE_TARGET = 0.25
FULL_LISTEN_TARGET = 0.68
# Starting point of the fit; also the provisional behaviour before any calibration.
INITIAL_BEHAVIOUR = {
    "skip_bias": -1.5,
    "full_listen_bias": 1.0,
    "like_bias": 0.3,
    "popularity_exponent": 0.5,
    "session_len_mu": 2.08,
    "session_len_sigma": 0.9,
    "think_s_mean": 10.0,
    "pause_prob": 0.05,
    "pause_s_mean": 600.0,
}
SOURCES = ("jamendo", "30music", "hetrec", "kkbox")
# Upper end of the popularity-exponent search (see _fit_popularity_exponent).
MAX_POPULARITY_EXPONENT = 2.0

def _split_tag(tag: str):
  """('genre', 'rock') from 'genre---rock'; plain tags get category 'genre'."""
  if "---" in tag:
    cat, name = tag.split("---", 1)
    return cat.split("/")[0], name
  return "genre", tag


def fit_catalog(tracks: pd.DataFrame) -> Dict[str, object]:
  """Tag vocabulary/frequencies/co-occurrence, tags per track, durations, popularity.

  Args:
    tracks: frame with ``tags`` (list of str, ``category---name`` or plain),
      ``duration_s`` and ``popularity`` (log1p listens; NaN where unknown).

  Returns:
    The catalog part of the parameter dict.
  """
  if len(tracks) == 0:
    raise ValueError("tracks is empty; cannot fit the catalog")
  tag_lists = [list(t) if t is not None else [] for t in tracks["tags"]]
  counts = collections.Counter(itertools.chain.from_iterable(tag_lists))
  if not counts:
    raise ValueError("no tags in tracks; cannot fit the tag vocabulary")
  vocab = sorted(counts, key=lambda t: (-counts[t], t))
  index = {t: i for i, t in enumerate(vocab)}
  n_tags = len(vocab)
  pair = np.zeros((n_tags, n_tags))
  for tl in tag_lists:
    ids = sorted({index[t] for t in tl})
    for a, b in itertools.combinations(ids, 2):
      pair[a, b] += 1
      pair[b, a] += 1
  n_tracks = sum(1 for tl in tag_lists if tl)
  occ = np.array([counts[t] for t in vocab], dtype=np.float64)
  # lift = P(a and b) / (P(a) P(b)) for the COOC_TOP strongest partners of each tag
  # (ranked by co-occurrence count; pairs seen fewer than 5 times are noise).
  cooc = []
  for a in range(n_tags):
    partners = np.argsort(-pair[a], kind="stable")[:COOC_TOP]
    for b in partners:
      if pair[a, b] >= 5:
        lift = pair[a, b] * n_tracks / (occ[a] * occ[b])
        cooc.append([int(a), int(b), round(float(lift), 4)])
  ntags = np.array([len(tl) for tl in tag_lists if tl])
  per_track = np.bincount(np.minimum(ntags, 8), minlength=9)[1:].astype(np.float64)
  split = [_split_tag(t) for t in vocab]
  dur = pd.to_numeric(tracks["duration_s"], errors="coerce").dropna()
  dur = dur[dur > 0]
  pop = pd.to_numeric(tracks["popularity"], errors="coerce").dropna()
  qs = np.linspace(0, 1, N_QUANTILES)
  return {
      "tags": {
          "names": [name for _, name in split],
          "categories": [cat for cat, _ in split],
          "freq": [round(float(x), 8) for x in occ / occ.sum()],
          "cooc": cooc,
      },
      "tags_per_track": [round(float(x), 6) for x in per_track / per_track.sum()],
      "duration_log_quantiles": [round(float(x), 5) for x in np.quantile(np.log(dur), qs)],
      "popularity_quantiles": [round(float(x), 5) for x in np.quantile(pop, qs)],
  }


def write_params(params: Dict[str, object], path: str) -> None:
  """Writes the parameter dict as JSON: one line per top-level or second-level key."""
  lines = ["{"]
  items = list(params.items())
  for i, (key, value) in enumerate(items):
    end = "," if i < len(items) - 1 else ""
    if isinstance(value, dict):
      lines.append(f" {json.dumps(key)}: {{")
      sub = list(value.items())
      for j, (k2, v2) in enumerate(sub):
        lines.append(f"  {json.dumps(k2)}: {json.dumps(v2, ensure_ascii=False)}"
                     + ("," if j < len(sub) - 1 else ""))
      lines.append(" }" + end)
    else:
      lines.append(f" {json.dumps(key)}: {json.dumps(value, ensure_ascii=False)}{end}")
  lines.append("}")
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


# ---------------------------------------------------------------- statistics
def ks_distance(a: Sequence[float], b: Sequence[float]) -> float:
  """Two-sample Kolmogorov-Smirnov distance (largest gap between the two ECDFs)."""
  a = np.sort(np.asarray(a, np.float64))
  b = np.sort(np.asarray(b, np.float64))
  if len(a) == 0 or len(b) == 0:
    raise ValueError(f"ks_distance needs two non-empty samples, got {len(a)} and {len(b)}")
  x = np.concatenate([a, b])
  fa = np.searchsorted(a, x, side="right") / len(a)
  fb = np.searchsorted(b, x, side="right") / len(b)
  return float(np.max(np.abs(fa - fb)))


def lorenz(counts: Sequence[float], grid: int = 201) -> np.ndarray:
  """Share of all plays held by the least played fraction q of items, on a q grid."""
  c = np.sort(np.asarray(counts, np.float64))
  c = c[c > 0]
  if len(c) == 0:
    raise ValueError("lorenz needs at least one positive count")
  cum = np.concatenate([[0.0], np.cumsum(c)]) / c.sum()
  q = np.linspace(0.0, 1.0, grid)
  return np.interp(q, np.linspace(0.0, 1.0, len(cum)), cum)


def lorenz_ks(a_counts, b_counts) -> float:
  """KS distance between the play-weighted item-rank distributions (Lorenz curves)."""
  return float(np.max(np.abs(lorenz(a_counts) - lorenz(b_counts))))


def _bisect(f, lo: float, hi: float, target: float, iters: int = 50) -> float:
  """Solves f(x) = target for increasing f on [lo, hi]."""
  for _ in range(iters):
    mid = 0.5 * (lo + hi)
    if f(mid) < target:
      lo = mid
    else:
      hi = mid
  return 0.5 * (lo + hi)


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


# ------------------------------------------------------------------ real data
@dataclasses.dataclass
class RealData:
  """The statistics of the shared datasets the world is fitted to."""
  jamendo_tracks: pd.DataFrame          # tags, duration_s, popularity (log1p listens)
  session_lengths: np.ndarray           # 30Music plays per session
  gaps_s: np.ndarray                    # 30Music seconds between plays in a session
  skip_proxy_rate: float                # 30Music share of gaps < 30 s
  artist_plays: np.ndarray              # HetRec total plays per artist
  like_rate: float                      # KKBox repeat-listen rate
  like_rate_by_surface: Dict[str, float]


def load_real(data_dir: str) -> RealData:
  """Loads the four sources through ``features.datasets.registry`` and summarizes them."""
  from features.datasets import registry  # pylint: disable=g-import-not-at-top
  frames = {s: registry.load(s, data_dir)[:2] for s in SOURCES}
  _, jam = frames["jamendo"]
  e30, _ = frames["30music"]
  ts = pd.to_numeric(e30["ts"], errors="coerce").to_numpy(np.float64)
  sess = e30["session_id"].to_numpy()
  same = sess[1:] == sess[:-1]
  gaps = (ts[1:] - ts[:-1])[same]
  gaps = gaps[np.isfinite(gaps)]
  lengths = e30.groupby("session_id", sort=False).size().to_numpy()
  skip = pd.to_numeric(e30["skip"], errors="coerce").dropna()
  eh, _ = frames["hetrec"]
  plays = pd.to_numeric(eh["plays"], errors="coerce")
  artist_plays = plays.groupby(eh["artist_id"]).sum().to_numpy(np.float64)
  ek, _ = frames["kkbox"]
  like = pd.to_numeric(ek["like"], errors="coerce")
  by_surface = like.groupby(ek["context_surface"]).mean().dropna()
  return RealData(
      jamendo_tracks=jam, session_lengths=lengths, gaps_s=gaps,
      skip_proxy_rate=float(skip.mean()) if len(skip) else float("nan"),
      artist_plays=artist_plays, like_rate=float(like.mean()),
      like_rate_by_surface={k: round(float(v), 4) for k, v in by_surface.items()})


# ------------------------------------------------------------ observation model
def scrobble_view(cols: Dict[str, np.ndarray], min_s: float = 30.0, max_s: float = 240.0):
  """What a Last.fm/30Music log would record of simulated plays.

  Last.fm scrobbles a play only when the track is longer than 30 s and was played for
  half its length or 4 minutes, whichever comes first, so skipped plays never reach the
  log and the gaps between logged plays include them.

  Args:
    cols: ``World.simulate`` output (needs ``session``, ``listened``, ``gap``, ``track``
      durations through ``duration``).
    min_s, max_s: the scrobble thresholds.

  Returns:
    (session_lengths, gaps_s, skip_proxy_rate) of the logged plays.
  """
  dur = cols["duration"]
  logged = (dur > min_s) & (cols["listened"] >= np.minimum(dur / 2, max_s))
  return _logged_stats(cols["session"], cols["gap"].astype(np.float64), logged)


def _logged_stats(session, gap, logged):
  start = np.cumsum(gap) - gap                  # start offset of every play
  s = session[logged]
  t = start[logged]
  same = s[1:] == s[:-1]
  gaps = (t[1:] - t[:-1])[same]
  _, lengths = np.unique(s, return_counts=True)
  rate = float((gaps < 30).mean()) if len(gaps) else float("nan")
  return lengths, gaps, rate


# --------------------------------------------------------------------- fitting
def _world(params, seed, **config):
  from simulation import world as wm  # pylint: disable=g-import-not-at-top
  from simulation import world_config  # pylint: disable=g-import-not-at-top
  return wm.World(world_config.WorldConfig(**config), seed=seed, params=params)


def _simulate(world, n_users: int, days: int, seed: int):
  from simulation import world_config  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(np.random.SeedSequence([seed, 99]))
  L = world.sample_users(n_users, rng)
  cols = world.simulate(L, days, world_config.DEFAULT_START_TS, rng)
  cols["duration"] = world.track_duration[cols["track"]].astype(np.float64)
  return cols


def _fit_links(params, real: RealData, seed: int, say) -> None:
  """skip/full-listen/like biases: match the target rates on simulated utilities."""
  beh = params["behaviour"]
  for it in range(3):   # drift depends on skips, so re-simulate a few times
    cols = _simulate(_world(params, seed), 1500, 3, seed + it)
    z = cols["utility"]
    beh["skip_bias"] = _bisect(lambda b: np.mean(_sigmoid(b - z)), -15, 15,
                               SKIP_RATE_TARGET)
    zk = z[~cols["skip"]]
    beh["full_listen_bias"] = _bisect(lambda b: np.mean(_sigmoid(b + zk)), -15, 15,
                                      FULL_LISTEN_TARGET)
    slope = 0.8
    beh["like_bias"] = _bisect(lambda b: np.mean(_sigmoid(b + slope * zk)), -15, 15,
                               real.like_rate)
    say(f"  links pass {it + 1}: skip_bias={beh['skip_bias']:.3f} "
        f"full_listen_bias={beh['full_listen_bias']:.3f} like_bias={beh['like_bias']:.3f}"
        f" (simulated skip rate {cols['skip'].mean():.3f})")


def _fit_popularity_exponent(params, real: RealData, seed: int, say) -> None:
  """The logging policy's popularity exponent: match HetRec's artist play concentration.

  The search stops at ``MAX_POPULARITY_EXPONENT``: above it the KS distance still
  shrinks a little, but the top artist of the 1,000-artist world gets more than 15% of
  all plays (3.5% in HetRec), which no real service shows.
  """
  scores = []
  for alpha in np.round(np.arange(0.5, MAX_POPULARITY_EXPONENT + 1e-9, 0.25), 2):
    params["behaviour"]["popularity_exponent"] = float(alpha)
    world = _world(params, seed)
    cols = _simulate(world, 1000, 3, seed)
    counts = np.bincount(world.track_artist[cols["track"]], minlength=world.config.n_artists)
    scores.append((lorenz_ks(counts, real.artist_plays), float(alpha)))
  d, alpha = min(scores)
  params["behaviour"]["popularity_exponent"] = alpha
  say(f"  popularity_exponent={alpha} (artist Lorenz KS {d:.3f}); "
      + ", ".join(f"{a}:{k:.3f}" for k, a in scores))


def _fit_session_lengths(params, real: RealData, seed: int, say) -> None:
  """Lognormal session length that, after losing skipped plays, matches 30Music."""
  rng = np.random.default_rng(seed)
  keep = 1.0 - SKIP_RATE_TARGET
  normal = rng.standard_normal(40_000)
  # Common random numbers: slot j of session i is logged when its uniform < keep, so
  # the logged count of a session of length n is kept_before[i, n - 1].
  kept_before = np.cumsum(rng.random((40_000, 200)) < keep, axis=1, dtype=np.int16)
  rows = np.arange(40_000)
  best = None
  for mu in np.arange(1.2, 3.21, 0.05):
    for sigma in np.arange(0.4, 1.61, 0.05):
      n = np.clip(np.rint(np.exp(mu + sigma * normal)), 1, 200).astype(np.int64)
      obs = kept_before[rows, n - 1]
      obs = obs[obs > 0]
      d = ks_distance(obs, real.session_lengths)
      if best is None or d < best[0]:
        best = (d, float(mu), float(sigma))
  params["behaviour"]["session_len_mu"] = round(best[1], 4)
  params["behaviour"]["session_len_sigma"] = round(best[2], 4)
  say(f"  session length mu={best[1]:.2f} sigma={best[2]:.2f} (thinned KS {best[0]:.3f})")


def _fit_gaps(params, real: RealData, seed: int, say) -> None:
  """Think time and in-session pauses: match 30Music's gaps between logged plays."""
  cols = _simulate(_world(params, seed), 1500, 3, seed)
  rng = np.random.default_rng(seed)
  n = len(cols["listened"])
  e1 = rng.exponential(1.0, n)
  e2 = rng.exponential(1.0, n)
  u = rng.random(n)
  dur = cols["duration"]
  logged = (dur > 30) & (cols["listened"] >= np.minimum(dur / 2, 240))
  real_gaps = real.gaps_s
  best = None
  for think in (3.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0):
    for prob in (0.0, 0.02, 0.05, 0.08, 0.12, 0.16, 0.2, 0.25):
      for mean in (120.0, 240.0, 480.0, 900.0, 1800.0):
        gap = np.floor(cols["listened"] + think * e1 + np.where(u < prob, mean * e2, 0)) + 1
        _, gaps, _ = _logged_stats(cols["session"], gap, logged)
        d = ks_distance(gaps, real_gaps)
        if best is None or d < best[0]:
          best = (d, think, prob, mean)
  beh = params["behaviour"]
  beh["think_s_mean"], beh["pause_prob"], beh["pause_s_mean"] = best[1:]
  say(f"  think_s_mean={best[1]} pause_prob={best[2]} pause_s_mean={best[3]} "
      f"(gap KS {best[0]:.3f})")


def fit(real: RealData, seed: int = 7, say=print) -> Dict[str, object]:
  """Fits every calibrated parameter; returns the parameter dict (JSON-ready)."""
  params: Dict[str, object] = {"schema_version": 1}
  say("fitting the catalog (MTG-Jamendo tags, durations, listens)")
  params.update(fit_catalog(real.jamendo_tracks))
  params["behaviour"] = dict(INITIAL_BEHAVIOUR)
  say("fitting the logging policy's popularity exponent (HetRec artist plays)")
  _fit_popularity_exponent(params, real, seed, say)
  say("fitting skip / full-listen / like links (targets; KKBox repeat-listen rate)")
  _fit_links(params, real, seed, say)
  say("fitting session lengths (30Music, after the scrobble filter)")
  _fit_session_lengths(params, real, seed, say)
  say("fitting think time and pauses (30Music gaps)")
  _fit_gaps(params, real, seed, say)
  params["behaviour"] = {k: round(float(v), 5) for k, v in params["behaviour"].items()}
  params["targets"] = {
      "skip_rate": SKIP_RATE_TARGET,
      "full_listen_rate": FULL_LISTEN_TARGET,
      "like_rate_kkbox": round(real.like_rate, 5),
      "like_rate_kkbox_by_surface": real.like_rate_by_surface,
      "skip_proxy_rate_30music": round(real.skip_proxy_rate, 5),
  }
  params["provenance"] = {
      "generated_by": "simulation.calibration.run (melody data calibrate)",
      "seed": seed,
      "sources": {
          "jamendo": "MTG-Jamendo split-0 autotagging + jamendo_stats (CC BY-NC-SA 4.0)",
          "30music": "30Music 200ks test slices (research use)",
          "hetrec": "hetrec2011-lastfm-2k user_artists (non-commercial)",
          "kkbox": "KKBox WSDM Cup 2018 300-song sample (competition rules)",
      },
      "content": "derived statistics only: shares, quantiles, fitted parameters",
  }
  return params


# ------------------------------------------------------------------- comparison
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


# KS thresholds the test enforces (see docs/data.md for why each is what it is).
THRESHOLDS = {
    "session length (plays)": 0.08,
    "gap between plays (s)": 0.15,
    "track popularity log1p(listens)": 0.05,
    "track duration (s)": 0.05,
    "tags per track": 0.05,
    "tag frequency rank": 0.05,
    "artist play concentration (Lorenz)": 0.12,
    "skip proxy rate (gap < 30 s)": 0.01,
    "repeat-listen / like rate": 0.03,
}


def compare(params: Dict[str, object], real: RealData, seed: int = 7,
            n_users: int = 3000, days: int = 5) -> List[Row]:
  """Simulates with ``params`` and compares every fitted statistic with the real data."""
  world = _world(params, seed)
  cols = _simulate(world, n_users, days, seed + 1000)
  lengths, gaps, proxy = scrobble_view(cols)
  q = list(REPORT_QUANTILES)
  rows = []

  def add(name, source, real_x, sim_x, note=""):
    rows.append(Row(name, source, np.quantile(real_x, q).tolist(),
                    np.quantile(sim_x, q).tolist(), ks_distance(real_x, sim_x),
                    THRESHOLDS[name], note))

  add("session length (plays)", "30Music", real.session_lengths, lengths,
      "simulated sessions seen through the Last.fm scrobble filter")
  add("gap between plays (s)", "30Music", real.gaps_s, gaps,
      "start-to-start, logged plays of one session")
  jam = real.jamendo_tracks
  add("track popularity log1p(listens)", "Jamendo",
      pd.to_numeric(jam["popularity"], errors="coerce").dropna(), world.track_pop)
  add("track duration (s)", "Jamendo",
      pd.to_numeric(jam["duration_s"], errors="coerce").dropna(), world.track_duration)
  real_ntags = np.minimum([len(t) for t in jam["tags"] if len(t)], 8)
  add("tags per track", "Jamendo", real_ntags, world.track_num_tags,
      "capped at MAX_TAGS = 8")
  # Tag frequency: the real-frequency rank of a random tag assignment.
  names = params["tags"]["names"]
  rank = {n: i for i, n in enumerate(names)}
  real_ranks = [rank[_split_tag(t)[1]] for tl in jam["tags"] for t in tl
                if _split_tag(t)[1] in rank]
  sim_tags = world.track_tags[world.track_tags >= 0]
  sim_ranks = np.array([rank[world.tag_names[i]] for i in range(len(world.tag_names))])[
      sim_tags]
  add("tag frequency rank", "Jamendo", real_ranks, sim_ranks,
      "rank 0 = most frequent real tag")
  counts = np.bincount(world.track_artist[cols["track"]], minlength=world.config.n_artists)
  lz = lorenz_ks(counts, real.artist_plays)
  rq = np.interp(q, np.linspace(0, 1, 201), lorenz(real.artist_plays)).tolist()
  sq = np.interp(q, np.linspace(0, 1, 201), lorenz(counts)).tolist()
  rows.append(Row("artist play concentration (Lorenz)", "HetRec", rq, sq, lz,
                  THRESHOLDS["artist play concentration (Lorenz)"],
                  "share of plays held by the least played q of artists"))
  rows.append(Row("skip proxy rate (gap < 30 s)", "30Music", [real.skip_proxy_rate] * 5,
                  [proxy] * 5, abs(real.skip_proxy_rate - proxy),
                  THRESHOLDS["skip proxy rate (gap < 30 s)"],
                  f"censored in the real log; uncensored simulated skip rate "
                  f"{cols['skip'].mean():.3f} (target {SKIP_RATE_TARGET})"))
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
  world = _world(params, seed)
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
  if markdown:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(b) + " |" for b in body]
    return "\n".join(lines)
  widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
  out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
  out += ["  ".join(c.ljust(w) for c, w in zip(b, widths)) for b in body]
  return "\n".join(out)


def plot(rows: List[Row], params, real: RealData, path: str, seed: int = 7) -> None:
  """Writes the comparison figure (PNG) to ``path``."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  world = _world(params, seed)
  cols = _simulate(world, 3000, 5, seed + 1000)
  lengths, gaps, _ = scrobble_view(cols)
  jam = real.jamendo_tracks
  fig, axes = plt.subplots(2, 4, figsize=(18, 8.5))

  def ecdf(ax, real_x, sim_x, title, logx=False):
    for x, label, style in ((real_x, "real", "-"), (sim_x, "simulated", "--")):
      x = np.sort(np.asarray(x, np.float64))
      ax.plot(x, np.arange(1, len(x) + 1) / len(x), style, label=label)
    if logx:
      ax.set_xscale("log")
    ks = {r.name: r.ks for r in rows}.get(title.split(" [")[0])
    ax.set_title(title + (f"\nKS = {ks:.3f}" if ks is not None else ""), fontsize=10)
    ax.set_ylabel("ECDF")
    ax.legend(fontsize=8)

  ecdf(axes[0, 0], real.session_lengths, lengths, "session length (plays) [30Music]", True)
  ecdf(axes[0, 1], real.gaps_s, gaps, "gap between plays (s) [30Music]", True)
  ecdf(axes[0, 2], pd.to_numeric(jam["popularity"], errors="coerce").dropna(),
       world.track_pop, "track popularity log1p(listens) [Jamendo]")
  ecdf(axes[0, 3], pd.to_numeric(jam["duration_s"], errors="coerce").dropna(),
       world.track_duration, "track duration (s) [Jamendo]", True)
  ax = axes[1, 0]
  counts = np.bincount(world.track_artist[cols["track"]], minlength=world.config.n_artists)
  grid = np.linspace(0, 1, 201)
  ax.plot(grid, lorenz(real.artist_plays), "-", label="HetRec artists")
  ax.plot(grid, lorenz(counts), "--", label="simulated artists")
  ax.plot(grid, grid, ":", color="grey")
  ax.set_title("artist play concentration (Lorenz) [HetRec]\nKS = "
               f"{lorenz_ks(counts, real.artist_plays):.3f}", fontsize=10)
  ax.set_xlabel("least played fraction of artists")
  ax.set_ylabel("share of plays")
  ax.legend(fontsize=8)
  ax = axes[1, 1]
  real_n = np.minimum([len(t) for t in jam["tags"] if len(t)], 8)
  k = np.arange(1, 9)
  ax.bar(k - 0.2, np.bincount(real_n, minlength=9)[1:] / len(real_n), 0.4, label="real")
  ax.bar(k + 0.2, np.bincount(world.track_num_tags, minlength=9)[1:] / world.config.n_tracks,
         0.4, label="simulated")
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
            byname["repeat-listen / like rate"].real_q[0], SKIP_RATE_TARGET]
  sim_v = [byname["skip proxy rate (gap < 30 s)"].sim_q[0],
           byname["repeat-listen / like rate"].sim_q[0], float(cols["skip"].mean())]
  x = np.arange(3)
  ax.bar(x - 0.2, real_v, 0.4, label="real / target")
  ax.bar(x + 0.2, sim_v, 0.4, label="simulated")
  ax.set_xticks(x)
  ax.set_xticklabels(labels, fontsize=8)
  ax.set_title("rates (30Music, KKBox, skip target)", fontsize=10)
  ax.legend(fontsize=8)
  fig.suptitle(f"Melody world simulator vs real data (seed {seed})")
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


# ------------------------------------------------------------------------ run
def run(data_dir: str, out: str, seed: int = 7, params_out: Optional[str] = None) -> int:
  """Fits the world to the shared data, writes the params, reports sim vs real.

  Args:
    data_dir: the shared data root (kkbox_sample/, 30music_slices/, …).
    out: report directory: ``calibration.md``, ``calibration.png``, ``calibration.json``.
    seed: seed of every simulation in the fit and the report.
    params_out: where the fitted JSON goes (default ``simulation/calibrated_params.json``).

  Returns:
    0 on success, 2 when the data is missing.
  """
  from simulation import world_config as wm  # pylint: disable=g-import-not-at-top
  if not os.path.isdir(data_dir):
    print(f"melody data calibrate: data directory not found: {data_dir}", file=sys.stderr)
    return 2
  params_out = params_out or wm.PARAMS_PATH
  say = lambda msg: print(msg, flush=True)
  say(f"loading real data from {data_dir}")
  try:
    real = load_real(data_dir)
  except FileNotFoundError as e:
    print(f"melody data calibrate: {e}", file=sys.stderr)
    return 2
  params = fit(real, seed=seed, say=say)
  write_params(params, params_out)
  say(f"wrote {params_out}")
  rows = compare(params, real, seed=seed)
  table = format_table(rows)
  say("\nsimulator vs real data\n" + table)
  os.makedirs(out, exist_ok=True)
  cooc = cooc_agreement(params, seed)
  say(f"tag co-occurrence (pairs with real lift > 1): Spearman {cooc['spearman']:.3f} "
      f"over {cooc['pairs']} pairs; simulated lift > 1 for {100 * cooc['share_above_1']:.0f}%")
  with open(os.path.join(out, "calibration.md"), "w", encoding="utf-8") as f:
    f.write(f"# Simulator calibration (seed {seed})\n\n" + format_table(rows, True) + "\n\n"
            f"Tag co-occurrence: Spearman {cooc['spearman']:.3f} between real and simulated "
            f"lift over {cooc['pairs']} top pairs with real lift > 1; simulated lift > 1 "
            f"for {100 * cooc['share_above_1']:.0f}% of them.\n")
  with open(os.path.join(out, "calibration.json"), "w", encoding="utf-8") as f:
    json.dump({"seed": seed, "rows": [dataclasses.asdict(r) for r in rows], "cooc": cooc,
               "behaviour": params["behaviour"], "targets": params["targets"]}, f, indent=2)
  plot(rows, params, real, os.path.join(out, "calibration.png"), seed=seed)
  say(f"wrote {out}/calibration.md, calibration.json, calibration.png")
  return 0
