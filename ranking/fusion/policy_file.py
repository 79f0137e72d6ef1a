"""``policy.json``: the shipped ranking policy as a versioned, validated artifact.

This module owns the file the simulator writes and the export, the pipeline and the
gateway read: :class:`PolicyFile` (weights per segment and per (segment, activity)
context, the exploration epsilon, the activity familiarity coefficients, the mixing
rules and the provenance of the choice), its JSON schema (``SCHEMA_VERSION``), the
strict loader (:func:`load`, :func:`loads`: any unknown, missing or out-of-range field
raises :class:`PolicyError` naming the field and the file), and the round trip to the
``FusionConfig`` and ``MixingConfig`` the serving graph is built from. Everything a
loaded policy holds has passed the same checks those configs make, so a policy that
loads can be baked into a model or sent per request; one that does not never gets that
far.

The file (``schema_version`` 1)::

    {"schema_version": 1, "version": "p-1a2b3c4d5e6f",
     "weights": {"free": {"default": [0.5, 0.25, 0.25], "focus": [0.25, 0, 0.75]}, ...},
     "epsilon": 0.02,
     "activity_familiarity": {"unknown": 0.0, "commute": 0.06, ...},
     "mixing": {"max_promos_per_window": 2, "window": 10,
                "no_consecutive_promos": true, "max_per_artist": 2},
     "provenance": {"simulation_run": "...", "world_version": "...",
                    "model_version": "...", "metrics": {"completion_rate": 0.55, ...},
                    "constraint": {"metric": "completion_rate", "floor": 0.545,
                                   "met": true}},
     "fusion": {"select": "learned", "learned": {"features": [...], "cells": {...}}}}

``fusion`` is optional: a policy with learned-fusion parameters
(``ranking.fusion.learned``) bakes them into an export beside the weight table, and
``select`` (``"weights"`` or ``"learned"``) is what a request that names no fusion gets.
A file without it reads as before and gets the same version id.
"""

import dataclasses
import hashlib
import json
import math
import re
from typing import Dict, Mapping, Optional, Tuple

from features import feature_spec
from ranking.fusion import learned as learned_lib
from ranking.fusion import spec

SCHEMA_VERSION = 1
DEFAULT_CONTEXT = "default"   # a segment's row for every activity without its own
CONTEXTS: Tuple[str, ...] = (DEFAULT_CONTEXT,) + feature_spec.ACTIVITIES
PROVENANCE_FIELDS = ("simulation_run", "world_version", "model_version", "metrics",
                     "constraint")
CONSTRAINT_FIELDS = ("metric", "floor", "met")
MIXING_FIELDS = ("max_promos_per_window", "window", "no_consecutive_promos",
                 "max_per_artist")
TOP_FIELDS = ("schema_version", "version", "weights", "epsilon", "activity_familiarity",
              "mixing", "provenance")
OPTIONAL_FIELDS = ("fusion",)
FUSION_FIELDS = ("select", "learned")
FUSION_CHOICES = ("weights", "learned")
MAX_WINDOW = 1000   # longer than any list the serving graph returns
MAX_EPSILON = 1.0   # the exploration bonus stays a tie-breaker next to weights in [0, 1]
_VERSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_ZERO_BETA = spec.FusionConfig().zero_beta_segments   # a file cannot change which


class PolicyError(ValueError):
  """A policy file is invalid; ``field`` names the offending field, ``source`` the file."""

  def __init__(self, source: str, field: str, problem: str):
    super().__init__(f"{source}: {field}: {problem}")
    self.source, self.field = source, field


@dataclasses.dataclass(frozen=True)
class Provenance:
  """Where a policy comes from.

  Attributes:
    simulation_run: the simulation that chose it (its config, or a run id).
    world_version: the simulated world it was measured in.
    model_version: the scorer of its rollouts (a SavedModel version, or ``oracle``).
    metrics: rollout metrics at the chosen point (name -> finite number).
    constraint: ``{"metric", "floor", "met"}``: the floor the choice was held to and
      whether every segment met it.
  """
  simulation_run: str
  world_version: str
  model_version: str
  metrics: Tuple[Tuple[str, float], ...]
  constraint: Tuple[Tuple[str, object], ...]

  def to_dict(self) -> Dict[str, object]:
    return {"simulation_run": self.simulation_run, "world_version": self.world_version,
            "model_version": self.model_version, "metrics": dict(self.metrics),
            "constraint": dict(self.constraint)}


