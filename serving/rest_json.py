"""JSON <-> tensors for TF Serving's REST API, on both sides of the wire.

This module owns the JSON shapes of a REST ``predict`` call, as the stock
``tensorflow_model_server`` reads and writes them: a request body in the row format
(``{"instances": [...]}``, one item per batch row, an object per row when the signature
has several inputs) or the columnar format (``{"inputs": ...}``, one value per input, or
the value itself when there is one input); the answer as ``{"predictions": [...]}`` (per
row, an object per row when there are several outputs) or ``{"outputs": ...}``. JSON
values become numpy arrays of the dtype the signature declares (the JSON has no dtypes)
and arrays become JSON values: byte strings travel as UTF-8 text, or as
``{"b64": "<base64>"}`` when they are not valid UTF-8 or the tensor's name ends in
``_bytes``; floats may be ``NaN``, ``Infinity`` and ``-Infinity``; float32 values are
written with the fewest digits that read back to the same float32. Every problem with a
body is a :class:`JsonError` whose message names the field (``instances[2]['x']``,
``inputs['ids']``), which the server answers with HTTP 400.
"""

import base64
import binascii
import json
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from tensorflow.core.framework import types_pb2

from serving import tensors

ROW = "row"
COLUMNAR = "columnar"
BYTES_SUFFIX = "_bytes"

_FLOATS = {types_pb2.DT_HALF: np.float16, types_pb2.DT_FLOAT: np.float32,
           types_pb2.DT_DOUBLE: np.float64}
_INTS = {types_pb2.DT_INT8: np.int8, types_pb2.DT_INT16: np.int16,
         types_pb2.DT_INT32: np.int32, types_pb2.DT_INT64: np.int64,
         types_pb2.DT_UINT8: np.uint8, types_pb2.DT_UINT16: np.uint16,
         types_pb2.DT_UINT32: np.uint32, types_pb2.DT_UINT64: np.uint64}


class JsonError(ValueError):
  """A request body (or a requested response format) is unacceptable; the message names
  the field."""


# ------------------------------------------------------------------ request body


def parse_body(body: bytes) -> dict:
  """The JSON object of a request body.

  Raises:
    JsonError: an empty body, invalid UTF-8 or JSON, or a top level that is not an object.
  """
  if not body or not body.strip():
    raise JsonError("the request body is empty; send a JSON object")
  try:
    doc = json.loads(body.decode("utf-8"))
  except UnicodeDecodeError as e:
    raise JsonError(f"the request body is not UTF-8: {e}") from e
  except json.JSONDecodeError as e:
    raise JsonError(f"malformed JSON: {e.msg} at line {e.lineno} column {e.colno}") from e
  except RecursionError as e:
    raise JsonError("malformed JSON: nested too deeply") from e
  if not isinstance(doc, dict):
    raise JsonError(f"the request body must be a JSON object, got {_kind(doc)}")
  return doc


def signature_name(doc: Mapping[str, object]) -> str:
  """The body's ``signature_name`` ('' when absent: the server's default signature)."""
  name = doc.get("signature_name", "")
  if not isinstance(name, str):
    raise JsonError(f"'signature_name' must be a string, got {_kind(name)}")
  return name


def predict_inputs(doc: Mapping[str, object], dtypes: Mapping[str, int],
                   signature: str) -> Tuple[str, Dict[str, np.ndarray]]:
  """The input arrays of a predict body, and its format (:data:`ROW` or :data:`COLUMNAR`).

  Shapes are taken from the JSON; whether they suit the signature is checked later,
  by the same code that checks gRPC requests. Inputs the body does not give are left
  out (that check names them too).

  Args:
    doc: The parsed body.
    dtypes: The signature's input dtypes (``types_pb2`` enums) by input name.
    signature: The signature's name, for messages.

  Raises:
    JsonError: naming the field, for a body that cannot be read as the signature's inputs.
  """
  if "instances" in doc and "inputs" in doc:
    raise JsonError("give either 'instances' (row format) or 'inputs' (columnar format), "
                    "not both")
  if "instances" in doc:
    return ROW, _rows(doc["instances"], dtypes, signature)
  if "inputs" in doc:
    return COLUMNAR, _columns(doc["inputs"], dtypes, signature)
  raise JsonError("missing 'instances' (row format) or 'inputs' (columnar format)")


