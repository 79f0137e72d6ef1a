"""Tests of the listening-outcome counters the nearline updater keeps per arm and segment."""

import json

import prometheus_client
import pytest

from online import event_source
from online import nearline
from online import outcome_metrics
from online import stores
from melody_testing import online_events

T0 = 1_700_000_000


def _play(user, ts, track, arm, **fields):
  extra = {} if arm is None else {"arm": arm}
  return online_events.play(user, ts, track, **extra, **fields)


def _value(registry, name, arm, segment):
  value = registry.get_sample_value(f"melody_listening_{name}_total",
                                    {"arm": arm, "segment": segment})
  return 0.0 if value is None else value


def _updater(events_dir, store, registry, **options):
  return nearline.Updater(event_source.DirectorySource(str(events_dir)), store,
                          nearline.NearlineOptions(**options), registry=registry,
                          clock=lambda: T0 + 10_000)


@pytest.mark.parametrize("max_batch", [2, 100])
def test_counts_applied_plays_once_by_arm_and_segment(tmp_path, max_batch):
  first = _play("u1", T0, "t1", "stable", completion=1.0, like=1.0, is_promo=False)
  second = _play("u1", T0 + 60, "t2", "stable", completion=0.25, skip=1.0, is_promo=True)
  paid = _play("u2", T0, "t1", "canary", completion=0.5, segment="paid",
               subscription=1.0, is_promo=True)
  log = tmp_path / "a.jsonl"
  online_events.append(log, [
      first, second, "{not json", json.dumps(first),
      json.dumps(paid, separators=(",", ":")),   # the live loop's compact lines
      _play("u3", T0, "t3", "bogus", completion=0.75, segment=None),
      _play("u4", T0, "t4", None, completion=0.0, segment="new", is_promo=True)])
  registry = prometheus_client.CollectorRegistry()
  with stores.open_store(str(tmp_path / "s.db")) as store:
    updater = _updater(tmp_path, store, registry, max_batch=max_batch, max_lateness_s=3600)
    assert updater.drain().applied == 5
    # A later batch: a repeat of a stored play, a late play and a torn line count nothing.
    online_events.append(log, [json.dumps(second),
                               _play("u1", T0 - 7200, "t9", "stable", completion=1.0),
                               '{"user_id": "u1", "arm": "stable", "is_promo": true'])
    total = updater.drain()
  assert (total.applied, total.duplicates, total.quarantined) == (0, 1, 2)
  expected = {
      ("stable", "free"): dict(plays=2, completion=1.25, skips=1, likes=1, conversions=0,
                               promo_plays=1),
      ("canary", "paid"): dict(plays=1, completion=0.5, skips=0, likes=0, conversions=1,
                               promo_plays=1),
      ("other", "unknown"): dict(plays=1, completion=0.75, skips=0, likes=0,
                                 conversions=0, promo_plays=0),
      ("none", "new"): dict(plays=1, completion=0.0, skips=0, likes=0, conversions=0,
                            promo_plays=1),
  }
  for (arm, segment), values in expected.items():
    assert {name: _value(registry, name, arm, segment) for name in values} == values, (
        arm, segment)
  assert _value(registry, "plays", "stable", "paid") == 0
  assert sum(s.value for m in registry.collect() if m.name == "melody_listening_plays"
             for s in m.samples if s.name.endswith("_total")) == 5


def test_a_failed_commit_counts_nothing_and_its_retry_counts_once(tmp_path, monkeypatch):
  online_events.append(tmp_path / "a.jsonl",
                       [_play("u1", T0, "t0", "canary", completion=0.5, is_promo=True)])
  registry = prometheus_client.CollectorRegistry()
  with stores.open_store(str(tmp_path / "s.db")) as store:
    updater = _updater(tmp_path, store, registry)
    commit = store.commit

    def fail(batch):
      raise OSError("disk full")
    monkeypatch.setattr(store, "commit", fail)
    with pytest.raises(OSError):
      updater.step()
    assert _value(registry, "plays", "canary", "free") == 0
    monkeypatch.setattr(store, "commit", commit)
    assert updater.drain().applied == 1
  assert [_value(registry, name, "canary", "free")
          for name in ("plays", "completion", "promo_plays")] == [1, 0.5, 1]


def test_the_counters_are_on_the_updaters_metrics_page(tmp_path):
  online_events.append(tmp_path / "a.jsonl", [_play("u1", T0, "t0", "stable")])
  registry = prometheus_client.CollectorRegistry()
  with stores.open_store(str(tmp_path / "s.db")) as store:
    _updater(tmp_path, store, registry).drain()
  page = prometheus_client.generate_latest(registry).decode()
  assert 'melody_listening_plays_total{arm="stable",segment="free"} 1.0' in page
  for name in ("completion", "skips", "likes", "conversions", "promo_plays"):
    assert f"melody_listening_{name}_total" in page


def test_arm_and_promo_are_read_from_the_raw_lines_in_either_json_spacing():
  raws = [b'{"user_id": "u", "arm": "canary", "is_promo": true}',
          b'{"user_id":"u","arm":"stable","is_promo":false}',
          b'{"user_id":"u","arm":"none","is_promo":true}',
          b'{"user_id":"u","track_id":"arm","arm" : "x\\"y"}',
          b'{"user_id":"u","arm":null}', b'{"user_id":"u","arm":2}', b'{"user_id":"u"}']
  arms, promos = outcome_metrics.line_tags(raws, list(range(len(raws))))
  assert [outcome_metrics.ARM_LABELS[c] for c in arms.tolist()] == [
      "canary", "stable", "none", "other", "none", "other", "none"]
  assert promos.tolist() == [True, False, True, False, False, False, False]
  arms, promos = outcome_metrics.line_tags(
      [b'{"arm" :"canary","is_promo" : true,"track_id":"is_promo"}',
       b'{"is_promo":\ttrue, "arm":  "stable"}', b'{"is_promo":null}'], [2, 1, 0])
  assert [outcome_metrics.ARM_LABELS[c] for c in arms.tolist()] == [
      "none", "stable", "canary"]
  assert promos.tolist() == [False, True, True]
