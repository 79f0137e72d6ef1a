"""``melody live``: the digital twin of the listeners running Melody's whole loop.

This module owns the day-by-day driver. Day 0 bootstraps: the twin's listeners play a
simulated history under the logging policy, the scheduled pipeline trains on it, and
the pushed model is served as ``stable``. Then each day the real processes run
(``simulation.live_stack``: `melody serve`, `melody nearline`, `melody gateway` with the
experiment split and the controller's override file); the listeners who come that day
call the gateway over gRPC and play its answers (``simulation.live_day``), their
events (with a few bad lines) go to the log the nearline updater tails; at the end of
the day the canary's sequential test decides, the controller adjusts promotion
(``simulation.live_experiment``), the scheduled pipeline trains a candidate on the
logged days (``simulation.live_pipeline``) and a pushed one becomes the next
``canary``, and the day's report (Markdown + PNG) is written. ``WORKDIR/live.json``
holds the loop's state and one summary row per day.
"""

import collections
import dataclasses
import json
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from online import experiment_report
from online import promo_controller
from ranking.fusion import policy_file
from serving import model_config
from simulation import live_accounting
from simulation import live_day
from simulation import live_drill
from simulation import live_experiment
from simulation import live_pipeline
from simulation import live_stack
from simulation import live_taste
from simulation import world as world_lib
from simulation import world_config
from simulation.event_log import to_event_table
from simulation.world_config import DAY_S, DEFAULT_START_TS


