"""Which versions of each served model are loaded, and how they come and go.

This module owns the model server's version lifecycle, the part TF Serving calls the
manager: each model's base directory is polled for numbered SavedModel versions, the ones
the model's version policy wants are loaded completely and their
``assets.extra/tf_serving_warmup_requests`` replayed, and only then is the model's version
map replaced in one assignment; requests already holding the old map finish on it, so none
fails during a swap. Versions outside the policy are then unloaded. A version that fails
to load is retried on the next polls, then only when any of its files changes (path,
size or modification time of any file under the version, ``variables/`` included).
Version labels live in each model's :class:`~serving.model_config.ModelEntry`; resolving
them per request is ``serving.dispatch``'s job.
"""

import contextlib
import dataclasses
import gc
import logging
import os
import threading
import time
import types
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple
import weakref

import numpy as np
import tensorflow as tf

from google.protobuf import text_format
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from serving import model_config
from serving import server_metrics
from serving import tensors
from serving import warmup

_LOG = logging.getLogger("melody.serving")

# The signature a request with an empty signature_name calls.
DEFAULT_SIGNATURE = "serving_default"

Fingerprint = Tuple[Tuple[str, int, int], ...]
_HEAP_LOCK = threading.Lock()
_PROCESS_HEAP_FROZEN = threading.Event()

_State = get_model_status_pb2.ModelVersionStatus.State


