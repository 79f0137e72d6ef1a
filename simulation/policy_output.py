"""The report's ``policy.json``: the recommended table as a shippable policy artifact.

This module owns how ``melody simulate`` turns its recommendation into a
``ranking.fusion.policy_file.PolicyFile``: the recommended weight row per segment, the
current epsilon, activity coefficients and mixing rules, and the provenance (the
simulation's settings, the world it ran in, the scorer that ranked its rollouts, the
recommended table's rollout metrics and the completion floor it was held to). The export
(``melody export --policy``), the pipeline (``melody pipeline run --policy``) and the
gateway (``melody gateway --policy``) read that file.
"""

import dataclasses
import hashlib
import os
from typing import Dict, List

from features import feature_spec
from ranking.fusion import policy_file
from ranking.fusion.spec import FusionConfig
from ranking.layers.mixing import MixingConfig

POLICY_FILE = "policy.json"
# The recommended table's rollout numbers a policy carries as provenance.
METRICS = ("completion_rate", "skip_rate", "minutes_per_session", "promo_share",
           "exposure_per_session", "expected_conversions_per_1k_sessions",
           "expected_reward_per_session", "sessions")
_CALIBRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                            "calibrated_params.json")


def world_version(world_seed: int, n_tracks: int) -> str:
  """The world's id: seed, catalogue size and the calibration file's content hash."""
  with open(_CALIBRATION, "rb") as f:
    calibration = hashlib.sha256(f.read()).hexdigest()[:12]
  return f"seed={world_seed} tracks={n_tracks} calibration={calibration}"


def from_report(result: Dict[str, object], config) -> policy_file.PolicyFile:
  """The policy of a report's recommendation (``report.run``'s result and config).

  Raises:
    policy_file.PolicyError: the recommendation breaks a policy check.
  """
  base = FusionConfig()
  rec = result["recommended"]
  rows = {s: tuple(rec[s]["weights"]) if s in rec else base.weights_for(s)
          for s in feature_spec.SEGMENTS}
  rows = {s: (w[0], 0.0 if s in base.zero_beta_segments else w[1], w[2])
          for s, w in rows.items()}
  fusion = dataclasses.replace(base, segment_weights=rows)
  scorer = result["scorer"]
  summary = result["recommended_vs_current"]["recommended"]
  provenance = {
      "simulation_run": (f"melody simulate users={config.users} days={config.days} "
                         f"seed={config.seed} grid_step={config.grid_step:g} "
                         f"scorer={scorer['name']} rollout_users={scorer['users']}"),
      "world_version": world_version(config.world_seed, config.n_tracks),
      "model_version": str(scorer["version"]),
      "metrics": {k: float(summary[k]) for k in METRICS},
      "constraint": {"metric": "completion_rate", "floor": float(config.floor),
                     "met": all(r["meets_floor"] for r in rec.values())},
  }
  return policy_file.from_configs(fusion, MixingConfig(), provenance, source=POLICY_FILE)


def markdown(res: Dict[str, object]) -> List[str]:
  """The report's policy section."""
  return ["\n## Policy file\n",
          f"`{POLICY_FILE}` version `{res['policy_version']}`: the recommended table above, "
          "the current epsilon, activity coefficients and mixing rules, and where they come "
          "from. Bake it into a model with `melody export --policy` or `melody pipeline run "
          "--policy`, or apply its weights per request with `melody gateway --policy`."]
