"""The gateway's wire contract: the ``melody.gateway`` protobuf messages and service.

This module owns the messages of ``Gateway.Recommend`` and its method path. The venv has
no ``grpcio-tools`` (no ``protoc`` to generate ``_pb2`` modules at build time), so the
file descriptor is built here with ``descriptor_pb2`` and its classes come from
protobuf's message factory: the bytes on the wire are those of the equivalent
``gateway.proto`` (docs/nearline.md prints it), so a client in any language can
generate its stubs from that text. :func:`proto_text` renders it from this descriptor.
"""

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

PACKAGE = "melody.gateway"
SERVICE = f"{PACKAGE}.Gateway"
RECOMMEND_METHOD = f"/{SERVICE}/Recommend"

_F = descriptor_pb2.FieldDescriptorProto
_TYPES = {"string": _F.TYPE_STRING, "int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64,
          "float": _F.TYPE_FLOAT, "bool": _F.TYPE_BOOL}

# message -> [(field, type, repeated)], field numbers in list order from 1.
_MESSAGES = {
    "Weights": [("alpha", "float", False), ("beta", "float", False),
                ("gamma", "float", False)],
    "RecommendRequest": [
        ("user_id", "string", False),
        ("context", "string", False),          # activity; "" = unknown
        ("surface", "string", False),          # "" = home
        ("k", "int32", False),                 # 0 = the gateway's default
        ("request_text", "string", False),     # "" = none
        ("weights_override", "Weights", False),  # absent = the segment's weights
        ("experiment", "string", False),       # a model version label; "" = default
    ],
    "Item": [
        ("track_id", "string", False),
        ("head_scores", "HeadScoresEntry", True),
        ("fused_score", "float", False),
        ("reasons", "string", False),
    ],
    "RecommendResponse": [
        ("items", "Item", True),
        ("model_name", "string", False),
        ("model_version", "int64", False),
        ("model_label", "string", False),
        ("source", "string", False),           # "model" or "fallback_popularity"
        ("segment", "string", False),
        ("cold_start", "bool", False),
        ("weights", "Weights", False),
        ("arm", "string", False),              # experiment arm; "" = no experiment
    ],
}


def _add_field(message, name, type_name, number, repeated, scope):
  field = message.field.add(name=name, number=number, json_name=_camel(name))
  field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
  if type_name in _TYPES:
    field.type = _TYPES[type_name]
  else:
    field.type = _F.TYPE_MESSAGE
    field.type_name = f".{scope}.{type_name}"


def _camel(name: str) -> str:
  head, *rest = name.split("_")
  return head + "".join(w.title() for w in rest)


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
  fdp = descriptor_pb2.FileDescriptorProto(name="melody/gateway.proto", package=PACKAGE,
                                           syntax="proto3")
  for name, fields in _MESSAGES.items():
    message = fdp.message_type.add(name=name)
    scope = PACKAGE
    if name == "Item":
      entry = message.nested_type.add(name="HeadScoresEntry")
      entry.options.map_entry = True
      _add_field(entry, "key", "string", 1, False, PACKAGE)
      _add_field(entry, "value", "float", 2, False, PACKAGE)
      scope = f"{PACKAGE}.Item"
    for number, (field, type_name, repeated) in enumerate(fields, start=1):
      _add_field(message, field, type_name, number, repeated,
                 scope if type_name == "HeadScoresEntry" else PACKAGE)
  service = fdp.service.add(name="Gateway")
  service.method.add(name="Recommend", input_type=f".{PACKAGE}.RecommendRequest",
                     output_type=f".{PACKAGE}.RecommendResponse")
  return fdp


_POOL = descriptor_pool.DescriptorPool()
_FILE = _POOL.Add(_file_descriptor())


def _message(name: str):
  return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


Weights = _message("Weights")
RecommendRequest = _message("RecommendRequest")
Item = _message("Item")
RecommendResponse = _message("RecommendResponse")


def proto_text() -> str:
  """The ``.proto`` source equivalent to this descriptor (for other languages' stubs)."""
  lines = ['syntax = "proto3";', "", f"package {PACKAGE};", "",
           "service Gateway {",
           "  rpc Recommend(RecommendRequest) returns (RecommendResponse);", "}"]
  for name, fields in _MESSAGES.items():
    lines += ["", f"message {name} {{"]
    for number, (field, type_name, repeated) in enumerate(fields, start=1):
      if type_name == "HeadScoresEntry":
        lines.append(f"  map<string, float> {field} = {number};")
      else:
        lines.append(f"  {'repeated ' if repeated else ''}{type_name} {field} = {number};")
    lines.append("}")
  return "\n".join(lines) + "\n"
