"""A cheap check of a local run's input shards before ImportExampleGen reads them.

Deep inside Beam a broken shard fails with a message that names neither the file nor
the feature (zlib's "incorrect data check"; a type mismatch reported by StatisticsGen
with expected and found the other way round from the schema). This check reads every
shard the run would read once, without TensorFlow:

* the gzip stream to its end (its CRC and length trailer) and the TFRecord framing of
  every record in it;
* the first ``records_per_shard`` records as ``tf.train.Example`` s, each feature of
  ``features.feature_spec`` present with the right value type and length.

Each problem raises :class:`ShardError`, whose message names the shard (relative to
the data root), the record and the feature, with the expected type first.
"""

import glob
import gzip
import os
import re
import struct
import zlib
from typing import List, Sequence

from features import feature_spec

_KINDS = {"string": "bytes_list", "int64": "int64_list", "float32": "float_list"}
_TYPE_OF_KIND = {"bytes_list": "string", "int64_list": "int64", "float_list": "float"}
_HEADER = struct.Struct("<QI")   # record length, masked CRC of the length
_FOOTER_BYTES = 4                # masked CRC of the data
_MAX_RECORD_BYTES = 1 << 28      # no example is this big; a larger length is corruption


class ShardError(ValueError):
  """An input shard the pipeline cannot read as the schema says."""

  def __init__(self, shard: str, problem: str, feature: str = ""):
    self.shard = shard
    self.feature = feature
    super().__init__(f"input shard {shard}: {problem}")


def shard_paths(data_root: str, patterns: Sequence[str]) -> List[str]:
  """Files matching ImportExampleGen's split patterns; for ``{SPAN}`` the latest span."""
  out = []
  for pattern in patterns:
    if "{SPAN}" in pattern:
      spans = {}
      for path in glob.glob(os.path.join(data_root, pattern.replace("{SPAN}", "*"))):
        regex = re.escape(pattern).replace(re.escape("{SPAN}"), r"(\d+)").replace(
            r"\*", ".*")
        match = re.fullmatch(regex, os.path.relpath(path, data_root))
        if match:
          spans.setdefault(int(match.group(1)), []).append(path)
      out.extend(spans[max(spans)] if spans else [])
    else:
      out.extend(glob.glob(os.path.join(data_root, pattern)))
  return sorted(out)


def _skip(f, n: int) -> bool:
  """Reads and drops ``n`` bytes; False when the stream ends first."""
  while n > 0:
    chunk = f.read(min(n, 1 << 20))
    if not chunk:
      return False
    n -= len(chunk)
  return True


def _frames(f, shard: str, keep: int):
  """Walks every record's framing; returns (the first ``keep`` payloads, record count)."""
  payloads = []
  index = 0
  while True:
    try:
      header = f.read(_HEADER.size)
    except (OSError, EOFError, zlib.error) as e:
      raise ShardError(shard, f"corrupt gzip data after {index} records: {e}") from e
    if not header:
      return payloads, index
    if len(header) < _HEADER.size:
      raise ShardError(shard, f"record {index} is cut off in its header (truncated file)")
    length, _ = _HEADER.unpack(header)
    if length > _MAX_RECORD_BYTES:
      raise ShardError(shard, f"record {index} announces {length} bytes (corrupt framing)")
    try:
      if index < keep:
        data = f.read(length)
        payloads.append(data)
        whole = len(data) == length and len(f.read(_FOOTER_BYTES)) == _FOOTER_BYTES
      else:
        whole = _skip(f, length + _FOOTER_BYTES)
    except (OSError, EOFError, zlib.error) as e:
      raise ShardError(shard, f"corrupt gzip data in record {index}: {e}") from e
    if not whole:
      raise ShardError(shard, f"record {index} is cut off ({length} bytes announced; "
                       "truncated file)")
    index += 1


def _check_example(payload: bytes, shard: str, index: int) -> None:
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top
  example = example_pb2.Example()
  try:
    example.ParseFromString(payload)
  except Exception as e:  # pylint: disable=broad-except
    raise ShardError(shard, f"record {index} is not a tf.train.Example ({e})") from e
  features = example.features.feature
  for spec in feature_spec.RAW_FEATURES:
    where = f"record {index}: feature '{spec.name}'"
    if spec.name not in features:
      raise ShardError(shard, f"{where} is missing (the schema requires it)", spec.name)
    expected = _KINDS[spec.dtype]
    found = features[spec.name].WhichOneof("kind")
    if found != expected:
      found_type = _TYPE_OF_KIND.get(found, "no")
      raise ShardError(shard, f"{where}: expected {spec.dtype} values ({expected}), found "
                       f"{found_type} values ({found or 'empty'})", spec.name)
    n = len(getattr(features[spec.name], found).value)
    if n != spec.length:
      raise ShardError(shard, f"{where}: expected {spec.length} value(s), found {n}",
                       spec.name)


def check_shard(path: str, data_root: str, records_per_shard: int = 32) -> int:
  """Checks one gzip TFRecord shard; returns its record count.

  Raises:
    ShardError: naming the shard, and the record and feature where that applies.
  """
  shard = os.path.relpath(path, data_root)
  try:
    with gzip.open(path, "rb") as f:
      payloads, count = _frames(f, shard, records_per_shard)
  except OSError as e:
    raise ShardError(shard, f"cannot be read: {e}") from e
  for index, payload in enumerate(payloads):
    _check_example(payload, shard, index)
  return count


def check_data(data_root: str, patterns: Sequence[str], records_per_shard: int = 32) -> int:
  """Checks every shard the run would read; returns the number of shards.

  Raises:
    ShardError: for the first broken shard; FileNotFoundError when no shard matches.
  """
  paths = shard_paths(data_root, patterns)
  if not paths:
    raise FileNotFoundError(f"no example shards match {list(patterns)} under {data_root}")
  for path in paths:
    check_shard(path, data_root, records_per_shard)
  return len(paths)
