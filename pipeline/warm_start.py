"""Warm start: a new ranking model begins from the weights of the last pushed model.

The Trainer of a scheduled run trains on the newest spans; starting from the model that
serves today (the latest version the Pusher pushed, which was blessed) instead of from
random weights reaches the same loss in fewer steps. This module owns that step: it
reads the pushed SavedModel's ranking weights (``serving.export`` tracks them as the
list ``model_variables``, in the model's variable order, with their names and shapes
in the object graph) and copies them into a freshly built model when every variable
matches by name and shape. Otherwise — another model config, another feature spec —
the model stays cold and the reason is logged: a partial copy would silently mix two
models. Embedding tables are hashed (``features.feature_spec`` vocabulary sizes), so a
new track or artist id lands in an existing row and needs no resize.

The Trainer's ``custom_config`` carries the SavedModel under ``WARM_START_KEY``;
``pipeline.window_runs`` sets it to the latest pushed version.
"""

import logging
import os
import re
from typing import List, NamedTuple, Optional, Tuple

import tensorflow as tf

from tensorflow.core.protobuf import saved_model_pb2

WARM_START_KEY = "warm_start_from"
_VARIABLES = "model_variables"
_log = logging.getLogger(__name__)


class WarmStart(NamedTuple):
  """What :func:`maybe_warm_start` did: ``source`` (a SavedModel, or "") and, when the
  model stayed cold, ``reason``."""
  source: str
  warm: bool
  reason: str
  variables: int = 0


def saved_variables(saved_model_dir: str) -> List[Tuple[str, Tuple[int, ...], str]]:
  """(name, shape, checkpoint key) of each ranking weight of an exported SavedModel.

  Raises:
    ValueError: the SavedModel has no ``model_variables`` list (not a Melody export).
  """
  proto = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  nodes = proto.meta_graphs[0].object_graph_def.nodes
  listing = next((c.node_id for c in nodes[0].children if c.local_name == _VARIABLES), None)
  if listing is None:
    raise ValueError(f"{saved_model_dir} has no {_VARIABLES!r}: not a Melody serving export")
  out = []
  for child in nodes[listing].children:
    var = nodes[child.node_id].variable
    shape = tuple(d.size for d in var.shape.dim)
    out.append((var.name, shape,
                f"{_VARIABLES}/{child.local_name}/.ATTRIBUTES/VARIABLE_VALUE"))
  return out


def _base_name(name: str, scope: str = "") -> str:
  """A variable name as two builds of one model agree on it: without the ``:0`` output
  index, Keras' per-process layer counters (``dense_3`` -> ``dense``) and the model's
  own name scope, which only weights created through the model's ``__call__`` get."""
  name = re.sub(r":\d+$", "", name)
  if scope:  # the scope with or without its own counter (ranking_model_1)
    base = re.sub(r"_\d+$", "", scope)
    name = re.sub(rf"^{re.escape(base)}(_\d+)?/", "", name)
  return re.sub(r"_\d+(?=/|$)", "", name)


def _mismatch(model_vars, saved, scope: str = "") -> Optional[str]:
  if len(model_vars) != len(saved):
    return f"the model has {len(model_vars)} variables, the SavedModel {len(saved)}"
  for var, (name, shape, _) in zip(model_vars, saved):
    if _base_name(var.name, scope) != _base_name(name, scope):
      return f"variable {var.name} where the SavedModel has {name}"
    if tuple(var.shape) != shape:
      return f"variable {name} has shape {tuple(var.shape)}, the SavedModel {shape}"
  return None


def warm_start(model: tf.keras.Model, saved_model_dir: str) -> WarmStart:
  """Copies the ranking weights of ``saved_model_dir`` into ``model`` when they match.

  Args:
    model: a ``ranking.model.RankingModel`` (built here if it is not yet).
    saved_model_dir: an exported serving SavedModel (``serving.export``).

  Returns:
    What happened; a cold start names its reason.
  """
  try:
    saved = saved_variables(saved_model_dir)
  except (ValueError, OSError, tf.errors.OpError) as e:
    return WarmStart(saved_model_dir, False, f"cannot read {saved_model_dir}: {e}")
  if not model.built:
    model.build_variables()
  reason = _mismatch(model.variables, saved, model.name)
  if reason:
    return WarmStart(saved_model_dir, False, f"model config changed: {reason}")
  reader = tf.train.load_checkpoint(os.path.join(saved_model_dir, "variables", "variables"))
  for var, (_, _, key) in zip(model.variables, saved):
    var.assign(reader.get_tensor(key))
  return WarmStart(saved_model_dir, True, "", len(saved))


def maybe_warm_start(model: tf.keras.Model, custom_config) -> WarmStart:
  """:func:`warm_start` from ``custom_config[WARM_START_KEY]`` if it names a model;
  logs what happened either way."""
  source = str(dict(custom_config or {}).get(WARM_START_KEY) or "")
  if WARM_START_KEY not in dict(custom_config or {}):
    return WarmStart("", False, "not asked for")
  result = warm_start(model, source) if source else WarmStart("", False, "no pushed model yet")
  if result.warm:
    _log.info("warm start: %d variables from %s", result.variables, source)
    print(f"[trainer] warm start from {source} ({result.variables} variables)", flush=True)
  else:
    _log.warning("cold start: %s", result.reason)
    print(f"[trainer] cold start: {result.reason}", flush=True)
  return result
