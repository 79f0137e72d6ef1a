"""Regret of weight bandits against the best fixed policy per segment, in hindsight.

This module owns the baseline and the regret arithmetic of the bandit study. The
baseline picks, for every segment, the grid point whose rollout earned that segment the
most expected objective per session (:func:`best_fixed_per_segment`); together these
rows are one fixed table, rolled out on the same listeners, contexts and candidates as
the bandits (common random numbers). A bandit's regret in a round is what the baseline
earned per session in that round times the bandit's sessions, minus what the bandit
earned (:func:`round_regret`); per segment the same is done per day from the outcome
cubes (:func:`segment_regret`). Rewards are the expected objective (conversion hazards
instead of realized conversions), as in the report's regret curves.
"""

from typing import Dict, Sequence, Tuple

import numpy as np

from features import feature_spec
from simulation import rollout as rollout_lib

_REWARD = rollout_lib.METRICS.index("expected_reward")
_SESSIONS = rollout_lib.METRICS.index("sessions")


def segment_totals(result: rollout_lib.RolloutResult) -> Tuple[np.ndarray, np.ndarray]:
  """``(expected reward [days, S], sessions [days, S])`` of a rollout, by day and segment."""
  per = result.cube.sum(axis=2)
  return per[..., _REWARD], per[..., _SESSIONS]


def best_fixed_per_segment(rewards: np.ndarray, sessions: np.ndarray) -> np.ndarray:
  """The grid point with the highest expected reward per session, per segment.

  Args:
    rewards: ``[G, S]`` each grid point's summed expected reward per segment.
    sessions: ``[G, S]`` its sessions per segment.

  Returns:
    ``[S]`` grid indices (ties to the lower index; a segment no rollout saw gets 0).
  """
  rewards = np.asarray(rewards, np.float64)
  sessions = np.asarray(sessions, np.float64)
  if rewards.ndim != 2 or rewards.shape != sessions.shape:
    raise ValueError(f"rewards and sessions must both be [grid, segments], got "
                     f"{rewards.shape} and {sessions.shape}")
  per_session = np.where(sessions > 0, rewards / np.maximum(sessions, 1e-12), -np.inf)
  return np.argmax(per_session, axis=0)


def best_table(grid: np.ndarray, best: Sequence[int]) -> np.ndarray:
  """``[S, 3]`` the baseline's weight table: grid row ``best[s]`` for segment ``s``."""
  return np.asarray(grid, np.float64)[np.asarray(best, np.int64)]


def _per_session(reward: np.ndarray, sessions: np.ndarray) -> np.ndarray:
  return np.where(sessions > 0, reward / np.maximum(sessions, 1e-12), 0.0)


def round_regret(baseline: Dict[str, np.ndarray], bandit: Dict[str, np.ndarray]) -> np.ndarray:
  """Cumulative regret of a bandit after each round.

  Args:
    baseline: the fixed table's ``RolloutResult.rounds``.
    bandit: the bandit's ``RolloutResult.rounds`` (same rollout config, so the same
      rounds in the same order).

  Returns:
    ``[rounds]`` cumulative ``sessions_b * (E_base / sessions_base) - E_b``.
  """
  if len(baseline["day"]) != len(bandit["day"]) or np.any(baseline["day"] != bandit["day"]):
    raise ValueError(f"rounds do not line up: the baseline has {len(baseline['day'])}, the "
                     f"bandit {len(bandit['day'])} (roll both out with one config)")
  base = _per_session(baseline["expected_reward"], baseline["sessions"])
  return np.cumsum(bandit["sessions"] * base - bandit["expected_reward"])


def segment_regret(baseline: rollout_lib.RolloutResult,
                   bandit: rollout_lib.RolloutResult) -> np.ndarray:
  """``[days, S]`` cumulative regret per segment, day by day (as :func:`round_regret`)."""
  base_r, base_s = segment_totals(baseline)
  band_r, band_s = segment_totals(bandit)
  if base_r.shape != band_r.shape:
    raise ValueError(f"cubes differ in shape: {base_r.shape} vs {band_r.shape}")
  return np.cumsum(band_s * _per_session(base_r, base_s) - band_r, axis=0)


def summarize(baseline: rollout_lib.RolloutResult, bandit: rollout_lib.RolloutResult,
              worst_last_day: float) -> Dict[str, object]:
  """A bandit's numbers against the baseline: objective, last day, gap closed, regret.

  Args:
    baseline: the best-per-segment table's rollout.
    bandit: the bandit's rollout (same config).
    worst_last_day: the worst grid point's last-day expected reward per session.

  Returns:
    JSON-ready dict (``cumulative_regret`` per round, ``segment_regret`` per segment).
  """
  base_last = baseline.summary(baseline.cube[-1])["expected_reward_per_session"]
  last = bandit.summary(bandit.cube[-1])["expected_reward_per_session"]
  seg = segment_regret(baseline, bandit)
  _, sessions = segment_totals(bandit)
  return {
      "expected_reward_per_session": bandit.summary()["expected_reward_per_session"],
      "last_day_expected_reward": last,
      "ratio_to_baseline_last_day": last / base_last if base_last else float("nan"),
      "gap_closed_last_day": (last - worst_last_day) / max(base_last - worst_last_day, 1e-12),
      "cumulative_regret": round_regret(baseline.rounds, bandit.rounds).tolist(),
      "cumulative_sessions": np.cumsum(bandit.rounds["sessions"]).tolist(),
      "segment_regret": {s: float(seg[-1, i]) for i, s in enumerate(feature_spec.SEGMENTS)},
      "segment_regret_per_1k_sessions": {
          s: float(1000 * seg[-1, i] / max(sessions[:, i].sum(), 1))
          for i, s in enumerate(feature_spec.SEGMENTS)},
  }
