"""The items of a ``RecommendResponse``, encoded from a ``recommend`` answer's tensors.

This module owns turning the model server's ``recommend`` outputs (``TensorProto``s of
batch 1: ``ranked_track_ids``, ``fused_score``, ``reasons``, one float tensor per head
and ``weights``) into the gateway's response: every placed position (a non-empty track
id) becomes an ``Item`` with its fused score, reasons and per-head scores. The items are
written as wire bytes (``online.predict_wire``) and merged into the response in one
parse: the float32 scores of the model's raw ``tensor_content`` are already the bytes a
``float`` field carries, so the per-head scores of all items are laid out with one numpy
copy instead of a protobuf map assignment per item and head.
"""

from typing import List, Mapping, Tuple

import numpy as np
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

from online import predict_wire
from serving import tensors

NOT_HEADS = ("fused_score", "retrieval_score")
_FLOATS = (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16)


def _float32_bytes(proto: tensor_pb2.TensorProto, width: int) -> bytes:
  """The ``width`` values of a (1, width) float tensor as little-endian float32 bytes."""
  content = proto.tensor_content
  if proto.dtype == types_pb2.DT_FLOAT and len(content) == 4 * width:
    return content
  # float_val (stock TF Serving's default) or another float dtype: decode and convert.
  return np.asarray(tensors.from_tensor_proto(proto), "<f4").reshape(-1).tobytes()


def _strings(proto: tensor_pb2.TensorProto) -> List[bytes]:
  return list(proto.string_val) if proto.string_val else [
      bytes(s) for s in tensors.from_tensor_proto(proto).reshape(-1)]


def _fixed_part(outputs: Mapping[str, tensor_pb2.TensorProto], width: int) -> np.ndarray:
  """Per position, the fixed-size middle of its ``Item``: every head's ``head_scores``
  entry (2), the ``fused_score`` (3) and the ``reasons`` (4) key, as a (width, size)
  table."""
  pieces = []   # (constant prefix, float32 column or None)
  for name, proto in outputs.items():
    dims = [d.size for d in proto.tensor_shape.dim]
    if name in NOT_HEADS or proto.dtype not in _FLOATS or dims != [1, width]:
      continue
    key = predict_wire.length_delimited(b"\x0a", name.encode())
    # A map entry: the key (1) and the float value (field 2, a 5-byte fixed32 field).
    pieces.append((b"\x12" + predict_wire.varint(len(key) + 5) + key + b"\x15",
                   _float32_bytes(proto, width)))
  pieces += [(b"\x1d", _float32_bytes(outputs["fused_score"], width)), (b"\x22", None)]
  table = np.empty((width, sum(len(p) + 4 * (c is not None) for p, c in pieces)), np.uint8)
  at = 0
  for prefix, column in pieces:
    table[:, at:at + len(prefix)] = np.frombuffer(prefix, np.uint8)
    at += len(prefix)
    if column is not None:
      table[:, at:at + 4] = np.frombuffer(column, np.uint8).reshape(width, 4)
      at += 4
  return table


def encode_items(outputs: Mapping[str, tensor_pb2.TensorProto]) -> bytes:
  """``RecommendResponse.items`` (field 1) for the placed positions of a ``recommend``
  answer, in rank order."""
  ids = _strings(outputs["ranked_track_ids"])
  reasons = _strings(outputs["reasons"])
  fixed = _fixed_part(outputs, len(ids))
  size = fixed.shape[1]
  table = fixed.tobytes()
  varint = predict_wire.varint
  parts = []
  for i, track in enumerate(ids):
    if track:
      why = reasons[i]
      # Item: track_id (1), the fixed part, then the reasons' length and bytes.
      item = b"\x0a%b%b%b%b%b" % (varint(len(track)), track, table[i * size:(i + 1) * size],
                                  varint(len(why)), why)
      parts.append(b"\x0a%b%b" % (varint(len(item)), item))
  return b"".join(parts)
