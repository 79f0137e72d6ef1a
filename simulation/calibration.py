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
import json
import itertools
from typing import Dict, Optional

import numpy as np
import pandas as pd

N_QUANTILES = 101
COOC_TOP = 12

PROVISIONAL_BEHAVIOUR = {
    "skip_bias": -1.5,
    "full_listen_bias": 1.0,
    "like_bias": 0.3,
    "popularity_exponent": 0.5,
    "session_len_mu": 2.08,
    "session_len_sigma": 0.9,
    "think_s_mean": 10.0,
}


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
