"""Tests of the promo controller (online.promo_controller) reacting to an injected drop of
one segment's completion, and of the gateway applying its override per request."""

import argparse

import numpy as np
import pytest

from online import gateway
from online import gateway_client
from online import gateway_main
from online import gateway_metrics
from online import gateway_server
from online import model_caller
from online import promo_controller
from online import stores
from ranking.fusion import spec

SEGMENTS = ("new", "free", "free_veteran", "trial", "paid")
CHANGE_AT, CHANGE_END, WINDOWS = 10, 30, 60
SESSIONS = 400


def _window_completion(rng, window, controller):
  """One window of sessions. From CHANGE_AT to CHANGE_END, ``free`` listeners dislike
  promotion: their completion falls by 0.2 times the share of promotion in force."""
  out = {}
  for segment in SEGMENTS:
    mean = 0.55
    if segment == "free" and CHANGE_AT <= window < CHANGE_END:
      mean -= 0.2 * controller.scale(segment)
    out[segment] = (SESSIONS, float(rng.beta(8 * mean, 8 * (1 - mean), SESSIONS).mean()))
  return out


@pytest.fixture(scope="module")
def run():
  config = promo_controller.ControllerConfig()
  controller = promo_controller.PromoController(config)
  rng = np.random.default_rng(23)
  scales = []
  for window in range(WINDOWS):
    controller.observe(window, _window_completion(rng, window, controller))
    scales.append(controller.scale("free"))
  return controller, scales


def test_it_lowers_promotion_within_one_window_of_the_drop(run):
  controller, scales = run
  first = controller.actions[0]
  assert (first.window, first.segment, first.kind) == (CHANGE_AT, "free", "lower")
  assert first.completion < first.floor == 0.45
  assert first.sessions == SESSIONS
  assert (first.scale_before, first.scale_after) == (1.0, 0.75)
  base_alpha, base_beta, base_gamma = dict(spec.DEFAULT_SEGMENT_WEIGHTS)["free"]
  assert first.weights == pytest.approx((base_alpha + 0.25 * base_gamma, base_beta,
                                         0.75 * base_gamma))
  assert first.promo_share == pytest.approx(0.15)
  assert all(s == 1.0 for s in scales[:CHANGE_AT])
  # Completion is back at the floor (0.55 - 0.2 * scale >= 0.45) after two steps, one
  # cooldown apart; while the segment still dislikes promotion, it is not given back.
  reached = CHANGE_AT + controller.config.cooldown_windows + 1
  assert scales[reached] == pytest.approx(0.5)
  assert max(scales[reached:CHANGE_END]) <= 0.5 + controller.config.step_up + 1e-9


def test_it_respects_the_cooldown_and_the_bounds(run):
  controller, scales = run
  config = controller.config
  windows = [a.window for a in controller.actions]
  assert all(b - a > config.cooldown_windows for a, b in zip(windows, windows[1:]))
  assert all(config.min_scale <= s <= 1.0 for s in scales)
  for a in controller.actions:
    step = config.step_down if a.kind == "lower" else config.step_up
    assert abs(a.scale_after - a.scale_before) <= step + 1e-12
    assert sum(a.weights) == pytest.approx(sum(dict(spec.DEFAULT_SEGMENT_WEIGHTS)["free"]))


def test_it_restores_slowly_after_recovery_and_leaves_other_segments_alone(run):
  controller, scales = run
  assert {a.segment for a in controller.actions} == {"free"}
  config = controller.config
  restores = [a for a in controller.actions if a.kind == "restore" and a.window >= CHANGE_END]
  # Back up by step_up per action, one cooldown apart, to the base and no further.
  steps = int(np.ceil((1.0 - scales[CHANGE_END - 1]) / config.step_up - 1e-9))
  assert len(restores) == steps >= 4
  assert [b.window - a.window for a, b in zip(restores, restores[1:])] == (
      [config.cooldown_windows + 1] * (steps - 1))
  assert scales[-1] == 1.0 and controller.override().segments == {}


