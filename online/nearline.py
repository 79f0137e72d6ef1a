"""The nearline updater: play events from the logs into the listener state store.

This module owns :class:`Updater`, the "T+0" near-line step of Melody's design. Each
micro-batch reads the complete lines past the offsets the store holds, parses them
(``online.event_source``), applies the valid ones to their listeners' states in
timestamp order (``online.listener_state``: a late or out-of-order event lands where
its timestamp puts it), and commits the changed states, the popularity counts, the
quarantined lines and the new offsets in ONE store transaction. Every event therefore
takes effect exactly once: a crash before the commit leaves the old offsets, and the
restarted updater reads the same lines again onto the same old states; a crash after it
leaves nothing to redo. A line that cannot be applied (malformed, or later than
``max_lateness_s`` behind its listener's newest event) is quarantined with its file,
line number, raw text and reason; the same play logged twice is counted as a duplicate
and applied once. One updater writes a store at a time.
"""

import dataclasses
import logging
import threading
import time
from typing import Callable, Dict, Optional

import prometheus_client

from online import event_source
from online import listener_state
from online import state_store

_LOG = logging.getLogger("melody.online")


@dataclasses.dataclass(frozen=True)
class NearlineOptions:
  """How the updater batches.

  Attributes:
    interval_s: Pause between passes once the logs are drained.
    max_batch: Most lines per micro-batch (one transaction).
    max_lateness_s: An event older than its listener's newest event by more than this
      is quarantined (it would no longer change what the model sees).
  """
  interval_s: float = 5.0
  max_batch: int = 20_000
  max_lateness_s: int = 7 * 86400

  def __post_init__(self):
    if self.interval_s < 0:
      raise ValueError(f"interval_s must be >= 0, got {self.interval_s}")
    if self.max_batch < 1:
      raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
    if self.max_lateness_s < 0:
      raise ValueError(f"max_lateness_s must be >= 0, got {self.max_lateness_s}")


@dataclasses.dataclass
class BatchReport:
  """What one micro-batch did."""
  lines: int = 0
  applied: int = 0
  duplicates: int = 0
  quarantined: int = 0
  listeners: int = 0
  max_lag_s: float = 0.0


class Updater:
  """Applies ``source``'s events to ``store`` in micro-batches.

  Args:
    source: The event logs.
    store: The listener state store (also holds the offsets).
    options: Batching.
    registry: Prometheus registry for the updater's metrics (a fresh one if None).
    clock: Wall clock (epoch seconds), for the event-to-state lag.
  """

  def __init__(self, source: event_source.DirectorySource, store: state_store.StateStore,
               options: NearlineOptions = NearlineOptions(),
               registry: Optional[prometheus_client.CollectorRegistry] = None,
               clock: Callable[[], float] = time.time):
    self.source = source
    self.store = store
    self.options = options
    self.registry = registry or prometheus_client.CollectorRegistry()
    self._clock = clock
    self._offsets = store.offsets()
    self._events = prometheus_client.Counter(
        "melody_nearline_events", "Event lines by outcome (applied, duplicate, quarantined)",
        ["outcome"], registry=self.registry)
    self._batch_seconds = prometheus_client.Histogram(
        "melody_nearline_batch_seconds", "Time to read, apply and commit one micro-batch",
        registry=self.registry)
    self._lag = prometheus_client.Histogram(
        "melody_nearline_batch_lag_seconds",
        "Per micro-batch, commit time minus the time of its oldest applied event",
        buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600, float("inf")),
        registry=self.registry)

  def step(self) -> BatchReport:
    """Reads, applies and commits one micro-batch (an empty one commits nothing)."""
    start = time.monotonic()
    lines, offsets = self.source.read(self._offsets, self.options.max_batch)
    report = BatchReport(lines=len(lines))
    if not lines:
      return report
    batch = state_store.Batch(offsets=offsets)
    parsed = []
    for line in lines:
      try:
        parsed.append((line, event_source.parse_event(line.raw)))
      except ValueError as e:
        batch.quarantined.append(state_store.Quarantined(line.file, line.line, line.raw,
                                                         str(e)))
    states = self.store.get_many([e.user_id for _, e in parsed])
    changed: Dict[str, listener_state.ListenerState] = {}
    played = []
    # Timestamp order inside the batch (stable: equal times keep their log order).
    for line, event in sorted(parsed, key=lambda le: le[1].ts):
      state = changed.get(event.user_id) or states.get(event.user_id) \
          or listener_state.ListenerState(event.user_id)
      if state.newest_ts - event.ts > self.options.max_lateness_s:
        batch.quarantined.append(state_store.Quarantined(
            line.file, line.line, line.raw,
            f"late by {state.newest_ts - event.ts} s (limit {self.options.max_lateness_s} s)"))
        continue
      if state.apply(event):
        changed[event.user_id] = state
        played.append((state.segment, event))
        report.applied += 1
      else:
        report.duplicates += 1
    batch.states = list(changed.values())
    batch.popularity = state_store.popularity_increments(played)
    self.store.commit(batch)
    self._offsets = {**self._offsets, **offsets}
    if played:
      report.max_lag_s = self._clock() - min(e.ts for _, e in played)
    report.quarantined = len(batch.quarantined)
    report.listeners = len(changed)
    self._record(report, time.monotonic() - start)
    return report

  def _record(self, report: BatchReport, seconds: float) -> None:
    self._events.labels("applied").inc(report.applied)
    self._events.labels("duplicate").inc(report.duplicates)
    self._events.labels("quarantined").inc(report.quarantined)
    self._batch_seconds.observe(seconds)
    if report.applied:
      self._lag.observe(report.max_lag_s)
    # Ids and counts only: event contents stay out of the logs.
    _LOG.info("batch: %d lines, %d applied, %d duplicate, %d quarantined, %d listeners, "
              "%.3f s", report.lines, report.applied, report.duplicates, report.quarantined,
              report.listeners, seconds)

  def drain(self) -> BatchReport:
    """Runs micro-batches until no complete line is left; returns the totals."""
    total = BatchReport()
    while True:
      report = self.step()
      if not report.lines:
        return total
      for name in ("lines", "applied", "duplicates", "quarantined"):
        setattr(total, name, getattr(total, name) + getattr(report, name))
      total.max_lag_s = max(total.max_lag_s, report.max_lag_s)

  def run(self, stop: threading.Event,
          on_batch: Optional[Callable[[BatchReport], None]] = None) -> None:
    """Drains the logs, waits ``interval_s``, repeats, until ``stop`` is set.

    A stop request takes effect between micro-batches: the running one commits first.
    """
    while not stop.is_set():
      while not stop.is_set():
        report = self.step()
        if on_batch is not None and report.lines:
          on_batch(report)
        if report.lines < self.options.max_batch:
          break
      stop.wait(self.options.interval_s)
