"""The Redis listener state store (redis-py against a Redis server).

This module owns :class:`RedisStore`, the production backend of ``online.state_store``.
Keys (``NS`` is the namespace, ``melody`` by default), in the shape of Feast's Redis
online store (one hash per entity key, a field per feature and ``_ts:<feature view>``):

* ``NS:listener_profile:<user_id>``: hash, ``profile`` = the packed profile
  (``state_store.pack_profile``: times, tenure, play rows, counter ring, segment),
  ``_ts:listener_profile`` = its event timestamp;
* ``NS:listener_plays:<user_id>``: sorted set, one member per play scored by its time,
  the member ``track NUL session NUL artist NUL completion NUL skip NUL time`` (equal
  times sort by track, then session, as the SQLite store's key does; the time keeps
  two plays alike in all else distinct members);
* ``NS:popularity:<segment>``: sorted set, track id -> plays;
* ``NS:quarantine``: hash, ``<file>:<line>`` -> JSON of the line's raw text and reason;
* ``NS:source_offsets``: hash, file -> ``<byte offset>,<lines>``;
* ``NS:store_format``: the layout version, ``FORMAT_VERSION`` (format 1 keys
  ``NS:listener_state:<id>``, a hash holding the state JSON, are migrated when the store
  is opened).

A batch is one ``MULTI``/``EXEC`` transaction, so a crash of the updater leaves all of
it or none; the server's own persistence (``appendonly yes``) decides what survives a
crash of Redis itself. Rows are read and written by small Lua scripts, thousands of
listeners a call, because redis-py spends more CPU packing and parsing one command per
listener than the server spends on it (a batch's writes travel as one MessagePack
argument per script); a listener's read (profile and newest plays) is one script call,
one round trip. The writing scripts build their keys from the namespace, so they run on
one Redis server (not across a cluster's slots).
"""

import json
from typing import Dict, List, Sequence, Set, Tuple

import msgpack
import redis

from features import feature_spec
from online import listener_state
from online import state_store

FORMAT_VERSION = 2   # this module's key layout (format 1: whole states as JSON)
_TS_FIELD = f"_ts:{state_store.PROFILE_VIEW}"
_SEP = "\x00"
_MEMORY_SAMPLE = 200
_KEYS_PER_CALL = 5000
# KEYS: profile hash, plays set, profile hash, plays set, ...; returns per listener its
# packed profile (false: none) and its newest HISTORY_LEN plays.
_GET_STATES = """
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('HGET', KEYS[i], 'profile')
  out[#out + 1] = redis.call('ZRANGE', KEYS[i + 1], -tonumber(ARGV[1]), -1)
end
return out
"""
# KEYS: profile hashes; returns their packed profiles (false: none).
_GET_PROFILES = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, 'profile') end
return out
"""
# KEYS: plays sets; ARGV: a time per key; returns the members held at that time.
_PLAYS_AT = """
local out = {}
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZRANGEBYSCORE', key, ARGV[i], ARGV[i])
end
return out
"""
# KEYS: plays sets; ARGV[1]: HISTORY_LEN; returns each set's oldest member (false: the
# set holds fewer than HISTORY_LEN).
_FLOORS = """
local out = {}
local n = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  out[i] = redis.call('ZCARD', key) >= n and redis.call('ZRANGE', key, 0, 0)[1] or false
end
return out
"""
# ARGV[1]: the profile key prefix; ARGV[2]: MessagePack of [[user, packed profile,
# event timestamp], ...].
_SET_PROFILES = """
local rows = cmsgpack.unpack(ARGV[2])
for _, row in ipairs(rows) do
  redis.call('HSET', ARGV[1] .. row[1], 'profile', row[2], '%s', row[3])
end
return #rows
""" % _TS_FIELD
# ARGV[1]: the plays key prefix; ARGV[2]: MessagePack of [[user, time, member], ...].
_ADD_PLAYS = """
local rows = cmsgpack.unpack(ARGV[2])
for _, row in ipairs(rows) do redis.call('ZADD', ARGV[1] .. row[1], row[2], row[3]) end
return #rows
"""
# KEYS: plays sets; ARGV[1]: how many of the newest to keep; ARGV[1 + i]: key i's cutoff
# time (members older than it and than the newest ARGV[1] go).
_TRIM = """
local keep = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local cut = math.min(redis.call('ZCARD', key) - keep,
                       redis.call('ZCOUNT', key, '-inf', '(' .. ARGV[1 + i]))
  if cut > 0 then redis.call('ZREMRANGEBYRANK', key, 0, cut - 1) end
