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


def tensor_bytes(value) -> bytes:
  """The serialized ``TensorProto`` of ``value`` (a numpy array, or anything
  ``serving.tensors.fill_tensor_proto`` encodes)."""
  if isinstance(value, np.ndarray):
    enum = _NUMERIC.get(value.dtype)
    strings = None
    if enum is None and value.dtype.kind in "SO":
      strings = value.ravel().tolist()
      if not all(type(s) is bytes for s in strings):  # pylint: disable=unidiomatic-typecheck
        strings = None
    if enum is not None or strings is not None:
      parts = [b"\x08", varint(enum if strings is None else types_pb2.DT_STRING)]
      if value.shape:
        parts.append(length_delimited(b"\x12", _shape(value.shape)))
      if strings is None:
        if value.size:
          parts.append(length_delimited(b"\x22", np.ascontiguousarray(value).tobytes()))
      else:
        for s in strings:
          parts += (b"\x42", varint(len(s)), s)
      return b"".join(parts)
  return tensors.to_tensor_proto(value).SerializeToString()


def predict_inputs(inputs: Mapping[str, object]) -> bytes:
  """``PredictRequest.inputs`` (field 2) for ``inputs``, to append to the serialized
  rest of the request (its ``model_spec``)."""
  parts = []
  for name, value in inputs.items():
    entry = length_delimited(b"\x0a", name.encode()) + length_delimited(
        b"\x12", tensor_bytes(value))
    parts.append(length_delimited(b"\x12", entry))
  return b"".join(parts)
