"""The fit of ``simulation/calibrated_params.json`` to the shared datasets.

This module owns every fitted number of the world: the tag vocabulary, frequencies
and co-occurrence, tags per track, track durations and the popularity curve
(MTG-Jamendo), the logging policy's popularity exponent (HetRec artist play
concentration), the skip behaviour (``simulation.calibration_skip_fit`` against the
published figures of ``simulation.skip_targets``), the like link (KKBox repeat-listen
rate), session lengths and the think time and pauses between plays (30Music, seen
through the scrobble filter). :func:`fit` returns the JSON-ready dict;
:func:`write_params` writes it. Only derived statistics are written (quantiles, shares,
fitted parameters), never raw rows.
"""

import collections
import itertools
import json
from typing import Dict

import numpy as np
import pandas as pd

from simulation import calibration_skip_fit
from simulation import calibration_stats
from simulation import skip_stats
from simulation import skip_targets
from simulation.calibration_data import RealData, split_tag
from simulation.calibration_skip_fit import bisect
from simulation.skip_dynamics import sigmoid

N_QUANTILES = 101
COOC_TOP = 12
# Starting point of the fit; also the provisional behaviour before any calibration.
INITIAL_BEHAVIOUR = {
    "skip_bias": 0.9,
    "full_listen_bias": -1.5,
    "like_bias": 0.3,
    "very_brief_bias": 1.9,
    "momentum_gain": 1.3,
    "skip_through_share": 0.22,
    "popularity_exponent": 0.5,
    "session_len_mu": 2.08,
    "session_len_sigma": 0.9,
    "think_s_mean": 10.0,
    "pause_prob": 0.05,
    "pause_s_mean": 600.0,
}
# Upper end of the popularity-exponent search (see _fit_popularity_exponent).
MAX_POPULARITY_EXPONENT = 2.0


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
  split = [split_tag(t) for t in vocab]
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


def _fit_like(params, real: RealData, seed: int, say) -> None:
  """The like link: the KKBox repeat-listen rate over unskipped simulated plays."""
  _, cols = calibration_stats.world_plays(params, seed, 1500, 3, seed)
  zk = cols["utility"][~cols["skip"]]
  slope = 0.8
  params["behaviour"]["like_bias"] = bisect(lambda b: np.mean(sigmoid(b + slope * zk)),
                                            -15, 15, real.like_rate)
  say(f"  like_bias={params['behaviour']['like_bias']:.3f}")


def _fit_popularity_exponent(params, real: RealData, seed: int, say) -> None:
  """The logging policy's popularity exponent: match HetRec's artist play concentration.

  The search stops at ``MAX_POPULARITY_EXPONENT``: above it the KS distance still
  shrinks a little, but the top artist of the 1,000-artist world gets more than 15% of
  all plays (3.5% in HetRec), which no real service shows.
  """
  scores = []
  for alpha in np.round(np.arange(0.5, MAX_POPULARITY_EXPONENT + 1e-9, 0.25), 2):
    params["behaviour"]["popularity_exponent"] = float(alpha)
    world, cols = calibration_stats.world_plays(params, seed, 1000, 3, seed)
    counts = calibration_stats.artist_play_counts(world, cols)
    scores.append((calibration_stats.lorenz_ks(counts, real.artist_plays), float(alpha)))
  d, alpha = min(scores)
  params["behaviour"]["popularity_exponent"] = alpha
  say(f"  popularity_exponent={alpha} (artist Lorenz KS {d:.3f}); "
      + ", ".join(f"{a}:{k:.3f}" for k, a in scores))


