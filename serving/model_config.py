"""Model-server configuration files, in the formats the stock TF Serving binary reads.

This module owns three files and their Python form (frozen dataclasses):

* ``models.config``: the text format of ``tensorflow_serving.config.ModelServerConfig``
  (a ``model_config_list`` of models, each with ``name``, ``base_path``,
  ``model_platform``, ``model_version_policy`` and ``version_labels``), read and written
  through the official proto so the same file works with ``tensorflow_model_server``;
* ``batching_parameters.txt``: TF Serving's ``BatchingParameters`` text format. The pip
  package does not ship that proto, so the few fields Melody uses
  (``max_batch_size``, ``batch_timeout_micros``, ``num_batch_threads``,
  ``max_enqueued_batches``) are parsed and written here;
* ``monitoring.config``: ``prometheus_config { enable: ... path: ... }``, also parsed here
  for the same reason.

Nothing here starts a server; ``serving.server`` consumes these objects.
"""

import dataclasses
import os
import re
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

from google.protobuf import text_format

from tensorflow_serving.config import model_server_config_pb2

MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
MONITORING_CONFIG = "monitoring.config"
DEFAULT_METRICS_PATH = "/monitoring/prometheus/metrics"

_POLICY_KINDS = ("latest", "all", "specific")
_LABEL_RE = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclasses.dataclass(frozen=True)
class VersionPolicy:
  """Which numbered versions under a model's base path are served.

  Attributes:
    kind: ``"latest"`` (the ``num_versions`` highest), ``"all"``, or ``"specific"``.
    num_versions: How many of the newest versions ``"latest"`` keeps (TF Serving: 1).
    versions: The versions ``"specific"`` serves.
  """
  kind: str = "latest"
  num_versions: int = 1
  versions: Tuple[int, ...] = ()

  def __post_init__(self):
    if self.kind not in _POLICY_KINDS:
      raise ValueError(f"version policy kind {self.kind!r} is not one of {_POLICY_KINDS}")
    if self.kind == "latest" and self.num_versions < 1:
      raise ValueError(f"latest num_versions must be >= 1, got {self.num_versions}")
    if self.kind == "specific":
      if not self.versions:
        raise ValueError("a specific version policy needs at least one version")
      bad = [v for v in self.versions if v < 0]
      if bad:
        raise ValueError(f"specific versions must be >= 0, got {bad}")
    object.__setattr__(self, "versions", tuple(sorted(set(int(v) for v in self.versions))))

  def select(self, available: Sequence[int]) -> Tuple[int, ...]:
    """Returns the versions to serve out of ``available``, ascending."""
    versions = sorted(set(available))
    if self.kind == "all":
      return tuple(versions)
    if self.kind == "specific":
      return tuple(v for v in versions if v in self.versions)
    return tuple(versions[-self.num_versions:])


