"""The gateway's Prometheus metrics, in a registry of its own.

This module owns what ``melody gateway`` counts: calls by transport, status code and
answer source (``model`` or ``fallback_popularity``), their latency, the time spent in
each stage (state read, model call), model-call retries, fallbacks by the model
server's status code, and cold starts; with a canary experiment, calls (and so errors
and fallbacks) and latency per arm and listener segment.
"""

import contextlib
import time

import prometheus_client

_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5,
                    float("inf"))


class GatewayMetrics:
  """The gateway's counters and histograms in ``registry`` (a new one by default)."""

  def __init__(self, registry: prometheus_client.CollectorRegistry = None):
    self.registry = registry or prometheus_client.CollectorRegistry()
    r = self.registry
    self.requests = prometheus_client.Counter(
        "melody_gateway_requests", "Recommend calls by transport, status code and source",
        ["transport", "code", "source"], registry=r)
    self.latency = prometheus_client.Histogram(
        "melody_gateway_request_seconds", "Recommend latency by transport", ["transport"],
        buckets=_LATENCY_BUCKETS, registry=r)
    self.stages = prometheus_client.Histogram(
        "melody_gateway_stage_seconds", "Time in each stage of a call (state, model)",
        ["stage"], buckets=_LATENCY_BUCKETS, registry=r)
    self.retries = prometheus_client.Counter(
        "melody_gateway_model_retries", "Model calls retried after UNAVAILABLE", registry=r)
    self.fallbacks = prometheus_client.Counter(
        "melody_gateway_fallbacks",
        "Answers from the popularity list, by the model server's status code", ["reason"],
        registry=r)
    self.cold_starts = prometheus_client.Counter(
        "melody_gateway_cold_starts", "Requests for listeners without a state", registry=r)
    self.arm_requests = prometheus_client.Counter(
        "melody_gateway_arm_requests",
        "Recommend calls of the canary experiment by arm, listener segment, status code and "
        "source", ["arm", "segment", "code", "source"], registry=r)
    self.arm_latency = prometheus_client.Histogram(
        "melody_gateway_arm_request_seconds",
        "Recommend latency of the canary experiment by arm and listener segment",
        ["arm", "segment"], buckets=_LATENCY_BUCKETS, registry=r)

  @contextlib.contextmanager
  def stage(self, name: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.stages.labels(name).observe(time.perf_counter() - start)

  def arm_call(self, arm: str, segment: str, code: str, source: str,
               seconds: float) -> None:
    """Counts one call of the experiment in its arm and segment."""
    self.arm_requests.labels(arm, segment, code, source).inc()
    self.arm_latency.labels(arm, segment).observe(seconds)

  def value(self, name: str, **labels) -> float:
    """A sample's current value (0 when absent), e.g. ``value("melody_gateway_fallbacks_total",
    reason="unavailable")``."""
    return self.registry.get_sample_value(name, labels) or 0.0
