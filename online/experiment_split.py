"""The canary experiment's traffic split: which arm, and so which model version, a listener
gets.

This module owns :class:`ExperimentSplit`: a listener id is hashed with the experiment's
name and salt by BLAKE2b (stable across processes, machines and Python versions, unlike
``hash()``, which is randomised per process) to a point in [0, 1); points below the
canary share go to the ``canary`` arm, the rest to ``stable``. The same listener always
lands in the same arm for one experiment and salt (sticky), a new salt re-draws every
listener independently of the old split, and each arm names the model version label the
gateway calls (TF Serving's ``model_spec.version_label``).
"""

import dataclasses
import hashlib
import re

STABLE = "stable"
CANARY = "canary"
ARMS = (STABLE, CANARY)
_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SCALE = float(1 << 64)


@dataclasses.dataclass(frozen=True)
class Assignment:
  """One listener's arm in one experiment.

  Attributes:
    experiment: The experiment's name.
    arm: ``stable`` or ``canary``.
    version_label: The model version label that arm calls.
  """
  experiment: str
  arm: str
  version_label: str


@dataclasses.dataclass(frozen=True)
class ExperimentSplit:
  """A sticky, salted split of listeners between a stable and a canary model.

  Usage::

    split = ExperimentSplit("ranker-2026-12-07", canary_share=0.1, salt="s1")
    split.assign("u42")   # Assignment(experiment=..., arm="stable", version_label="stable")

  Attributes:
    name: Experiment name (1 to 64 of A-Z a-z 0-9 _ . -); part of the hash key, so two
      experiments split the same listeners differently.
    canary_share: Fraction of listeners in the canary arm, in [0, 1].
    salt: Re-draws the split when changed (e.g. after an experiment whose listeners
      should not carry over).
    stable_label: Model version label of the stable arm.
    canary_label: Model version label of the canary arm.
  """
  name: str
  canary_share: float = 0.1
  salt: str = ""
  stable_label: str = STABLE
  canary_label: str = CANARY

  def __post_init__(self):
    if not _NAME_RE.match(self.name):
      raise ValueError(f"experiment name must be 1 to 64 of A-Z a-z 0-9 _ . -, "
                       f"got {self.name!r}")
    if not 0.0 <= self.canary_share <= 1.0:
      raise ValueError(f"canary_share must be in [0, 1], got {self.canary_share}")
    for field in ("stable_label", "canary_label"):
      if not _NAME_RE.match(getattr(self, field)):
        raise ValueError(f"{field} must be a version label, got {getattr(self, field)!r}")

  def point(self, user_id: str) -> float:
    """The listener's point in [0, 1) for this experiment and salt."""
    # The separators keep ("a", "bc") and ("ab", "c") apart.
    key = f"{self.name}\x1f{self.salt}\x1f{user_id}".encode()
    digest = hashlib.blake2b(key, digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE

  def arm(self, user_id: str) -> str:
    """``canary`` or ``stable`` for ``user_id``."""
    return CANARY if self.point(user_id) < self.canary_share else STABLE

  def assign(self, user_id: str) -> Assignment:
    """The listener's arm and the version label it calls."""
    arm = self.arm(user_id)
    return Assignment(self.name, arm,
                      self.canary_label if arm == CANARY else self.stable_label)
