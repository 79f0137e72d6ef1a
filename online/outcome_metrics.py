"""Listening outcomes per experiment arm and listener segment, as Prometheus counters.

This module owns :class:`OutcomeMetrics`, the counters behind the dashboards a team
watches during a canary trial: plays, the sum of completion, skips, likes, conversions
and promo plays, each labelled by ``arm`` and ``segment``. The gateway answers requests
but never sees what the listener did with the list; the nearline updater reads every
tagged play, so it counts them, once per committed micro-batch and only the events the
batch applied (a duplicate, a late or a malformed line counts nowhere). Rates are
ratios of counters in PromQL, e.g. the completion rate of an arm and segment::

    rate(melody_listening_completion_total[1h]) / rate(melody_listening_plays_total[1h])

and likewise skips, likes and conversions per play, and promo plays per play for the
promo exposure share.

Labels: ``segment`` is the event's ``user_segment`` (``unknown`` when it names none);
``arm`` is the event's ``arm`` when it is one of the experiment's arms, ``none`` when
the event has none, null or ``"none"`` (plays logged outside an experiment, or a call the
gateway could not answer) and ``other`` for any other value, so a bad log cannot grow
the label set.
Sums read the values as the updater applies them: a label the event leaves out counts 0.

The arm and promo flag are not among the columns the updater parses
(``online.event_batch``), so they are read here from each applied line's raw JSON:
plain string searches for the keys and a lookup of the bytes after them settle the
usual lines (compact JSON or a space after the colon), a pattern match the rest. A line
whose JSON nests another object holding these keys would be misread; event lines are
flat.
"""

import re
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import prometheus_client

from features import feature_spec
from online import event_batch
from online import experiment_split

NO_ARM = "none"
OTHER_ARM = "other"
UNKNOWN_SEGMENT = "unknown"
ARM_LABELS = experiment_split.ARMS + (NO_ARM, OTHER_ARM)
SEGMENT_LABELS = tuple(feature_spec.SEGMENTS) + (UNKNOWN_SEGMENT,)

# The value as written: a JSON string with its quotes, or any other JSON scalar.
_ARM = re.compile(rb'"arm"\s*:\s*("(?:[^"\\]|\\.)*"|[^,}\s]*)')
_PROMO = re.compile(rb'"is_promo"\s*:\s*true\b')
_ARM_CODE = {**{b'"%s"' % arm.encode(): i for i, arm in enumerate(ARM_LABELS[:-1])},
             b"null": ARM_LABELS.index(NO_ARM)}
_ARM_KEY = b'"arm":'
_PROMO_KEY = b'"is_promo":'
# How many bytes after the "arm" key settle a known value at once.
_QUICK_LEN = 9


def _quick_arm_codes() -> Dict[bytes, int]:
  """The ``_QUICK_LEN`` bytes after the "arm" key that settle the value at once, in
  compact JSON and with a space after the colon: a whole quoted value and what ends it."""
  quick = {}
  for value, code in _ARM_CODE.items():
    for text in (value, b" " + value):
      if len(text) == _QUICK_LEN:
        quick[text] = code
      elif len(text) == _QUICK_LEN - 1:
        quick.update({text + b",": code, text + b"}": code})
  return quick


_ARM_QUICK = _quick_arm_codes()
# The first two bytes after the promo key, when they settle the value.
_PROMO_QUICK = {b"tr": True, b" t": True, b"fa": False, b" f": False}
_SEGMENT_CODE = {**{s: i for i, s in enumerate(feature_spec.SEGMENTS)},
                 None: len(feature_spec.SEGMENTS)}
# (metric name, help), in the order of the sums OutcomeMetrics.record adds.
_COUNTERS = (
    ("melody_listening_plays", "Applied play events"),
    ("melody_listening_completion", "Sum of the applied plays' completion (0..1)"),
    ("melody_listening_skips", "Sum of the applied plays' skip label"),
    ("melody_listening_likes", "Sum of the applied plays' like label"),
    ("melody_listening_conversions", "Sum of the applied plays' subscription label"),
    ("melody_listening_promo_plays", "Applied plays of promoted tracks (is_promo true)"),
)


