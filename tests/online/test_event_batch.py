"""Tests of online.event_batch: the columnar parse of a micro-batch and its fallback."""

import json

import pytest

from melody_testing import online_events
from online import event_batch
from online import event_source

T0 = 1_700_000_000


def _lines(docs):
  return [(d if isinstance(d, str) else json.dumps(d)).encode() for d in docs]


def _one_by_one(raws):
  """Events and rejections as the line parser alone gives them."""
  events, rejected = [], []
  for i, raw in enumerate(raws):
    try:
      events.append(event_source.parse_event(raw.decode("utf-8", errors="replace")))
    except ValueError as e:
      rejected.append((i, raw.decode("utf-8", errors="replace"), str(e)))
  return events, rejected


def _as_applied(event):
  """An event with "not given" unit values as applying them reads them (0.0)."""
  units = {n: 0.0 if getattr(event, n) is None else getattr(event, n)
           for n in ("completion", "skip", "like", "subscription")}
  return event._replace(**units)


def test_a_valid_batch_parses_in_one_pass_to_what_the_line_parser_gives():
  docs = online_events.random_plays(seed=1, users=5, per_user=8)
  docs[3]["user_tenure_days"] = None
  docs[4].pop("artist_id")
  docs[5]["like"] = 1
  docs[6]["user_segment"] = None
  docs[7]["ts"] = float(docs[7]["ts"])
  raws = _lines(docs)
  columns = event_batch.parse_batch(raws)
  assert columns is not None and len(columns) == len(docs)
  events, _ = _one_by_one(raws)
  assert [columns.event(i) for i in range(len(columns))] == [_as_applied(e) for e in events]
  assert type(columns.ts[7]) is int and columns.tenure[3] is None


@pytest.mark.parametrize("bad", [
    "{not json", '{"user_id": "u1", "ts": 5}', "", "  ", "[1]",
    '{"user_id": "u1", "track_id": "t", "ts": NaN}',
    '{"user_id": "u1", "track_id": "t", "ts": 1700000000, "completion": NaN}',
    '\ufeff{"user_id": "u1", "track_id": "t", "ts": 1700000000}',
    '{"user_id": "u1", "track_id": "t", "ts": 1700000000} {"user_id": "u2"}',
    '{"user_id": 5, "track_id": "t", "ts": 1700000000}',
    '{"user_id": "u1", "track_id": " ", "ts": 1700000000}',
    '{"user_id": "u1", "track_id": "t", "ts": true}',
    '{"user_id": "u1", "track_id": "t", "ts": 1700000000.5}',
    '{"user_id": "u1", "track_id": "t", "ts": 1700000000, "skip": 2}',
    '{"user_id": "u1", "track_id": "t", "ts": 1700000000, "user_segment": "vip"}',
    '{"user_id": "u1", "track_id": "t", "ts": 1700000000, "user_tenure_days": -1}',
])
def test_a_batch_with_a_line_the_line_parser_refuses_falls_back_line_by_line(bad):
  raws = _lines([online_events.play("u1", T0, "t1"), bad,
                 online_events.play("u2", T0 + 1, "t2")])
  assert event_batch.parse_batch(raws) is None
  columns, rejected = event_batch.parse_lines(raws)
  events, want_rejected = _one_by_one(raws)
  assert rejected == want_rejected
  assert [columns.event(i) for i in range(len(columns))] == [_as_applied(e) for e in events]
  assert columns.line == [i for i in range(3) if i not in {r[0] for r in rejected}]