@dataclasses.dataclass(frozen=True)
class PolicyFile:
  """A validated policy: fusion and mixing settings, version and provenance.

  Build one with :func:`from_configs` or :func:`load`; ``fusion`` and ``mixing`` are
  what an export bakes into the graph, :meth:`weights_for` what a request override
  sends.

  Attributes:
    version: the policy's id (``[A-Za-z0-9_.-]``, at most 64 characters).
    fusion: the ``FusionConfig`` (segment rows, context rows, kappa, epsilon).
    mixing: the mixing rules as ``MixingConfig`` fields (a dict; :meth:`mixing_config`
      builds the config).
    provenance: where it comes from.
    learned: optional learned-fusion parameters baked in beside the table.
    select: the fusion a request that names none gets (``"learned"`` needs ``learned``).
  """
  version: str
  fusion: spec.FusionConfig
  mixing: Tuple[Tuple[str, int], ...]
  provenance: Provenance
  learned: Optional[learned_lib.LearnedFusionParams] = None
  select: str = "weights"

  def mixing_config(self):
    """The ``ranking.layers.mixing.MixingConfig`` of the policy's rules."""
    from ranking.layers import mixing as mixing_lib  # pylint: disable=g-import-not-at-top
    return mixing_lib.MixingConfig(**dict(self.mixing))

  def weights_for(self, segment: str, activity: str) -> Tuple[float, float, float]:
    """The effective (alpha, beta, gamma) of a (segment, activity) session (beta 0 for
    zero-beta segments), as the graph would use them."""
    a, b, c = self.fusion.weights_in(segment, activity)
    return (a, 0.0 if segment in self.fusion.zero_beta_segments else b, c)

  def to_dict(self) -> Dict[str, object]:
    """The JSON form (:func:`loads` reads it back to an equal policy)."""
    return {"schema_version": SCHEMA_VERSION, "version": self.version,
            **_body(self.fusion, dict(self.mixing), self.learned, self.select),
            "provenance": self.provenance.to_dict()}

  def to_json(self) -> str:
    return json.dumps(self.to_dict(), indent=1, sort_keys=True) + "\n"

  def dump(self, path: str) -> str:
    """Writes the policy to ``path``; returns ``path``."""
    with open(path, "w", encoding="utf-8") as f:
      f.write(self.to_json())
    return path


def _body(fusion: spec.FusionConfig, mixing: Mapping[str, int], learned=None,
          select: str = "weights") -> Dict[str, object]:
  extra = ({} if learned is None
           else {"fusion": {"select": select, "learned": learned.to_dict()}})
  weights = {s: {DEFAULT_CONTEXT: list(fusion.weights_for(s))} for s in feature_spec.SEGMENTS}
  for (seg, act), row in fusion.context_weights:
    weights[seg][act] = list(row)
  return {"weights": weights, "epsilon": fusion.exploration,
          "activity_familiarity": dict(fusion.activity_familiarity),
          "mixing": {"max_promos_per_window": mixing["max_promos_per_window"],
                     "window": mixing["window"], "no_consecutive_promos": True,
                     "max_per_artist": mixing["max_per_artist"]}, **extra}


def content_version(fusion: spec.FusionConfig, mixing, learned=None,
                    select: str = "weights") -> str:
  """A version id from the policy's content: the same settings give the same id."""
  body = json.dumps(_body(fusion, _mixing_fields(mixing), learned, select), sort_keys=True)
  return "p-" + hashlib.sha256(body.encode()).hexdigest()[:12]


def _mixing_fields(mixing) -> Dict[str, int]:
  d = mixing if isinstance(mixing, Mapping) else mixing.to_dict()
  return {k: d[k] for k in ("max_promos_per_window", "window", "max_per_artist")}


