"""``melody pipeline rollback``: serve the previous pushed model again (local pushes).

The Pusher writes numbered versions under the serving directory, and a model server with
the default version policy (``melody serve``, ``tensorflow_model_server``) serves the
highest one. Rolling back therefore moves every version newer than the target out of the
serving directory, into ``WORKDIR/rolled_back/<version>/`` (kept, not deleted, so a roll
forward is a move back), and appends what was done to ``rolled_back/rollbacks.jsonl``.
The server notices on its next poll of the base path, unloads the moved versions and
serves the target. The pipeline's history is unchanged: the run that pushed a rolled-back
version still counts as having pushed its span, so the schedule does not push that span
again.
"""

import json
import os
import shutil
import time
from typing import List, NamedTuple, Optional


class Rollback(NamedTuple):
  """What a rollback did: the version now served and the versions moved aside."""
  serving: str
  moved: List[str]


def versions(serving_dir: str) -> List[str]:
  """Version directories under ``serving_dir``, oldest first."""
  if not os.path.isdir(serving_dir):
    return []
  return sorted((v for v in os.listdir(serving_dir) if v.isdigit()), key=int)


def rollback(serving_dir: str, rolled_back_dir: str, to: Optional[str] = None) -> Rollback:
  """Moves the versions newer than ``to`` (default: the one before the newest) aside.

  Raises:
    ValueError: fewer than two versions, or ``to`` is not a pushed version.
  """
  found = versions(serving_dir)
  if to is None:
    if len(found) < 2:
      raise ValueError(f"nothing to roll back to: {serving_dir} holds "
                       f"{len(found)} version(s)")
    to = found[-2]
  if to not in found:
    raise ValueError(f"version {to} is not in {serving_dir} (versions: {found})")
  newer = [v for v in found if int(v) > int(to)]
  if not newer:
    raise ValueError(f"version {to} is already the newest in {serving_dir}")
  os.makedirs(rolled_back_dir, exist_ok=True)
  for v in newer:
    shutil.move(os.path.join(serving_dir, v), os.path.join(rolled_back_dir, v))
  with open(os.path.join(rolled_back_dir, "rollbacks.jsonl"), "a", encoding="utf-8") as f:
    f.write(json.dumps({"time": time.time(), "serving": to, "moved": newer}) + "\n")
  return Rollback(to, newer)
