"""Always-valid sequential tests of a canary against the stable model, and the decision
they lead to.

This module owns the statistics of the canary experiment. :class:`MixtureSPRT` is the
mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh (2017)
for the difference of two means, theta = mean(canary) - mean(stable): with the
difference of the sample means ``d``, its variance ``V = s_c^2 / n_c + s_s^2 / n_s`` and
a normal mixture ``N(0, tau^2)`` over theta, the likelihood ratio against theta = 0 is

    Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 d^2 / (2 V (V + tau^2)))

and ``p = min over looks of 1 / Lambda`` is a p-value that stays valid however often it is
looked at (Ville's inequality), so the experiment can be checked after every batch and
stopped at the first ``p <= alpha``. Inverting the same ratio gives a confidence sequence
(Howard et al. 2021): ``d -/+ sqrt(2 V (V + tau^2) / tau^2 * (log(1/alpha) +
log((V + tau^2) / V) / 2))``, intersected over looks, which covers theta at every time with
probability >= 1 - alpha; guardrails read one side of it. ``tau`` is ``effect_size``
pooled standard deviations, so the test is scale-free; the variances are plug-in
estimates, so the guarantee is asymptotic (``min_samples`` per arm before any decision).

:class:`CanaryTest` runs one primary metric (listening time or completion per session)
and guardrails (skip rate, conversions, latency), and :meth:`CanaryTest.decide` says
``promote`` (the primary wins at ``alpha`` and no guardrail fails), ``rollback`` (a
guardrail fails: the canary is worse than its tolerance with confidence, or the primary
loses at ``alpha``) or ``keep``, with the evidence of every metric. Under A/A the chance of
a promotion is at most ``alpha`` and that of a rollback at most ``alpha`` plus the
guardrails' levels.
"""

import dataclasses
import math
from typing import Dict, Iterable, Mapping, Optional, Tuple

import numpy as np

STABLE = "stable"
CANARY = "canary"
PROMOTE, ROLLBACK, KEEP = "promote", "rollback", "keep"


class ArmMoments:
  """Count, mean and sum of squared deviations of one arm's observations, updated in
  batches (Chan et al.'s parallel update, stable in float64)."""

  def __init__(self):
    self.n = 0
    self.mean = 0.0
    self.m2 = 0.0

  def add(self, values: Iterable[float]) -> None:
    x = np.asarray(values, np.float64).ravel()
    if not x.size:
      return
    if not np.all(np.isfinite(x)):
      raise ValueError("observations must be finite")
    n_b, mean_b = x.size, float(x.mean())
    m2_b = float(((x - mean_b)**2).sum())
    n = self.n + n_b
    delta = mean_b - self.mean
    self.m2 += m2_b + delta * delta * self.n * n_b / n
    self.mean += delta * n_b / n
    self.n = n

  @property
  def variance(self) -> float:
    """The unbiased sample variance (0 below two observations)."""
    return self.m2 / (self.n - 1) if self.n > 1 else 0.0


@dataclasses.dataclass(frozen=True)
class Evidence:
  """One metric's state at a look.

  Attributes:
    metric: Metric name.
    n_stable, n_canary: Observations per arm.
    mean_stable, mean_canary: Their means.
    difference: ``mean_canary - mean_stable``.
    log_likelihood_ratio: ``log Lambda`` at this look.
    p_value: The always-valid p-value (the smallest ``1 / Lambda`` so far, at most 1).
    lower, upper: The confidence sequence for the difference at this look (infinite
      before both arms have ``min_samples``).
  """
  metric: str
  n_stable: int
  n_canary: int
  mean_stable: float
  mean_canary: float
  difference: float
  log_likelihood_ratio: float
  p_value: float
  lower: float
  upper: float


class MixtureSPRT:
  """The always-valid test of ``mean(canary) - mean(stable)`` for one metric.

  Args:
    metric: Its name.
    alpha: Level of the p-value threshold and of the confidence sequence, in (0, 1).
    effect_size: Standard deviation of the mixture over the difference, in pooled
      standard deviations of the metric (> 0); the test is most powerful near it.
    min_samples: Observations per arm before the statistic is computed.
  """

  def __init__(self, metric: str, alpha: float = 0.05, effect_size: float = 0.1,
               min_samples: int = 100):
    if not 0.0 < alpha < 1.0:
      raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if not effect_size > 0:
      raise ValueError(f"effect_size must be > 0, got {effect_size}")
    if min_samples < 2:
      raise ValueError(f"min_samples must be >= 2, got {min_samples}")
    self.metric = metric
    self.alpha = alpha
    self.effect_size = effect_size
    self.min_samples = min_samples
    self.arms = {STABLE: ArmMoments(), CANARY: ArmMoments()}
    self._p = 1.0
    self._lower, self._upper = -math.inf, math.inf

  def add(self, arm: str, values: Iterable[float]) -> None:
    """Adds observations of ``arm`` (``stable`` or ``canary``)."""
    if arm not in self.arms:
      raise ValueError(f"arm must be one of {tuple(self.arms)}, got {arm!r}")
    self.arms[arm].add(values)

  def look(self) -> Evidence:
    """The statistic, the always-valid p-value and the confidence sequence now."""
    s, c = self.arms[STABLE], self.arms[CANARY]
    diff = c.mean - s.mean
    log_lr = 0.0
    if min(s.n, c.n) >= self.min_samples:
      var = s.variance / s.n + c.variance / c.n
      pooled = (s.m2 + c.m2) / (s.n + c.n - 2)
      tau2 = self.effect_size**2 * pooled
      if var > 0 and tau2 > 0:
        log_lr = 0.5 * math.log(var / (var + tau2)) + tau2 * diff * diff / (
            2 * var * (var + tau2))
        self._p = min(self._p, math.exp(-log_lr) if log_lr > 0 else 1.0)
        radius = math.sqrt(2 * var * (var + tau2) / tau2 * (
            math.log(1 / self.alpha) + 0.5 * math.log((var + tau2) / var)))
        self._lower = max(self._lower, diff - radius)
        self._upper = min(self._upper, diff + radius)
    return Evidence(self.metric, s.n, c.n, s.mean, c.mean, diff, log_lr, self._p,
                    self._lower, self._upper)