def from_configs(fusion: spec.FusionConfig, mixing, provenance: Mapping[str, object],
                 version: Optional[str] = None, source: str = "<policy>",
                 learned: Optional[learned_lib.LearnedFusionParams] = None,
                 select: str = "weights") -> PolicyFile:
  """A policy from the configs an export takes, checked as a loaded file would be.

  Args:
    fusion: the ``FusionConfig``.
    mixing: a ``MixingConfig`` (or its dict).
    provenance: the ``PROVENANCE_FIELDS``.
    version: the policy id; None derives one from the content (:func:`content_version`).
    source: how errors name the policy.
    learned: optional learned-fusion parameters.
    select: the default fusion, ``"weights"`` or ``"learned"``.

  Raises:
    PolicyError: a setting out of range or a provenance field missing.
  """
  m = _mixing_fields(mixing)
  d = {"schema_version": SCHEMA_VERSION,
       "version": version or content_version(fusion, m, learned, select),
       **_body(fusion, m, learned, select), "provenance": dict(provenance)}
  d["weights"] = {s: {c: list(map(float, w)) for c, w in rows.items()}
                  for s, rows in d["weights"].items()}
  policy = from_dict(json.loads(json.dumps(d)), source)
  if policy.fusion.zero_beta_segments != fusion.zero_beta_segments:
    raise PolicyError(source, "zero_beta_segments",
                      f"a policy file keeps the default {policy.fusion.zero_beta_segments}, "
                      f"got {fusion.zero_beta_segments}")
  return policy


def load(path: str) -> PolicyFile:
  """Reads and validates ``path``.

  Raises:
    PolicyError: the file is unreadable, not JSON, or fails a check (the message names
      the file and the field).
  """
  try:
    with open(path, encoding="utf-8") as f:
      text = f.read()
  except OSError as e:
    raise PolicyError(path, "file", f"cannot be read ({e.strerror or e})") from None
  return loads(text, path)


def loads(text: str, source: str = "<policy>") -> PolicyFile:
  """Parses and validates a policy's JSON text (``source`` names it in errors)."""
  try:
    d = json.loads(text)
  except ValueError as e:
    raise PolicyError(source, "file", f"is not valid JSON ({e})") from None
  return from_dict(d, source)


def from_dict(d: object, source: str = "<policy>") -> PolicyFile:
  """Validates a parsed policy; see the module docstring for the schema.

  Raises:
    PolicyError: naming the first bad field (dotted path, e.g. ``weights.free.focus``).
  """
  _keys(source, "", d, required=TOP_FIELDS, allowed=TOP_FIELDS + OPTIONAL_FIELDS)
  sv = d["schema_version"]
  if isinstance(sv, bool) or sv != SCHEMA_VERSION:
    raise PolicyError(source, "schema_version",
                      f"must be {SCHEMA_VERSION} (this Melody reads that schema), got {sv!r}")
  version = d["version"]
  if not isinstance(version, str) or not _VERSION_RE.match(version):
    raise PolicyError(source, "version",
                      f"must be 1 to 64 of A-Z a-z 0-9 _ . -, got {version!r}")

  _keys(source, "weights", d["weights"], required=feature_spec.SEGMENTS,
        allowed=feature_spec.SEGMENTS)
  rows, context = {}, {}
  for seg in feature_spec.SEGMENTS:
    where = f"weights.{seg}"
    _keys(source, where, d["weights"][seg], required=(DEFAULT_CONTEXT,), allowed=CONTEXTS)
    for ctx, w in d["weights"][seg].items():
      row = _weights(source, f"{where}.{ctx}", w)
      if seg in _ZERO_BETA and row[1] != 0:
        raise PolicyError(source, f"{where}.{ctx}",
                          f"beta must be 0 for a zero-beta segment, got {row[1]}")
      if ctx == DEFAULT_CONTEXT:
        rows[seg] = row
      else:
        context[(seg, ctx)] = row

  eps = _number(source, "epsilon", d["epsilon"])
  if not 0 <= eps <= MAX_EPSILON:
    raise PolicyError(source, "epsilon", f"must be in [0, {MAX_EPSILON}], got {eps}")
  _keys(source, "activity_familiarity", d["activity_familiarity"],
        required=feature_spec.ACTIVITIES, allowed=feature_spec.ACTIVITIES)
  kappa = {}
  for act, k in d["activity_familiarity"].items():
    k = _number(source, f"activity_familiarity.{act}", k)
    if abs(k) > 1:
      raise PolicyError(source, f"activity_familiarity.{act}", f"must be in [-1, 1], got {k}")
    kappa[act] = k

  mixing = _mixing(source, d["mixing"])
  provenance = _provenance(source, d["provenance"])
  fusion = spec.FusionConfig(segment_weights=rows, activity_familiarity=kappa,
                             exploration=eps, context_weights=context)
  learned, select = _learned(source, d.get("fusion"))
  return PolicyFile(version=version, fusion=fusion, mixing=tuple(mixing.items()),
                    provenance=provenance, learned=learned, select=select)


