"""Play events as the nearline updater reads them (JSON lines), for the online tests."""

import json
import random
from typing import Dict, List


def play(user: str, ts: int, track: str, *, session: str = "s1", completion: float = 1.0,
         skip: float = 0.0, segment: str = "free", **extra) -> Dict[str, object]:
  """One play event in the columns of features.events.EVENT_SCHEMA."""
  return {"user_id": user, "session_id": session, "ts": ts, "track_id": track,
          "artist_id": "a" + track, "source": "sim", "user_segment": segment,
          "user_tenure_days": 10.0, "completion": completion, "skip": skip,
          "like": None, "subscription": 0.0, **extra}


def append(path, docs) -> None:
  """Appends events (dicts) or raw lines (str) to a log file."""
  with open(path, "a", encoding="utf-8") as f:
    for doc in docs:
      f.write((doc if isinstance(doc, str) else json.dumps(doc)) + "\n")


def random_plays(seed: int, users: int, per_user: int, start_ts: int = 1_700_000_000,
                 shuffle_fraction: float = 0.1) -> List[Dict[str, object]]:
  """Plays of ``users`` listeners with distinct times per listener; a fraction of them
  is moved later in the log (out of timestamp order)."""
  rng = random.Random(seed)
  docs = []
  for u in range(users):
    ts = start_ts + rng.randrange(0, 600)
    for _ in range(per_user):
      ts += rng.randrange(30, 400)
      docs.append(play(f"u{u:04d}", ts, f"t{rng.randrange(200):03d}",
                       session=f"s{ts // 3600}", completion=round(rng.random(), 3),
                       skip=float(rng.random() < 0.3)))
  rng.shuffle(docs)
  docs.sort(key=lambda d: d["ts"] + (10_000 if rng.random() < shuffle_fraction else 0))
  return docs