@dataclasses.dataclass(frozen=True)
class ModelEntry:
  """One served model: a name and a directory of numbered SavedModel versions.

  Attributes:
    name: Model name clients put in ``ModelSpec.name``.
    base_path: Directory holding ``<version>/saved_model.pb`` subdirectories.
    version_policy: Which versions are loaded.
    version_labels: ``(label, version)`` pairs such as ``(("stable", 1), ("canary", 2))``.
    model_platform: Always ``"tensorflow"`` here.
  """
  name: str
  base_path: str
  version_policy: VersionPolicy = VersionPolicy()
  version_labels: Tuple[Tuple[str, int], ...] = ()
  model_platform: str = "tensorflow"

  def __post_init__(self):
    if not self.name or "/" in self.name:
      raise ValueError(f"model name {self.name!r} must be non-empty and contain no '/'")
    if not self.base_path:
      raise ValueError(f"model {self.name!r} has an empty base_path")
    if self.model_platform != "tensorflow":
      raise ValueError(f"model {self.name!r}: model_platform {self.model_platform!r} is not "
                       "supported (only 'tensorflow')")
    labels = self.version_labels
    if isinstance(labels, Mapping):
      labels = labels.items()
    labels = tuple(sorted((str(k), int(v)) for k, v in labels))
    seen = set()
    for label, version in labels:
      if not _LABEL_RE.match(label):
        raise ValueError(f"model {self.name!r}: version label {label!r} must match "
                         f"{_LABEL_RE.pattern}")
      if label in seen:
        raise ValueError(f"model {self.name!r}: version label {label!r} is given twice")
      if version < 0:
        raise ValueError(f"model {self.name!r}: label {label!r} points to version {version}")
      seen.add(label)
    object.__setattr__(self, "version_labels", labels)

  @property
  def labels(self) -> Dict[str, int]:
    """The version labels as a dict."""
    return dict(self.version_labels)

  def to_proto(self) -> model_server_config_pb2.ModelConfig:
    """The ``ModelConfig`` proto of this entry."""
    proto = model_server_config_pb2.ModelConfig(
        name=self.name, base_path=self.base_path, model_platform=self.model_platform)
    policy = self.version_policy
    if policy.kind == "latest":
      proto.model_version_policy.latest.num_versions = policy.num_versions
    elif policy.kind == "all":
      proto.model_version_policy.all.SetInParent()
    else:
      proto.model_version_policy.specific.versions.extend(policy.versions)
    for label, version in self.version_labels:
      proto.version_labels[label] = version
    return proto

  @classmethod
  def from_proto(cls, proto: model_server_config_pb2.ModelConfig) -> "ModelEntry":
    """Builds an entry from a ``ModelConfig`` proto.

    Raises:
      ValueError: The proto uses a field Melody's server does not support.
    """
    if proto.model_type:
      raise ValueError(f"model {proto.name!r}: the deprecated model_type field is not "
                       "supported; use model_platform")
    which = proto.model_version_policy.WhichOneof("policy_choice")
    if which == "all":
      policy = VersionPolicy("all")
    elif which == "specific":
      policy = VersionPolicy("specific", versions=tuple(proto.model_version_policy.specific
                                                        .versions))
    elif which == "latest":
      policy = VersionPolicy("latest",
                             num_versions=proto.model_version_policy.latest.num_versions or 1)
    else:
      policy = VersionPolicy()
    return cls(name=proto.name, base_path=proto.base_path, version_policy=policy,
               version_labels=tuple(proto.version_labels.items()),
               model_platform=proto.model_platform or "tensorflow")


def parse_model_config(text: str) -> Tuple[ModelEntry, ...]:
  """Parses ``models.config`` text (a ``ModelServerConfig``) into entries.

  Raises:
    ValueError: The text is not a valid ``ModelServerConfig``, uses a custom model
      config, or names a model twice.
  """
  proto = model_server_config_pb2.ModelServerConfig()
  try:
    text_format.Parse(text, proto)
  except text_format.ParseError as e:
    raise ValueError(f"models.config is not a valid ModelServerConfig: {e}") from e
  if proto.WhichOneof("config") == "custom_model_config":
    raise ValueError("models.config: custom_model_config is not supported")
  entries = tuple(ModelEntry.from_proto(c) for c in proto.model_config_list.config)
  _check_unique(entries)
  return entries


def format_model_config(entries: Sequence[ModelEntry]) -> str:
  """The ``models.config`` text of ``entries`` (loadable by ``tensorflow_model_server``)."""
  _check_unique(entries)
  proto = model_server_config_pb2.ModelServerConfig()
  for entry in entries:
    proto.model_config_list.config.append(entry.to_proto())
  return text_format.MessageToString(proto)


def read_model_config(path: str) -> Tuple[ModelEntry, ...]:
  """Reads a ``models.config`` file."""
  with open(path, encoding="utf-8") as f:
    return parse_model_config(f.read())


def write_model_config(path: str, entries: Sequence[ModelEntry]) -> str:
  """Writes a ``models.config`` file; returns ``path``."""
  return _write(path, format_model_config(entries))