@dataclasses.dataclass(frozen=True)
class Guardrail:
  """A metric the canary must not make worse.

  Attributes:
    metric: Its name (e.g. ``skip_rate``, ``conversion``, ``latency_ms``).
    higher_is_better: False for skip rate and latency, True for conversions.
    tolerance: How much worse than stable (in the metric's units, >= 0) is acceptable;
      the guardrail fails once the confidence sequence lies entirely beyond it.
  """
  metric: str
  higher_is_better: bool = False
  tolerance: float = 0.0

  def __post_init__(self):
    if not self.tolerance >= 0:
      raise ValueError(f"guardrail {self.metric}: tolerance must be >= 0, got "
                       f"{self.tolerance}")

  def fails(self, evidence: Evidence) -> bool:
    """Whether ``evidence`` shows the canary worse than the tolerance, with confidence."""
    if self.higher_is_better:
      return evidence.upper < -self.tolerance
    return evidence.lower > self.tolerance


@dataclasses.dataclass(frozen=True)
class Decision:
  """What to do with the canary, and why.

  Attributes:
    action: ``promote``, ``rollback`` or ``keep``.
    reason: One line on why.
    failed_guardrail: The guardrail that failed, if that is the reason.
    evidence: Every metric's evidence, keyed by metric.
  """
  action: str
  reason: str
  failed_guardrail: Optional[str]
  evidence: Dict[str, Evidence]

  def as_dict(self) -> Dict[str, object]:
    """A JSON-ready record of the decision and its evidence."""
    return {"action": self.action, "reason": self.reason,
            "failed_guardrail": self.failed_guardrail,
            "evidence": {k: dataclasses.asdict(v) for k, v in self.evidence.items()}}


class CanaryTest:
  """The canary experiment's primary metric and guardrails, and the decision rule.

  Usage::

    test = CanaryTest("completion", [Guardrail("skip_rate", tolerance=0.01),
                                     Guardrail("conversion", higher_is_better=True)])
    test.add("canary", {"completion": [...], "skip_rate": [...], "conversion": [...]})
    test.decide().action   # "promote", "rollback" or "keep"

  Args:
    primary: The primary metric; higher is better (listening time, completion).
    guardrails: Metrics the canary must not worsen.
    alpha: Level of the primary test.
    guardrail_alpha: Level of each guardrail's confidence sequence.
    effect_size: The mixture's scale in pooled standard deviations (all metrics).
    min_samples: Observations per arm before any metric is judged.
  """

  def __init__(self, primary: str, guardrails: Iterable[Guardrail] = (),
               alpha: float = 0.05, guardrail_alpha: float = 0.05,
               effect_size: float = 0.1, min_samples: int = 100):
    self.primary = MixtureSPRT(primary, alpha, effect_size, min_samples)
    self.guardrails: Tuple[Guardrail, ...] = tuple(guardrails)
    names = [primary] + [g.metric for g in self.guardrails]
    if len(set(names)) != len(names):
      raise ValueError(f"metric names must be distinct, got {names}")
    self.tests = {primary: self.primary}
    for g in self.guardrails:
      self.tests[g.metric] = MixtureSPRT(g.metric, guardrail_alpha, effect_size,
                                         min_samples)

  def add(self, arm: str, observations: Mapping[str, Iterable[float]]) -> None:
    """Adds one arm's observations per metric (metrics not given are left as they are).

    Raises:
      ValueError: an unknown metric or arm, or a non-finite value.
    """
    for metric, values in observations.items():
      if metric not in self.tests:
        raise ValueError(f"unknown metric {metric!r}; known: {sorted(self.tests)}")
      self.tests[metric].add(arm, values)

  def decide(self) -> Decision:
    """Looks at every metric once and returns the decision with its evidence."""
    evidence = {name: test.look() for name, test in self.tests.items()}
    for g in self.guardrails:
      if g.fails(evidence[g.metric]):
        e = evidence[g.metric]
        side = "below" if g.higher_is_better else "above"
        bound = e.upper if g.higher_is_better else e.lower
        return Decision(ROLLBACK, f"guardrail {g.metric}: the canary's difference is "
                        f"{side} the tolerance {g.tolerance:g} with confidence (bound "
                        f"{bound:.4g})", g.metric, evidence)
    p = evidence[self.primary.metric]
    if p.p_value <= self.primary.alpha:
      if p.difference > 0:
        return Decision(PROMOTE, f"{p.metric} +{p.difference:.4g} (p = {p.p_value:.3g} "
                        f"<= {self.primary.alpha:g})", None, evidence)
      return Decision(ROLLBACK, f"{p.metric} {p.difference:.4g} (p = {p.p_value:.3g} "
                      f"<= {self.primary.alpha:g})", None, evidence)
    if min(p.n_stable, p.n_canary) < self.primary.min_samples:
      return Decision(KEEP, f"fewer than {self.primary.min_samples} observations in an "
                      "arm", None, evidence)
    return Decision(KEEP, f"{p.metric}: no difference at level {self.primary.alpha:g} yet "
                    f"(p = {p.p_value:.3g})", None, evidence)
