"""The Redis listener state store (redis-py against a Redis server).

This module owns :class:`RedisStore`, the production backend of ``online.state_store``.
Keys (``NS`` is the namespace, ``melody`` by default), in the shape of Feast's Redis
online store (one hash per entity key, a field per feature and ``_ts:<feature view>``):

* ``NS:listener_state:<user_id>``: hash, ``state`` = the state JSON,
  ``_ts:listener_state`` = its event timestamp;
* ``NS:popularity:<segment>``: sorted set, track id -> plays;
* ``NS:quarantine``: hash, ``<file>:<line>`` -> JSON of the line's raw text and reason;
* ``NS:source_offsets``: hash, file -> ``<byte offset>,<lines>``.

A batch is one ``MULTI``/``EXEC`` transaction, so a crash of the updater leaves all of
it or none; the server's own persistence (``appendonly yes``) decides what survives a
crash of Redis itself. States are read and written by small Lua scripts, thousands of
listeners a call, because redis-py spends more CPU packing and parsing one command per
listener than the whole batch costs the server; the scripts name every key they touch,
so they run on one Redis server (not across a cluster's slots).
"""

import json
from typing import Dict, List, Sequence, Tuple

import redis

from online import listener_state
from online import state_store

_TS_FIELD = f"_ts:{state_store.FEATURE_VIEW}"
_MEMORY_SAMPLE = 200
_KEYS_PER_CALL = 5000
# KEYS: listener hashes; returns their ``state`` fields (nil for a missing hash).
_GET_STATES = """
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('HGET', key, 'state') end
return out
"""
# KEYS: listener hashes; ARGV: state, event timestamp, state, event timestamp, ...
_SET_STATES = """
for i, key in ipairs(KEYS) do
  redis.call('HSET', key, 'state', ARGV[2 * i - 1], '%s', ARGV[2 * i])
end
return #KEYS
""" % _TS_FIELD


class RedisStore(state_store.StateStore):
  """Listener states in Redis.

  Args:
    url: ``redis://HOST:PORT/DB`` (or ``rediss://``, ``unix://``).
    namespace: Prefix of every key.
  """

  def __init__(self, url: str, namespace: str = "melody"):
    self.url = url
    self._ns = namespace
    self._redis = redis.Redis.from_url(url)
    self._redis.ping()
    self._get_states = self._redis.register_script(_GET_STATES)
    self._set_states = self._redis.register_script(_SET_STATES)

  def _key(self, user_id: str) -> str:
    return f"{self._ns}:{state_store.FEATURE_VIEW}:{user_id}"

  def get_many(self, user_ids: Sequence[str]) -> Dict[str, listener_state.ListenerState]:
    ids = list(dict.fromkeys(user_ids))
    out = {}
    for i in range(0, len(ids), _KEYS_PER_CALL):
      chunk = ids[i:i + _KEYS_PER_CALL]
      blobs = self._get_states(keys=[self._key(u) for u in chunk])
      out.update((user, listener_state.ListenerState.from_json(blob))
                 for user, blob in zip(chunk, blobs) if blob is not None)
    return out

  def commit(self, batch: state_store.Batch) -> None:
    pipe = self._redis.pipeline(transaction=True)
    states = batch.states
    for i in range(0, len(states), _KEYS_PER_CALL):
      chunk = states[i:i + _KEYS_PER_CALL]
      args = []
      for s in chunk:
        args += (s.to_json(), s.newest_ts)
      self._set_states(keys=[self._key(s.user_id) for s in chunk], args=args, client=pipe)
    for (segment, track), n in batch.popularity.items():
      pipe.zincrby(f"{self._ns}:popularity:{segment}", n, track)
    for q in batch.quarantined:
      pipe.hsetnx(f"{self._ns}:quarantine", f"{q.file}:{q.line}",
                  json.dumps({"raw": q.raw, "reason": q.reason}))
    if batch.offsets:
      pipe.hset(f"{self._ns}:source_offsets",
                mapping={f: f"{o.offset},{o.lines}" for f, o in batch.offsets.items()})
    pipe.execute()

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

  def _state_keys(self):
    return self._redis.scan_iter(match=self._key("*"), count=1000)

  def listener_count(self) -> int:
    return sum(1 for _ in self._state_keys())

  def bytes_per_listener(self) -> float:
    """Mean ``MEMORY USAGE`` of up to 200 listener hashes (key, fields and overhead)."""
    sizes = []
    for key in self._state_keys():
      sizes.append(self._redis.memory_usage(key, samples=0) or 0)
      if len(sizes) >= _MEMORY_SAMPLE:
        break
    return sum(sizes) / len(sizes) if sizes else 0.0

  def close(self) -> None:
    self._redis.close()
