"""The nearline updater: play events from the logs into the listener state store.

This module owns :class:`Updater`, the "T+0" near-line step of Melody's design. Each
micro-batch reads the complete lines past the offsets the store holds
(``online.event_source``), parses them as columns (``online.event_batch``), applies the
valid ones in timestamp order per listener (``online.batch_apply``: a late or
out-of-order event lands where its timestamp puts it), and commits the new play rows,
profiles and counters, the popularity counts, the quarantined lines and the new offsets
in ONE store transaction. Every event therefore takes effect exactly once: a crash
before the commit leaves the old offsets, and the restarted updater reads the same lines
again against the same old rows; a crash after it leaves nothing to redo. A line that
cannot be applied (malformed, later than ``max_lateness_s`` behind its listener's
newest event, or older than every play row held for its listener, where a repeat of a
counted play can no longer be told from a new one) is quarantined with its file, line
number, raw text and reason; the same play logged twice is counted as a duplicate and
applied once. One updater writes a
store at a time, which is what lets it keep the profiles it committed in memory
(``cache_states``) instead of reading them back for the next batch; a failed commit
empties that cache. The garbage collector is paused while a batch runs: a batch makes
tens of thousands of short-lived tuples, and collections triggered by them would walk
the whole heap (the cache included) again and again.
"""

import dataclasses
import gc
import itertools
import logging
import threading
import time
from typing import Callable, Dict, List, Mapping, Optional

import prometheus_client

from online import batch_apply
from online import event_batch
from online import event_source
from online import outcome_metrics
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
    cache_states: Most committed listener profiles the updater keeps in memory (0:
      none). The updater is the store's only writer, so a profile it committed is the
      stored one and the next batch of that listener skips reading it.
  """
  interval_s: float = 5.0
  max_batch: int = 20_000
  max_lateness_s: int = 7 * 86400
  cache_states: int = 50_000

  def __post_init__(self):
    if self.interval_s < 0:
      raise ValueError(f"interval_s must be >= 0, got {self.interval_s}")
    if self.max_batch < 1:
      raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")
    if self.max_lateness_s < 0:
      raise ValueError(f"max_lateness_s must be >= 0, got {self.max_lateness_s}")
    if self.cache_states < 0:
      raise ValueError(f"cache_states must be >= 0, got {self.cache_states}")


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
    event_batch.warm_up()
    self._cache: Dict[str, state_store.Profile] = {}
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
    self._outcomes = outcome_metrics.OutcomeMetrics(self.registry)

  def step(self) -> BatchReport:
    """Reads, applies and commits one micro-batch (an empty one commits nothing)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
      return self._step()
    finally:
      if collecting:
        gc.enable()

  def _step(self) -> BatchReport:
    start = time.monotonic()
    block, offsets = self.source.read(self._offsets, self.options.max_batch)
    report = BatchReport(lines=len(block))
    if not block:
      return report
    columns, rejected = event_batch.parse_lines(block.raws)
    applied = batch_apply.apply_events(columns, self._profiles, self.store.held_plays,
                                       self.store.history_floors,
                                       self.options.max_lateness_s)
    batch = applied.batch
    batch.offsets = offsets
    for i, text, reason in rejected:
      where = block.line(i)
      batch.quarantined.append(state_store.Quarantined(where.file, where.line, text, reason))
    for i, reason in applied.late:
      where = block.line(i)
      batch.quarantined.append(state_store.Quarantined(where.file, where.line, where.raw,
                                                       reason))
    try:
      self.store.commit(batch)
    except BaseException:
      # Drop what the updater believes about the store: the store decides.
      self._cache.clear()
      raise
    self._remember(batch.profiles)
    self._offsets = {**self._offsets, **offsets}
    # Counted after the commit: a batch that failed to commit is read again, not counted.
    self._outcomes.record(block.raws, columns, applied.mask)
    if applied.oldest_ts is not None:
      report.max_lag_s = self._clock() - applied.oldest_ts
    report.applied, report.duplicates = applied.applied, applied.duplicates
    report.quarantined = len(batch.quarantined)
    report.listeners = len(batch.profiles)
    self._record(report, time.monotonic() - start)
    return report

  def _profiles(self, user_ids: List[str]) -> Mapping[str, state_store.Profile]:
    """The stored profiles of ``user_ids`` (and of other listeners): the cache, with
    the ones it lacks read from the store into it."""
    cache = self._cache
    missing = [u for u in user_ids if u not in cache]
    if missing:
      # What the store holds is what the cache may hold; _remember trims it.
      cache.update(self.store.profiles(missing))
    return cache

  def _remember(self, changed: Dict[str, state_store.Profile]) -> None:
    """Keeps the committed profiles within ``cache_states``; the first cached go first."""
    limit = self.options.cache_states
    cache = self._cache
    cache.update(changed)
    if len(cache) > limit:
      for user in list(itertools.islice(cache, len(cache) - limit)):
        del cache[user]

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