def _rows(instances, dtypes: Mapping[str, int], signature: str) -> Dict[str, np.ndarray]:
  if not isinstance(instances, list):
    raise JsonError(f"'instances' must be a list, got {_kind(instances)}")
  if not instances:
    raise JsonError("'instances' is empty; send at least one instance")
  if not _is_named(instances[0]):
    (name,) = _single_input(dtypes, signature, "'instances' is a list of values")
    return {name: to_array(instances, dtypes[name], f"instances (input '{name}')")}
  columns: Dict[str, List[np.ndarray]] = {}
  for i, instance in enumerate(instances):
    if not _is_named(instance):
      raise JsonError(f"instances[{i}] is {_kind(instance)}, but instances[0] is an object "
                      "of named inputs; every instance must be one")
    _check_names(instance, dtypes, f"instances[{i}]", signature, complete=True)
    for name in sorted(instance):
      value = to_array(instance[name], dtypes[name], f"instances[{i}]['{name}']")
      first = columns.setdefault(name, [value])[0]
      if i and value.shape != first.shape:
        raise JsonError(f"instances[{i}]['{name}'] has shape {list(value.shape)} but "
                        f"instances[0]['{name}'] has {list(first.shape)}; an input has one "
                        "shape in every instance (use 'inputs' for other layouts)")
      if i:
        columns[name].append(value)
  return {name: np.stack(values) for name, values in columns.items()}


def _columns(inputs, dtypes: Mapping[str, int], signature: str) -> Dict[str, np.ndarray]:
  if not _is_named(inputs):
    (name,) = _single_input(dtypes, signature, "'inputs' is a single value")
    return {name: to_array(inputs, dtypes[name], f"inputs (input '{name}')")}
  # Missing inputs are named by the dispatcher's check, as for gRPC.
  _check_names(inputs, dtypes, "inputs", signature, complete=False)
  return {name: to_array(value, dtypes[name], f"inputs['{name}']")
          for name, value in sorted(inputs.items())}


def _check_names(given, dtypes: Mapping[str, int], where: str, signature: str,
                 complete: bool) -> None:
  """Refuses input names the signature lacks (and, if ``complete``, missing ones)."""
  for problem, names in (("has unknown", set(given) - set(dtypes)),
                         ("lacks", set(dtypes) - set(given) if complete else ())):
    if names:
      raise JsonError(f"{where} {problem} input(s) {sorted(names)}; signature "
                      f"'{signature}' takes {sorted(dtypes)}")


def _single_input(dtypes: Mapping[str, int], signature: str, what: str) -> Sequence[str]:
  if len(dtypes) != 1:
    raise JsonError(f"{what}, but signature '{signature}' takes {len(dtypes)} inputs "
                    f"{sorted(dtypes)}; key the values by input name")
  return list(dtypes)


def _is_named(value) -> bool:
  """An object of named tensors (a ``{"b64": ...}`` object is one byte string)."""
  return isinstance(value, dict) and not _is_b64(value)


def _is_b64(value) -> bool:
  return isinstance(value, dict) and len(value) == 1 and isinstance(value.get("b64"), str)


# ------------------------------------------------------------- values <-> arrays


def to_array(value, dtype: int, field: str) -> np.ndarray:
  """A JSON value (a scalar or nested lists) as an array of ``dtype`` (a ``types_pb2`` enum).

  Raises:
    JsonError: naming ``field``, for nested lists that are not rectangular, or values that
      are not of ``dtype`` (or do not fit it).
  """
  shape = []
  probe = value
  while isinstance(probe, list):
    shape.append(len(probe))
    if not probe:
      break
    probe = probe[0]
  leaves: list = []
  _collect(value, shape, 0, leaves, field)
  return _typed(leaves, dtype, field).reshape(shape)


