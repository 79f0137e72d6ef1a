"""The live loop's experiment: version labels, the canary's sequential test, the controller.

This module owns the decisions the loop takes at the end of a day, all through the
``online`` experiment machinery: the day's sessions per arm
(``experiment_metrics.arm_observations``) and the gateway latencies per arm go into the
current canary's ``sequential_test.CanaryTest``; its decision moves the labels
(``canary_labels.after_decision``, applied to the running model server); a new
candidate is pushed as ``canary`` when none is on trial; the day's completion per
segment on the control traffic (the ``stable`` arm's sessions while a canary serves)
goes to the ``promo_controller.PromoController``, whose override is written to the file
the gateway watches. Every decision and action is kept with its evidence.
"""

import dataclasses
from typing import Dict, List, Mapping, Optional, Sequence

from online import canary_labels
from online import experiment_metrics
from online import promo_controller
from online import sequential_test
from serving import model_config

MODEL_NAME = "melody"
ARMS = (sequential_test.STABLE, sequential_test.CANARY)


@dataclasses.dataclass(frozen=True)
class TestSettings:
  """The canary test: primary metric, guardrail tolerances and minimum sessions.

  Attributes:
    skip_tolerance: Skip-rate increase (per session) the canary may have.
    conversion_tolerance: Conversion-per-session drop it may have.
    latency_tolerance_ms: Latency increase it may have.
    min_samples: Sessions per arm before a metric is judged.
    alpha: Level of the primary test and of each guardrail.
  """
  skip_tolerance: float = 0.02
  conversion_tolerance: float = 0.01
  latency_tolerance_ms: float = 50.0
  min_samples: int = 100
  alpha: float = 0.05


def new_test(settings: TestSettings) -> sequential_test.CanaryTest:
  """A fresh test: completion per session, guarded by skips, conversions and latency."""
  return sequential_test.CanaryTest(
      experiment_metrics.COMPLETION,
      [sequential_test.Guardrail(experiment_metrics.SKIP_RATE,
                                 tolerance=settings.skip_tolerance),
       sequential_test.Guardrail(experiment_metrics.CONVERSION, higher_is_better=True,
                                 tolerance=settings.conversion_tolerance),
       sequential_test.Guardrail(experiment_metrics.LATENCY,
                                 tolerance=settings.latency_tolerance_ms)],
      alpha=settings.alpha, guardrail_alpha=settings.alpha,
      min_samples=settings.min_samples)


def stable_entry(serving_dir: str, version: int) -> model_config.ModelEntry:
  """The model served with ``version`` as ``stable`` alone."""
  return model_config.ModelEntry(
      MODEL_NAME, serving_dir, model_config.VersionPolicy("specific", versions=(version,)),
      {sequential_test.STABLE: version})


class Experiment:
  """The labels on the running server and the decisions taken about them.

  Args:
    entry: The model's ``models.config`` entry now served.
    config_path: The ``models.config`` file a restart reads.
    server_target: ``host:port`` of the model server (None: only write the file).
    settings: The canary test's settings.
    controller: The promo controller (default settings if None).
  """

  def __init__(self, entry: model_config.ModelEntry, config_path: str,
               server_target: Optional[str], settings: TestSettings = TestSettings(),
               controller: Optional[promo_controller.PromoController] = None):
    self.entry = entry
    self.config_path = config_path
    self.server_target = server_target
    self.settings = settings
    self.controller = controller or promo_controller.PromoController()
    self.test: Optional[sequential_test.CanaryTest] = None
    self.decisions: List[Dict[str, object]] = []
    self.actions: List[Dict[str, object]] = []

  @property
  def canary(self) -> Optional[int]:
    return self.entry.labels.get(sequential_test.CANARY)

  @property
  def stable(self) -> int:
    return self.entry.labels[sequential_test.STABLE]

  def _apply(self, entry: model_config.ModelEntry) -> None:
    canary_labels.apply([entry], self.config_path, self.server_target)
    self.entry = entry

  def observe_day(self, day: int, events: Sequence[Mapping[str, object]],
                  requests: Sequence[Mapping[str, object]]) -> Optional[Dict[str, object]]:
    """Feeds the day's sessions to the canary's test and applies its decision.

    Returns:
      The decision record (with ``day``, ``stable`` and ``canary``), or None when no
      canary was on trial.
    """
    if self.canary is None or self.test is None:
      return None
    for arm, observations in experiment_metrics.arm_observations(events).items():
      if arm in ARMS:
        self.test.add(arm, {name: values for name, values in observations.items()
                            if name in self.test.tests})
    for arm, latencies in experiment_metrics.arm_latencies(requests).items():
      if arm in ARMS and latencies.size:
        self.test.add(arm, {experiment_metrics.LATENCY: latencies})
    decision = self.test.decide()
    record = dict(decision.as_dict(), day=day, stable=self.stable, canary=self.canary)
    self.decisions.append(record)
    moved = canary_labels.after_decision(self.entry, decision.action)
    if moved is not None:
      self._apply(moved)
      self.test = None
    return record

  def push_canary(self, version: int) -> bool:
    """Serves ``version`` as ``canary`` unless one is still on trial; True if pushed."""
    if self.canary is not None or version == self.stable:
      return False
    self._apply(canary_labels.push_canary(self.entry, version))
    self.test = new_test(self.settings)
    return True

  def force_canary(self, version: int) -> Optional[int]:
    """Serves ``version`` as ``canary`` whatever is on trial (the bad-candidate drill).

    A canary on trial is dropped and its test discarded; the forced one starts a fresh
    test. Returns the dropped canary's version, if any.
    """
    dropped = self.canary
    entry = canary_labels.rollback(self.entry) if dropped is not None else self.entry
    self._apply(canary_labels.push_canary(entry, version))
    self.test = new_test(self.settings)
    return dropped

  def control(self, day: int, events: Sequence[Mapping[str, object]],
              override_path: str) -> List[Dict[str, object]]:
    """The controller's window ``day``: its actions, and the override file rewritten.

    The controller judges a segment on the control traffic: the ``stable`` arm's
    sessions when the day served a canary, all sessions otherwise. A canary has its own
    guardrails, and a bad one must not take promotion away from the listeners who never
    heard it.
    """
    canary_served = any(e.get("arm") == sequential_test.CANARY for e in events)
    arm = sequential_test.STABLE if canary_served else None
    taken = self.controller.observe(day, experiment_metrics.segment_completion(events, arm))
    records = [dict(action.as_dict(), day=day) for action in taken]
    self.actions.extend(records)
    self.controller.override().write(override_path)
    return records