@dataclasses.dataclass(frozen=True)
class Signature:
  """One callable signature of a loaded version.

  ``flat_order`` (when the loaded function exposes its flat inputs) lets :meth:`call`
  pass the decoded tensors positionally to the function's flat call, skipping the
  per-call binding and type check of keyword arguments against the structured
  signature, Python work that grows with the number of inputs (``rank`` has 22; the
  cost is in docs/benchmarks.md); the inputs were already checked against the same specs
  by ``tensors.decode_inputs``.
  """
  name: str
  function: object
  inputs: Mapping[str, tensors.InputSpec]
  outputs: Tuple[str, ...]
  batchable: bool
  flat_order: Optional[Tuple[str, ...]] = None

  def call(self, arrays: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
    if self.flat_order is not None:
      result = self.function._call_flat(  # pylint: disable=protected-access
          [tf.convert_to_tensor(arrays[k]) for k in self.flat_order],
          self.function.captured_inputs)
    else:
      result = self.function(**{k: tf.convert_to_tensor(v) for k, v in arrays.items()})
    return {k: v.numpy() for k, v in result.items()}


def _flat_order(function, inputs: Mapping[str, tensors.InputSpec]) -> Optional[Tuple[str, ...]]:
  """The input names in the function's flat (positional) order, or None when the
  function has no flat entry point or its flat inputs are not exactly ``inputs``."""
  try:
    if not callable(getattr(function, "_call_flat", None)):
      return None
    count = len(function.inputs) - len(function.captured_inputs)
    names = tuple(t.name.split(":")[0] for t in function.inputs[:count])
  except (AttributeError, TypeError):
    return None
  if sorted(names) != sorted(inputs):
    return None
  return names


@dataclasses.dataclass(frozen=True)
class LoadedVersion:
  """A fully loaded (and warmed up) model version.

  ``load_seconds`` and ``warmup_seconds`` are how long reading the SavedModel and
  replaying its warmup records took (0 until the version manager has done both).
  """
  version: int
  path: str
  module: object
  signatures: Mapping[str, Signature]
  signature_defs: Mapping[str, object]
  load_seconds: float = 0.0
  warmup_seconds: float = 0.0


def load_version(path: str, version: int) -> LoadedVersion:
  """Loads the SavedModel at ``path`` with its signatures and ``SignatureDef``s.

  Raises:
    ValueError: a signature does not return a dict, or there is no ``serve`` meta graph.
  """
  module = tensors.load_saved_model(path)
  signatures = {}
  for name, function in module.signatures.items():
    inputs = tensors.input_specs(function)
    outputs = function.structured_outputs
    if not isinstance(outputs, Mapping):
      raise ValueError(f"signature '{name}' does not return a dict of tensors")
    batchable = bool(inputs) and all(s.batched for s in inputs.values()) and all(
        o.shape.rank and o.shape[0] is None for o in outputs.values())
    signatures[name] = Signature(name, function, types.MappingProxyType(inputs),
                                 tuple(sorted(outputs)), batchable,
                                 _flat_order(function, inputs))
  return LoadedVersion(version=version, path=path, module=module,
                       signatures=types.MappingProxyType(signatures),
                       signature_defs=types.MappingProxyType(
                           _read_signature_defs(path, set(signatures))))


def _read_signature_defs(path: str, names) -> Dict[str, object]:
  proto = saved_model_pb2.SavedModel()
  pb = os.path.join(path, "saved_model.pb")
  if os.path.isfile(pb):
    with open(pb, "rb") as f:
      proto.ParseFromString(f.read())
  else:
    with open(os.path.join(path, "saved_model.pbtxt"), encoding="utf-8") as f:
      text_format.Parse(f.read(), proto)
  for meta_graph in proto.meta_graphs:
    if "serve" in meta_graph.meta_info_def.tags:
      return {k: v for k, v in meta_graph.signature_def.items() if k in names}
  raise ValueError(f"{path} has no meta graph tagged 'serve'")


class ServedModel:
  """Mutable state of one served model; ``versions`` is swapped, never mutated.

  Attributes:
    entry: The model's configuration (name, base path, version policy, labels).
    base_path: Absolute base directory.
    versions: The loaded versions; read it once per request for a consistent view.
    status: ``{version: (state, error code, message)}`` for GetModelStatus.
    failures: ``{version: (attempts, files fingerprint)}`` of versions that failed to
      load (see :func:`files_fingerprint`).
  """

  def __init__(self, entry: model_config.ModelEntry):
    self.entry = entry
    self.base_path = os.path.abspath(entry.base_path)
    self.versions: Mapping[int, LoadedVersion] = types.MappingProxyType({})
    self.status: Dict[int, Tuple[int, int, str]] = {}
    self.failures: Dict[int, Tuple[int, Fingerprint]] = {}


class WarmupRequestFailed(ValueError):
  """A warmup request was answered with an error; the message is ``CODE: details``."""


# Runs one warmup request on a loaded (not yet served) version; raises WarmupRequestFailed.
WarmupReplay = Callable[[ServedModel, LoadedVersion, predict_pb2.PredictRequest], None]


class VersionManager:
  """Loads, swaps and unloads the versions of a fixed set of models.

  Args:
    entries: The models to manage.
    metrics: Where loads, loaded versions and warmup replays are counted.
    replay: Runs a warmup request against a version before it is served.
    max_load_retries: Extra attempts, one per poll, at loading a failing version before
      waiting for its files to change.
    on_poll: Called after every poll, under the poll lock (e.g. to update health).
  """

  def __init__(self, entries: Sequence[model_config.ModelEntry],
               metrics: server_metrics.ServerMetrics, replay: WarmupReplay,
               max_load_retries: int = 2, on_poll: Optional[Callable[[], None]] = None):
    self._models = types.MappingProxyType({e.name: ServedModel(e) for e in entries})
    self._metrics = metrics
    self._replay = replay
    self._max_load_retries = max_load_retries
    self._on_poll = on_poll
    self._changed = threading.Condition()
    self._poll_lock = threading.Lock()
    self._stop = threading.Event()
    self._poller: Optional[threading.Thread] = None
    # Unloaded versions, until no request holds them and a collection has freed them.
    self._retired: List[weakref.ReferenceType] = []

  @property
  def models(self) -> Mapping[str, ServedModel]:
    """The managed models by name (the mapping itself never changes)."""
    return self._models

  def loaded_versions(self, model: str) -> Tuple[int, ...]:
    """The loaded versions of ``model``, ascending.

    Raises:
      ValueError: ``model`` is not managed here.
    """
    served = self._models.get(model)
    if served is None:
      raise ValueError(f"model '{model}' is not served; served models: "
                       f"{sorted(self._models)}")
    return tuple(sorted(served.versions))

  def wait_for_versions(self, model: str, versions: Iterable[int],
                        timeout: float) -> bool:
    """Waits until ``model``'s loaded versions are exactly ``versions``; False on timeout."""
    wanted = tuple(sorted(versions))
    deadline = time.monotonic() + timeout
    with self._changed:
      while self.loaded_versions(model) != wanted:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
          return False
        self._changed.wait(remaining)
    return True

  def poll(self) -> None:
    """Loads new versions, swaps them in and unloads old ones, for every model, now."""
    with self._poll_lock:
      # Versions unloaded by an earlier poll: their collection never runs right after a
      # load's own, so no request waits through both.
      self._free_retired()
      for model in self._models.values():
        try:
          self._reconcile(model)
        except Exception:  # pylint: disable=broad-except
          _LOG.exception("polling %s failed", model.base_path)
      if self._on_poll is not None:
        self._on_poll()

  def start_polling(self, period_seconds: float) -> None:
    """Polls every ``period_seconds`` on a daemon thread until :meth:`stop_polling`."""
    def loop():
      while not self._stop.wait(period_seconds):
        self.poll()
    self._poller = threading.Thread(target=loop, name="melody-fs-poll", daemon=True)
    self._poller.start()

  def stop_polling(self) -> None:
    """Asks the polling thread to stop after its current poll (does not wait)."""
    self._stop.set()

  def join_poller(self, timeout: Optional[float] = None) -> None:
    """Waits for the polling thread, if any, to finish (at most ``timeout`` seconds)."""
    if self._poller is not None:
      self._poller.join(timeout)

  def _reconcile(self, model: ServedModel) -> None:
    if not os.path.isdir(model.base_path):
      _LOG.warning("base path %s of model %s does not exist (yet)", model.base_path,
                   model.entry.name)
      return
    desired = model.entry.version_policy.select(model_config.list_versions(model.base_path))
    for version in sorted(desired, reverse=True):
      if version not in model.versions and self._should_try(model, version):
        self._load(model, version)
    keep = set(desired) & set(model.versions)
    if desired and not keep:
      return  # None of the wanted versions loaded: keep serving what is there.
    for version in sorted(set(model.versions) - keep):
      self._unload(model, version)

  def _should_try(self, model: ServedModel, version: int) -> bool:
    failure = model.failures.get(version)
    if failure is None:
      return True
    attempts, fingerprint = failure
    return (attempts <= self._max_load_retries
            or files_fingerprint(os.path.join(model.base_path, str(version))) != fingerprint)

  def _load(self, model: ServedModel, version: int) -> None:
    name = model.entry.name
    path = os.path.join(model.base_path, str(version))
    # Taken before reading, so a fix written during a failing load still counts as new.
    fingerprint = files_fingerprint(path)
    _freeze_process_heap()
    model.status[version] = (_State.LOADING, error_codes_pb2.OK, "")
    _LOG.info("loading %s version %d from %s", name, version, path)
    try:
      start = time.perf_counter()
      with _automatic_collection_paused():
        loaded = load_version(path, version)
        # Everything the read allocated is in the young generations: one collection of
        # those (not of the versions already loaded) frees its garbage and ages the rest.
        gc.collect(1)
      loaded_at = time.perf_counter()
      records = self._warm_up(model, loaded)
      loaded = dataclasses.replace(loaded, load_seconds=loaded_at - start,
                                   warmup_seconds=time.perf_counter() - loaded_at)
    except Exception as e:  # pylint: disable=broad-except
      attempts, before = model.failures.get(version, (0, fingerprint))
      model.failures[version] = (attempts + 1 if before == fingerprint else 1, fingerprint)
      model.status[version] = (_State.END, error_codes_pb2.UNKNOWN,
                               f"loading version {version} failed: {e}")
      self._metrics.loads.labels(name, "error").inc()
      _LOG.error("loading %s version %d failed: %s", name, version, e)
      return
    model.failures.pop(version, None)
    with self._changed:
      model.versions = types.MappingProxyType({**model.versions, version: loaded})
      model.status[version] = (_State.AVAILABLE, error_codes_pb2.OK, "")
      self._changed.notify_all()
    self._metrics.loads.labels(name, "ok").inc()
    self._metrics.loaded.labels(name, str(version)).set(1)
    _LOG.info("%s version %d is available (signatures %s; loaded in %.1f s, %d warmup "
              "records replayed in %.1f s)", name, version, sorted(loaded.signatures),
              loaded.load_seconds, records, loaded.warmup_seconds)

  def _unload(self, model: ServedModel, version: int) -> None:
    with self._changed:
      model.status[version] = (_State.UNLOADING, error_codes_pb2.OK, "")
      # In-flight requests still hold the LoadedVersion; it is freed after them.
      self._retired.append(weakref.ref(model.versions[version]))
      model.versions = types.MappingProxyType(
          {v: lv for v, lv in model.versions.items() if v != version})
      model.status[version] = (_State.END, error_codes_pb2.OK, "")
      self._changed.notify_all()
    try:
      self._metrics.loaded.remove(model.entry.name, str(version))
    except KeyError:
      pass
    _LOG.info("unloaded %s version %d", model.entry.name, version)

  def _free_retired(self) -> None:
    """Collects once when an unloaded version is no longer held by any request.

    A SavedModel's objects form reference cycles, so dropping the last reference does
    not free them; a collection now frees them on the poll thread instead of leaving
    them to a full collection that would pause some request later.
    """
    if any(ref() is None for ref in self._retired):
      gc.collect()
      self._retired = [ref for ref in self._retired if ref() is not None]

  def _warm_up(self, model: ServedModel, loaded: LoadedVersion) -> int:
    """Replays the version's warmup records; returns how many ran.

    Each signature builds its runtime function on its first call (seconds for a large
    graph); one left out of the records pays that on its first live request, so it
    is named in a warning.
    """
    path = os.path.join(loaded.path, warmup.WARMUP_FILE)
    if not os.path.isfile(path):
      _LOG.warning("%s version %d has no %s: the first call of each signature pays for "
                   "building its function", model.entry.name, loaded.version, warmup.WARMUP_FILE)
      return 0
    records = [r.numpy() for r in tf.data.TFRecordDataset(path).take(warmup.MAX_RECORDS + 1)]
    if len(records) > warmup.MAX_RECORDS:
      raise ValueError(f"{path} holds more than {warmup.MAX_RECORDS} warmup records")
    warmed = set()
    for i, record in enumerate(records):
      log = prediction_log_pb2.PredictionLog.FromString(record)
      if log.WhichOneof("log_type") != "predict_log":
        raise ValueError(f"warmup record {i} is a {log.WhichOneof('log_type')}; only "
                         "predict_log is supported by this server")
      request = log.predict_log.request
      try:
        self._replay(model, loaded, request)
      except WarmupRequestFailed as e:
        raise ValueError(f"warmup record {i} failed: {e}") from e
      self._metrics.warmup.labels(model.entry.name).inc()
      warmed.add(request.model_spec.signature_name or DEFAULT_SIGNATURE)
    cold = sorted(set(loaded.signatures) - warmed)
    if cold:
      _LOG.warning("%s version %d: no warmup records for signatures %s; their first "
                   "calls pay for building their functions", model.entry.name,
                   loaded.version, cold)
    return len(records)


@contextlib.contextmanager
def _automatic_collection_paused():
  """Turns automatic garbage collection off for the block (restoring the previous state).

  Reading a SavedModel allocates ~100k objects, which sets off a stream of automatic
  collections (about 200 young and one full, each walking the loaded versions with the
  GIL held: stalls of up to 0.2 s in whichever requests are running). One collection
  after the read does that work once instead.
  """
  was_enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if was_enabled:
      gc.enable()


def _freeze_process_heap() -> None:
  """Collects, then freezes what the process holds before its first version loads.

  TensorFlow, Keras and the server hold some 350k long-lived Python objects; frozen, no
  collection walks them again, so none lands a pause in a request. Done once per
  process: versions are never frozen, because freeing an unloaded version's ~100k
  objects would mean unfreezing the whole heap into one collection (a GIL pause of
  0.5-2 s at every swap on a busy 2-core machine, enough to miss 1 s deadlines).
  """
  with _HEAP_LOCK:
    if not _PROCESS_HEAP_FROZEN.is_set():
      gc.collect()
      gc.freeze()
      _PROCESS_HEAP_FROZEN.set()


def files_fingerprint(path: str) -> Fingerprint:
  """``(relative path, size, mtime_ns)`` of every file under ``path``, sorted.

  Any write, rename, addition or removal of a file of a version changes it (a fixed
  ``variables/`` shard as much as a new ``saved_model.pb``), and it costs one ``stat``
  per file, no reading.
  """
  entries = []
  for root, _, files in os.walk(path):
    for name in files:
      full = os.path.join(root, name)
      try:
        info = os.stat(full)
      except OSError:   # Removed while listing: the next poll sees the new state.
        continue
      entries.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns))
  return tuple(sorted(entries))
