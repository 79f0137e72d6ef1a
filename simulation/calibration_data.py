"""The real side of the calibration: the shared datasets and the targets they cannot give.

This module owns the shared data the listener world is fitted to: loading MTG-Jamendo
(tags, durations, listens), 30Music (session lengths, gaps between plays, the skip
proxy), HetRec (plays per artist) and KKBox (the repeat-listen rate) through
``features.datasets.registry`` and summarizing them (:class:`RealData`). The skip
figures no shared dataset can give come from publications
(``simulation.skip_targets``).
"""

import dataclasses
from typing import Dict

import numpy as np
import pandas as pd

SOURCES = ("jamendo", "30music", "hetrec", "kkbox")


def split_tag(tag: str):
  """('genre', 'rock') from 'genre---rock'; plain tags get category 'genre'."""
  if "---" in tag:
    cat, name = tag.split("---", 1)
    return cat.split("/")[0], name
  return "genre", tag


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
  """Loads the four sources through ``features.datasets.registry`` and summarizes them.

  Args:
    data_dir: the shared data root (kkbox_sample/, 30music_slices/, …).

  Returns:
    The summaries the fit and the comparison read.
  """
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