def test_thin_windows_and_bounds_hold_at_the_floor():
  config = promo_controller.ControllerConfig(cooldown_windows=0, min_sessions=100)
  controller = promo_controller.PromoController(config)
  assert controller.observe(0, {"paid": (99, 0.1)}) == []
  for window in range(1, 10):
    controller.observe(window, {"paid": (500, 0.1)})
  assert controller.scale("paid") == config.min_scale
  assert len(controller.actions) == 3   # 1 -> 0.75 -> 0.5 -> 0.25, then no further.
  with pytest.raises(ValueError, match="segment 'vip'"):
    controller.observe(10, {"vip": (500, 0.1)})
  with pytest.raises(ValueError, match="step_down"):
    promo_controller.ControllerConfig(step_down=0.0)


def test_the_override_round_trips_through_its_file(tmp_path):
  controller = promo_controller.PromoController(
      promo_controller.ControllerConfig(segment_floors=(("trial", 0.6),)))
  controller.observe(0, {"trial": (500, 0.55), "free": (500, 0.55)})
  override = controller.override()
  assert set(override.segments) == {"trial"}
  path = str(tmp_path / "override.json")
  override.write(path)
  with open(path, encoding="utf-8") as f:
    again = promo_controller.WeightsOverride.from_json(f.read())
  assert again == override
  assert again.weights_for("free") is None
  assert again.weights_for("trial") == pytest.approx([0.64, 0.30, 0.06])


def test_the_gateway_applies_the_override_per_request(style_model_server, tmp_path):
  controller = promo_controller.PromoController()
  controller.observe(0, {"new": (500, 0.1)})
  metrics = gateway_metrics.GatewayMetrics()
  with stores.open_store(str(tmp_path / "state.db")) as store:
    gw = gateway.Gateway(store, model_caller.ModelCaller(style_model_server.target,
                                                         deadline_s=20.0), metrics)
    with gateway_server.GatewayServer(gw, gateway_server.PortOptions(http_port=None)) as srv:
      with gateway_client.GatewayClient(srv.grpc_target) as client:
        before = client.recommend(user_id="u1", k=3).weights
        gw.overrides = controller.override()
        after = client.recommend(user_id="u1", k=3).weights
        own = client.recommend(user_id="u1", k=3,
                               weights_override=(1.0, 0.0, 0.0)).weights
  # The style model's own table is (1.0, 0.2, 0.1); a cold start is segment "new".
  assert (before.alpha, before.beta, before.gamma) == pytest.approx((1.0, 0.2, 0.1))
  assert (after.alpha, after.beta, after.gamma) == pytest.approx(
      controller.override().weights_for("new"), abs=1e-6)
  assert (own.alpha, own.beta, own.gamma) == (1.0, 0.0, 0.0)


def test_the_override_file_is_reread_when_it_changes(tmp_path):
  path = str(tmp_path / "override.json")
  now = [0.0]
  watched = promo_controller.OverrideFile(path, check_seconds=1.0, clock=lambda: now[0])
  assert watched.weights_for("free") is None           # No file: no override.
  controller = promo_controller.PromoController(promo_controller.ControllerConfig(
      cooldown_windows=0))
  controller.observe(0, {"free": (500, 0.1)})
  controller.override().write(path)
  assert watched.weights_for("free") is None           # Not checked again yet.
  now[0] = 1.0
  assert watched.weights_for("free") == controller.override().weights_for("free")
  controller.observe(1, {"free": (500, 0.1)})
  controller.override().write(path)
  now[0] = 2.0
  assert watched.current() == controller.override()
  with open(path, "w", encoding="utf-8") as f:
    f.write("{not json")
  now[0] = 3.0
  assert watched.current() == controller.override()    # The last good one stays.
  (tmp_path / "override.json").unlink()
  now[0] = 4.0
  assert watched.current().segments == {}


def test_melody_gateway_reads_the_override_file_by_flag(tmp_path):
  parser = argparse.ArgumentParser()
  gateway_main.add_gateway_arguments(parser)
  path = str(tmp_path / "override.json")
  server, store = gateway_main.build(parser.parse_args(
      ["--store", str(tmp_path / "state.db"), "--weights-override", path]))
  assert isinstance(server.gateway.overrides, promo_controller.OverrideFile)
  assert server.gateway.overrides.path == path
  server.gateway.model.close()
  store.close()
