"""Request tensors: ``TensorProto`` <-> numpy, and checks against a signature's inputs.

This module owns what the server accepts as a Predict input: every problem with a
request's tensors (missing, unknown, wrong dtype, wrong rank or trailing dims, batch
sizes that disagree, malformed or oversized protos) becomes an :class:`InputError` that
names the input, which the server answers with ``INVALID_ARGUMENT``. Decoding never
trusts the claimed shape: the element count is checked before anything is allocated.
"""

import dataclasses
import math
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2

# A request claiming more elements than this per tensor is refused before decoding,
# since a few bytes of proto can claim a huge shape (TF repeats the last value).
DEFAULT_MAX_ELEMENTS = 1 << 24


class InputError(ValueError):
  """A request input is unacceptable; the message names the input."""


@dataclasses.dataclass(frozen=True)
class InputSpec:
  """What a signature expects for one input.

  Attributes:
    name: Input key.
    dtype: ``types_pb2`` enum value of the dtype.
    shape: Dims, ``None`` where any size is allowed; ``None`` for an unknown rank.
  """
  name: str
  dtype: int
  shape: Optional[Tuple[Optional[int], ...]]

  @property
  def batched(self) -> bool:
    """Whether dim 0 is free (a batch dimension)."""
    return bool(self.shape) and self.shape[0] is None

  def describe(self) -> str:
    dims = "?" if self.shape is None else "[" + ", ".join(
        "None" if d is None else str(d) for d in self.shape) + "]"
    return f"{dtype_name(self.dtype)}{dims}"


def dtype_name(enum: int) -> str:
  try:
    return tf.dtypes.as_dtype(enum).name
  except TypeError:
    return f"dtype#{enum}"


def input_specs(function) -> Dict[str, InputSpec]:
  """The inputs of a concrete signature function, from ``structured_input_signature``."""
  args, kwargs = function.structured_input_signature
  if args:
    raise ValueError(f"signature takes {len(args)} positional inputs; signatures must "
                     "take keyword inputs")
  specs = {}
  for name, spec in kwargs.items():
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    specs[name] = InputSpec(name, spec.dtype.as_datatype_enum, shape)
  return specs


