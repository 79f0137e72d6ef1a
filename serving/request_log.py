"""The model server's request log: what the model received, one JSON line per request.

``melody serve --request-log FILE`` turns it on (it is off by default). Each answered
Predict call appends one line: the time, the model, version and signature, and the
decoded inputs the signature was called with (ids, context, history, candidates:
exactly the features the model receives, nothing else about the listener). The pipeline
compares these requests' feature distributions with a training span
(``pipeline.skew_gate``). The file is bounded: past ``max_bytes`` it is rotated to
``FILE.1`` (``FILE.1`` to ``FILE.2``, up to ``backups`` old files), through the standard
library's rotating handler, which also serialises concurrent writers.
"""

import json
import logging
import logging.handlers
import os
import time
from typing import Mapping

import numpy as np

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_BACKUPS = 3


def _plain(value: np.ndarray):
  """A JSON-ready nested list; byte strings become text."""
  array = np.asarray(value)
  if array.dtype.kind in ("S", "O"):
    return np.vectorize(lambda x: x.decode("utf-8", "replace") if isinstance(x, bytes)
                        else str(x), otypes=[object])(array).tolist() if array.size else []
  return array.tolist()


class RequestLog:
  """Appends requests to a JSON-lines file with size-bounded rotation.

  Args:
    path: the log file (its directory is created).
    max_bytes: size past which the file is rotated; must be positive.
    backups: rotated files kept (``path.1`` … ``path.N``); must be >= 1.
  """

  def __init__(self, path: str, max_bytes: int = DEFAULT_MAX_BYTES,
               backups: int = DEFAULT_BACKUPS):
    if max_bytes <= 0:
      raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    if backups < 1:
      raise ValueError(f"backups must be >= 1, got {backups}")
    self.path = os.path.abspath(path)
    os.makedirs(os.path.dirname(self.path), exist_ok=True)
    self._handler = logging.handlers.RotatingFileHandler(
        self.path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
    self._handler.setFormatter(logging.Formatter("%(message)s"))
    # A logger of its own that reaches no other handler (the requests stay in this file).
    self._logger = logging.getLogger(f"melody.request_log.{id(self)}")
    self._logger.propagate = False
    self._logger.setLevel(logging.INFO)
    self._logger.addHandler(self._handler)

  def write(self, model: str, version: int, signature: str,
            inputs: Mapping[str, np.ndarray]) -> None:
    """Appends one request: its model, version, signature and decoded inputs."""
    line = {"ts": round(time.time(), 3), "model": model, "version": int(version),
            "signature": signature,
            "inputs": {name: _plain(value) for name, value in sorted(inputs.items())}}
    self._logger.info(json.dumps(line, separators=(",", ":")))

  def close(self) -> None:
    self._logger.removeHandler(self._handler)
    self._handler.close()


def read(path: str) -> list:
  """The logged requests of ``path`` and its rotated files, oldest first."""
  rotated = []
  n = 1
  while os.path.exists(f"{path}.{n}"):
    rotated.append(f"{path}.{n}")
    n += 1
  out = []
  for name in list(reversed(rotated)) + ([path] if os.path.exists(path) else []):
    with open(name, encoding="utf-8") as f:
      out.extend(json.loads(line) for line in f if line.strip())
  return out
