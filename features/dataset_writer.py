"""A Melody dataset directory written from any stream of events: events, tracks, examples.

This module owns the dataset layout written under ``OUT`` (what ``melody train``,
``melody export`` and ``melody query`` read):

* ``events/part-NNNNN.parquet`` — raw events in ``EVENT_SCHEMA``, streamed chunk by chunk
  from the source, whole users per file, sorted by (user_id, ts); memory stays bounded
  by one chunk;
* ``tracks.parquet`` — the catalogue (``TRACK_SCHEMA`` columns plus any extras of the
  source, such as the simulator's ``is_promo`` and ``exposure_value``);
* ``examples/train-SSSSS-of-NNNNN.tfrecord.gz`` and ``examples/eval-…`` — raw
  ``tf.train.Example`` s (``features.raw_features``), split ~90/10 by a hash of the user
  id (``features.splits``); with ``span_layout=True`` instead
  ``examples/span-YYYYMMDD/{train,eval}-…`` by UTC day of the impression, for a TFX
  ImportExampleGen reading spans by date;
* ``manifest.json`` — counts, settings, label coverage and counts (present, positive),
  a feature spec summary, and
  whatever the source adds (e.g. the simulator's seed and generator settings).

The examples stage is the Beam job of ``features.examples_beam``: DirectRunner by
default, Dataflow or Flink with ``runner`` and ``beam_args``.
"""

import glob
import json
import os
import sys
import time
from typing import Dict, Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features import events as events_lib
from features import examples_beam
from features import feature_spec
from features import splits

# Direct runs above this many events use Beam's multi_processing mode.
LARGE_RUN_EVENTS = 2_000_000


def _log(msg: str) -> None:
  print(f"[generate] {msg}", file=sys.stderr, flush=True)


def _fmt_eta(seconds: float) -> str:
  if not np.isfinite(seconds):
    return "?"
  m, s = divmod(int(seconds), 60)
  return f"{m}m{s:02d}s"


def _is_remote(path: str) -> bool:
  return "://" in path


def _write_bytes(path: str, data: bytes) -> None:
  """Writes a file locally or through Beam's filesystems (gs://, s3://, ...)."""
  if not _is_remote(path):
    with open(path, "wb") as f:
      f.write(data)
    return
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  with FileSystems.create(path, compression_type="uncompressed") as f:
    f.write(data)


def _write_parquet(table: pa.Table, path: str) -> None:
  if _is_remote(path):
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    _write_bytes(path, sink.getvalue().to_pybytes())
  else:
    pq.write_table(table, path)


