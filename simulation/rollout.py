"""Policy rollouts: run any ``Policy`` against the world for M listeners x D days.

This module owns the rollout loop and its bookkeeping. Each day, every listener who
came back draws ``sessions_per_day`` session contexts; per session the candidate pool
draws a list, the policy ranks it, ``World.play_slate`` plays the top ``slate_len``
tracks as one session (session mode, skip momentum, drift, promo fatigue and
conversions build up along the list; a listener who gives up plays no further, and
only played tracks count as impressions), the policy gets
per-listener feedback, and at the end of the day ``World.end_day`` updates engagement,
fatigue, tenure and segments and draws who returns tomorrow. Outcomes are summed per
(day, segment, activity): impressions, completion, skips, listening minutes, likes,
promo impressions, exposure, conversions (realized and expected), promo fatigue,
active listeners and next-day returns.

Listeners are processed in chunks with their own seeded streams
(``SeedSequence([seed, chunk, day, stream])``), so the numbers depend only on the
seed and ``chunk_users``; stateless policies can run each chunk in its own Beam
worker (:func:`rollout_beam`: Beam's local runner, Dask through Beam's DaskRunner on a
local cluster or a scheduler's address, or Dataflow/Flink by Beam flags) and give the
same totals as the in-process loop.
"""

import dataclasses
import io
import tempfile
import uuid
from typing import Dict, List, Optional

import numpy as np

from features import dask_engine
from features import feature_spec
from simulation import policies
from simulation import slates as slates_lib
from simulation.world import World
from simulation.world_config import DAY_S, DEFAULT_START_TS, SIM_ACTIVITIES

# ``melody simulate --runner`` values that run rollouts as Beam jobs, with their runner.
BEAM_RUNNERS = {"beam": "DirectRunner", "dask": dask_engine.DASK_RUNNER}
# Summed outcome columns of the [day, segment, activity, metric] cube.
METRICS = ("impressions", "completion", "skips", "minutes", "likes", "promo_impressions",
           "exposure", "conversions", "expected_conversions", "fatigue", "sessions",
           "reward", "expected_reward", "active", "returned")
_M = {name: i for i, name in enumerate(METRICS)}
N_SEG, N_ACT = len(feature_spec.SEGMENTS), len(SIM_ACTIVITIES)