def _check_unique(entries: Sequence[ModelEntry]) -> None:
  names = [e.name for e in entries]
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ValueError(f"models.config names model(s) {dupes} more than once")


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """Server-side batching knobs, with TF Serving's meanings.

  Attributes:
    max_batch_size: Most rows (sum of the requests' dim 0) in one batch.
    batch_timeout_micros: How long the first request of a batch waits for others.
    num_batch_threads: How many batches run at once (the number of cores is a good start).
    max_enqueued_batches: Queue bound, in batches; a request beyond it is rejected with
      UNAVAILABLE rather than waiting without bound.
  """
  max_batch_size: int = 64
  batch_timeout_micros: int = 2000
  num_batch_threads: int = 2
  max_enqueued_batches: int = 100

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"batching parameter {field.name} must be an int, got {value!r}")
      minimum = 0 if field.name == "batch_timeout_micros" else 1
      if value < minimum:
        raise ValueError(f"batching parameter {field.name} must be >= {minimum}, got {value}")


_TOKEN_RE = re.compile(r'\s*(?:(#[^\n]*)|([{}:])|("(?:[^"\\]|\\.)*")|([^\s{}:#"]+))')


def _tokens(text: str) -> Iterator[str]:
  pos = 0
  text = text.rstrip()
  while pos < len(text):
    match = _TOKEN_RE.match(text, pos)
    if not match or match.end() == pos:
      raise ValueError(f"unexpected text at offset {pos}: {text[pos:pos + 20]!r}")
    pos = match.end()
    if match.group(1) is None:
      yield match.group(2) or match.group(3) or match.group(4)


def _parse_blocks(text: str, what: str) -> Dict[str, object]:
  """Parses the small text-proto subset these files use into nested dicts.

  Supports ``name { ... }``, ``name: value`` and ``name { value: x }``; repeated names
  are an error (none of the supported fields repeat).
  """
  tokens = list(_tokens(text))
  pos = 0

  def block(depth: int) -> Dict[str, object]:
    nonlocal pos
    out: Dict[str, object] = {}
    while pos < len(tokens):
      name = tokens[pos]
      if name == "}":
        if depth == 0:
          raise ValueError(f"{what}: unbalanced '}}'")
        pos += 1
        return out
      if name in "{:":
        raise ValueError(f"{what}: expected a field name, got {name!r}")
      pos += 1
      if pos < len(tokens) and tokens[pos] == ":":
        pos += 1
      if pos >= len(tokens):
        raise ValueError(f"{what}: field {name!r} has no value")
      if name in out:
        raise ValueError(f"{what}: field {name!r} is given twice")
      if tokens[pos] == "{":
        pos += 1
        out[name] = block(depth + 1)
      else:
        value = tokens[pos]
        if value in "{}:":
          raise ValueError(f"{what}: field {name!r} has no value")
        out[name] = value
        pos += 1
    if depth:
      raise ValueError(f"{what}: missing '}}'")
    return out

  return block(0)


def parse_batching_parameters(text: str) -> BatchingParameters:
  """Parses TF Serving's ``batching_parameters.txt`` text.

  Raises:
    ValueError: Malformed text, an unsupported field, or a bad value (named).
  """
  fields = {f.name for f in dataclasses.fields(BatchingParameters)}
  values = {}
  for name, body in _parse_blocks(text, "batching parameters").items():
    if name not in fields:
      raise ValueError(f"batching parameters: unsupported field {name!r} "
                       f"(supported: {sorted(fields)})")
    if not isinstance(body, dict) or set(body) != {"value"}:
      raise ValueError(f"batching parameters: {name} must be written as "
                       f"'{name} {{ value: N }}'")
    try:
      values[name] = int(body["value"])
    except ValueError as e:
      raise ValueError(f"batching parameters: {name} value {body['value']!r} is not an "
                       "integer") from e
  return BatchingParameters(**values)


def format_batching_parameters(params: BatchingParameters) -> str:
  """The ``batching_parameters.txt`` text of ``params``."""
  return "".join(f"{f.name} {{ value: {getattr(params, f.name)} }}\n"
                 for f in dataclasses.fields(params))


def read_batching_parameters(path: str) -> BatchingParameters:
  """Reads a ``batching_parameters.txt`` file."""
  with open(path, encoding="utf-8") as f:
    return parse_batching_parameters(f.read())


def write_batching_parameters(path: str, params: BatchingParameters) -> str:
  """Writes a ``batching_parameters.txt`` file; returns ``path``."""
  return _write(path, format_batching_parameters(params))


