"""A listener's play rows as one compact binary value (the SQLite store's ``plays``).

This module owns the encoding of play rows the SQLite store keeps in one column per
listener. Each play is a record (little-endian): its key first, the time as int64 and
the byte lengths of track and session as uint16, then those two UTF-8 strings; then
the byte length of the artist as uint16, completion and skip as float64, and the
artist. Records are self-delimiting, so the value of a listener is the concatenation of
its plays' records in the order they were added (not sorted): new plays are appended by
concatenating bytes, without reading the held ones. Readers decode and order them by
(time, track, session), the key a history is kept in. A key's bytes are contiguous, so
whether a value holds a play is first asked of the bytes (a substring search) and only
a hit is decoded to confirm it.
"""

import operator
import struct
from typing import Iterable, Iterator, List, Sequence, Set, Tuple

import numpy as np

_KEY_HEAD = struct.Struct("<qHH")   # ts, track bytes, session bytes
_REST_HEAD = struct.Struct("<Hdd")  # artist bytes, completion, skip
_KEY_DTYPE = np.dtype([("ts", "<i8"), ("n_track_id", "<u2"), ("n_session_id", "<u2")])
_REST_DTYPE = np.dtype([("n_artist_id", "<u2"), ("completion", "<f8"), ("skip", "<f8")])
_FIXED = _KEY_HEAD.size + _REST_HEAD.size
_MAX_STRING = (1 << 16) - 1

# A decoded play: (ts, track, session, artist, completion, skip), the order of a history
# key followed by the rest.
Play = Tuple[int, str, str, str, float, float]
HistoryKey = Tuple[int, str, str]


def pack(plays: Iterable[Play]) -> bytes:
  """Records of ``plays`` ((ts, track, session, artist, completion, skip) each).

  Raises:
    TypeError: a time, completion or skip of the wrong type.
    ValueError: a track, session or artist id longer than 65535 UTF-8 bytes.
  """
  key_head, rest_head = _KEY_HEAD.pack, _REST_HEAD.pack
  parts = []
  for ts, track, session, artist, completion, skip in plays:
    t, s, a = track.encode(), session.encode(), artist.encode()
    if max(len(t), len(s), len(a)) > _MAX_STRING:
      field = ("track_id", "session_id", "artist_id")[
          [len(t), len(s), len(a)].index(max(len(t), len(s), len(a)))]
      raise ValueError(f"{field}: longer than {_MAX_STRING} bytes")
    try:
      parts += (key_head(ts, len(t), len(s)), t, s, rest_head(len(a), completion, skip), a)
    except struct.error as e:
      raise TypeError(f"plays: ts must be an integer, completion and skip numbers ({e})"
                      ) from e
  return b"".join(parts)