class OutcomeMetrics:
  """Counts the listening outcomes of committed micro-batches.

  Counters live in the process: a restarted updater starts them at zero (Prometheus'
  ``rate`` reads a reset as one), and a batch committed just before a crash but not
  yet counted is not counted again by the next process, which never re-reads it. Within
  one process every committed event is counted exactly once.

  Args:
    registry: Where the counters are registered (the updater's ``/metrics`` page).
  """

  def __init__(self, registry: prometheus_client.CollectorRegistry):
    self._counters = [prometheus_client.Counter(name, text, ["arm", "segment"],
                                                registry=registry)
                      for name, text in _COUNTERS]
    self._children: Dict[Tuple[int, int], List[prometheus_client.Counter]] = {}

  def record(self, raws: Sequence[bytes], columns: event_batch.EventColumns,
             applied: Optional[np.ndarray]) -> None:
    """Adds a committed batch's applied plays.

    Args:
      raws: The batch's lines (``LineBlock.raws``), which ``columns.line`` indexes.
      columns: The batch's parsed events.
      applied: Which of ``columns``' events the batch applied
        (``batch_apply.Applied.mask``; None: none).
    """
    if applied is None or not applied.any():
      return
    lines = np.asarray(columns.line, np.int64)[applied]
    arm, promo = line_tags(raws, lines.tolist())
    segment = np.fromiter(map(_SEGMENT_CODE.__getitem__, columns.segment), np.int64,
                          len(columns))[applied]
    group = arm * len(SEGMENT_LABELS) + segment
    size = len(ARM_LABELS) * len(SEGMENT_LABELS)
    sums = [np.bincount(group, minlength=size).astype(np.float64)]
    for name in ("completion", "skip", "like", "subscription"):
      weights = np.asarray(getattr(columns, name), np.float64)[applied]
      sums.append(np.bincount(group, weights, minlength=size))
    sums.append(np.bincount(group[promo], minlength=size))
    for g in np.flatnonzero(sums[0]).tolist():
      for child, column in zip(self._child(divmod(g, len(SEGMENT_LABELS))), sums):
        if column[g]:
          child.inc(float(column[g]))

  def _child(self, key: Tuple[int, int]) -> List[prometheus_client.Counter]:
    children = self._children.get(key)
    if children is None:
      labels = (ARM_LABELS[key[0]], SEGMENT_LABELS[key[1]])
      children = self._children[key] = [c.labels(*labels) for c in self._counters]
    return children


def line_tags(raws: Sequence[bytes], lines: List[int]) -> Tuple[np.ndarray, np.ndarray]:
  """The ``arm`` of each of ``lines`` (an index into :data:`ARM_LABELS`) and whether
  it marks its track as promoted (``"is_promo": true``)."""
  arms, promos = [], []
  quick, slow_arm = _ARM_QUICK.get, _slow_arm_code
  arm_at, arm_len = len(_ARM_KEY), len(_ARM_KEY) + _QUICK_LEN
  promo_at = len(_PROMO_KEY)
  for raw in map(raws.__getitem__, lines):
    # Plain string searches and a lookup settle the usual lines, a pattern match the
    # rest. The last key is the one JSON readers keep. The lines were parsed as JSON,
    # so a promo flag's value that starts with "t" is true.
    k = raw.rfind(_ARM_KEY)
    code = quick(raw[k + arm_at:k + arm_len]) if k >= 0 else None
    arms.append(slow_arm(raw) if code is None else code)
    k = raw.rfind(_PROMO_KEY)
    promo = _PROMO_QUICK.get(raw[k + promo_at:k + promo_at + 2]) if k >= 0 else None
    if promo is None:
      promo = b'"is_promo"' in raw and _PROMO.search(raw) is not None
    promos.append(promo)
  return np.array(arms, np.int64), np.array(promos, bool)


def _slow_arm_code(raw: bytes) -> int:
  match = _ARM.search(raw)
  if match is None:
    return ARM_LABELS.index(NO_ARM)
  return _ARM_CODE.get(match.group(1), len(ARM_LABELS) - 1)