@dataclasses.dataclass(frozen=True)
class MonitoringConfig:
  """``monitoring.config``: whether and where Prometheus metrics are exposed.

  Attributes:
    enable: Expose metrics.
    path: HTTP path of the metrics page.
  """
  enable: bool = True
  path: str = DEFAULT_METRICS_PATH

  def __post_init__(self):
    if not self.path.startswith("/") or any(c in self.path for c in ' "\\\n'):
      raise ValueError(f"monitoring path {self.path!r} must start with '/' and contain no "
                       "spaces, quotes or backslashes")


def parse_monitoring_config(text: str) -> MonitoringConfig:
  """Parses ``monitoring.config`` text.

  Raises:
    ValueError: Malformed text, an unsupported field or a bad value (named).
  """
  top = _parse_blocks(text, "monitoring config")
  unknown = set(top) - {"prometheus_config"}
  if unknown:
    raise ValueError(f"monitoring config: unsupported field(s) {sorted(unknown)}")
  body = top.get("prometheus_config", {})
  if not isinstance(body, dict):
    raise ValueError("monitoring config: prometheus_config must be a { ... } block")
  unknown = set(body) - {"enable", "path"}
  if unknown:
    raise ValueError(f"monitoring config: unsupported prometheus_config field(s) "
                     f"{sorted(unknown)}")
  enable = body.get("enable", "false")
  if enable not in ("true", "false", "1", "0", "True", "False"):
    raise ValueError(f"monitoring config: enable must be true or false, got {enable!r}")
  path = body.get("path", f'"{DEFAULT_METRICS_PATH}"')
  if not (isinstance(path, str) and len(path) >= 2 and path[0] == path[-1] == '"'):
    raise ValueError(f"monitoring config: path must be a quoted string, got {path!r}")
  return MonitoringConfig(enable=enable in ("true", "1", "True"), path=path[1:-1])


def format_monitoring_config(config: MonitoringConfig) -> str:
  """The ``monitoring.config`` text of ``config``."""
  return (f"prometheus_config {{\n  enable: {'true' if config.enable else 'false'}\n"
          f'  path: "{config.path}"\n}}\n')


def read_monitoring_config(path: str) -> MonitoringConfig:
  """Reads a ``monitoring.config`` file."""
  with open(path, encoding="utf-8") as f:
    return parse_monitoring_config(f.read())


def write_monitoring_config(path: str, config: MonitoringConfig) -> str:
  """Writes a ``monitoring.config`` file; returns ``path``."""
  return _write(path, format_monitoring_config(config))


def write_server_configs(directory: str, entries: Sequence[ModelEntry],
                         batching: Optional[BatchingParameters] = None,
                         monitoring: Optional[MonitoringConfig] = None) -> Dict[str, str]:
  """Writes the three files into ``directory``; returns their paths by file name."""
  os.makedirs(directory, exist_ok=True)
  return {
      MODELS_CONFIG: write_model_config(os.path.join(directory, MODELS_CONFIG), entries),
      BATCHING_PARAMETERS: write_batching_parameters(
          os.path.join(directory, BATCHING_PARAMETERS), batching or BatchingParameters()),
      MONITORING_CONFIG: write_monitoring_config(
          os.path.join(directory, MONITORING_CONFIG), monitoring or MonitoringConfig()),
  }


def _write(path: str, text: str) -> str:
  # Write then rename, so a server polling the file never reads half of it.
  tmp = f"{path}.tmp-{os.getpid()}"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(tmp, path)
  return path


def list_versions(base_path: str) -> List[int]:
  """Numbered version subdirectories of ``base_path`` that hold a complete SavedModel.

  A directory counts once its ``saved_model.pb`` (or ``.pbtxt``) exists; writers should
  build a version under a temporary name and rename it into place.
  """
  try:
    names = os.listdir(base_path)
  except (FileNotFoundError, NotADirectoryError):
    return []
  versions = []
  for name in names:
    if not name.isdigit():
      continue
    path = os.path.join(base_path, name)
    if (os.path.isfile(os.path.join(path, "saved_model.pb"))
        or os.path.isfile(os.path.join(path, "saved_model.pbtxt"))):
      versions.append(int(name))
  return sorted(versions)
