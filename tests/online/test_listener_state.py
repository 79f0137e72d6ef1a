"""Tests of online.listener_state: applying events, sessions, counters, model inputs."""

import numpy as np

from features import feature_spec
from online import listener_state
from serving import request_schema

T0 = 1_700_000_000


def _event(ts, track, session="s1", **kw):
  return listener_state.PlayEvent(user_id="u1", ts=ts, track_id=track, artist_id="a" + track,
                                  session_id=session, **kw)


def test_out_of_order_events_land_in_timestamp_order_and_duplicates_apply_once():
  state = listener_state.ListenerState("u1")
  for ts, track in ((T0 + 20, "b"), (T0 + 40, "d"), (T0 + 10, "a"), (T0 + 30, "c")):
    assert state.apply(_event(ts, track, completion=0.5))
  assert not state.apply(_event(T0 + 30, "c", completion=0.5))
  assert state.track_ids() == ["a", "b", "c", "d"]
  assert state.counter_totals()["plays"] == 4
  assert state.newest_ts == T0 + 40


def test_history_keeps_the_newest_plays_and_counters_keep_recent_days():
  state = listener_state.ListenerState("u1")
  n = feature_spec.HISTORY_LEN + 5
  for i in range(n):
    state.apply(_event(T0 + 60 * i, f"t{i}", skip=float(i % 2)))
  assert len(state.plays) == feature_spec.HISTORY_LEN
  assert state.track_ids()[0] == "t5"
  state.apply(_event(T0 - 10, "old"))   # older than the whole full history
  assert state.track_ids()[0] == "t5"
  assert state.counter_totals() == {"plays": n + 1, "skips": n // 2, "likes": 0,
                                    "conversions": 0}
  state.apply(_event(T0 + 10 * listener_state.DAY_S, "later"))
  assert state.counter_totals()["plays"] == 1   # the old days fell out of the window


def test_model_inputs_match_the_request_schema_and_hold_history_and_session():
  state = listener_state.ListenerState("u1")
  state.apply(_event(T0, "old", session="s0", user_segment="trial", user_tenure_days=3.0))
  state.apply(_event(T0 + 4000, "x", session="s1", completion=0.25, skip=1.0))
  state.apply(_event(T0 + 4100, "y", session="s1", completion=1.0))
  now = T0 + 4200
  inputs = state.model_inputs(now, "focus", "radio")
  assert set(inputs) == set(request_schema.LISTENER_INPUTS)
  for name, (dtype, shape) in request_schema.LISTENER_INPUTS.items():
    assert inputs[name].shape == (1,) + shape, name
    assert inputs[name].dtype == request_schema.NP_DTYPES[dtype], name
  assert list(inputs["hist_track_ids"][0][:4]) == [b"y", b"x", b"old", b""]
  assert inputs["hist_len"][0] == 3 and inputs["sess_len"][0] == 2
  np.testing.assert_allclose(inputs["hist_gap_s"][0][:3], [100, 200, 4200])
  np.testing.assert_allclose(inputs["sess_skip"][0][:2], [0.0, 1.0])
  assert inputs["user_segment"][0] == b"trial"
  np.testing.assert_allclose(inputs["user_tenure_days"], [3.0 + 4200 / 86400], rtol=1e-6)
  assert inputs["context_activity"][0] == b"focus"
  # After the session window the session is empty but the history stays.
  later = state.model_inputs(T0 + 4100 + feature_spec.SESSION_WINDOW_S + 1)
  assert later["sess_len"][0] == 0 and later["hist_len"][0] == 3


def test_json_round_trip_is_exact():
  state = listener_state.ListenerState("u1")
  for i in range(7):
    state.apply(_event(T0 + 100 * i, f"t{i}", completion=i / 7, like=1.0))
  back = listener_state.ListenerState.from_json(state.to_json())
  assert back == state
  assert listener_state.ListenerState.from_json(
      listener_state.ListenerState("new").to_json()) == listener_state.ListenerState("new")