def _match(pattern: str) -> list:
  """Files matching ``pattern`` (``**`` allowed locally), sorted."""
  if not _is_remote(pattern):
    return sorted(p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  return sorted(m.path for r in FileSystems.match([pattern.replace("**/", "**")])
                for m in r.metadata_list)


def _clear(pattern: str) -> None:
  """Removes outputs of an earlier run so that stale shards cannot mix in."""
  paths = _match(pattern)
  if not paths:
    return
  if _is_remote(pattern):
    from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
    FileSystems.delete(paths)
  else:
    for path in paths:
      os.remove(path)


def feature_spec_summary() -> Dict[str, object]:
  """The parts of ``feature_spec`` a consumer of the dataset needs to check."""
  return {
      "history_len": feature_spec.HISTORY_LEN, "session_len": feature_spec.SESSION_LEN,
      "session_window_s": feature_spec.SESSION_WINDOW_S, "max_tags": feature_spec.MAX_TAGS,
      "vocabs": {k: list(v) for k, v in feature_spec.VOCABS.items()},
      "raw_features": {f.name: [f.dtype, f.length] for f in feature_spec.RAW_FEATURES},
      "transformed_features": {k: list(v) for k, v in feature_spec.TRANSFORMED_FEATURES.items()},
      "label_keys": list(feature_spec.LABEL_KEYS),
  }


class _EventStream:
  """Writes event chunks to parquet and keeps the counts the manifest needs."""

  def __init__(self, events_dir: str, expected_chunks: Optional[int]):
    self.events_dir = events_dir
    self.expected_chunks = expected_chunks
    self.paths = []
    self.events = 0
    self.users = 0
    self.label_present = {c: 0 for c in events_lib.EVENT_LABELS}
    self.label_positive = {c: 0 for c in events_lib.EVENT_LABELS}
    self.min_ts: Optional[int] = None
    self.max_ts: Optional[int] = None
    self.days = set()
    self.t0 = time.perf_counter()
    self.seconds = 0.0
    self._last = 0.0

  def write(self, chunk: pa.Table) -> None:
    if chunk.schema != events_lib.EVENT_SCHEMA:
      try:
        chunk = chunk.select(events_lib.EVENT_SCHEMA.names).cast(events_lib.EVENT_SCHEMA)
      except (KeyError, pa.ArrowInvalid, ValueError) as e:
        raise ValueError(f"events chunk does not match EVENT_SCHEMA: {e}") from e
    path = os.path.join(self.events_dir, f"part-{len(self.paths):05d}.parquet")
    _write_parquet(chunk, path)
    self.paths.append(path)
    self.events += chunk.num_rows
    self.users += len(chunk.column("user_id").unique())
    for col in self.label_present:
      values = chunk.column(col)
      self.label_present[col] += chunk.num_rows - values.null_count
      self.label_positive[col] += int(np.count_nonzero(
          np.nan_to_num(values.to_numpy(zero_copy_only=False).astype(np.float64)) > 0))
    ts = chunk.column("ts").drop_null().to_numpy()
    if len(ts):
      self.min_ts = int(ts.min()) if self.min_ts is None else min(self.min_ts, int(ts.min()))
      self.max_ts = int(ts.max()) if self.max_ts is None else max(self.max_ts, int(ts.max()))
      self.days.update(np.unique(ts // 86400).tolist())
    self._progress()

  def _progress(self, final: bool = False) -> None:
    now = time.perf_counter()
    if not final and now - self._last < 2.0:
      return
    self._last = now
    dt = max(now - self.t0, 1e-9)
    done = len(self.paths)
    msg = (f"events: {self.events:,} ({self.events / dt:,.0f} events/s), "
           f"users with events {self.users:,}, chunk {done}")
    if self.expected_chunks:
      left = (self.expected_chunks - done) * dt / max(done, 1)
      msg += f"/{self.expected_chunks}, ETA {_fmt_eta(left)}"
    _log(msg)

  def finish(self) -> float:
    self._progress(final=True)
    return time.perf_counter() - self.t0


def stream_events(event_chunks: Iterable[pa.Table], events_dir: str,
                  expected_chunks: Optional[int] = None,
                  max_events: Optional[int] = None) -> "_EventStream":
  """Writes chunks to ``events_dir/part-NNNNN.parquet`` one at a time.

  Only one chunk is in memory at a time (plus what the source holds).

  Args:
    event_chunks: ``EVENT_SCHEMA`` tables (whole users each).
    events_dir: existing directory.
    expected_chunks: for the progress ETA.
    max_events: stop after the chunk that reaches this many events.

  Returns:
    The stream record: ``paths``, ``events``, ``users``, ``seconds``, label counts, days.
  """
  stream = _EventStream(events_dir, expected_chunks)
  for chunk in event_chunks:
    if chunk.num_rows:
      stream.write(chunk)
    if max_events is not None and stream.events >= max_events:
      break
  stream.seconds = stream.finish()
  return stream


def write_dataset(event_chunks: Iterable[pa.Table], tracks: pd.DataFrame, out: str,
                  shards: int = 4, runner: str = "DirectRunner",
                  beam_args: Sequence[str] = (),
                  eval_percent: int = splits.DEFAULT_EVAL_PERCENT,
                  span_layout: bool = False, expected_chunks: Optional[int] = None,
                  manifest_extra: Optional[Dict[str, object]] = None,
                  negatives=None) -> Dict[str, object]:
  """Streams events to parquet, writes the tracks, builds the examples, writes the manifest.

  Args:
    event_chunks: ``EVENT_SCHEMA`` tables, whole users each, sorted by (user_id, ts).
    tracks: the catalogue (at least the ``TRACK_SCHEMA`` columns).
    out: output directory, local or any Beam filesystem (gs://...).
    shards: TFRecord files per split.
    runner: Beam runner for the examples stage.
    beam_args: extra Beam flags.
    eval_percent: share of users in the eval split.
    span_layout: write ``examples/span-YYYYMMDD/...`` instead of the flat layout.
    expected_chunks: number of chunks the source will yield, for the progress ETA.
    manifest_extra: merged into the manifest (e.g. the generator settings).
    negatives: a ``sampled_negatives.NegativeSampling`` for a play-only log: every play
      is written with its sampled negatives (recorded as ``next_play`` in the manifest).

  Returns:
    The manifest (also written to ``out/manifest.json``).
  """
  if shards < 1:
    raise ValueError(f"shards must be >= 1, got {shards}")
  events_dir = os.path.join(out, "events")
  examples_dir = os.path.join(out, "examples")
  if not _is_remote(out):
    os.makedirs(events_dir, exist_ok=True)
    os.makedirs(examples_dir, exist_ok=True)
  _clear(os.path.join(events_dir, "part-*.parquet"))
  _clear(os.path.join(examples_dir, "**", "*.tfrecord.gz"))

  tracks_path = os.path.join(out, "tracks.parquet")
  tracks_table = pa.Table.from_pandas(tracks.reset_index(drop=True), preserve_index=False)
  _write_parquet(tracks_table, tracks_path)

  stream = stream_events(event_chunks, events_dir, expected_chunks)
  events_s = stream.seconds
  if not stream.paths:
    raise ValueError("the event source produced no events")

  span_days = sorted(stream.days) if span_layout else []
  if span_layout and not span_days:
    raise ValueError("span_layout needs timestamps, but every event has a null ts")
  _log(f"examples: Beam {runner} over {len(stream.paths)} event files ...")
  t0 = time.perf_counter()
  counts = examples_beam.write_examples(
      stream.paths, tracks_path, examples_dir, shards=shards, runner=runner,
      beam_args=beam_args, eval_percent=eval_percent,
      large=stream.events > LARGE_RUN_EVENTS, span_days=span_days, progress_every_s=10,
      negatives=negatives)
  examples_s = time.perf_counter() - t0
  n_examples = counts["train"] + counts["eval"]
  _log(f"examples: {counts['train']:,} train + {counts['eval']:,} eval in {examples_s:.1f}s "
       f"({n_examples / max(examples_s, 1e-9):,.0f} examples/s)")

  rel = lambda p: p[len(out):].lstrip("/")  # pylint: disable=unnecessary-lambda-assignment
  files = _match(os.path.join(examples_dir, "**", "*.tfrecord.gz"))
  manifest = {
      "layout": "span" if span_layout else "flat",
      "counts": {"events": stream.events, "users": stream.users,
                 "tracks": int(len(tracks)), "event_files": len(stream.paths),
                 "train_examples": counts["train"], "eval_examples": counts["eval"]},
      "eval_percent": eval_percent,
      "shards": shards,
      "runner": runner,
      "time_range": {"min_ts": stream.min_ts, "max_ts": stream.max_ts},
      "spans": [splits.span_name(d) for d in span_days],
      "label_coverage": {fs_label: stream.label_present[col] / max(stream.events, 1)
                         for col, fs_label in events_lib.EVENT_LABELS.items()},
      # Events with the label, and with a positive value: a head needs both classes.
      "label_counts": {fs_label: {"present": stream.label_present[col],
                                  "positive": stream.label_positive[col]}
                       for col, fs_label in events_lib.EVENT_LABELS.items()},
      "files": {"events": [rel(p) for p in stream.paths], "tracks": rel(tracks_path),
                "examples": [rel(p) for p in files]},
      "feature_spec": feature_spec_summary(),
      "timing": {"events_s": round(events_s, 3), "examples_s": round(examples_s, 3),
                 "events_per_s": round(stream.events / max(events_s, 1e-9), 1),
                 "examples_per_s": round(n_examples / max(examples_s, 1e-9), 1)},
  }
  if negatives is not None:
    manifest["next_play"] = negatives.describe()
  manifest.update(manifest_extra or {})
  _write_bytes(os.path.join(out, "manifest.json"),
               json.dumps(manifest, indent=2, sort_keys=True).encode())
  _log(f"wrote {out}/manifest.json")
  return manifest
