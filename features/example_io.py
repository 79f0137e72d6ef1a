"""TFRecord I/O of the training examples: serialize, frame, compress, write, read back.

This module owns the on-disk form of the raw examples: the ``tf.train.Example``
serialization of a raw-feature record batch (tfx_bsl's C++ ``RecordBatchToExamples``,
about an order of magnitude faster than building protos in Python; ``bench/data.py``
measures both), the TFRecord framing, gzip members that concatenate into one file,
sharded file names, the atomic shard writer (any Beam filesystem) and reading records
back. ``reference_example`` is the slow proto-by-proto encoder that tests and the
benchmark compare against.
"""

import gzip
import os
import struct
import uuid
from typing import Dict, Iterable, Iterator, List, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from features import feature_spec
from features import raw_features

# Rows encoded per tfx_bsl call: bounds the temporary Arrow buffers of a large chunk.
_ENCODE_BATCH_ROWS = 32_768
# zlib level of the TFRecord files. Level 1 compresses about twice as fast as the
# default 6 for ~40% larger files; these files are intermediate (TFX ExampleGen
# rewrites them), so speed wins. See docs/examples.md for the measurements.
GZIP_LEVEL = 1


# ----------------------------------------------------------------- serialization
def encode_record_batch(batch: pa.RecordBatch) -> List[bytes]:
  """Serializes every row of a raw-feature record batch as a ``tf.train.Example``."""
  from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
  out: List[bytes] = []
  for start in range(0, batch.num_rows, _ENCODE_BATCH_ROWS):
    out.extend(example_coder.RecordBatchToExamples(batch.slice(start, _ENCODE_BATCH_ROWS)))
  return out


def events_to_examples(
    events: pa.Table,
    tracks: Union[raw_features.TrackIndex, pd.DataFrame, pa.Table]) -> List[bytes]:
  """Serialized ``tf.train.Example`` of every event of ``events``, in row order.

  Args:
    events: ``EVENT_SCHEMA`` rows sorted by (user_id, ts), whole users only.
    tracks: ``TRACK_SCHEMA`` frame/table or a prebuilt ``TrackIndex``.
  """
  if not isinstance(tracks, raw_features.TrackIndex):
    tracks = raw_features.TrackIndex(tracks)
  return encode_record_batch(raw_features.events_to_record_batch(events, tracks))


# ------------------------------------------------------------------ TFRecord files
def crc32c_fn():
  """The CRC-32C function of the TFRecord framing (google_crc32c when installed)."""
  try:
    import google_crc32c  # pylint: disable=g-import-not-at-top
    return google_crc32c.value
  except ImportError:  # Beam picks snappy or crcmod then
    from apache_beam.io import tfrecordio  # pylint: disable=g-import-not-at-top
    return tfrecordio._default_crc32c_fn  # pylint: disable=protected-access


def _masked_crc(crc32c, data: bytes) -> int:
  crc = crc32c(data)
  return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frames(records: Sequence[bytes], crc32c=None) -> bytes:
  """The TFRecord encoding of ``records``: per record, little-endian uint64 length,
  masked CRC-32C of the length, the data, masked CRC-32C of the data."""
  crc32c = crc32c or crc32c_fn()
  pack_len, pack_crc = struct.Struct("<Q").pack, struct.Struct("<I").pack
  parts = []
  for r in records:
    header = pack_len(len(r))
    parts += (header, pack_crc(_masked_crc(crc32c, header)), r,
              pack_crc(_masked_crc(crc32c, r)))
  return b"".join(parts)


def shard_path(out_dir: str, tag: str, shard: int, shards: int) -> str:
  """``out_dir/<tag>-SSSSS-of-NNNNN.tfrecord.gz`` (the layout WriteToTFRecord uses)."""
  return os.path.join(out_dir, f"{tag}-{shard:05d}-of-{shards:05d}.tfrecord.gz")


def gzip_member(records: Sequence[bytes], crc32c=None,
                compresslevel: int = GZIP_LEVEL) -> bytes:
  """``records`` framed as TFRecords and compressed as one gzip member.

  Concatenated gzip members are one valid gzip file (RFC 1952), which TensorFlow's and
  Beam's GZIP TFRecord readers read through, so workers compress in parallel and the
  writer only concatenates.
  """
  return gzip.compress(tfrecord_frames(records, crc32c), compresslevel=compresslevel, mtime=0)


def write_shard(path: str, members: Iterable[Union[bytes, Sequence[bytes]]],
                compresslevel: int = GZIP_LEVEL) -> int:
  """Writes one gzip TFRecord file (any Beam filesystem); returns its size in bytes.

  The file is written under a temporary name and renamed, so a retried bundle replaces
  a complete file and readers never see a partial one.

  Args:
    path: the file.
    members: pieces of the file in order: non-empty gzip members (``gzip_member``) as
      bytes, or sequences of serialized records to frame and compress here; empty
      pieces are skipped.
    compresslevel: zlib level for the record sequences.
  """
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  crc32c = crc32c_fn()
  tmp = f"{path}.tmp-{uuid.uuid4().hex}"
  n = 0
  with FileSystems.create(tmp, compression_type="uncompressed") as f:
    for member in members:
      if not member:  # TensorFlow's reader stops at an empty gzip member
        continue
      if not isinstance(member, bytes):
        member = gzip_member(member, crc32c, compresslevel)
      f.write(member)
      n += len(member)
    if n == 0:  # no member at all: still a valid (empty) gzip file
      empty = gzip_member([], crc32c, compresslevel)
      f.write(empty)
      n = len(empty)
  if FileSystems.exists(path):
    FileSystems.delete([path])
  FileSystems.rename([tmp], [path])
  return n


# ------------------------------------------------------------------- reading back
def iter_records(file_pattern: str) -> Iterator[bytes]:
  """Serialized records of gzip TFRecord files matching ``file_pattern`` (sorted)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  for path in sorted(tf.io.gfile.glob(file_pattern)):
    for r in tf.data.TFRecordDataset(path, compression_type="GZIP").as_numpy_iterator():
      yield r


def canonical(record: bytes) -> bytes:
  """A serialized example with its features in key order.

  The C++ encoder writes the feature map in no fixed order (protobuf maps are unordered),
  so equal examples can differ byte-wise; compare ``canonical`` forms instead.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.train.Example.FromString(record).SerializeToString(deterministic=True)


def reference_example(features: Dict[str, Sequence]) -> bytes:
  """Builds one example with the tf.train.Example protos, the slow straightforward way.

  Used by tests and the benchmark baseline to check the fast encoder byte-for-byte
  semantics (parsed values), not for production.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  feats = {}
  for f in feature_spec.RAW_FEATURES:
    v = features[f.name]
    v = list(v) if isinstance(v, (list, tuple, np.ndarray)) else [v]
    if f.dtype == "string":
      feats[f.name] = tf.train.Feature(bytes_list=tf.train.BytesList(
          value=[x if isinstance(x, bytes) else str(x).encode() for x in v]))
    elif f.dtype == "int64":
      feats[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))
    else:
      feats[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))
  return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()