@dataclasses.dataclass(frozen=True)
class Objective:
  """Scalar reward of a played slate: what the business maximizes per session.

  ``reward = interest * sum(completion) + subscription * conversions
  + exposure * sum(exposure)``: by default a conversion is worth 200 fully completed
  plays and one unit of promo exposure value (what labels pay for) 1.5 completed plays.
  ``expected_reward`` swaps realized conversions for the impressions' conversion
  hazards (same mean, far less noise): reports and regret curves use it, learning
  policies only ever see the realized reward.

  Attributes:
    interest, subscription, exposure: the three prices (finite, >= 0).
  """
  interest: float = 1.0
  subscription: float = 200.0
  exposure: float = 1.5

  def __post_init__(self):
    for name in ("interest", "subscription", "exposure"):
      v = getattr(self, name)
      if not (np.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {v}")

  def reward(self, completion, conversions, exposure):
    return (self.interest * completion + self.subscription * conversions
            + self.exposure * exposure)


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
  """Size and shape of a rollout.

  Attributes:
    users: listeners M.
    days: days D.
    seed: seed of listeners, contexts, candidates and outcomes.
    slate_len: tracks played per session.
    sessions_per_day: sessions of an active listener per day.
    chunk_users: listeners per chunk (numbers depend on it; keep it fixed).
    candidates: candidate counts per source.
    objective: the per-session reward (fed to learning policies, reported).
    start_ts: epoch seconds of the first day's midnight.
    keep_history: maintain recent plays (needed by model policies).
  """
  users: int = 10_000
  days: int = 7
  seed: int = 0
  slate_len: int = 10
  sessions_per_day: int = 1
  chunk_users: int = 10_000
  candidates: slates_lib.CandidateConfig = slates_lib.CandidateConfig()
  objective: Objective = Objective()
  start_ts: int = DEFAULT_START_TS
  keep_history: bool = True

  def __post_init__(self):
    for name in ("users", "days", "slate_len", "sessions_per_day", "chunk_users"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.slate_len > self.candidates.size:
      raise ValueError(f"slate_len={self.slate_len} exceeds the candidate list "
                       f"({self.candidates.size})")


@dataclasses.dataclass
class RolloutResult:
  """Outcome cube ``[days, segments, activities, METRICS]`` plus per-round rewards.

  Attributes:
    cube: summed outcomes (see ``METRICS``); ``active``/``returned`` count listener-days
      under the activity of the listener's last session that day.
    rounds: per (day, chunk, session) round: ``day``, ``sessions``, ``reward`` and
      ``expected_reward`` (summed), in play order (bandit learning curves).
    policy: the policy's name.
  """
  cube: np.ndarray
  rounds: Dict[str, np.ndarray]
  policy: str = ""

  def totals(self, axis=(0, 1, 2)) -> np.ndarray:
    return self.cube.sum(axis=axis)

  def summary(self, cube: Optional[np.ndarray] = None) -> Dict[str, float]:
    """Rates of a (sub-)cube: the report's numbers."""
    t = (self.cube if cube is None else cube).reshape(-1, len(METRICS)).sum(0)
    imp, ses, act = max(t[_M["impressions"]], 1), max(t[_M["sessions"]], 1), max(
        t[_M["active"]], 1)
    return {
        "impressions": float(t[_M["impressions"]]),
        "sessions": float(t[_M["sessions"]]),
        "completion_rate": float(t[_M["completion"]] / imp),
        "skip_rate": float(t[_M["skips"]] / imp),
        "minutes_per_session": float(t[_M["minutes"]] / ses),
        "like_rate": float(t[_M["likes"]] / imp),
        "return_rate": float(t[_M["returned"]] / act),
        "conversions": float(t[_M["conversions"]]),
        "conversions_per_1k_sessions": float(1000 * t[_M["conversions"]] / ses),
        "expected_conversions_per_1k_sessions": float(
            1000 * t[_M["expected_conversions"]] / ses),
        "promo_share": float(t[_M["promo_impressions"]] / imp),
        "exposure_per_session": float(t[_M["exposure"]] / ses),
        "fatigue": float(t[_M["fatigue"]] / ses),
        "reward_per_session": float(t[_M["reward"]] / ses),
        "expected_reward_per_session": float(t[_M["expected_reward"]] / ses),
    }

  def by_segment(self) -> Dict[str, Dict[str, float]]:
    return {name: self.summary(self.cube[:, i]) for i, name in enumerate(feature_spec.SEGMENTS)
            if self.cube[:, i, :, _M["sessions"]].sum() > 0}

  def by_activity(self) -> Dict[str, Dict[str, float]]:
    return {name: self.summary(self.cube[:, :, i]) for i, name in enumerate(SIM_ACTIVITIES)
            if self.cube[:, :, i, _M["sessions"]].sum() > 0}

  def by_segment_activity(self) -> Dict[str, Dict[str, float]]:
    """Summaries keyed ``"segment/activity"`` (pairs with sessions only)."""
    return {f"{s}/{a}": self.summary(self.cube[:, i, j])
            for i, s in enumerate(feature_spec.SEGMENTS) for j, a in enumerate(SIM_ACTIVITIES)
            if self.cube[:, i, j, _M["sessions"]].sum() > 0}

  def by_day(self) -> List[Dict[str, float]]:
    return [self.summary(self.cube[d]) for d in range(self.cube.shape[0])]


def day_metrics(cube_day: np.ndarray) -> Dict[str, np.ndarray]:
  """Per-segment monitored metrics of one day's ``[segments, activities, METRICS]``."""
  t = cube_day.sum(axis=1)
  imp = t[:, _M["impressions"]]
  return {"impressions": imp,
          "completion_rate": t[:, _M["completion"]] / np.maximum(imp, 1),
          "promo_share": t[:, _M["promo_impressions"]] / np.maximum(imp, 1),
          "reward_per_session": t[:, _M["reward"]] / np.maximum(t[:, _M["sessions"]], 1)}


def _rng(seed, chunk, day, stream):
  return np.random.default_rng(np.random.SeedSequence([seed, chunk, day, stream]))


class _Chunk:
  """Listeners of one chunk, their history and who is active today."""

  def __init__(self, world: World, cfg: RolloutConfig, index: int, first: int, n: int):
    self.index = index
    rng = _rng(cfg.seed, index, 0, 0)
    self.L = world.sample_users(n, rng, start_index=first)
    self.active = rng.random(n) < 1.0 / (1.0 + np.exp(-(self.L.activity + 0.5)))
    h = feature_spec.HISTORY_LEN if cfg.keep_history else 0
    self.history = {"track": np.full((n, h), -1, np.int64),
                    "completion": np.zeros((n, h), np.float32),
                    "skip": np.zeros((n, h), np.float32),
                    "ts": np.zeros((n, h), np.int64),
                    "length": np.zeros(n, np.int64)}


def _push_history(hist, rows, tracks, comp, skip, ts, played):
  """Prepends each row's played plays (a prefix of its slate), most recent first."""
  h = hist["track"].shape[1]
  if not h:
    return
  k = tracks.shape[1]
  n_played = played.sum(1).astype(np.int64)
  # The reversed slate leads with its unplayed tail: shift each row past it.
  take = np.arange(h)[None, :] + (k - n_played)[:, None]
  for key, new in (("track", tracks), ("completion", comp), ("skip", skip), ("ts", ts)):
    both = np.concatenate([new[:, ::-1].astype(hist[key].dtype), hist[key][rows]], axis=1)
    hist[key][rows] = np.take_along_axis(both, take, axis=1)
  hist["length"][rows] = np.minimum(hist["length"][rows] + n_played, h)


def _run_day(world: World, policy: policies.Policy, cfg: RolloutConfig,
             pool: slates_lib.CandidatePool, chunk: _Chunk, day: int, cube: np.ndarray,
             rounds: List[tuple]) -> None:
  """Plays one day of one chunk; adds outcomes to ``cube[day]``."""
  L = chunk.L
  rows = np.flatnonzero(chunk.active)
  day_start = cfg.start_ts + day * DAY_S
  comp_sum = np.zeros(len(L))
  comp_cnt = np.zeros(len(L))
  last_act = np.zeros(len(L), np.int64)
  obj = cfg.objective
  if len(rows):
    sub = L.take(rows)
    for s in range(cfg.sessions_per_day):
      r_ctx = _rng(cfg.seed, chunk.index, day, 10 + 3 * s)
      r_cand = _rng(cfg.seed, chunk.index, day, 11 + 3 * s)
      r_play = _rng(cfg.seed, chunk.index, day, 12 + 3 * s)
      ctx_raw = world.sample_context(len(rows), r_ctx, day_start)
      ctx = policies.Context(activity=ctx_raw["activity"], hour=ctx_raw["hour"],
                        weekday=ctx_raw["weekday"], ts=ctx_raw["ts"],
                        seed=r_ctx.integers(0, 2**31 - 1, len(rows)))
      tracks, valid = pool.draw(sub, r_cand)
      hist = {k: v[rows] for k, v in chunk.history.items()}
      state = policies.ListenerState(world=world, listeners=sub, history=hist, day=day)
      slates = policy.rank(state, policies.Candidates(tracks, valid), ctx)
      played = slates.tracks
      if (played < 0).any():
        raise ValueError(f"policy {policy.name!r} returned short slates")
      seg = sub.segment.astype(np.int64).copy()
      fatigue0 = sub.fatigue.astype(np.float64).copy()
      er = world.expected_response(sub, played, ctx.activity)
      out = world.play_slate(sub, played, ctx.activity, r_play)
      live = out["played"].astype(bool)
      comp = out["completion"]
      dur = world.track_duration[played]
      promo = world.track_promo[played] & live
      conv = out["subscription"].sum(1)
      exp = out["exposure"].sum(1)
      reward = obj.reward(comp.sum(1), conv, exp)
      hazard = (er["conversion_hazard"] * live).sum(1)
      expected = obj.reward(comp.sum(1), hazard, exp)
      policy.feedback(state, ctx, slates, reward)
      key = seg * N_ACT + ctx.activity
      cols = {
          "impressions": live.sum(1).astype(float), "completion": comp.sum(1),
          "skips": out["skip"].sum(1), "minutes": (comp * dur).sum(1) / 60.0,
          "likes": out["like"].sum(1), "promo_impressions": promo.sum(1),
          "exposure": exp, "conversions": conv,
          "expected_conversions": hazard, "fatigue": fatigue0,
          "sessions": np.ones(len(rows)), "reward": reward, "expected_reward": expected}
      flat = cube[day].reshape(N_SEG * N_ACT, len(METRICS))
      for name, v in cols.items():
        flat[:, _M[name]] += np.bincount(key, weights=v, minlength=N_SEG * N_ACT)
      rounds.append((day, len(rows), float(reward.sum()), float(expected.sum())))
      comp_sum[rows] += comp.sum(1)
      comp_cnt[rows] += live.sum(1)
      last_act[rows] = ctx.activity
      ts = ctx.ts[:, None] + np.cumsum(comp * dur, axis=1).astype(np.int64)
      _push_history(chunk.history, rows, played, comp, out["skip"], ts, live)
    L.fatigue[rows] = sub.fatigue
    L.converted[rows] = sub.converted
  seg_before = L.segment.astype(np.int64).copy()
  mean = np.where(comp_cnt > 0, comp_sum / np.maximum(comp_cnt, 1), np.nan)
  back = world.end_day(L, mean, chunk.active, _rng(cfg.seed, chunk.index, day, 2))
  key = seg_before[rows] * N_ACT + last_act[rows]
  flat = cube[day].reshape(N_SEG * N_ACT, len(METRICS))
  flat[:, _M["active"]] += np.bincount(key, minlength=N_SEG * N_ACT)
  flat[:, _M["returned"]] += np.bincount(key, weights=back[rows].astype(float),
                                         minlength=N_SEG * N_ACT)
  chunk.active = back


def _chunks(cfg: RolloutConfig):
  return [(i, first, min(cfg.chunk_users, cfg.users - first))
          for i, first in enumerate(range(0, cfg.users, cfg.chunk_users))]


def rollout(world: World, policy: policies.Policy, config: RolloutConfig = RolloutConfig(),
            chunks: Optional[List[int]] = None) -> RolloutResult:
  """Runs ``policy`` for ``config.users`` listeners x ``config.days`` days in-process.

  Days are the outer loop, so learning policies update across all listeners of a day
  before the next day and ``Policy.end_day`` sees the day's per-segment metrics.

  Args:
    world: the world (ground truth).
    policy: the policy.
    config: rollout size, seed, slate and candidate shape, objective.
    chunks: optional subset of chunk numbers to run (Beam workers run one each).

  Returns:
    A :class:`RolloutResult`.
  """
  if not isinstance(policy, policies.Policy):
    raise ValueError(f"policy must be a simulation.policies.Policy, got {policy!r}")
  pool = slates_lib.CandidatePool(world, config.candidates)
  specs = _chunks(config)
  if chunks is not None:
    specs = [specs[i] for i in chunks]
  states = [_Chunk(world, config, i, first, n) for i, first, n in specs]
  cube = np.zeros((config.days, N_SEG, N_ACT, len(METRICS)))
  rounds: List[tuple] = []
  for day in range(config.days):
    for chunk in states:
      _run_day(world, policy, config, pool, chunk, day, cube, rounds)
    policy.end_day(day, day_metrics(cube[day]))
  r = np.array(rounds, np.float64).reshape(-1, 4)
  return RolloutResult(cube=cube, rounds={"day": r[:, 0].astype(np.int64),
                                          "sessions": r[:, 1], "reward": r[:, 2],
                                          "expected_reward": r[:, 3]},
                       policy=policy.name)


def _save(indexed_cubes, path):
  # Summed in chunk order, so the totals are the same bits on every runner whatever
  # order its workers finish in.
  cube = np.sum(np.stack([c for _, c in sorted(indexed_cubes, key=lambda ic: ic[0])]), axis=0)
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  with FileSystems.create(path) as f:
    np.save(f, cube)


def _load(path):
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=import-outside-toplevel
  with FileSystems.open(path) as f:
    return np.load(io.BytesIO(f.read()))


def _result_dir(beam_args: List[str], tmp: str) -> str:
  # Workers of a remote cluster cannot write to this machine's temp dir; the job's
  # --temp_location (an object store) is where they can.
  locations = [a.split("=", 1)[1] for a in beam_args if a.startswith("--temp_location=")]
  return f"{locations[-1].rstrip('/')}/melody-rollout-{uuid.uuid4().hex}" if locations else tmp


def rollout_beam(world_seed: int, world_config, policy_factory, config: RolloutConfig,
                 beam_args: Optional[List[str]] = None, runner: str = "DirectRunner",
                 dask_workers: int = dask_engine.DEFAULT_LOCAL_WORKERS) -> RolloutResult:
  """The same rollout with one Beam element per listener chunk.

  Only stateless policies can be split this way (a learning policy needs every
  listener's feedback in one process); the totals equal :func:`rollout`'s.

  Args:
    world_seed, world_config: how each worker rebuilds the world (seeded, so identical).
    policy_factory: picklable zero-argument callable returning the policy.
    config: the rollout config.
    beam_args: more pipeline options (e.g. ``["--project=P", "--region=R"]``, or
      ``--dask_client_address=HOST:8786`` for a running Dask cluster).
    runner: DirectRunner (in-process), DaskRunner (``features.dask_engine``: a local
      cluster of ``dask_workers`` processes unless ``beam_args`` name a scheduler),
      DataflowRunner, FlinkRunner, ... .
    dask_workers: worker processes of the local Dask cluster.

  Returns:
    A :class:`RolloutResult` (``rounds`` empty: per-round order is not defined).
  """
  import apache_beam as beam  # pylint: disable=import-outside-toplevel
  from features import examples_beam  # pylint: disable=import-outside-toplevel

  probe = policy_factory()
  if probe.stateful:
    raise ValueError(f"policy {probe.name!r} learns across listeners; use rollout()")
  n_chunks = len(_chunks(config))

  class _RunChunk(beam.DoFn):

    def setup(self):
      self.world = World(world_config, seed=world_seed)
      self.policy = policy_factory()

    def process(self, index):
      yield index, rollout(self.world, self.policy, config, chunks=[index]).cube

  with tempfile.TemporaryDirectory() as tmp, \
      dask_engine.beam_args_for(runner, beam_args or [], dask_workers) as args:
    path = f"{_result_dir(args, tmp)}/cube.npy"
    p = beam.Pipeline(options=examples_beam.pipeline_options(runner, args))
    _ = (p | beam.Create(list(range(n_chunks)))
         | beam.ParDo(_RunChunk())
         | beam.combiners.ToList()
         | beam.Map(_save, path))
    dask_engine.run_to_completion(p)
    cube = _load(path)
  empty = np.zeros(0)
  return RolloutResult(cube=cube, rounds={"day": empty.astype(np.int64),
                                          "sessions": empty, "reward": empty,
                                          "expected_reward": empty},
                       policy=probe.name)
