"""The REST JSON codec (serving.rest_json): TF Serving's row and columnar formats, b64
bytes, float formatting, and errors that name the field."""

import json

import numpy as np
import pytest

from serving import rest_json
from tensorflow.core.framework import types_pb2

F32, F64, I32, I64, STR, BOOL = (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT32,
                                 types_pb2.DT_INT64, types_pb2.DT_STRING, types_pb2.DT_BOOL)
SENSORS = {"tag": STR, "signal": I32, "sensor": F32}
NAN, INF = float("nan"), float("inf")


def test_row_and_columnar_examples_of_the_tf_serving_docs_give_the_same_tensors():
  row = {"instances": [{"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
                       {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}]}
  column = {"inputs": {"tag": ["foo", "bar"], "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
                       "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}}
  fmt_row, by_row = rest_json.predict_inputs(row, SENSORS, "s")
  fmt_column, by_column = rest_json.predict_inputs(column, SENSORS, "s")
  assert (fmt_row, fmt_column) == (rest_json.ROW, rest_json.COLUMNAR)
  for got in (by_row, by_column):
    assert list(got["tag"]) == [b"foo", b"bar"] and got["tag"].dtype == object
    np.testing.assert_array_equal(got["signal"], [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]])
    assert got["signal"].dtype == np.int32 and got["sensor"].dtype == np.float32
    np.testing.assert_array_equal(got["sensor"], [[[1, 2], [3, 4]], [[4, 5], [6, 8]]])


def test_a_single_input_takes_plain_values_and_b64_bytes():
  _, got = rest_json.predict_inputs({"instances": ["foo", {"b64": "/2Jhcg=="}]},
                                    {"w": STR}, "s")
  assert list(got["w"]) == [b"foo", b"\xffbar"]
  _, got = rest_json.predict_inputs({"inputs": [[1, 2], [3, 4]]}, {"m": F64}, "s")
  assert got["m"].dtype == np.float64 and got["m"].shape == (2, 2)
  _, got = rest_json.predict_inputs({"inputs": {"k": 7, "flags": [True, False]}},
                                    {"k": I32, "flags": BOOL}, "s")
  assert got["k"].shape == () and got["k"] == 7 and got["flags"].dtype == np.bool_
  _, got = rest_json.predict_inputs({"inputs": {"x": [NAN, INF]}}, {"x": F32}, "s")
  assert np.isnan(got["x"][0]) and got["x"][1] == np.inf


@pytest.mark.parametrize("doc, message", [
    ({"instances": [{"tag": "a", "signal": [1], "sensor": [[1]]},
                    {"tag": "b", "signal": [1, 2], "sensor": [[1]]}]},
     r"instances\[1\]\['signal'\] has shape \[2\]"),
    ({"instances": [{"tag": "a", "signal": [1]}]},
     r"instances\[0\] lacks input\(s\) \['sensor'\]"),
    ({"instances": [{"tag": "a", "signal": [1], "sensor": 1, "x": 1}]},
     r"unknown input\(s\) \['x'\]"),
    ({"instances": ["a", "b"]}, r"'instances' is a list of values, but signature 's' takes 3"),
    ({"instances": []}, "'instances' is empty"),
    ({"instances": {"tag": "a"}}, "'instances' must be a list"),
    ({"inputs": [1, 2]}, "'inputs' is a single value, but signature 's' takes 3"),
    ({"inputs": {"signal": [[1, 2], [3]]}}, r"inputs\['signal'\]: a list of 1 at depth 1"),
    ({"inputs": {"signal": [1, [2]]}}, r"inputs\['signal'\]: a list at depth 1"),
    ({"inputs": {"signal": [1.5]}}, r"inputs\['signal'\]: 1.5 \(a number\) is not a int32"),
    ({"inputs": {"signal": [True]}}, r"inputs\['signal'\]: true \(a boolean\)"),
    ({"inputs": {"signal": [2 ** 31]}}, r"inputs\['signal'\]: 2147483648 does not fit int32"),
    ({"inputs": {"sensor": ["1"]}}, r"inputs\['sensor'\]: \"1\" \(a string\) is not a float32"),
    ({"inputs": {"sensor": [16777217]}}, "without loss of precision"),
    ({"inputs": {"sensor": [1e39]}}, "out of the range of float32"),
    ({"inputs": {"tag": [{"b64": "%%"}]}}, r"inputs\['tag'\]: .* is not valid base64"),
    ({"inputs": {"tag": [3]}}, r"inputs\['tag'\]: 3 \(a number\) is not a string"),
    ({"inputs": {}, "instances": []}, "not both"),
    ({"signature_name": "s"}, "missing 'instances'"),
])
def test_bad_bodies_name_the_field(doc, message):
  with pytest.raises(rest_json.JsonError, match=message):
    rest_json.predict_inputs(doc, SENSORS, "s")


def test_parse_body_and_signature_name():
  assert rest_json.parse_body(b'{"signature_name": "tag", "inputs": [NaN]}')["signature_name"] \
      == "tag"
  for body, message in [(b"", "empty"), (b"{", "malformed JSON"), (b"[1]", "a list"),
                        (b"\xff", "not UTF-8"), (b"[" * 100000, "malformed JSON")]:
    with pytest.raises(rest_json.JsonError, match=message):
      rest_json.parse_body(body)
  assert rest_json.signature_name({}) == ""
  with pytest.raises(rest_json.JsonError, match="'signature_name' must be a string"):
    rest_json.signature_name({"signature_name": 3})


def test_responses_are_shaped_as_tf_serving_shapes_them():
  one = {"score": np.array([0.5, 2.0], np.float32)}
  two = {"score": np.array([0.5, 2.0], np.float32), "ids": np.array([[1, 2], [3, 4]])}
  assert rest_json.predict_response(one, rest_json.ROW) == {"predictions": [0.5, 2.0]}
  assert rest_json.predict_response(one, rest_json.COLUMNAR) == {"outputs": [0.5, 2.0]}
  assert rest_json.predict_response(two, rest_json.ROW) == {
      "predictions": [{"ids": [1, 2], "score": 0.5}, {"ids": [3, 4], "score": 2.0}]}
  assert rest_json.predict_response(two, rest_json.COLUMNAR) == {
      "outputs": {"ids": [[1, 2], [3, 4]], "score": [0.5, 2.0]}}
  assert rest_json.predict_response({"t": np.float32(3)}, rest_json.COLUMNAR) == {"outputs": 3.0}
  with pytest.raises(rest_json.JsonError, match="output 't' is a scalar"):
    rest_json.predict_response({"t": np.float32(3), "u": np.ones(2)}, rest_json.ROW)
  with pytest.raises(rest_json.JsonError, match="output 'u' has 3 rows but output 't' has 2"):
    rest_json.predict_response({"t": np.ones(2), "u": np.ones(3)}, rest_json.ROW)


def test_strings_are_text_or_b64_and_round_trip():
  words = np.array([b"rain", "caf\u00e9".encode(), b"\xff\x00"], dtype=object)
  assert rest_json.to_json(words, "upper") == ["rain", "caf\u00e9", {"b64": "/wA="}]
  assert rest_json.to_json(words[:1], "image_bytes") == [{"b64": "cmFpbg=="}]
  for name in ("upper", "image_bytes"):
    back = rest_json.to_array(json.loads(json.dumps(rest_json.to_json(words, name))), STR, "w")
    assert list(back) == list(words)


def test_float32_is_written_with_the_fewest_digits_that_read_back_exactly():
  assert rest_json.dumps({"v": rest_json.to_json(np.array([0.1, 3, 1e-7], np.float32))}) == \
      b'{"v": [0.1, 3.0, 1e-07]}\n'
  rng = np.random.default_rng(0)
  values = (rng.standard_normal(20000)
            * 10.0 ** rng.integers(-44, 38, 20000)).astype(np.float32)
  values = np.concatenate([values, np.array(
      [0, -0.0, 1e-45, 3.4028235e38, -3.4028235e38, 1000, 100, 1e-5, 0.3, np.nan, np.inf,
       -np.inf], np.float32)])
  text = rest_json.dumps(rest_json.to_json(values))
  back = rest_json.to_array(json.loads(text), F32, "v")
  np.testing.assert_array_equal(back, values)   # Exact, NaN and signed zero included.
  assert np.array_equal(np.signbit(back), np.signbit(values))
  # As short as numpy's shortest repr of each float32.
  expected = [float(str(v)) for v in values[np.isfinite(values)]]
  assert rest_json.to_json(values[np.isfinite(values)]) == expected
  half = rng.standard_normal(500).astype(np.float16)
  assert rest_json.to_json(half) == [float(str(v)) for v in half]