def _collect(value, shape: Sequence[int], depth: int, leaves: list, field: str) -> None:
  if depth == len(shape):
    if isinstance(value, list):
      raise JsonError(f"{field}: a list at depth {depth}, where the first elements have "
                      "values; nested lists must be rectangular")
    leaves.append(value)
    return
  if not isinstance(value, list):
    raise JsonError(f"{field}: {_kind(value)} at depth {depth}, where the first elements "
                    f"have lists of {shape[depth]}; nested lists must be rectangular")
  if len(value) != shape[depth]:
    raise JsonError(f"{field}: a list of {len(value)} at depth {depth}, where the first "
                    f"elements have {shape[depth]}; nested lists must be rectangular")
  for item in value:
    _collect(item, shape, depth + 1, leaves, field)


def _typed(leaves: list, dtype: int, field: str) -> np.ndarray:
  name = tensors.dtype_name(dtype)
  if dtype == types_pb2.DT_STRING:
    out = np.empty(len(leaves), dtype=object)
    out[:] = [_to_bytes(v, field) for v in leaves]
    return out
  if dtype == types_pb2.DT_BOOL:
    _check_types(leaves, (bool,), field, name)
    return np.array(leaves, dtype=np.bool_)
  if dtype in _INTS:
    _check_types(leaves, (int,), field, name)
    info = np.iinfo(_INTS[dtype])
    bad = next((v for v in leaves if not info.min <= v <= info.max), None)
    if bad is not None:
      raise JsonError(f"{field}: {bad} does not fit {name} ([{info.min}, {info.max}])")
    return np.array(leaves, dtype=_INTS[dtype])
  if dtype in _FLOATS:
    _check_types(leaves, (int, float), field, name)
    numpy_type = _FLOATS[dtype]
    exact = 2 ** (np.finfo(numpy_type).nmant + 1)   # every int up to this is a float
    for v in leaves:
      if type(v) is int and abs(v) > exact and not _int_fits(v, numpy_type):  # noqa: E721
        raise JsonError(f"{field}: {v} cannot be a {name} without loss of precision")
    with np.errstate(over="ignore"):
      wide = np.array(leaves, dtype=np.float64)
      out = wide.astype(numpy_type)
    overflow = np.isinf(out) & np.isfinite(wide)
    if overflow.any():
      raise JsonError(f"{field}: {float(wide[overflow][0])!r} is out of the range of {name}")
    return out
  raise JsonError(f"{field}: dtype {name} has no JSON encoding")


def _int_fits(value: int, numpy_type) -> bool:
  try:
    with np.errstate(over="ignore"):
      as_float = numpy_type(value)
  except OverflowError:
    return False
  return bool(np.isfinite(as_float)) and int(as_float) == value


def _check_types(leaves: list, allowed: tuple, field: str, dtype_name: str) -> None:
  # bool is an int subclass in Python; JSON true/false are not numbers.
  for v in leaves:
    if type(v) not in allowed:
      raise JsonError(f"{field}: {_show(v)} ({_kind(v)}) is not a {dtype_name} value")


def _to_bytes(value, field: str) -> bytes:
  if isinstance(value, str):
    return value.encode("utf-8")
  if _is_b64(value):
    try:
      return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as e:
      raise JsonError(f"{field}: {_show(value)} is not valid base64: {e}") from e
  raise JsonError(f"{field}: {_show(value)} ({_kind(value)}) is not a string or a "
                  '{"b64": ...} object')


def to_json(array, name: str = ""):
  """An array as a JSON-ready value: nested lists of Python scalars, strings or
  ``{"b64": ...}`` objects (see the module docstring)."""
  array = np.asarray(array)
  kind = array.dtype.kind
  if kind == "f":
    if array.dtype.itemsize < 8:
      return _shortest_doubles(array).tolist()
    return array.tolist()
  if kind in "biu":
    return array.tolist()
  if kind in "OSU":
    as_bytes = name.endswith(BYTES_SUFFIX)
    flat = np.empty(array.size, dtype=object)
    flat[:] = [_string_json(v, as_bytes) for v in array.ravel().tolist()]
    return flat.reshape(array.shape).tolist()
  raise JsonError(f"tensor '{name}' of dtype {array.dtype} has no JSON encoding")


def _string_json(value, as_bytes: bool):
  if isinstance(value, str):
    value = value.encode("utf-8")
  if not as_bytes:
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:
      pass
  return {"b64": base64.b64encode(value).decode("ascii")}


