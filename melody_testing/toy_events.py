"""Small deterministic event and track tables for tests and development.

This module owns toy data only: a few users with sessions, skips and null labels in
exactly ``EVENT_SCHEMA`` / ``TRACK_SCHEMA``, with no behavioural model behind them (the
simulator in ``simulation.world`` is the real source of synthetic data).
"""

from typing import Tuple

import numpy as np
import pandas as pd
import pyarrow as pa

from features import events
from features import feature_spec
_T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def toy_tracks(n_tracks: int = 40, seed: int = 0) -> pd.DataFrame:
  """``n_tracks`` tracks with 0..3 tags, some unknown durations and popularities."""
  if n_tracks < 1:
    raise ValueError(f"n_tracks must be >= 1, got {n_tracks}")
  rng = np.random.default_rng(seed)
  tags = ["rock", "pop", "jazz", "calm", "dance", "indie"]
  return pd.DataFrame({
      "track_id": [f"t{i}" for i in range(n_tracks)],
      "artist_id": [f"a{i % max(1, n_tracks // 4)}" for i in range(n_tracks)],
      "tags": [list(rng.choice(tags, size=int(rng.integers(0, 4)), replace=False))
               for _ in range(n_tracks)],
      "duration_s": np.where(rng.random(n_tracks) < 0.1, np.nan,
                             rng.uniform(50, 700, n_tracks)).astype(np.float32),
      "popularity": np.where(rng.random(n_tracks) < 0.1, np.nan,
                             rng.uniform(0, 10, n_tracks)).astype(np.float32),
      "title": [f"song {i}" for i in range(n_tracks)],
  })


def toy_events(n_users: int = 6, events_per_user: int = 12, n_tracks: int = 40,
               seed: int = 0) -> Tuple[pa.Table, pd.DataFrame]:
  """(events sorted by user and ts, tracks); ``like`` is null for every other user."""
  if n_users < 1 or events_per_user < 1:
    raise ValueError(f"n_users and events_per_user must be >= 1, got {n_users}, "
                     f"{events_per_user}")
  rng = np.random.default_rng(seed)
  tracks = toy_tracks(n_tracks, seed)
  rows = []
  for u in range(n_users):
    ts = _T0 + int(rng.integers(0, 86400))
    session = 0
    for _ in range(events_per_user):
      gap = int(rng.choice([60, 200, 900, 5000]))
      if gap > feature_spec.SESSION_WINDOW_S:
        session += 1
      ts += gap
      t = int(rng.integers(0, n_tracks))
      skip = float(rng.random() < 0.3)
      rows.append({
          "user_id": f"u{u}", "session_id": f"u{u}-s{session}", "ts": ts, "plays": 1,
          "track_id": f"t{t}", "artist_id": tracks.artist_id[t], "source": "sim",
          "user_segment": feature_spec.SEGMENTS[u % len(feature_spec.SEGMENTS)],
          "user_tenure_days": float(10 * u), "context_activity": feature_spec.ACTIVITIES[u % 3],
          "context_surface": feature_spec.SURFACES[1 + u % 4], "is_promo": bool(t % 7 == 0),
          "completion": 0.1 if skip else 0.9, "skip": skip,
          "like": None if u % 2 else float(rng.random() < 0.2),
          "subscription": 0.0, "exposure": 1.0 if t % 7 == 0 else 0.0,
      })
  return pa.Table.from_pylist(rows, schema=events.EVENT_SCHEMA), tracks