end
return #KEYS
"""


class RedisStore(state_store.StateStore):
  """Listener states in Redis.

  Args:
    url: ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``).
    namespace: Prefix of every key.

  Raises:
    state_store.FormatError: the database holds a newer layout.
  """

  def __init__(self, url: str, namespace: str = "melody"):
    self.url = url
    self._ns = namespace
    self._redis = redis.Redis.from_url(url)
    self._redis.ping()
    scripts = (_GET_STATES, _GET_PROFILES, _PLAYS_AT, _FLOORS, _SET_PROFILES, _ADD_PLAYS,
               _TRIM)
    (self._get_states, self._get_profiles, self._plays_at, self._floors, self._set_profiles,
     self._add_plays, self._trim) = [self._redis.register_script(s) for s in scripts]
    self._check_format()

  def _profile_key(self, user_id: str) -> str:
    return f"{self._ns}:{state_store.PROFILE_VIEW}:{user_id}"

  def _plays_key(self, user_id: str) -> str:
    return f"{self._ns}:{state_store.PLAYS_VIEW}:{user_id}"

  def _check_format(self) -> None:
    key = f"{self._ns}:store_format"
    version = self._redis.get(key)
    if version is not None and int(version) != FORMAT_VERSION:
      raise state_store.FormatError(
          f"{self.url} holds listener state format {int(version)}; this Melody reads "
          f"format {FORMAT_VERSION} (and migrates format 1)")
    if version is None:
      self._migrate_format_1()
      self._redis.set(key, FORMAT_VERSION)

  def _migrate_format_1(self) -> None:
    """Rewrites format 1 states (a hash per listener, ``state`` = JSON) as rows; each
    chunk's rows and the deletion of its old keys are one transaction, so a migration
    cut short resumes where it stopped."""
    old = list(self._redis.scan_iter(match=f"{self._ns}:listener_state:*", count=1000))
    for i in range(0, len(old), _KEYS_PER_CALL):
      keys = old[i:i + _KEYS_PER_CALL]
      # Another process opening the store at the same time may have moved a key
      # already; rewriting one twice writes the same values.
      blobs = [self._redis.hget(k, "state") for k in keys]
      states = [listener_state.ListenerState.from_json(b) for b in blobs if b is not None]
      pipe = self._redis.pipeline(transaction=True)
      self._write(pipe, state_store.batch_of_states(states))
      pipe.delete(*keys)
      pipe.execute()

  def profiles(self, user_ids: Sequence[str]) -> Dict[str, state_store.Profile]:
    ids = list(dict.fromkeys(user_ids))
    out = {}
    for i in range(0, len(ids), _KEYS_PER_CALL):
      chunk = ids[i:i + _KEYS_PER_CALL]
      blobs = self._get_profiles(keys=[self._profile_key(u) for u in chunk])
      out.update((user, state_store.unpack_profile(blob))
                 for user, blob in zip(chunk, blobs) if blob)
    return out

  def held_plays(self, keys: Sequence[state_store.PlayKey]) -> Set[state_store.PlayKey]:
    keys = list(keys)
    out = set()
    for i in range(0, len(keys), _KEYS_PER_CALL):
      chunk = keys[i:i + _KEYS_PER_CALL]
      found = self._plays_at(keys=[self._plays_key(k[0]) for k in chunk],
                             args=[k[1] for k in chunk])
      for key, members in zip(chunk, found):
        prefix = f"{key[2]}{_SEP}{key[3]}{_SEP}".encode()
        if any(m.startswith(prefix) for m in members):
          out.add(key)
    return out

  def history_floors(self, user_ids: Sequence[str]
                     ) -> Dict[str, state_store.HistoryKey]:
    ids = list(dict.fromkeys(user_ids))
    out = {}
    for i in range(0, len(ids), _KEYS_PER_CALL):
      chunk = ids[i:i + _KEYS_PER_CALL]
      found = self._floors(keys=[self._plays_key(u) for u in chunk],
                           args=[feature_spec.HISTORY_LEN])
      for user, member in zip(chunk, found):
        if member:
          ts, track, session = _unpack_play(member)[:3]
          out[user] = (ts, track, session)
    return out

  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    ids = list(dict.fromkeys(user_ids))
    out = {}
    for i in range(0, len(ids), _KEYS_PER_CALL):
      chunk = ids[i:i + _KEYS_PER_CALL]
      keys = [k for u in chunk for k in (self._profile_key(u), self._plays_key(u))]
      found = self._get_states(keys=keys, args=[feature_spec.HISTORY_LEN])
      for user, blob, plays in zip(chunk, found[::2], found[1::2]):
        if blob:
          out[user] = state_store.materialise(
              user, state_store.unpack_profile(blob),
              [_unpack_play(member) for member in plays])
    return out

  def commit(self, batch: state_store.Batch) -> None:
    pipe = self._redis.pipeline(transaction=True)
    self._write(pipe, batch)
    for (segment, track), n in batch.popularity.items():
      pipe.zincrby(f"{self._ns}:popularity:{segment}", n, track)
    for q in batch.quarantined:
      pipe.hsetnx(f"{self._ns}:quarantine", f"{q.file}:{q.line}",
                  json.dumps({"raw": q.raw, "reason": q.reason}))
    if batch.offsets:
      pipe.hset(f"{self._ns}:source_offsets",
                mapping={f: f"{o.offset},{o.lines}" for f, o in batch.offsets.items()})
    pipe.execute()

  def _write(self, pipe, batch: state_store.Batch) -> None:
    """Queues ``batch``'s profiles, plays and trims on ``pipe``."""
    # A whole batch's rows travel as one MessagePack argument per script call:
    # redis-py packs every argument in Python, which costs more than the server's work.
    # (Redis's Lua MessagePack reads bytes as the old raw type, not bin.)
    pack = state_store.pack_profile
    self._set_profiles(keys=[], args=[self._profile_key(""), msgpack.packb(
        [(u, pack(p), p.newest_ts) for u, p in batch.profiles.items()],
        use_bin_type=False)], client=pipe)
    sep = _SEP
    self._add_plays(keys=[], args=[self._plays_key(""), msgpack.packb(
        [(user, ts, sep.join((track, session, artist, repr(float(completion)),
                              repr(float(skip)), str(ts))))
         for user, ts, track, session, artist, completion, skip in batch.plays],
        use_bin_type=False)], client=pipe)
    for i in range(0, len(batch.trim), _KEYS_PER_CALL):
      chunk = batch.trim[i:i + _KEYS_PER_CALL]
      self._trim(keys=[self._plays_key(u) for u, _ in chunk],
                 args=[feature_spec.HISTORY_LEN, *(cutoff for _, cutoff in chunk)],
                 client=pipe)

  def offsets(self) -> Dict[str, state_store.Offset]:
    out = {}
    for name, value in self._redis.hgetall(f"{self._ns}:source_offsets").items():
      offset, lines = value.decode().split(",")
      out[name.decode()] = state_store.Offset(int(offset), int(lines))
    return out

  def top_tracks(self, segment: str, k: int) -> List[Tuple[str, float]]:
    # Ties in plays come back in member order (lexicographic, descending with REV).
    rows = self._redis.zrange(f"{self._ns}:popularity:{segment}", 0, int(k) - 1,
                              desc=True, withscores=True)
    return [(t.decode(), float(n)) for t, n in rows]

  def quarantined(self) -> List[state_store.Quarantined]:
    out = []
    for field, value in self._redis.hgetall(f"{self._ns}:quarantine").items():
      file, _, line = field.decode().rpartition(":")
      doc = json.loads(value)
      out.append(state_store.Quarantined(file, int(line), doc["raw"], doc["reason"]))
    return sorted(out, key=lambda q: (q.file, q.line))

  def _profile_keys(self):
    return self._redis.scan_iter(match=self._profile_key("*"), count=1000)

  def listener_count(self) -> int:
    return sum(1 for _ in self._profile_keys())

  def bytes_per_listener(self) -> float:
    """Mean ``MEMORY USAGE`` of the profile hash plus the plays set (keys, members and
    overhead) of up to 200 listeners."""
    sizes = []
    prefix = len(self._profile_key(""))
    for key in self._profile_keys():
      user = key.decode()[prefix:]
      sizes.append((self._redis.memory_usage(key, samples=0) or 0)
                   + (self._redis.memory_usage(self._plays_key(user), samples=0) or 0))
      if len(sizes) >= _MEMORY_SAMPLE:
        break
    return sum(sizes) / len(sizes) if sizes else 0.0

  def close(self) -> None:
    self._redis.close()


def _unpack_play(member: bytes) -> Tuple[int, str, str, str, float, float]:
  """(ts, track, session, artist, completion, skip) of a plays set member."""
  track, session, artist, completion, skip, ts = member.decode().split(_SEP)
  return int(ts), track, session, artist, float(completion), float(skip)
