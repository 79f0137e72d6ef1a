"""``melody query``: ask the served ranker for one listener's list and print it.

This module owns the client side of a ranking request built from data on disk: the
listener's inputs come from a ``melody data generate`` (or ``melody data import``)
directory — the user's recent plays in ``events/*.parquet`` become the history and the
session exactly as the training examples are built (``features.raw_features``), for an
impression "now" (one minute after the user's last play) in the requested context.
``rank`` gets the most popular catalogue tracks as candidates; ``recommend`` retrieves
its own (plus intent candidates for ``--text`` when the model has an intent module).
The request goes over gRPC (``serving.client``), over the REST API with ``--rest``
(``serving.rest_client``, same table), or, with ``--saved-model``, to a SavedModel
loaded in this process; the answer is printed as a table.
"""

import dataclasses
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads

from features import events
from features import example_io
from features import feature_spec
from serving import request_schema
from serving import warmup

SIGNATURES = ("rank", "recommend")
HEAD_COLUMNS = (("completion", "interest_completion"), ("skip", "interest_skip"),
                ("like", "interest_like"), ("sub", "subscription"), ("expo", "exposure"),
                ("S_int", "interest"), ("fused", "fused_score"))


@dataclasses.dataclass(frozen=True)
class QueryRow:
  """One position of the answered list."""
  position: int
  track_id: str
  artist_id: str
  title: str
  scores: Dict[str, float]
  reasons: str


def read_user_events(data_dir: str, user: str) -> pa.Table:
  """The events of ``user`` under ``data_dir/events``, sorted by time.

  Raises:
    ValueError: no events directory, or no events of that user.
  """
  events_dir = os.path.join(data_dir, "events")
  if not os.path.isdir(events_dir):
    raise ValueError(f"no events directory at {events_dir} (run `melody data generate`)")
  table = pads.dataset(events_dir, format="parquet").to_table(
      filter=pads.field("user_id") == user)
  if table.num_rows == 0:
    raise ValueError(f"user {user!r} has no events under {events_dir}")
  return table.select(events.EVENT_SCHEMA.names).cast(events.EVENT_SCHEMA).sort_by("ts")


def listener_from_events(data_dir: str, user: str, context: str, surface: str = "home",
                         tracks: Optional[pd.DataFrame] = None) -> Dict[str, np.ndarray]:
  """The listener inputs (batch 1) of ``user`` for an impression one minute after the
  user's last play, in activity ``context`` on ``surface``.

  Raises:
    ValueError: an unknown context or surface, or a user without events.
  """
  if context not in feature_spec.ACTIVITIES:
    raise ValueError(f"unknown context {context!r}; known: {feature_spec.ACTIVITIES}")
  if surface not in feature_spec.SURFACES:
    raise ValueError(f"unknown surface {surface!r}; known: {feature_spec.SURFACES}")
  history = read_user_events(data_dir, user)
  last = history.slice(history.num_rows - 1).to_pylist()[0]
  now = dict.fromkeys(events.EVENT_SCHEMA.names)
  now.update(user_id=user, session_id=last["session_id"], plays=1, source=last["source"],
             user_segment=last["user_segment"], user_tenure_days=last["user_tenure_days"],
             context_activity=context, context_surface=surface, is_promo=False,
             ts=None if last["ts"] is None else int(last["ts"]) + 60)
  table = pa.concat_tables([history, pa.Table.from_pylist([now], schema=events.EVENT_SCHEMA)])
  if tracks is None:
    tracks = pd.read_parquet(os.path.join(data_dir, "tracks.parquet"))
  record = example_io.events_to_examples(table, tracks)[-1]
  return warmup.listener_inputs(warmup.parse_examples([record]), [0])


def popular_candidates(tracks: pd.DataFrame, n: int) -> Dict[str, np.ndarray]:
  """The ``n`` most popular catalogue tracks as ``rank`` candidates (batch 1)."""
  if n < 1:
    raise ValueError(f"--candidates must be >= 1, got {n}")
  top = tracks.assign(p=tracks["popularity"].fillna(0)).sort_values(
      "p", ascending=False, kind="stable").head(n)
  promo = (top["is_promo"].fillna(False).to_numpy().astype(np.int64)
           if "is_promo" in top.columns else np.zeros(len(top), np.int64))
  return {"candidate_ids": np.asarray([[t.encode() for t in top["track_id"]]], dtype=object),
          "candidate_is_promo": promo[np.newaxis, :]}


def build_request(data_dir: str, user: str, context: str, signature: str = "rank",
                  k: int = 20, text: Optional[str] = None, candidates: int = 100,
                  surface: str = "home") -> Dict[str, np.ndarray]:
  """The inputs of a ``rank`` or ``recommend`` request for ``user`` (batch 1)."""
  if signature not in SIGNATURES:
    raise ValueError(f"unknown signature {signature!r}; use one of {SIGNATURES}")
  if k < 1:
    raise ValueError(f"--k must be >= 1, got {k}")
  if text is not None and signature != "recommend":
    raise ValueError("--text applies to --signature recommend only")
  tracks = pd.read_parquet(os.path.join(data_dir, "tracks.parquet"))
  inputs = listener_from_events(data_dir, user, context, surface, tracks)
  inputs.update(request_schema.neutral_controls(1))
  if signature == "rank":
    inputs.update(popular_candidates(tracks, candidates))
  else:
    inputs["k"] = np.int32(k)
    if text is not None:
      inputs["request_text"] = np.asarray([text.encode()], dtype=object)
  return inputs