def pack_by_user(rows: Sequence[Tuple]) -> Iterator[Tuple[str, bytes]]:
  """(user, records of its rows) per user, users in the order they first appear.

  The records of all rows are laid out at once with numpy (no per-row Python work but
  the strings' encoding when they are not all ASCII), grouped by user, then cut into one
  value per user.

  Args:
    rows: Play rows (user, ts, track, session, artist, completion, skip) in any order;
      a user's records keep the order of its rows.

  Raises:
    TypeError: a time, completion or skip of the wrong type.
    ValueError: a track, session or artist id longer than 65535 UTF-8 bytes.
  """
  if not rows:
    return iter(())
  users, ts, track, session, artist, completion, skip = zip(*rows)
  n = len(users)
  keys, rest = np.empty(n, _KEY_DTYPE), np.empty(n, _REST_DTYPE)
  try:
    keys["ts"] = np.asarray(ts, np.int64)
    rest["completion"] = np.asarray(completion, np.float64)
    rest["skip"] = np.asarray(skip, np.float64)
  except (TypeError, ValueError, OverflowError) as e:
    raise TypeError(f"plays: ts must be an integer, completion and skip numbers ({e})"
                    ) from e
  strings = {}
  for field, values in (("track_id", track), ("session_id", session),
                        ("artist_id", artist)):
    data, lengths = _utf8(values)
    if len(lengths) and lengths.max() > _MAX_STRING:
      raise ValueError(f"{field}: longer than {_MAX_STRING} bytes")
    (rest if field == "artist_id" else keys)["n_" + field] = lengths
    strings[field] = (data, lengths)
  # Users coded by first appearance; records placed in (code, row) order.
  index: dict = {}
  codes = np.fromiter([index.setdefault(u, len(index)) for u in users], np.int64, n)
  by_user = np.argsort(codes, kind="stable")
  sizes = _FIXED + sum(lengths for _, lengths in strings.values())
  placed_ends = np.cumsum(sizes[by_user])
  placed_starts = placed_ends - sizes[by_user]
  starts = np.empty(n, np.int64)
  starts[by_user] = placed_starts
  out = np.empty(int(placed_ends[-1]), np.uint8)
  at = starts
  for part in (keys, "track_id", "session_id", rest, "artist_id"):
    if isinstance(part, str):
      data, lengths = strings[part]
      # Byte j of row i's string goes to at[i] + j: each string's bytes move as a block.
      shift = at - (np.cumsum(lengths) - lengths)
      out[np.repeat(shift, lengths) + np.arange(len(data))] = data
      at = at + lengths
    else:
      width = part.dtype.itemsize
      out[(at[:, None] + np.arange(width)).ravel()] = part.view(np.uint8)
      at = at + width
  blob = out.tobytes()
  first = np.flatnonzero(np.diff(codes[by_user], prepend=-1))
  cuts = np.append(placed_starts[first], len(blob)).tolist()
  return zip(index, map(blob.__getitem__, map(slice, cuts[:-1], cuts[1:])))


def _utf8(values: Sequence[str]) -> Tuple[np.ndarray, np.ndarray]:
  """The UTF-8 bytes of ``values`` back to back (uint8) and each one's byte length."""
  joined = "".join(values)
  if joined.isascii():
    return (np.frombuffer(joined.encode(), np.uint8),
            np.fromiter(map(len, values), np.int64, len(values)))
  encoded = [v.encode() for v in values]
  return (np.frombuffer(b"".join(encoded), np.uint8),
          np.fromiter(map(len, encoded), np.int64, len(encoded)))


def unpack(data: bytes) -> List[Play]:
  """The plays of a value, in the order they were added."""
  out = []
  key_head, rest_head = _KEY_HEAD.unpack_from, _REST_HEAD.unpack_from
  key_size, rest_size = _KEY_HEAD.size, _REST_HEAD.size
  pos, end = 0, len(data)
  while pos < end:
    ts, nt, ns = key_head(data, pos)
    pos += key_size
    track = data[pos:pos + nt].decode()
    pos += nt
    session = data[pos:pos + ns].decode()
    pos += ns
    na, completion, skip = rest_head(data, pos)
    pos += rest_size
    artist = data[pos:pos + na].decode()
    pos += na
    out.append((ts, track, session, artist, completion, skip))
  if pos != end:
    raise ValueError(f"plays: a record runs past the value's end ({pos} > {end} bytes)")
  return out


def ordered(data: bytes) -> List[Play]:
  """The plays of a value in history key order (ts, track, session), each key once (a
  play appended twice keeps its first record)."""
  out: List[Play] = []
  last = None
  # A stable sort keeps a repeated key's records in the order they were added.
  for play in sorted(unpack(data), key=_KEY):
    if play[:3] != last:
      out.append(play)
      last = play[:3]
  return out


def keys(data: bytes) -> Set[HistoryKey]:
  """The history keys of a value's plays."""
  return {p[:3] for p in unpack(data)}


def held(data: bytes, wanted: Iterable[HistoryKey]) -> Set[HistoryKey]:
  """Which of the keys ``wanted`` a value holds a play of."""
  out, decoded = set(), None
  for key in wanted:
    ts, track, session = key
    t, s = track.encode(), session.encode()
    # A record of the key holds these bytes back to back: no match, no such play. A
    # match could straddle two records, so it is confirmed by decoding.
    if _KEY_HEAD.pack(ts, len(t), len(s)) + t + s in data:
      if decoded is None:
        decoded = keys(data)
      if key in decoded:
        out.add(key)
  return out


_KEY = operator.itemgetter(0, 1, 2)