def to_ndarray(name: str, proto: tensor_pb2.TensorProto, spec: InputSpec,
               max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
  """Checks ``proto`` against ``spec`` and decodes it.

  Raises:
    InputError: naming ``name``, for a wrong dtype, rank or dim, or a malformed proto.
  """
  if proto.dtype != spec.dtype:
    raise InputError(f"input '{name}' has dtype {dtype_name(proto.dtype)}, the signature "
                     f"expects {dtype_name(spec.dtype)}")
  if proto.tensor_shape.unknown_rank:
    raise InputError(f"input '{name}' has an unknown rank; send a fully defined shape")
  dims = tuple([d.size for d in proto.tensor_shape.dim])
  if dims and min(dims) < 0:
    raise InputError(f"input '{name}' has a negative dim in shape {list(dims)}")
  if spec.shape is not None:
    if len(dims) != len(spec.shape):
      raise InputError(f"input '{name}' has rank {len(dims)} (shape {list(dims)}), the "
                       f"signature expects rank {len(spec.shape)} ({spec.describe()})")
    for axis, (got, want) in enumerate(zip(dims, spec.shape)):
      if want is not None and got != want:
        raise InputError(f"input '{name}' has size {got} in dim {axis} (shape "
                         f"{list(dims)}), the signature expects {want} ({spec.describe()})")
  count = math.prod(dims)
  if count > max_elements:
    raise InputError(f"input '{name}' has {count} elements, more than the limit "
                     f"{max_elements}")
  content = proto.tensor_content
  if content:
    if spec.dtype == types_pb2.DT_STRING:
      raise InputError(f"input '{name}': string tensors cannot use tensor_content")
    raw = _RAW_ENUMS.get(spec.dtype)   # the common dtypes, without TF's dtype lookup
    itemsize = raw.itemsize if raw is not None else tf.dtypes.as_dtype(spec.dtype).size
    if len(content) != count * itemsize:
      raise InputError(f"input '{name}' has {len(content)} bytes of "
                       f"tensor_content, shape {list(dims)} needs {count * itemsize}")
  else:
    values = _value_count(proto)
    if values > count:
      raise InputError(f"input '{name}' has {values} values, more than shape {list(dims)} "
                       f"holds ({count})")
  try:
    array = _decode_fast(proto, dims)
    if array is None:
      array = tf.make_ndarray(proto)
  except Exception as e:  # pylint: disable=broad-except
    raise InputError(f"input '{name}' could not be decoded: {e}") from e
  if array.shape != dims:
    raise InputError(f"input '{name}' decoded to shape {list(array.shape)}, declared "
                     f"{list(dims)}")
  return array


def _value_count(proto: tensor_pb2.TensorProto) -> int:
  return max(len(proto.half_val), len(proto.float_val), len(proto.double_val),
             len(proto.int_val), len(proto.string_val), len(proto.int64_val),
             len(proto.bool_val), len(proto.uint32_val), len(proto.uint64_val),
             len(proto.scomplex_val) // 2, len(proto.dcomplex_val) // 2)


def decode_inputs(protos: Mapping[str, tensor_pb2.TensorProto],
                  specs: Mapping[str, InputSpec], signature_name: str,
                  max_elements: int = DEFAULT_MAX_ELEMENTS) -> Dict[str, np.ndarray]:
  """Validates a Predict request's inputs against a signature and decodes them.

  Raises:
    InputError: A missing or unknown input, a bad tensor, or batch sizes that disagree.
  """
  missing = sorted(set(specs) - set(protos))
  if missing:
    raise InputError(f"missing input(s) {missing} for signature '{signature_name}'; it "
                     f"expects {_expected(specs)}")
  unknown = sorted(set(protos) - set(specs))
  if unknown:
    raise InputError(f"unknown input(s) {unknown} for signature '{signature_name}'; it "
                     f"expects {_expected(specs)}")
  arrays = {name: to_ndarray(name, protos[name], specs[name], max_elements)
            for name in sorted(specs)}
  first = None
  for name in sorted(specs):
    if not specs[name].batched:
      continue
    size = arrays[name].shape[0]
    if first is None:
      first = (name, size)
    elif size != first[1]:
      raise InputError(f"input '{name}' has batch size {size} but input '{first[0]}' has "
                       f"{first[1]}; batch dims must agree")
  return arrays


def batch_size(arrays: Mapping[str, np.ndarray], specs: Mapping[str, InputSpec]) -> Optional[int]:
  """The shared dim 0 of the batched inputs, or None when no input is batched."""
  for name in sorted(specs):
    if specs[name].batched:
      return int(arrays[name].shape[0])
  return None


def _expected(specs: Mapping[str, InputSpec]) -> str:
  return "{" + ", ".join(f"'{n}': {specs[n].describe()}" for n in sorted(specs)) + "}"


# numpy dtype <-> TensorProto dtype for the fast path: these travel as raw
# little-endian bytes in ``tensor_content`` (what ``tf.make_tensor_proto`` also emits for
# numpy arrays), so encoding and decoding is one memory copy instead of TensorFlow's
# generic per-type Python code, which costs per tensor, several times per request
# (docs/benchmarks.md).
_RAW_DTYPES = {
    np.dtype(np.float32): types_pb2.DT_FLOAT, np.dtype(np.float64): types_pb2.DT_DOUBLE,
    np.dtype(np.int32): types_pb2.DT_INT32, np.dtype(np.int64): types_pb2.DT_INT64,
    np.dtype(np.int16): types_pb2.DT_INT16, np.dtype(np.int8): types_pb2.DT_INT8,
    np.dtype(np.uint8): types_pb2.DT_UINT8, np.dtype(np.uint16): types_pb2.DT_UINT16,
    np.dtype(np.uint32): types_pb2.DT_UINT32, np.dtype(np.uint64): types_pb2.DT_UINT64,
    np.dtype(np.bool_): types_pb2.DT_BOOL,
}
_RAW_ENUMS = {enum: dtype for dtype, enum in _RAW_DTYPES.items()}


def fill_tensor_proto(proto: tensor_pb2.TensorProto, array) -> tensor_pb2.TensorProto:
  """Encodes ``array`` into ``proto`` in place (e.g. ``request.inputs[name]``).

  numpy arrays of the common numeric dtypes go as raw ``tensor_content``; byte and
  unicode strings as ``string_val``; anything else (Python scalars and lists, whose
  dtype TensorFlow infers, e.g. float32 for a Python float) through
  ``tf.make_tensor_proto``, so the wire format is the one TF Serving clients expect.
  """
  if isinstance(array, np.ndarray):
    enum = _RAW_DTYPES.get(array.dtype.newbyteorder("="))
    if enum is not None:
      proto.dtype = enum
      for d in array.shape:
        proto.tensor_shape.dim.add(size=d)
      if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
      proto.tensor_content = np.ascontiguousarray(array).tobytes()
      return proto
    if array.dtype.kind in "SUO":
      values = array.ravel().tolist()
      if all(type(v) is bytes for v in values):  # pylint: disable=unidiomatic-typecheck
        strings = values
      elif all(isinstance(v, (bytes, str)) for v in values):
        strings = [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values]
      else:
        strings = None
      if strings is not None:
        proto.dtype = types_pb2.DT_STRING
        for d in array.shape:
          proto.tensor_shape.dim.add(size=d)
        proto.string_val.extend(strings)
        return proto
  proto.CopyFrom(tf.make_tensor_proto(array))
  return proto


def to_tensor_proto(array) -> tensor_pb2.TensorProto:
  """Encodes a numpy array (or anything ``tf.make_tensor_proto`` takes) as a
  ``TensorProto``; see :func:`fill_tensor_proto`."""
  return fill_tensor_proto(tensor_pb2.TensorProto(), array)


def to_tensor_protos(arrays: Mapping[str, object]) -> Dict[str, tensor_pb2.TensorProto]:
  return {name: to_tensor_proto(value) for name, value in arrays.items()}


def from_tensor_proto(proto: tensor_pb2.TensorProto) -> np.ndarray:
  """Decodes a response ``TensorProto``; strings come back as an object array of bytes."""
  dims = tuple(d.size for d in proto.tensor_shape.dim)
  fast = _decode_fast(proto, dims)
  return fast if fast is not None else tf.make_ndarray(proto)


def _decode_fast(proto: tensor_pb2.TensorProto, dims: Tuple[int, ...]) -> Optional[np.ndarray]:
  """The array of a raw-content numeric or a complete string proto, else None (the
  caller falls back to ``tf.make_ndarray``, which also expands repeated-last values)."""
  count = math.prod(dims)
  dtype = _RAW_ENUMS.get(proto.dtype)
  if dtype is not None and proto.tensor_content:
    content = proto.tensor_content
    if len(content) != count * dtype.itemsize:
      return None
    # bytearray: a writable array, like tf.make_ndarray's (one copy of a few KB).
    return np.frombuffer(bytearray(content), dtype=dtype.newbyteorder("<")).reshape(dims)
  if proto.dtype == types_pb2.DT_STRING and len(proto.string_val) == count:
    out = np.empty(count, dtype=object)
    out[:] = list(proto.string_val)
    return out.reshape(dims)
  return None


def split_rows(array: np.ndarray, sizes: Sequence[int]) -> Sequence[np.ndarray]:
  """Splits ``array`` along dim 0 into consecutive pieces of ``sizes`` rows."""
  return np.split(array, np.cumsum(sizes)[:-1], axis=0)


def load_saved_model(path: str):
  """``tf.saved_model.load`` with the custom ops Melody's exports may use registered.

  A model composed with the text-intent module tokenizes in the graph with
  tensorflow_text kernels (FastBertNormalize, FastWordpieceTokenizeWithOffsets); those
  ops exist in a process only once ``tensorflow_text`` is imported (stock TF Serving
  links them in).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_text  # noqa: F401  pylint: disable=g-import-not-at-top,unused-import
  return tf.saved_model.load(path)