def _learned(source: str, f: object):
  """``(LearnedFusionParams or None, select)`` of the optional ``fusion`` field."""
  if f is None:
    return None, "weights"
  _keys(source, "fusion", f, required=FUSION_FIELDS, allowed=FUSION_FIELDS)
  if f["select"] not in FUSION_CHOICES:
    raise PolicyError(source, "fusion.select",
                      f"must be one of {list(FUSION_CHOICES)}, got {f['select']!r}")
  try:
    return learned_lib.LearnedFusionParams.from_dict(f["learned"]), f["select"]
  except learned_lib.LearnedFusionError as e:
    field = "fusion.learned" + (f".{e.field}" if e.field else "")
    raise PolicyError(source, field, e.problem) from None


def _mixing(source: str, m: object) -> Dict[str, int]:
  _keys(source, "mixing", m, required=MIXING_FIELDS, allowed=MIXING_FIELDS)
  if m["no_consecutive_promos"] is not True:
    raise PolicyError(source, "mixing.no_consecutive_promos",
                      "must be true: the serving graph never places two promos side by "
                      f"side, got {m['no_consecutive_promos']!r}")
  window = _int(source, "mixing.window", m["window"], 1, MAX_WINDOW)
  return {"max_promos_per_window": _int(source, "mixing.max_promos_per_window",
                                        m["max_promos_per_window"], 0, window),
          "window": window,
          "max_per_artist": _int(source, "mixing.max_per_artist", m["max_per_artist"],
                                 1, window)}


def _provenance(source: str, p: object) -> Provenance:
  _keys(source, "provenance", p, required=PROVENANCE_FIELDS, allowed=PROVENANCE_FIELDS)
  for name in ("simulation_run", "world_version", "model_version"):
    if not isinstance(p[name], str) or not p[name].strip():
      raise PolicyError(source, f"provenance.{name}", f"must be a non-empty string, got "
                        f"{p[name]!r}")
  if not isinstance(p["metrics"], dict) or not p["metrics"]:
    raise PolicyError(source, "provenance.metrics",
                      "must map at least one metric name to its value")
  metrics = tuple(sorted((str(k), _number(source, f"provenance.metrics.{k}", v))
                         for k, v in p["metrics"].items()))
  c = p["constraint"]
  _keys(source, "provenance.constraint", c, required=CONSTRAINT_FIELDS,
        allowed=CONSTRAINT_FIELDS)
  if not isinstance(c["metric"], str) or not c["metric"]:
    raise PolicyError(source, "provenance.constraint.metric",
                      f"must name a metric, got {c['metric']!r}")
  floor = _number(source, "provenance.constraint.floor", c["floor"])
  if not isinstance(c["met"], bool):
    raise PolicyError(source, "provenance.constraint.met", f"must be true or false, got "
                      f"{c['met']!r}")
  return Provenance(p["simulation_run"], p["world_version"], p["model_version"], metrics,
                    (("floor", floor), ("met", c["met"]), ("metric", c["metric"])))


def _keys(source: str, where: str, value: object, required, allowed) -> None:
  name = where or "policy"
  if not isinstance(value, dict):
    raise PolicyError(source, name, f"must be a JSON object, got {type(value).__name__}")
  unknown = sorted(set(value) - set(allowed))
  if unknown:
    raise PolicyError(source, f"{where}.{unknown[0]}" if where else unknown[0],
                      f"is not a known field here; known: {list(allowed)}")
  missing = [k for k in required if k not in value]
  if missing:
    raise PolicyError(source, f"{where}.{missing[0]}" if where else missing[0],
                      "is missing")


def _number(source: str, field: str, x: object) -> float:
  if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
    raise PolicyError(source, field, f"must be a finite number, got {x!r}")
  return float(x)


def _int(source: str, field: str, x: object, lo: int, hi: int) -> int:
  if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= hi:
    raise PolicyError(source, field, f"must be an integer in [{lo}, {hi}], got {x!r}")
  return x


def _weights(source: str, field: str, w: object) -> Tuple[float, float, float]:
  if not isinstance(w, list) or len(w) != 3:
    raise PolicyError(source, field, f"must be [alpha, beta, gamma], got {w!r}")
  row = tuple(_number(source, field, x) for x in w)
  if min(row) < 0:
    raise PolicyError(source, field, f"weights must be >= 0, got {list(row)}")
  return row