def _shortest_doubles(array: np.ndarray) -> np.ndarray:
  """Float16/32 values as the float64 values of their shortest round-tripping decimals.

  ``json`` writes a float64 with the fewest digits that read back as that float64; for
  the float64 nearest a decimal of up to 9 digits that is the decimal itself. So each
  value is rounded to 1, 2, ... 9 significant digits (in float64, where a float32 is
  exact) and the first rounding that reads back as the same narrow value is kept: 0.1f
  is written ``0.1``, not ``0.10000000149011612``.
  """
  narrow = array.dtype.type
  wide = array.astype(np.float64).ravel()
  out = wide.copy()
  todo = np.flatnonzero(np.isfinite(wide) & (wide != 0))
  values = wide[todo]
  digits = np.full(values.size, 9)
  with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
    exponent = np.floor(np.log10(np.abs(values)))
    exponent += np.abs(values) >= 10.0 ** (exponent + 1)   # log10 rounding at powers of 10
    exponent -= np.abs(values) < 10.0 ** exponent
    pending = np.ones(values.size, dtype=bool)
    for n in range(1, 10):
      idx = np.flatnonzero(pending)
      if not idx.size:
        break
      shift = n - 1 - exponent[idx]
      scale = 10.0 ** np.abs(shift)
      rounded = np.where(shift >= 0, np.round(values[idx] * scale) / scale,
                         np.round(values[idx] / scale) * scale)
      ok = rounded.astype(narrow) == values[idx].astype(narrow)
      out[todo[idx[ok]]] = rounded[ok]
      digits[idx[ok]] = n
      pending[idx[ok]] = False
  # Powers of ten past 1e22 are not exact in float64, so there the arithmetic may land a
  # double off the decimal; those (rare) magnitudes are formatted as text instead.
  for i in np.flatnonzero(np.abs(digits - 1 - exponent) > 22):
    out[todo[i]] = float(f"{values[i]:.{digits[i] - 1}e}")
  return out.reshape(array.shape)


# ---------------------------------------------------------------------- answer


def predict_response(outputs: Mapping[str, np.ndarray], fmt: str) -> dict:
  """The JSON answer to a predict call made in format ``fmt``.

  Raises:
    JsonError: a row-format answer for outputs without a shared first (batch) dim.
  """
  names = sorted(outputs)
  if fmt == COLUMNAR:
    if len(names) == 1:
      return {"outputs": to_json(outputs[names[0]], names[0])}
    return {"outputs": {name: to_json(outputs[name], name) for name in names}}
  rows = None
  for name in names:
    shape = np.shape(outputs[name])
    if not shape:
      raise JsonError(f"output '{name}' is a scalar, not one value per instance; ask in "
                      "the columnar format ('inputs')")
    if rows is None:
      rows = (name, shape[0])
    elif shape[0] != rows[1]:
      raise JsonError(f"output '{name}' has {shape[0]} rows but output '{rows[0]}' has "
                      f"{rows[1]}; ask in the columnar format ('inputs')")
  values = {name: to_json(outputs[name], name) for name in names}
  if len(names) == 1:
    return {"predictions": values[names[0]]}
  return {"predictions": [{name: values[name][i] for name in names}
                          for i in range(rows[1] if rows else 0)]}


def dumps(doc, pretty: bool = False) -> bytes:
  """``doc`` as JSON bytes (``NaN`` and ``Infinity`` allowed, as TF Serving writes them);
  ``pretty`` indents it, as TF Serving does for status and metadata."""
  return json.dumps(doc, ensure_ascii=False, allow_nan=True,
                    indent=2 if pretty else None).encode("utf-8") + b"\n"


# ---------------------------------------------------------------------- helpers


def _kind(value) -> str:
  if value is None:
    return "null"
  if isinstance(value, bool):
    return "a boolean"
  if isinstance(value, (int, float)):
    return "a number"
  if isinstance(value, str):
    return "a string"
  if isinstance(value, list):
    return "a list"
  return "an object"


def _show(value, limit: int = 60) -> str:
  text = json.dumps(value, ensure_ascii=False)
  return text if len(text) <= limit else text[:limit] + "..."
