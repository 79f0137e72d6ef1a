"""TensorProto codecs: the fast raw-bytes path must match TensorFlow's own encoding."""

import numpy as np
import pytest

import serving  # noqa: F401  (Keras 2 guard before TensorFlow)
import tensorflow as tf
from tensorflow.core.framework import types_pb2

from serving import tensors

ARRAYS = [
    np.arange(12, dtype=np.int64).reshape(3, 4),
    np.linspace(-1, 1, 5, dtype=np.float32),
    np.array([[1.5, 2.5]], np.float64),
    np.array([True, False, True]),
    np.arange(6, dtype=np.int32).reshape(1, 2, 3),
    np.zeros((0, 3), np.float32),
    np.array(7, np.int64),
    np.array([b"a", b"", b"\xff\x00"], dtype=object),
]


@pytest.mark.parametrize("array", ARRAYS, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_matches_tensorflow(array):
  proto = tensors.to_tensor_proto(array)
  reference = tf.make_tensor_proto(array)
  assert proto.dtype == reference.dtype
  assert [d.size for d in proto.tensor_shape.dim] == list(array.shape)
  # Both decoders agree on what we encode, and ours decodes what TF encodes.
  for decoded in (tensors.from_tensor_proto(proto), tf.make_ndarray(proto),
                  tensors.from_tensor_proto(reference)):
    assert decoded.shape == array.shape
    assert decoded.tolist() == array.tolist()
  decoded = tensors.from_tensor_proto(proto)
  if decoded.size and decoded.dtype != object:
    decoded[...] = decoded   # writable, like tf.make_ndarray's arrays


def test_unicode_and_big_endian_and_python_values():
  proto = tensors.to_tensor_proto(np.array(["x", "yé"]))
  assert proto.dtype == types_pb2.DT_STRING
  assert tensors.from_tensor_proto(proto).tolist() == [b"x", "yé".encode()]
  big = np.arange(4, dtype=">i4")
  assert tensors.from_tensor_proto(tensors.to_tensor_proto(big)).tolist() == [0, 1, 2, 3]
  # Python values keep TensorFlow's dtype inference (float32 for a float).
  assert tensors.to_tensor_proto(1.5).dtype == types_pb2.DT_FLOAT
  assert tensors.to_tensor_proto([[1, 2]]).dtype == types_pb2.DT_INT32


def test_repeated_field_protos_still_decode_and_check():
  spec = tensors.InputSpec("x", types_pb2.DT_FLOAT, (None, 2))
  proto = tf.make_tensor_proto([[1.0, 2.0]], dtype=tf.float32)
  proto.ClearField("tensor_content")
  proto.float_val.extend([1.0, 2.0])
  np.testing.assert_array_equal(tensors.to_ndarray("x", proto, spec), [[1.0, 2.0]])
  short = tensors.to_tensor_proto(np.zeros((1, 2), np.float32))
  short.tensor_content = short.tensor_content[:4]
  with pytest.raises(tensors.InputError, match="input 'x' has 4 bytes of tensor_content"):
    tensors.to_ndarray("x", short, spec)
