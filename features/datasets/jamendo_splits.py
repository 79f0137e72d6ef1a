"""MTG-Jamendo split-0 membership: which split (train, validation, test) each track is in.

Owns the one fact the text-intent model's data hygiene rests on: a track's split is the
``autotagging-<split>.tsv`` file that lists it. The Jamendo adapter concatenates the
three files into one catalogue; :func:`with_splits` puts the split back on its rows so
that training can keep to ``train``/``validation`` and evaluation to ``test``.
"""

import os
from typing import Dict

import pandas as pd

from features.datasets import jamendo
from features.datasets import quarantine
from features.datasets import registry


def track_splits(data_dir: str) -> Dict[str, str]:
  """``{track_id: split}`` for every track of the three split-0 autotagging files.

  Args:
    data_dir: the shared data root or its ``mtg_jamendo/`` folder.

  Raises:
    ValueError: a track is listed in two splits (the splits are disjoint upstream).
  """
  data_dir = registry.source_dir(jamendo.SOURCE, data_dir)
  q = quarantine.Quarantine()
  out: Dict[str, str] = {}
  for split in jamendo.SPLITS:
    frame = jamendo.read_autotagging(os.path.join(data_dir, f"autotagging-{split}.tsv"), q)
    for track in frame["TRACK_ID"].str.strip():
      if out.setdefault(track, split) != split:
        raise ValueError(f"{track} is listed in both {out[track]} and {split}")
  return out


def with_splits(tracks: pd.DataFrame, data_dir: str) -> pd.DataFrame:
  """``tracks`` (the Jamendo adapter's) with a ``split`` column (None: not in split-0).

  Args:
    tracks: the Jamendo adapter's tracks.
    data_dir: the shared data root or its ``mtg_jamendo/`` folder.
  """
  splits = track_splits(data_dir)
  return tracks.assign(split=tracks["track_id"].astype(str).str.strip().map(splits))
