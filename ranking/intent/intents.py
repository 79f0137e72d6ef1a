"""Request intents and their relevance: which catalogue tracks satisfy a request.

Every synthesized request carries its *intent*: clauses of acceptable tags (all clauses
must match, any tag within a clause) and negated tags (none may match), so relevance is
checkable against any track's canonical tag keys (``catalog.catalog_tag_keys``).
"""

import dataclasses
from typing import Dict, FrozenSet, List, Sequence, Tuple

import numpy as np

Clause = FrozenSet[str]


@dataclasses.dataclass(frozen=True)
class Request:
  """One synthesized request.

  Attributes:
    text: the request as a listener would type it.
    clauses: every clause must match; a clause matches when the track has any of its tags.
    negated: tags the track must not have.
    template: index into the template list it came from.
    heldout: written from a held-out phrasing template.
  """
  text: str
  clauses: Tuple[Clause, ...]
  negated: Clause
  template: int
  heldout: bool


class TagIndex:
  """Which catalog rows carry each tag key, for fast intent matching.

  Args:
    tag_keys: canonical tag keys per catalog row.
  """

  def __init__(self, tag_keys: Sequence[FrozenSet[str]]):
    self.n_tracks = len(tag_keys)
    rows: Dict[str, List[int]] = {}
    for n, keys in enumerate(tag_keys):
      for k in keys:
        rows.setdefault(k, []).append(n)
    self._rows = {k: np.asarray(v, np.int64) for k, v in rows.items()}

  def has_any(self, tags) -> np.ndarray:
    m = np.zeros(self.n_tracks, bool)
    for t in tags:
      if t in self._rows:
        m[self._rows[t]] = True
    return m

  def match(self, req: "Request") -> np.ndarray:
    """``[N]`` bool: rows matching every clause and no negated tag."""
    m = np.ones(self.n_tracks, bool)
    for clause in req.clauses:
      m &= self.has_any(clause)
    if req.negated:
      m &= ~self.has_any(req.negated)
    return m


def relevance(requests: Sequence[Request], tag_keys) -> np.ndarray:
  """``[R, N]`` bool: does catalog row n satisfy request r's intent (tag match).

  Args:
    requests: the requests.
    tag_keys: canonical tag keys per catalog row, or a ``TagIndex`` over them.
  """
  index = tag_keys if isinstance(tag_keys, TagIndex) else TagIndex(tag_keys)
  out = np.zeros((len(requests), index.n_tracks), bool)
  for r, req in enumerate(requests):
    out[r] = index.match(req)
  return out


def intent_match(requests: Sequence[Request], tag_keys: Sequence[FrozenSet[str]],
                 rows: np.ndarray) -> np.ndarray:
  """Graded intent relevance of tracks ``rows [R, K]``: the fraction of clauses matched,
  0 when a negated tag is present (the reward's intent term)."""
  rows = np.asarray(rows)
  out = np.zeros(rows.shape, np.float32)
  for r, req in enumerate(requests):
    n_cl = max(len(req.clauses), 1)
    for j, n in enumerate(rows[r]):
      if n < 0 or n >= len(tag_keys):
        continue
      keys = tag_keys[n]
      if req.negated & keys:
        continue
      out[r, j] = sum(bool(c & keys) for c in req.clauses) / n_cl
  return out
