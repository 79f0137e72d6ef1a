"""Protocol-buffer wire bytes the gateway writes without building messages.

This module owns the hand-written encoding of the two messages on the gateway's hot
path: the ``inputs`` of a TF Serving ``PredictRequest`` (one ``map<string,
TensorProto>`` entry per input tensor, appended to a per-model-spec prefix) and,
through :func:`length_delimited` and :func:`varint`, the items of a
``RecommendResponse`` (``online.gateway_items``). Building the same data as protobuf
message objects field by field costs several times more CPU per request than joining
bytes; a parser reads both identically, since the wire format allows fields and map
entries in any order and a message may be sent as the concatenation of its parts.

Tensors of the common numeric dtypes go as raw little-endian ``tensor_content`` and
byte strings as ``string_val``, as ``serving.tensors.fill_tensor_proto`` writes them;
any other value is encoded by that function.
"""

from typing import Mapping

import numpy as np
from tensorflow.core.framework import types_pb2

from serving import tensors

_NUMERIC = {np.dtype("<f4"): types_pb2.DT_FLOAT, np.dtype("<f8"): types_pb2.DT_DOUBLE,
            np.dtype("<i4"): types_pb2.DT_INT32, np.dtype("<i8"): types_pb2.DT_INT64}
# Lengths and small integers up to this bound come from a table (most fields here are
# shorter than a few KB).
_TABLE_SIZE = 1 << 14


def _varint_slow(value: int) -> bytes:
  if value < 0:
    value += 1 << 64    # int64 negatives: ten bytes, two's complement
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


_VARINTS = tuple(_varint_slow(n) for n in range(_TABLE_SIZE))
# Tensor heads and input keys seen, up to this many each (input names and shapes come
# from the caller's code, not from requests, but the bound keeps that an assumption).
_MAX_CACHED = 256
_HEADS = {}
_KEYS = {}


def varint(value: int) -> bytes:
  """The base-128 varint of ``value`` (negative values as 64-bit two's complement)."""
  return _VARINTS[value] if 0 <= value < _TABLE_SIZE else _varint_slow(value)


def length_delimited(tag: bytes, payload: bytes) -> bytes:
  """A length-delimited field: ``tag`` (its key byte(s)), the length, ``payload``."""
  return tag + varint(len(payload)) + payload


def _shape(dims) -> bytes:
  # TensorShapeProto.dim (2) of Dim.size (1); a zero size is the default and omitted.
  return b"".join(length_delimited(b"\x12", b"\x08" + varint(d) if d else b"")
                  for d in dims)


def _head(enum: int, shape) -> bytes:
  """A ``TensorProto``'s dtype (1) and shape (2) fields, kept for the few (dtype, shape)
  pairs a model's inputs have."""
  key = (enum, shape)
  head = _HEADS.get(key)
  if head is None:
    head = b"\x08" + varint(enum)
    if shape:
      head += length_delimited(b"\x12", _shape(shape))
    if len(_HEADS) < _MAX_CACHED:
      _HEADS[key] = head
  return head


def tensor_bytes(value) -> bytes:
  """The serialized ``TensorProto`` of ``value`` (a numpy array, or anything
  ``serving.tensors.fill_tensor_proto`` encodes)."""
  if isinstance(value, np.ndarray):
    enum = _NUMERIC.get(value.dtype)
    if enum is not None:
      if not value.size:
        return _head(enum, value.shape)
      return _head(enum, value.shape) + length_delimited(
          b"\x22", np.ascontiguousarray(value).tobytes())
    if value.dtype.kind in "SO":
      strings = value.ravel().tolist()
      if all(type(s) is bytes for s in strings):  # pylint: disable=unidiomatic-typecheck
        # string_val (8): one key byte, the length, the bytes per string.
        return _head(types_pb2.DT_STRING, value.shape) + b"".join(
            [b"\x42" + varint(len(s)) + s for s in strings])
  return tensors.to_tensor_proto(value).SerializeToString()


def _input_key(name: str) -> bytes:
  """A map entry's key field (1) for input ``name``."""
  key = _KEYS.get(name)
  if key is None:
    key = length_delimited(b"\x0a", name.encode())
    if len(_KEYS) < _MAX_CACHED:
      _KEYS[name] = key
  return key


def predict_inputs(inputs: Mapping[str, object]) -> bytes:
  """``PredictRequest.inputs`` (field 2) for ``inputs``, to append to the serialized
  rest of the request (its ``model_spec``)."""
  parts = []
  for name, value in inputs.items():
    tensor = tensor_bytes(value)
    entry = _input_key(name) + b"\x12" + varint(len(tensor)) + tensor
    parts.append(b"\x12" + varint(len(entry)) + entry)
  return b"".join(parts)
