"""The event log: listeners' days under the logging policy, in the common event schema.

This module owns the simulated logs: each day, the active listeners open sessions
(start hour, activity, surface, shuffle, style, length), a popularity/taste-based
logging policy fills the slots (familiar artists, the session's style, globally
popular tracks, a uniform exploration share, and promo slots), the response model
plays them in order (session mode, skip momentum, short-term drift, fatigue, skips and
skip profiles, completion, likes), plays get timestamps
(sessions of one listener never overlap), the first impression whose conversion
hazard fires converts the listener, and the day closes (listener state ages, who
returns tomorrow is drawn). :meth:`EventLog.simulate` returns the raw columns the
calibration reads; :meth:`EventLog.iter_events` writes them in exactly
``features.events.EVENT_SCHEMA``.
"""

import dataclasses
from typing import Dict, Iterator, Tuple

import numpy as np
import pyarrow as pa

from features import events
from features import feature_spec
from simulation import listeners as listeners_lib
from simulation import session_context
from simulation import skip_dynamics
from simulation.catalog import Catalog
from simulation.listeners import Listeners
from simulation.response_model import ResponseModel, sigmoid
from simulation.world_config import (DAY_S, DEFAULT_START_TS, ORGANIC_SURFACES, PAID,
                                     SIM_ACTIVITIES, WorldConfig)


@dataclasses.dataclass
class _Sessions:
  """One day's sessions (``s_*``, sorted by listener and start) and their slots (``e_*``)."""
  users: np.ndarray        # active listeners (rows), ascending
  s_user: np.ndarray
  s_offset: np.ndarray     # planned start, seconds after midnight
  s_activity: np.ndarray
  s_surface: np.ndarray
  s_style: np.ndarray
  s_shuffle: np.ndarray    # shuffle play on
  s_len: np.ndarray
  s_begin: np.ndarray      # first slot of each session
  e_sess: np.ndarray
  e_pos: np.ndarray
  e_user: np.ndarray
  e_activity: np.ndarray


def _drop_unplayed(sess: _Sessions, played: np.ndarray) -> _Sessions:
  """``sess`` without the slots that were never played (the tails of sessions that
  ended early); every session keeps at least its first play."""
  e_sess = sess.e_sess[played]
  s_len = np.bincount(e_sess, minlength=len(sess.s_len))
  s_begin = np.cumsum(s_len) - s_len
  return dataclasses.replace(sess, s_len=s_len, s_begin=s_begin, e_sess=e_sess,
                             e_pos=np.arange(len(e_sess)) - s_begin[e_sess],
                             e_user=sess.e_user[played],
                             e_activity=sess.e_activity[played])