@dataclasses.dataclass(frozen=True)
class LiveConfig:
  """A live run.

  Attributes:
    users: Listeners of the twin.
    days: Live days after the bootstrap.
    workdir: Where everything is written.
    seed: World and listener seed.
    tracks: Catalogue size.
    history_days: Days of simulated history the first model trains on.
    canary_share: Share of listeners on the canary arm.
    day: How each day's traffic runs.
    training: How small each day's pipeline run is.
    test: The canary test's settings.
    outage_day: A day whose model server is killed when half of its calls are answered
      and restarted (a drill; 0: none).
    nearline_crash_day: A day whose nearline updater is killed while it applies the
      day's log and restarted (a drill; 0: none).
    restart_day: A day whose model server and then gateway are stopped when half of
      its calls are answered and started again (a drill; 0: none). Every day's row
      accounts for its events (``simulation.live_accounting``).
    bad_candidate_day: A day after whose traffic a model trained on the day's plays with
      corrupted labels is forced to canary (a drill, ``simulation.live_drill``; 0: none).
    bad_candidate_kind: The drill's label fault, one of ``live_drill.KINDS``.
    taste_change: From its day on, one segment's listeners dislike promotions
      (``simulation.live_taste``; None: no change).
    completion_floor: The promo controller's completion floor (every segment).
    policy: A ``policy.json`` the gateway serves (its weights go with every request
      that the controller's override does not cover) and whose segment rows are the
      controller's base weights; "": the model's weight table.
    stable_model: A serving directory another run pushed to (e.g. `make demo`'s
      pipeline) whose newest version is served as the first ``stable`` in place of the
      bootstrap's pipeline run; its catalogue must be this world's (same ``tracks`` and
      ``seed`` as the data it was trained on). "": the bootstrap trains one.
    last_day_run: Whether the last day ends with its pipeline run. Its candidate would
      first be heard the day after the run ends, so a short run (the demo's) skips it.
  """
  users: int = 1000
  days: int = 5
  workdir: str = "runs/live"
  seed: int = 7
  tracks: int = 1500
  history_days: int = 1
  canary_share: float = 0.1
  day: live_day.DayOptions = live_day.DayOptions()
  training: live_pipeline.TrainingOptions = live_pipeline.TrainingOptions()
  test: live_experiment.TestSettings = live_experiment.TestSettings()
  outage_day: int = 0
  nearline_crash_day: int = 0
  restart_day: int = 0
  bad_candidate_day: int = 0
  bad_candidate_kind: str = "inverted"
  taste_change: Optional[live_taste.TasteChange] = None
  completion_floor: float = promo_controller.ControllerConfig.completion_floor
  policy: str = ""
  stable_model: str = ""
  last_day_run: bool = True

  def __post_init__(self):
    for name in ("users", "days", "tracks", "history_days"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if not 0.0 < self.canary_share < 1.0:
      raise ValueError(f"canary_share must be in (0, 1), got {self.canary_share}")
    if not 0.0 < self.completion_floor < 1.0:
      raise ValueError(f"completion_floor must be in (0, 1), got {self.completion_floor}")
    if self.policy:
      policy_file.load(self.policy)   # a bad file stops the run before the bootstrap
    if self.bad_candidate_kind not in live_drill.KINDS:
      raise ValueError(f"bad_candidate_kind must be one of {live_drill.KINDS}, "
                       f"got {self.bad_candidate_kind!r}")


def _log(msg: str) -> None:
  print(f"[live] {msg}", file=sys.stderr, flush=True)


class LiveLoop:
  """The run's paths, world, listeners and experiment.

  Args:
    config: The run.
  """

  def __init__(self, config: LiveConfig):
    self.config = config
    w = os.path.abspath(config.workdir)
    self.paths = {name: os.path.join(w, name) for name in (
        "logged", "data", "pipeline", "reports", "events", "logs")}
    self.tracks_path = os.path.join(w, "tracks.parquet")
    self.stack_paths = live_stack.StackPaths(
        models_config=os.path.join(w, "models.config"), events_dir=self.paths["events"],
        store=os.path.join(w, "state.db"),
        weights_override=os.path.join(w, "weights_override.json"),
        logs_dir=self.paths["logs"])
    self.summary_path = os.path.join(w, "live.json")
    self.world = world_lib.World(world_config.WorldConfig(n_tracks=config.tracks),
                                 seed=config.seed)
    self.rows: List[Dict[str, object]] = []

  @property
  def serving_dir(self) -> str:
    return os.path.join(self.paths["pipeline"], "serving_model")

  def day_start(self, day: int) -> int:
    """Midnight of live day ``day`` (1-based; the history holds the days before)."""
    return DEFAULT_START_TS + (self.config.history_days + day - 1) * DAY_S

  def bootstrap(self):
    """Simulated history -> first pipeline run -> the pushed model as ``stable``.

    Returns:
      (the listeners after the history, who comes on day 1, the stable version).

    Raises:
      RuntimeError: the first run pushed no model.
    """
    c = self.config
    t0 = time.perf_counter()
    rng = np.random.default_rng(np.random.SeedSequence([c.seed, 23, 0]))
    listeners = self.world.sample_users(c.users, rng)
    cols = self.world.simulate(listeners, c.history_days, DEFAULT_START_TS, rng)
    table = to_event_table(self.world.catalog, listeners, cols)
    os.makedirs(os.path.dirname(self.tracks_path), exist_ok=True)
    # The whole catalogue, as `melody data generate` writes it: with the promotion flags
    # (and exposure values), so the served model knows which tracks are promoted.
    self.world.tracks.reset_index(drop=True).to_parquet(self.tracks_path)
    live_pipeline.write_table(self.paths["logged"], "day-000-history", table)
    # The history seeds the listener state store through the same log the updater tails.
    os.makedirs(self.paths["events"], exist_ok=True)
    rows = table.to_pylist()
    live_day.write_log(live_day.day_log_path(self.paths["events"], 0), rows, 0.0, rng)
    _log(f"bootstrap: {c.users} listeners, {c.history_days} days of history, "
         f"{len(rows):,} plays ({time.perf_counter() - t0:.0f}s)")
    if c.stable_model:
      version = live_pipeline.adopt_version(c.stable_model, self.serving_dir)
      note = f"version {version} of {c.stable_model}"
    else:
      live_pipeline.build_spans(self.paths["logged"], self.tracks_path,
                                self.paths["data"], c.training)
      last_span = live_pipeline.span_of(self.day_start(1) - 1)
      note = live_pipeline.train_candidate(self.paths["data"], self.paths["pipeline"],
                                           last_span, c.training).note
    pushed = live_pipeline.versions(self.serving_dir)
    if not pushed:
      raise RuntimeError(f"the bootstrap run pushed no model: {note}")
    _log(f"bootstrap: stable version {pushed[-1]} ({note}; "
         f"{time.perf_counter() - t0:.0f}s)")
    active = rng.random(c.users) < self.world.return_probability(listeners)
    return listeners, active, pushed[-1]

  def _build_spans(self) -> None:
    live_pipeline.build_spans(self.paths["logged"], self.tracks_path, self.paths["data"],
                              self.config.training)

  def _save(self, experiment: live_experiment.Experiment) -> None:
    state = {"config": dataclasses.asdict(self.config), "labels": experiment.entry.labels,
             "days": self.rows, "decisions": experiment.decisions,
             "actions": experiment.actions}
    tmp = self.summary_path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
      json.dump(state, f, indent=1, default=str)
    os.replace(tmp, self.summary_path)

  def _midday(self, stack: live_stack.LiveStack, day: int):
    """The drill run halfway through day ``day``'s calls, if any."""
    if day == self.config.outage_day:
      return lambda: _restart(stack, "server", kill=True)
    if day == self.config.restart_day:
      return lambda: _restart_server_and_gateway(stack)
    return None

  def _bad_candidate(self, day: int, events, experiment: live_experiment.Experiment,
                     rng: np.random.Generator) -> Dict[str, object]:
    """The drill: a model trained on the day's plays with corrupted labels, forced to
    canary (replacing a canary on trial); returns what happened."""
    t0 = time.perf_counter()
    bad = live_drill.train_bad_candidate(
        events, os.path.join(os.path.dirname(self.summary_path), "drill"), self.tracks_path,
        self.serving_dir, live_pipeline.span_of(self.day_start(day)), self.config.training,
        rng, kind=self.config.bad_candidate_kind)
    record = {"kind": self.config.bad_candidate_kind, "version": bad.version,
              "blessed": bad.blessed, "note": bad.note, "replaced_canary": None,
              "seconds": round(time.perf_counter() - t0, 1)}
    if bad.version is not None:
      record["replaced_canary"] = experiment.force_canary(bad.version)
    _log(f"drill: bad candidate: {bad.note}; labels {experiment.entry.labels}")
    return record

  def run(self) -> Dict[str, object]:
    """Bootstraps, then runs every live day; returns the summary written to live.json."""
    c = self.config
    t_start = time.perf_counter()
    listeners, active, stable = self.bootstrap()
    entry = live_experiment.stable_entry(self.serving_dir, stable)
    controller = promo_controller.PromoController(
        promo_controller.ControllerConfig(completion_floor=c.completion_floor),
        base_weights(c.policy))
    experiment = live_experiment.Experiment(entry, self.stack_paths.models_config, None,
                                            c.test, controller)
    model_config.write_model_config(self.stack_paths.models_config, [entry])
    settings = live_stack.GatewaySettings(canary_share=c.canary_share,
                                          policy=os.path.abspath(c.policy) if c.policy
                                          else "")
    with live_stack.LiveStack(self.stack_paths, settings) as stack:
      stack.start_all()
      experiment.server_target = stack.server_target
      live_stack.wait_applied(self.stack_paths.store, self.paths["events"])
      duplicates_seen = stack.nearline_counts().get("duplicate", 0.0)
      user_ids = list(listeners.user_ids())
      for day in range(1, c.days + 1):
        counted_before = live_accounting.plays_by_day(self.stack_paths.store, user_ids)
        nearline_before = stack.nearline_counts()
        t_day = time.perf_counter()
        rng = np.random.default_rng(np.random.SeedSequence([c.seed, 23, day]))
        log_path = live_day.day_log_path(self.paths["events"], day)
        disliking = (live_taste.apply(c.taste_change, self.world, listeners, day)
                     if c.taste_change else 0)
        if disliking:
          _log(f"day {day}: {disliking} {c.taste_change.segment} listeners dislike "
               "promotions")
        result = live_day.run_day(
            self.world, listeners, active, day, self.day_start(day), stack.gateway_target,
            log_path, rng, c.day,
            progress=lambda done, n: _log(f"day {day}: {done}/{n} sessions"),
            midday=self._midday(stack, day))
        active = result.tomorrow
        if day == c.nearline_crash_day:
          # Killed while it applies the day's log: the restarted updater must apply every
          # line exactly once from the offsets of its last committed batch.
          time.sleep(1.5)
          _restart(stack, "nearline", kill=True)
          duplicates_seen = 0.0
        caught_up = live_stack.wait_applied(self.stack_paths.store, self.paths["events"])
        counts = stack.nearline_counts()
        duplicates = counts.get("duplicate", 0.0) - duplicates_seen
        duplicates_seen = counts.get("duplicate", duplicates_seen)
        name = os.path.basename(log_path)
        quarantined = live_stack.quarantined(self.stack_paths.store, name)
        bad = experiment_report.bad_event_counts(quarantined, int(duplicates))
        accounting = live_accounting.account(
            result.events_by_source, result.requests, result.bad_lines,
            collections.Counter(q.reason for q in quarantined),
            live_accounting.held_events(self.stack_paths.store, result.events),
            live_accounting.counted_events(
                counted_before,
                live_accounting.plays_by_day(self.stack_paths.store, user_ids),
                result.events),
            None if day == c.nearline_crash_day else
            live_accounting.counter_delta(nearline_before, counts))
        decision = experiment.observe_day(day, result.events, result.requests)
        actions = experiment.control(day, result.events, self.stack_paths.weights_override)
        # The decisions are on disk before the day's (long) training starts.
        self._save(experiment)
        t_train = time.perf_counter()
        span = live_pipeline.span_of(self.day_start(day))
        live_pipeline.write_events(self.paths["logged"], f"day-{day:03d}", result.events)
        drill = None
        if day == c.days and not c.last_day_run:
          run = live_pipeline.CandidateRun(span, None, "not run (the run's last day)")
        elif day == c.bad_candidate_day:
          # The drill's model is the day's candidate: a regular one would be replaced
          # before anyone heard it.
          drill = self._bad_candidate(day, result.events, experiment, rng)
          run = live_pipeline.CandidateRun(span, None, "the drill's model instead")
        else:
          self._build_spans()
          run = live_pipeline.train_candidate(self.paths["data"], self.paths["pipeline"],
                                              span, c.training.warm())
        pushed = run.pushed_version is not None and experiment.push_canary(run.pushed_version)
        train_s = time.perf_counter() - t_train
        report = experiment_report.write_report(
            self.paths["reports"], result.events, result.requests,
            [decision] if decision else [], actions, name=f"day-{day:02d}",
            title=f"Live day {day}", bad_events=bad)
        row = {"day": day, "sessions": result.sessions, "plays": len(result.events),
               "traffic_s": round(result.seconds, 1),
               "sessions_per_s": round(result.sessions / max(result.seconds, 1e-9), 1),
               "bad_lines_written": result.bad_lines, "bad_events": bad,
               "nearline_caught_up": caught_up,
               "fallbacks": sum(r["source"] == "fallback_popularity"
                                for r in result.requests),
               "errors": sum(r["code"] != "OK" for r in result.requests),
               "drill": ("model server outage" if day == c.outage_day else
                         "nearline crash" if day == c.nearline_crash_day else
                         "server and gateway restart" if day == c.restart_day else None),
               "accounting": accounting,
               "bad_candidate": drill,
               "promo_dislike": ({"segment": c.taste_change.segment,
                                  "listeners": disliking} if disliking else None),
               "decision": decision["action"] if decision else None,
               "controller_actions": len(actions), "candidate": run.pushed_version,
               "candidate_note": run.note, "canary_pushed": pushed,
               "labels": dict(experiment.entry.labels), "train_s": round(train_s, 1),
               "day_s": round(time.perf_counter() - t_day, 1), "report": report["markdown"]}
        self.rows.append(row)
        self._save(experiment)
        elapsed = time.perf_counter() - t_start
        eta = (time.perf_counter() - t_day) * (c.days - day)
        _log(f"day {day}/{c.days}: {result.sessions} sessions at "
             f"{row['sessions_per_s']}/s, decision {row['decision']}, labels "
             f"{row['labels']}, candidate {run.note}; {elapsed:.0f}s so far, "
             f"ETA {eta:.0f}s")
    summary = {"wall_s": round(time.perf_counter() - t_start, 1), "days": self.rows,
               "decisions": experiment.decisions, "actions": experiment.actions}
    self._save(experiment)
    return summary


def _restart_server_and_gateway(stack: live_stack.LiveStack) -> None:
  _restart(stack, "server", kill=False)
  _restart(stack, "gateway", kill=False)


def base_weights(policy_path: str) -> Optional[Dict[str, Tuple[float, float, float]]]:
  """The promo controller's base ``segment -> (alpha, beta, gamma)``: the policy's
  segment rows as a request would get them (None without a policy: the fusion spec's
  table, which the model holds). A lowered segment gets its scaled row for every
  activity, in place of the policy's context rows."""
  if not policy_path:
    return None
  policy = policy_file.load(policy_path)
  zero_beta = policy.fusion.zero_beta_segments
  return {s: (a, 0.0 if s in zero_beta else b, g)
          for s, (a, b, g) in policy.fusion.segment_weights}


def _restart(stack: live_stack.LiveStack, name: str, kill: bool) -> None:
  _log(f"drill: {'killing' if kill else 'stopping'} {name}, then starting it again")
  stack.stop(name, kill=kill)
  stack.start(name)


def run(config: LiveConfig) -> int:
  """Runs the loop and prints where its reports are; returns the exit code."""
  summary = LiveLoop(config).run()
  _log(f"done in {summary['wall_s']}s; reports under "
       f"{os.path.join(os.path.abspath(config.workdir), 'reports')}")
  return 0


def config_from_args(args) -> LiveConfig:
  """The ``LiveConfig`` of parsed ``melody live`` flags."""
  return LiveConfig(
      users=args.users, days=args.days, workdir=args.workdir, seed=args.seed,
      tracks=args.tracks, history_days=args.history_days, canary_share=args.canary_share,
      day=live_day.DayOptions(bad_fraction=args.bad_fraction,
                              sessions=args.sessions_per_day),
      training=live_pipeline.TrainingOptions(steps=args.steps, warm_steps=args.warm_steps,
                                             window_days=args.window_days),
      test=live_experiment.TestSettings(min_samples=args.min_samples),
      outage_day=args.outage_day, nearline_crash_day=args.nearline_crash_day,
      restart_day=args.restart_day,
      bad_candidate_day=args.bad_candidate_day,
      bad_candidate_kind=args.bad_candidate_kind,
      taste_change=(live_taste.TasteChange(args.promo_dislike_day,
                                           args.promo_dislike_segment,
                                           args.promo_dislike_cost)
                    if args.promo_dislike_day else None),
      completion_floor=args.completion_floor, policy=args.policy, stable_model=args.stable_model,
      last_day_run=not args.no_last_day_run)