def to_rows(outputs: Mapping[str, np.ndarray], signature: str, tracks: pd.DataFrame,
            k: int) -> List[QueryRow]:
  """The first ``k`` positions of an answer as rows (rank outputs are re-ordered)."""
  info = tracks.set_index(tracks["track_id"].astype(str))
  if signature == "rank":
    order = outputs["order"][0]
    positions = [int(i) for i in order if i >= 0][:k]
    pick = lambda name: outputs[name][0][positions]  # noqa: E731
  else:
    n = int(np.sum(outputs["ranked_track_ids"][0] != b""))
    pick = lambda name: outputs[name][0][:min(n, k)]  # noqa: E731
  ids = [i.decode() for i in outputs["ranked_track_ids"][0][:len(pick("fused_score"))]]
  scores = {label: pick(key) for label, key in HEAD_COLUMNS}
  reasons = pick("reasons")
  rows = []
  for p, track in enumerate(ids):
    meta = info.loc[track] if track in info.index else None
    rows.append(QueryRow(
        position=p + 1, track_id=track,
        artist_id="" if meta is None else str(meta.get("artist_id", "")),
        title="" if meta is None else str(meta.get("title", "") or ""),
        scores={label: float(v[p]) for label, v in scores.items()},
        reasons=reasons[p].decode()))
  return rows


def format_table(rows: Sequence[QueryRow], weights: Optional[np.ndarray] = None) -> str:
  """A fixed-width table of the rows (and the fusion weights used)."""
  header = (f"{'#':>3}  {'track':<10} {'artist':<8} {'title':<22} "
            + " ".join(f"{label:>10}" for label, _ in HEAD_COLUMNS) + "  reasons")
  lines = [header, "-" * len(header)]
  for r in rows:
    lines.append(f"{r.position:>3}  {r.track_id:<10.10} {r.artist_id:<8.8} {r.title:<22.22} "
                 + " ".join(f"{r.scores[label]:>10.4f}" for label, _ in HEAD_COLUMNS)
                 + f"  {r.reasons}")
  if weights is not None:
    a, b, c = (float(x) for x in weights)
    lines.append(f"fusion weights: alpha={a:.3f} beta={b:.3f} gamma={c:.3f}")
  return "\n".join(lines)


def run(data_dir: str, user: str, context: str, server: Optional[str] = "127.0.0.1:8500",
        model: str = "melody", signature: str = "rank", k: int = 20,
        text: Optional[str] = None, candidates: int = 100, surface: str = "home",
        saved_model: Optional[str] = None, version_label: Optional[str] = None,
        rest: Optional[str] = None):
  """Builds the request, calls the server (or the SavedModel), returns (rows, weights).

  The server is asked over gRPC at ``server``, or over REST at ``rest`` when given.

  Raises:
    ValueError: bad arguments, or ``text`` for a model without an intent module.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  inputs = build_request(data_dir, user, context, signature, k, text, candidates, surface)
  if saved_model:
    from serving import tensors  # pylint: disable=g-import-not-at-top
    fn = tensors.load_saved_model(saved_model).signatures.get(signature)
    if fn is None:
      raise ValueError(f"{saved_model} has no signature {signature!r}")
    expected = set(fn.structured_input_signature[1])
    if "request_text" in inputs and "request_text" not in expected:
      raise ValueError("--text needs a model exported with an intent module")
    outputs = {name: v.numpy() for name, v in
               fn(**{name: tf.constant(v) for name, v in inputs.items()}).items()}
  else:
    # pylint: disable=g-import-not-at-top
    if rest:
      from serving import rest_client
      connection = rest_client.RestClient(rest)
    else:
      from serving import client
      connection = client.ModelClient(server)
    # pylint: enable=g-import-not-at-top
    with connection as c:
      if "request_text" in inputs:
        defs = c.metadata(model, version_label=version_label)
        if "request_text" not in defs[signature].inputs:
          raise ValueError("--text needs a model exported with an intent module")
      outputs = c.predict(model, signature, inputs, version_label=version_label)
  tracks = pd.read_parquet(os.path.join(data_dir, "tracks.parquet"))
  return to_rows(outputs, signature, tracks, k), outputs["weights"][0]


def main(args) -> int:
  """Runs ``melody query`` (arguments from ``serving.cli``)."""
  import sys  # pylint: disable=g-import-not-at-top
  try:
    rows, weights = run(args.data, args.user, args.context, args.server, args.model,
                        args.signature, args.k, args.text, args.candidates, args.surface,
                        args.saved_model, args.version_label, args.rest)
  except ValueError as e:
    print(f"melody query: error: {e}", file=sys.stderr)
    return 2
  except Exception as e:  # pylint: disable=broad-except
    import grpc  # pylint: disable=g-import-not-at-top
    from serving import rest_client  # pylint: disable=g-import-not-at-top
    if isinstance(e, rest_client.RestError):
      print(f"melody query: server error HTTP {e.status}: {e.message}", file=sys.stderr)
      return 1
    if isinstance(e, grpc.RpcError):
      print(f"melody query: server error {e.code().name}: {e.details()}", file=sys.stderr)
      return 1
    raise
  print(f"{args.signature} for user {args.user} ({args.context}):")
  print(format_table(rows, weights))
  return 0
