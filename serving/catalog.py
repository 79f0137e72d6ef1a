"""The track catalogue an exported ranker carries, and its rows as the model sees them.

This module owns the catalogue side of serving: :class:`Catalog` (the tracks of
``tracks.parquet`` in row order, read the way the training examples read them), the
exact identities the graph compares tracks by (one index per distinct artist and tag,
never vocabulary ids, whose OOV hash buckets are shared), and
:func:`transformed_catalog`, every track's candidate features through the TFT layer
plus one OOV row for ids the catalogue does not know.
"""

import dataclasses
from typing import Dict, Tuple, Union

import numpy as np
import pandas as pd
import tensorflow as tf

from features import feature_spec
from features import raw_features
from ranking import model as model_lib
from serving import request_schema

OOV_TRACK_ID = b"<melody-oov-track>"
# Bounded temporary tensors when a big catalogue goes through the TFT layer.
_TRANSFORM_CHUNK = 8192


@dataclasses.dataclass(frozen=True)
class Catalog:
  """The track catalogue in ``tracks.parquet`` row order (row i = track i).

  Attributes:
    track_ids: ``[C]`` bytes.
    artist_ids: ``[C]`` bytes (``b""`` unknown).
    tags: ``[C, MAX_TAGS]`` bytes, padded with ``PAD_TOKEN``.
    num_tags: ``[C]`` int64.
    duration_s: ``[C]`` float32 (0 unknown).
    popularity: ``[C]`` float32 (0 unknown).
    is_promo: ``[C]`` int64 (0 when the table has no ``is_promo`` column).
  """
  track_ids: np.ndarray
  artist_ids: np.ndarray
  tags: np.ndarray
  num_tags: np.ndarray
  duration_s: np.ndarray
  popularity: np.ndarray
  is_promo: np.ndarray

  def __len__(self) -> int:
    return len(self.track_ids)

  @classmethod
  def from_tracks(cls, tracks: Union[str, pd.DataFrame]) -> "Catalog":
    """Builds the catalogue from ``tracks.parquet`` (path) or its frame.

    Tags, duration and popularity go through ``features.raw_features.TrackIndex``, the
    same reading the training examples get.

    Raises:
      ValueError: an empty or malformed table.
    """
    frame = pd.read_parquet(tracks) if isinstance(tracks, str) else tracks
    if len(frame) == 0:
      raise ValueError("the catalogue (tracks table) is empty")
    index = raw_features.TrackIndex(frame)
    dictionary = np.asarray(index.tag_dictionary.to_pylist(), dtype=object)
    promo = (frame["is_promo"].fillna(False).to_numpy().astype(np.int64)
             if "is_promo" in frame.columns else np.zeros(len(frame), np.int64))
    return cls(
        track_ids=np.asarray([s.encode() for s in index.ids], dtype=object),
        artist_ids=np.asarray([str(a).encode() for a in index.artist_ids], dtype=object),
        tags=dictionary[index.tag_codes],
        num_tags=index.num_tags.astype(np.int64),
        duration_s=index.duration_s.astype(np.float32),
        popularity=index.popularity.astype(np.float32),
        is_promo=np.clip(promo, 0, 1))

  def artist_index(self) -> Tuple[np.ndarray, int]:
    """``([C + 1] int64, A)``: 1..A per distinct artist, 0 for unknown artists and for
    the OOV row at index ``C`` (so the mixing artist cap exempts both)."""
    names = sorted({a for a in self.artist_ids if a})
    index = {a: i + 1 for i, a in enumerate(names)}
    return (np.asarray([index.get(a, 0) for a in self.artist_ids] + [0], np.int64),
            len(names))

  def tag_index(self) -> Tuple[np.ndarray, int]:
    """``([C + 1, MAX_TAGS] int64, T)``: 1..T per distinct tag, 0 for padding and for
    the OOV row at index ``C``."""
    names = sorted({t for row in self.tags for t in row if t})
    index = {t: i + 1 for i, t in enumerate(names)}
    rows = ([[index.get(t, 0) for t in row] for row in self.tags]
            + [[0] * feature_spec.MAX_TAGS])
    return np.asarray(rows, np.int64).reshape(-1, feature_spec.MAX_TAGS), len(names)


def transformed_catalog(catalog: Catalog, tft_layer) -> Dict[str, np.ndarray]:
  """Transformed candidate features of every track, plus one OOV row at index ``C``.

  The rows go through the very TFT layer the examples went through (listener parts
  neutral), so a candidate looks exactly as it did in training. The OOV row is an id
  outside the vocabulary (its OOV bucket) with unknown artist, no tags, zero duration
  and popularity.
  """
  c = len(catalog)
  raw = request_schema.neutral_raw(c + 1)
  raw["cand_track_id"] = np.append(catalog.track_ids, OOV_TRACK_ID).astype(object)
  raw["cand_artist_id"] = np.append(catalog.artist_ids, b"").astype(object)
  raw["cand_tags"] = np.concatenate(
      [catalog.tags,
       np.full((1, feature_spec.MAX_TAGS), feature_spec.PAD_TOKEN, object)]).astype(object)
  raw["cand_num_tags"] = np.append(catalog.num_tags, 0).astype(np.int64)
  raw["cand_duration_s"] = np.append(catalog.duration_s, 0).astype(np.float32)
  raw["cand_popularity"] = np.append(catalog.popularity, 0).astype(np.float32)
  raw["cand_is_promo"] = np.append(catalog.is_promo, 0).astype(np.int64)
  out = {}
  for start in range(0, c + 1, _TRANSFORM_CHUNK):
    piece = tft_layer({k: tf.constant(v[start:start + _TRANSFORM_CHUNK])
                       for k, v in raw.items()})
    for name in model_lib.CANDIDATE_FEATURES:
      out.setdefault(name, []).append(piece[name].numpy())
  return {name: np.concatenate(parts) for name, parts in out.items()}