class EventLog:
  """Runs the logging policy over a world's listeners, day by day.

  Args:
    config: the resolved world config.
    catalog: the world's catalogue.
    response: the response model over that catalogue.
    seed: the world seed (every chunk of ``iter_events`` has its own stream).
  """

  def __init__(self, config: WorldConfig, catalog: Catalog, response: ResponseModel,
               seed: int):
    self.config = config
    self.catalog = catalog
    self.response = response
    self.seed = seed

  def end_day(self, listeners: Listeners, mean_completion: np.ndarray,
              active: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Closes a day: the listeners age one day, then who returns tomorrow is drawn.

    Args:
      listeners: the batch (updated in place).
      mean_completion: each listener's mean completion today (ignored if inactive).
      active: bool, whether the listener played anything today.
      rng: random generator.

    Returns:
      Bool array: who comes back tomorrow.
    """
    listeners_lib.advance_day(self.config, listeners, mean_completion, active, rng)
    return rng.random(len(listeners)) < self.response.return_probability(listeners)

  # ---------------------------------------------------------------- one day
  def _plan_sessions(self, L: Listeners, active: np.ndarray, day_start: int,
                     tables: session_context.ContextTables,
                     rng: np.random.Generator) -> _Sessions:
    """Sessions of the active listeners: start, activity, surface, style and length."""
    c = self.config
    weekend = int(session_context.weekday(day_start) >= 5)
    users = np.flatnonzero(active)
    n_sess = 1 + rng.poisson(c.extra_sessions_mean, len(users))
    s_user = np.repeat(users, n_sess)
    S = len(s_user)
    hour = rng.choice(24, S, p=tables.hour)
    s_off = (hour * 3600 + rng.integers(0, 3600, S)).astype(np.int64)
    order = np.lexsort((s_off, s_user))
    s_user, hour, s_off = s_user[order], hour[order], s_off[order]
    s_act = session_context.draw_categorical(rng, tables.activity[weekend, hour])
    s_act = np.minimum(s_act, len(SIM_ACTIVITIES) - 1)
    s_surf = session_context.draw_categorical(rng, tables.surface[s_act])
    s_surf = np.minimum(s_surf, len(ORGANIC_SURFACES) - 1)
    fav_pick = session_context.draw_categorical(rng, L.favorite_weights[s_user])
    fav_style = L.favorite_styles[s_user, np.minimum(fav_pick, 2)]
    style_p = self.catalog.session_style_p
    glob_style = rng.choice(len(style_p), S, p=style_p)
    s_style = np.where(rng.random(S) < c.session_style_prob, fav_style, glob_style)
    s_shuffle = rng.random(S) < np.asarray(c.shuffle_prob)[s_surf]
    s_len = np.clip(np.rint(np.exp(c.session_len_mu + c.session_len_sigma
                                   * rng.standard_normal(S))), 1, c.max_session_len)
    s_len = s_len.astype(np.int64)
    E = int(s_len.sum())
    s_begin = np.cumsum(s_len) - s_len
    e_sess = np.repeat(np.arange(S), s_len)
    return _Sessions(users=users, s_user=s_user, s_offset=s_off, s_activity=s_act,
                     s_surface=s_surf, s_style=s_style, s_shuffle=s_shuffle, s_len=s_len,
                     s_begin=s_begin, e_sess=e_sess, e_pos=np.arange(E) - s_begin[e_sess],
                     e_user=s_user[e_sess], e_activity=s_act[e_sess])

  def _log_tracks(self, L: Listeners, sess: _Sessions, u: np.ndarray,
                  source_p: np.ndarray, rng: np.random.Generator) -> Tuple[np.ndarray,
                                                                          np.ndarray]:
    """The logging policy: promo slots, else a familiar artist, the session style, a
    globally popular track or (``explore_share``) a uniform organic track.

    Returns:
      ``(track, surface)`` per slot; promo slots get surface ``len(ORGANIC_SURFACES)``.
    """
    c, cat = self.config, self.catalog
    E = len(sess.e_sess)
    promo_slot = u[0] < c.promo_slot_rate
    source_p = np.concatenate([source_p * (1 - c.explore_share),
                               np.full((len(source_p), 1), c.explore_share)], axis=1)
    src = (u[1][:, None] > np.cumsum(source_p[sess.s_surface[sess.e_sess]], 1)).sum(1)
    track = np.empty(E, np.int64)
    m = src == 0
    known = L.known_artists[sess.e_user[m]]   # a known artist, weighted by popularity
    pick = np.argmax(cat.log_artist_p[known] + rng.gumbel(size=known.shape), axis=1)
    art = known[np.arange(len(known)), pick]
    track[m] = cat.artist_sampler.draw(art, u[2][m])
    m = src == 1
    track[m] = cat.style_sampler.draw(sess.s_style[sess.e_sess[m]], u[2][m])
    m = src == 2
    track[m] = cat.pop_sampler.draw(np.zeros(m.sum(), np.int64), u[2][m])
    m = src >= 3   # exploration: uniform over the organic catalog (full support)
    track[m] = cat.organic_tracks[rng.integers(0, len(cat.organic_tracks), m.sum())]
    track[promo_slot] = cat.promo_tracks[
        rng.integers(0, len(cat.promo_tracks), promo_slot.sum())]
    surface = np.where(promo_slot, len(ORGANIC_SURFACES), sess.s_surface[sess.e_sess])
    return track, surface

  def _walk_sessions(self, z: np.ndarray, style: np.ndarray, u: np.ndarray,
                     sess: _Sessions, rng: np.random.Generator):
    """Early skips, drift boosts, modes, skip-logit offsets and whether the slot is
    played (its session has not ended) of every slot: all sessions walked position by
    position (longest first, so the active sessions are always a prefix) through
    ``skip_dynamics.step``."""
    c = self.config
    E = len(z)
    by_len = np.argsort(-sess.s_len, kind="stable")
    begin_sorted = sess.s_begin[by_len]
    len_sorted = sess.s_len[by_len]
    offset = skip_dynamics.context_offset(c, sess.s_surface, sess.s_activity, sess.s_shuffle)
    state = skip_dynamics.SessionState.start(c, offset[by_len], rng.random(len(by_len)))
    skip = np.zeros(E, bool)
    boost = np.zeros(E)
    mode = np.zeros(E, np.int8)
    logit = np.zeros(E)
    played = np.zeros(E, bool)
    n_active = np.searchsorted(-len_sorted, -np.arange(int(sess.s_len.max(initial=0))),
                               side="left")
    for p, na in enumerate(n_active):
      idx = begin_sorted[:na] + p
      skip[idx], boost[idx], mode[idx], logit[idx], played[idx] = skip_dynamics.step(
          c, z[idx], style[idx], u[:, idx], state.take(na), p)
    return skip, boost, mode, logit, played

  def _timestamps(self, L: Listeners, sess: _Sessions, listened: np.ndarray,
                  day_start: int, rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Start time of every play and the gap to the next one; updates ``last_end_ts``.

    Plays follow each other (listened time + a pause); sessions of one listener never
    overlap and start after the previous day's last session.
    """
    c = self.config
    E, S = len(listened), len(sess.s_user)
    users, s_user = sess.users, sess.s_user
    pause = np.where(rng.random(E) < c.pause_prob, rng.exponential(c.pause_s_mean, E), 0.0)
    gap = np.floor(listened + rng.exponential(c.think_s_mean, E) + pause).astype(np.int64) + 1
    sess_cum = np.cumsum(gap) - gap
    e_off = sess_cum - sess_cum[sess.s_begin][sess.e_sess]
    s_dur = np.add.reduceat(gap, sess.s_begin) if S else np.zeros(0, np.int64)
    planned = day_start + sess.s_offset
    planned = np.maximum(planned, L.last_end_ts[s_user] + c.min_session_gap_s)
    step = s_dur + c.min_session_gap_s
    acc = np.cumsum(step) - step
    first_s = np.searchsorted(s_user, users)
    acc = acc - acc[first_s][np.searchsorted(users, s_user)]
    rank = np.searchsorted(users, s_user).astype(np.int64)
    v = planned - acc
    offset = rank << 40
    start = np.maximum.accumulate(v - v.min(initial=0) + offset) - offset + v.min(
        initial=0) + acc
    ts = start[sess.e_sess] + e_off
    last = np.concatenate([first_s[1:], [S]]) - 1 if S else first_s
    if S:
      L.last_end_ts[users] = start[last] + s_dur[last]
    return ts, gap

  def _convert(self, L: Listeners, e_user: np.ndarray, track: np.ndarray,
               comp: np.ndarray, fatigue: np.ndarray,
               rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """The first impression whose hazard fires converts; later rows are "paid".

    Returns:
      ``(subscription, segment)`` per slot; ``L.converted`` is updated.
    """
    E = len(e_user)
    h = self.response.hazard(L, e_user, track, comp, fatigue)
    fire = rng.random(E) < h
    conv_pos = np.full(len(L), E, np.int64)
    hits = np.flatnonzero(fire)
    if len(hits):
      first_users, first_idx = np.unique(e_user[hits], return_index=True)
      conv_pos[first_users] = hits[first_idx]
    subscription = np.zeros(E, bool)
    subscription[conv_pos[conv_pos < E]] = True
    L.converted[conv_pos < E] = True
    seg = np.where(np.arange(E) > conv_pos[e_user], PAID, L.segment[e_user])
    return subscription, seg

  @staticmethod
  def _fatigue(L: Listeners, sess: _Sessions, is_promo: np.ndarray) -> np.ndarray:
    """Fatigue at each slot: carried-over fatigue + promo slots earlier today."""
    promo_f = is_promo.astype(np.float64)
    cum = np.cumsum(promo_f) - promo_f
    u_first = np.searchsorted(sess.e_user, sess.users)   # slots are grouped by listener
    before = cum - cum[u_first][np.searchsorted(sess.users, sess.e_user)]
    return L.fatigue[sess.e_user] + before

  def simulate_day(self, L: Listeners, active: np.ndarray, day_start: int,
                   rng: np.random.Generator) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Sessions, impressions and outcomes of one day for the active listeners.

    Returns:
      ``(cols, mean_completion)``: the day's raw event columns (see :meth:`simulate`)
      and each listener's mean completion today.
    """
    cat = self.catalog
    tables = session_context.context_tables()
    sess = self._plan_sessions(L, active, day_start, tables, rng)
    u = rng.random((7, len(sess.e_sess)))
    track, surface = self._log_tracks(L, sess, u, tables.source, rng)
    # Planned slots: the promo cost in the utility counts every planned promo of the
    # day, including those of sessions that end early (a small overstatement).
    z = self.response.utility(L, sess.e_user, track, sess.e_activity,
                              self._fatigue(L, sess, cat.track_promo[track]))
    skip, boost, mode, logit, played = self._walk_sessions(z, cat.track_style[track],
                                                           u[3:7], sess, rng)
    if not played.all():
      sess = _drop_unplayed(sess, played)
      track, surface, z, skip, boost, mode, logit = (
          x[played] for x in (track, surface, z, skip, boost, mode, logit))
    e_user = sess.e_user
    is_promo = cat.track_promo[track]
    fatigue = self._fatigue(L, sess, is_promo)
    z_eff = z + boost
    comp, listened, like, profile = self.response.outcomes(z_eff, skip, mode, track, rng)
    ts, gap = self._timestamps(L, sess, listened, day_start, rng)
    subscription, seg = self._convert(L, e_user, track, comp, fatigue, rng)

    cnt = np.bincount(e_user, minlength=len(L))
    mean_comp = np.bincount(e_user, weights=comp, minlength=len(L)) / np.maximum(cnt, 1)
    L.fatigue = (L.fatigue + np.bincount(e_user, weights=is_promo.astype(np.float64),
                                         minlength=len(L))).astype(np.float32)
    cols = {
        "user": e_user, "session": sess.e_sess, "ts": ts, "track": track,
        "segment": seg, "tenure": L.tenure_days[e_user] + (ts - day_start) / DAY_S,
        "activity": sess.e_activity, "surface": surface, "is_promo": is_promo,
        "completion": comp, "skip": skip, "like": like, "subscription": subscription,
        "exposure": cat.track_exposure[track] * comp * is_promo,
        "session_len": sess.s_len[sess.e_sess], "gap": gap, "pos": sess.e_pos,
        "listened": listened, "utility": z_eff, "shuffle": sess.s_shuffle[sess.e_sess],
        "skip_profile": profile, "mode": mode, "skip_offset": logit,
    }
    return cols, mean_comp

  # ----------------------------------------------------------------- days, logs
  def simulate(self, listeners: Listeners, days: int, start_ts: int,
               rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Runs the logging policy for ``days`` days; returns raw event columns (numpy).

    Rows are sorted by (listener, ts). ``user`` and ``session`` are row numbers in
    ``listeners`` and a per-call session counter. The calibration also reads ``gap``
    (seconds from this play's start to the next one's), ``listened`` (seconds played),
    ``utility`` (z with drift), ``pos`` (position in the session), ``session_len``,
    ``day``, ``shuffle``, ``skip_profile`` (index into ``skip_dynamics.SKIP_PROFILES``),
    ``mode`` (index into ``skip_dynamics.MODES``) and ``skip_offset`` (the early-skip
    logit without ``skip_bias``).

    Args:
      listeners: the batch; its state (engagement, fatigue, segment, …) is advanced.
      days: days to simulate.
      start_ts: epoch seconds of the first day's midnight (UTC).
      rng: random generator.

    Returns:
      Dict of numpy columns, one row per impression.
    """
    if days < 1:
      raise ValueError(f"days must be >= 1, got {days}")
    if start_ts <= 0:
      raise ValueError(f"start_ts must be positive epoch seconds, got {start_ts}")
    n = len(listeners)
    p0 = sigmoid(listeners.activity + 0.5)
    active = rng.random(n) < p0
    parts, s_base = [], 0
    for d in range(days):
      cols, mean_comp = self.simulate_day(listeners, active, start_ts + d * DAY_S, rng)
      cols["session"] = cols["session"] + s_base
      s_base += int(cols["session"].max(initial=-1)) + 1
      cols["day"] = np.full(len(cols["ts"]), d, np.int32)
      parts.append(cols)
      active = self.end_day(listeners, mean_comp, active, rng)
    out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    order = np.lexsort((out["ts"], out["user"]))
    return {k: v[order] for k, v in out.items()}

  def iter_events(self, n_users: int, days: int, chunk_users: int = 2000,
                  start_ts: int = DEFAULT_START_TS) -> Iterator[pa.Table]:
    """Simulated impressions in ``features.events.EVENT_SCHEMA``, chunk by chunk.

    Args:
      n_users: listeners in total (``u0000000`` …).
      days: days simulated per listener.
      chunk_users: listeners per chunk; memory grows with chunk_users * days. The
        events depend on (seed, chunk_users): keep it fixed for reproducibility.
      start_ts: epoch seconds (UTC) of the first day's midnight.

    Yields:
      ``pyarrow.Table`` chunks sorted by (user_id, ts); each listener lies wholly
      inside one chunk.
    """
    for name, value in (("n_users", n_users), ("days", days), ("chunk_users", chunk_users)):
      if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    if start_ts <= 0:
      raise ValueError(f"start_ts must be positive epoch seconds, got {start_ts}")
    for first in range(0, n_users, chunk_users):
      n = min(chunk_users, n_users - first)
      rng = np.random.default_rng(np.random.SeedSequence([self.seed, 1, first]))
      L = listeners_lib.sample_listeners(self.config, self.catalog, n, rng,
                                         start_index=first)
      cols = self.simulate(L, days, start_ts, rng)
      yield to_event_table(self.catalog, L, cols)


_SEGMENT_DICT = pa.array(list(feature_spec.SEGMENTS), pa.string())
_ACTIVITY_DICT = pa.array(list(SIM_ACTIVITIES), pa.string())
_SURFACE_DICT = pa.array(list(ORGANIC_SURFACES) + ["promo"], pa.string())
_PROFILE_DICT = pa.array(list(skip_dynamics.SKIP_PROFILES), pa.string())


def _decoded(indices, dictionary: pa.Array) -> pa.Array:
  return pa.DictionaryArray.from_arrays(
      pa.array(np.asarray(indices, np.int32)), dictionary).dictionary_decode()


def _f32(x) -> pa.Array:
  return pa.array(np.asarray(x, np.float32))


def to_event_table(catalog: Catalog, L: Listeners, cols: Dict[str, np.ndarray]) -> pa.Table:
  """Raw event columns of ``L`` (:meth:`EventLog.simulate`) in ``EVENT_SCHEMA``.

  Session ids are ``"<user_id>-s<k>"``, k numbering the listener's sessions in ``cols``.
  """
  E = len(cols["ts"])
  sess = cols["session"]
  new_sess = np.ones(E, bool)
  new_sess[1:] = sess[1:] != sess[:-1]
  s_rows = np.flatnonzero(new_sess)
  s_user = cols["user"][s_rows]
  s_rank = np.arange(len(s_rows)) - np.searchsorted(s_user, s_user)
  uid = L.user_index[s_user]
  s_names = pa.array([f"u{a:07d}-s{b}" for a, b in zip(uid.tolist(), s_rank.tolist())],
                     pa.string())
  s_index = np.cumsum(new_sess) - 1
  user_dict = pa.array([f"u{i:07d}" for i in L.user_index.tolist()], pa.string())
  arrays = [
      _decoded(cols["user"], user_dict),
      _decoded(s_index, s_names),
      pa.array(np.asarray(cols["ts"], np.int64)),
      pa.array(np.ones(E, np.int64)),
      _decoded(cols["track"], catalog.track_id_dict),
      _decoded(catalog.track_artist[cols["track"]], catalog.artist_id_dict),
      _decoded(np.zeros(E, np.int32), pa.array(["sim"], pa.string())),
      _decoded(cols["segment"], _SEGMENT_DICT),
      _f32(cols["tenure"]),
      _decoded(cols["activity"], _ACTIVITY_DICT),
      _decoded(cols["surface"], _SURFACE_DICT),
      pa.array(np.asarray(cols["is_promo"], bool)),
      _f32(cols["completion"]),
      _f32(cols["skip"]),
      _f32(cols["like"]),
      _f32(cols["subscription"]),
      _f32(cols["exposure"]),
      pa.array(np.asarray(cols["shuffle"], bool)),
      _decoded(cols["skip_profile"], _PROFILE_DICT),
  ]
  return pa.Table.from_arrays(arrays, schema=events.EVENT_SCHEMA)