def _fit_session_lengths(params, real: RealData, seed: int, say) -> None:
  """Lognormal session length that, after losing skipped plays, matches 30Music.

  Skips cluster in sessions (modes, momentum), so each synthetic session keeps its
  plays at the rate of a simulated session drawn at random (sessions skipped through
  lose almost every play and mostly vanish from the log, as they do from Last.fm's).
  """
  _, cols = calibration_stats.world_plays(params, seed, 1500, 3, seed)
  lengths, skipped = skip_stats.session_skip_shares(cols["session"], cols["skip"])
  rates = 1.0 - skipped[lengths >= 5]
  rng = np.random.default_rng(seed)
  normal = rng.standard_normal(40_000)
  keep = rng.choice(rates, 40_000)
  # Common random numbers: slot j of session i is logged when its uniform < keep_i, so
  # the logged count of a session of length n is kept_before[i, n - 1].
  kept_before = np.cumsum(rng.random((40_000, 200)) < keep[:, None], axis=1, dtype=np.int16)
  rows = np.arange(40_000)
  best = None
  for mu in np.arange(1.2, 3.21, 0.05):
    for sigma in np.arange(0.4, 1.61, 0.05):
      n = np.clip(np.rint(np.exp(mu + sigma * normal)), 1, 200).astype(np.int64)
      obs = kept_before[rows, n - 1]
      obs = obs[obs > 0]
      d = calibration_stats.ks_distance(obs, real.session_lengths)
      if best is None or d < best[0]:
        best = (d, float(mu), float(sigma))
  params["behaviour"]["session_len_mu"] = round(best[1], 4)
  params["behaviour"]["session_len_sigma"] = round(best[2], 4)
  say(f"  session length mu={best[1]:.2f} sigma={best[2]:.2f} (thinned KS {best[0]:.3f})")
  _refine_session_lengths(params, real, seed, say)


def _refine_session_lengths(params, real: RealData, seed: int, say) -> None:
  """Moves (mu, sigma) to the best of a few neighbours, each judged on simulated plays
  seen through the scrobble filter (what the report measures): the thinning above
  draws keep rates independently of what a session plays, the world does not."""
  beh = params["behaviour"]
  mu0, sigma0 = beh["session_len_mu"], beh["session_len_sigma"]
  scores = []
  for mu in (mu0 - 0.1, mu0, mu0 + 0.1):
    for sigma in (sigma0, sigma0 + 0.15):
      beh["session_len_mu"], beh["session_len_sigma"] = round(mu, 4), round(sigma, 4)
      _, cols = calibration_stats.world_plays(params, seed, 1500, 3, seed + 1)
      lengths, _, _ = calibration_stats.scrobble_view(cols)
      scores.append((calibration_stats.ks_distance(lengths, real.session_lengths),
                     round(mu, 4), round(sigma, 4)))
  d, beh["session_len_mu"], beh["session_len_sigma"] = min(scores)
  say(f"  refined on simulated plays: mu={beh['session_len_mu']:.2f} "
      f"sigma={beh['session_len_sigma']:.2f} (KS {d:.3f})")


def _fit_gaps(params, real: RealData, seed: int, say) -> None:
  """Think time and in-session pauses: match 30Music's gaps between logged plays."""
  _, cols = calibration_stats.world_plays(params, seed, 1500, 3, seed)
  rng = np.random.default_rng(seed)
  n = len(cols["listened"])
  e1 = rng.exponential(1.0, n)
  e2 = rng.exponential(1.0, n)
  u = rng.random(n)
  logged = calibration_stats.scrobbled(cols["duration"], cols["listened"])
  best = None
  for think in (3.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0):
    for prob in (0.0, 0.02, 0.05, 0.08, 0.12, 0.16, 0.2, 0.25):
      for mean in (120.0, 240.0, 480.0, 900.0, 1800.0):
        gap = np.floor(cols["listened"] + think * e1 + np.where(u < prob, mean * e2, 0)) + 1
        _, gaps, _ = calibration_stats.logged_stats(cols["session"], gap, logged)
        d = calibration_stats.ks_distance(gaps, real.gaps_s)
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
  say("fitting skip behaviour (published skip figures; simulation.skip_targets)")
  calibration_skip_fit.fit(params, seed, say)
  say("fitting session lengths (30Music, after the scrobble filter)")
  _fit_session_lengths(params, real, seed, say)
  say("refitting the skip behaviour on the fitted session lengths")
  calibration_skip_fit.fit(params, seed, say, rounds=2)
  say("fitting the like link (KKBox repeat-listen rate)")
  _fit_like(params, real, seed, say)
  say("fitting think time and pauses (30Music gaps)")
  _fit_gaps(params, real, seed, say)
  params["behaviour"] = {k: round(float(v), 5) for k, v in params["behaviour"].items()}
  params["targets"] = {
      "early_skip_rate": skip_targets.EARLY_SKIP,
      "very_brief_share_of_early_skips": round(skip_targets.VERY_BRIEF_OF_EARLY, 5),
      "full_listen_rate": round(skip_targets.FULL_LISTEN, 5),
      "skip_momentum_lag1": skip_targets.MOMENTUM_LAG1,
      "skipped_through_sessions": skip_targets.ALL_SKIP_SESSIONS,
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
