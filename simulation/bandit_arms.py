"""How a bandit's chosen weights reach the ranker: the served model or the oracle.

This module owns the two rankers a weight bandit plays its arms through, one
(alpha, beta, gamma) row per listener-session. :class:`ServedArms` sends the rows as
the per-request ``alpha_beta_gamma`` override of an exported SavedModel's ``rank``
signature (``override`` = 1), so fusion and mixing run in the served graph and what the
bandit is measured on is what would be served. :class:`OracleArms` fuses the oracle's
head scores in numpy with the same rows (``kernel_np``), for what-if studies.
"""

from typing import Optional

import numpy as np

from simulation import policies
from simulation import saved_model_policy


def _check_rows(rows: np.ndarray, n: int) -> np.ndarray:
  rows = np.asarray(rows, np.float64)
  if rows.shape != (n, 3):
    raise ValueError(f"weights must be [{n}, 3] (one row per listener), got {rows.shape}")
  return rows


class _RowRanker:
  """``rank_rows``: one ``rank`` call with per-listener weight rows set for its length."""

  _rows: Optional[np.ndarray] = None

  def rank_rows(self, state: policies.ListenerState, candidates: policies.Candidates,
                context: policies.Context, rows: np.ndarray) -> policies.Slates:
    """Slates ranked with ``rows`` [n, 3] as each listener's (alpha, beta, gamma)."""
    self._rows = _check_rows(rows, len(state))
    try:
      return self.rank(state, candidates, context)
    finally:
      self._rows = None


class OracleArms(_RowRanker, policies.FusionPolicy):
  """Numpy fusion + mixing over the oracle's heads with per-listener weight rows.

  Args:
    **kwargs: as ``policies.FusionPolicy``.
  """

  def weights(self, state, context):
    return self._rows


class ServedArms(_RowRanker, saved_model_policy.SavedModelPolicy):
  """An exported model's ``rank`` signature with per-listener override rows.

  Args:
    model_dir: SavedModel version directory.
    **kwargs: as ``saved_model_policy.SavedModelPolicy`` (not ``weights``).
  """

  def requests(self, state, candidates, context):
    req = super().requests(state, candidates, context)
    if self._rows is not None:
      req["alpha_beta_gamma"] = self._rows.astype(np.float32)
      req["override"] = np.ones(len(state), np.int64)
    return req
