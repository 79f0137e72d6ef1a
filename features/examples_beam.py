"""The Beam job that writes the training examples: event files -> sharded gzip TFRecords.

This module owns the examples pipeline: reading events chunks (Arrow tables or parquet
files on any Beam filesystem), the ``DoFn`` that turns a chunk into per-shard gzip
members (``features.splits`` routes each example, ``features.example_io`` encodes it),
the shard writer stage, the runner options (DirectRunner in_memory or multi_processing,
Dask, Dataflow, Flink by flags), per-worker progress prints and the counts read back from
Beam metrics.
"""

import os
import time
from typing import Dict, Iterable, Sequence, Union

import numpy as np
import pandas as pd
import pyarrow as pa

from features import dask_engine
from features import example_io
from features import raw_features
from features import splits

_IN_PROCESS_MODES = ("in_memory", "multi_threading")


def read_events(path: str) -> pa.Table:
  """Reads one events parquet file (local or any Beam filesystem, e.g. gs://)."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  if os.path.exists(path):
    return pq.read_table(path)
  from apache_beam.io.filesystems import FileSystems  # pylint: disable=g-import-not-at-top
  with FileSystems.open(path) as f:
    return pq.read_table(pa.BufferReader(f.read()))


def _beam():
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  return beam


def make_events_to_examples_fn(tracks: Union[pd.DataFrame, str], shards: int,
                               eval_percent: int = splits.DEFAULT_EVAL_PERCENT,
                               span_days: Sequence[int] = (), progress_every_s: float = 0,
                               negatives=None):
  """A ``beam.DoFn``: events chunk (Arrow table or parquet path) -> shard batches.

  Emits ``((tag, shard), member)`` for every output tag of
  ``splits.output_tags(span_days)`` and every shard: ``member`` is a gzip member
  (``example_io.gzip_member``) holding a round-robin slice of the chunk's examples,
  possibly empty so that every shard file exists. Compressing here, in parallel, and
  sending one small bytes object per chunk and shard keeps the shuffle and the writer
  cheap. Counters ``melody/events`` and ``melody/{train,eval}_examples`` count what it
  makes.

  Args:
    tracks: the tracks frame, or the path of a tracks parquet file (read in ``setup``).
    shards: files per tag.
    eval_percent: share of users (by id hash) whose examples go to "eval".
    span_days: UTC day numbers; when given, tags are ``span-YYYYMMDD/{train,eval}`` (see
      ``splits.split_examples``).
    progress_every_s: when > 0, each worker prints its events/s and examples/s this often.
    negatives: a ``sampled_negatives.NegativeSampling`` for a play-only log (each play
      followed by its sampled negatives), or None.
  """
  beam = _beam()
  if not 0 <= eval_percent <= 100:
    raise ValueError(f"eval_percent must be in [0, 100], got {eval_percent}")
  if shards < 1:
    raise ValueError(f"shards must be >= 1, got {shards}")
  days = np.array(sorted(set(int(d) for d in span_days)), dtype=np.int64)
  tags = splits.output_tags(span_days)

  class EventsToExamplesFn(beam.DoFn):
    """Events chunk -> serialized examples, batched per output file."""

    def __init__(self):
      super().__init__()
      self._tracks_src = tracks
      self._index = None
      self._events = beam.metrics.Metrics.counter("melody", "events")
      self._counters = {s: beam.metrics.Metrics.counter("melody", f"{s}_examples")
                        for s in ("train", "eval")}
      self._progress = None
      self._crc32c = None

    def setup(self):
      src = self._tracks_src
      if isinstance(src, str):
        src = read_events(src)
      self._index = raw_features.TrackIndex(src)
      self._crc32c = example_io.crc32c_fn()
      now = time.perf_counter()
      self._progress = [now, now, 0, 0]  # start, last print, events, examples

    def process(self, chunk):
      table = read_events(chunk) if isinstance(chunk, str) else chunk
      self._events.inc(table.num_rows)
      made = splits.split_examples(table, self._index, eval_percent, span_days=days,
                                   negatives=negatives)
      n_out = 0
      for tag in tags:
        records = made.get(tag, [])
        self._counters[tag.rsplit("/", 1)[-1]].inc(len(records))
        n_out += len(records)
        for shard in range(shards):
          part = records[shard::shards]
          # b"" for nothing: an empty gzip member would end TensorFlow's reader early.
          yield (tag, shard), example_io.gzip_member(part, self._crc32c) if part else b""
      self._report(table.num_rows, n_out)

    def _report(self, n_events, n_examples):
      p = self._progress
      p[2] += n_events
      p[3] += n_examples
      now = time.perf_counter()
      if progress_every_s > 0 and now - p[1] >= progress_every_s:
        p[1] = now
        dt = max(now - p[0], 1e-9)
        print(f"[examples] worker {os.getpid()}: {p[2]:,} events, {p[3]:,} examples, "
              f"{p[3] / dt:,.0f} examples/s", flush=True)

  return EventsToExamplesFn()


def build_examples_pipeline(pipeline, event_chunks, tracks: Union[pd.DataFrame, str],
                            out_dir: str, shards: int = 4,
                            eval_percent: int = splits.DEFAULT_EVAL_PERCENT,
                            span_days: Sequence[int] = (), progress_every_s: float = 0,
                            negatives=None):
  """Adds events -> examples -> sharded gzip TFRecords to a Beam pipeline.

  Writes ``out_dir/train-SSSSS-of-NNNNN.tfrecord.gz`` and ``out_dir/eval-…``, or with
  ``span_days`` ``out_dir/span-YYYYMMDD/{train,eval}-…`` (one folder per UTC day, the
  layout a TFX ImportExampleGen with ``{SPAN}`` input patterns reads).

  Examples travel through the shuffle in batches (one element per chunk and shard, not
  one per example), which is what makes this several times faster than a per-record
  ``beam.io.WriteToTFRecord`` on the DirectRunner; the files are the same format.

  Args:
    pipeline: the ``beam.Pipeline`` (any runner).
    event_chunks: a PCollection of events chunks (Arrow tables, or paths of parquet
      files each holding whole users sorted by (user_id, ts)), or a list of them.
    tracks: tracks frame or parquet path.
    out_dir: output directory (local or e.g. gs://).
    shards: files per split (per span).
    eval_percent: share of users in the eval split.
    span_days: UTC day numbers for the span layout; empty for the flat layout.
    progress_every_s: worker progress print interval (0: quiet).
    negatives: sampled negatives for a play-only log (``features.sampled_negatives``).

  Returns:
    A PCollection of (file path, file size in bytes).
  """
  beam = _beam()
  if isinstance(event_chunks, (list, tuple)):
    event_chunks = pipeline | "EventChunks" >> beam.Create(list(event_chunks))

  def write(keyed):
    (tag, shard), members = keyed
    path = example_io.shard_path(out_dir, tag, shard, shards)
    return path, example_io.write_shard(path, members)

  return (event_chunks
          | "Reshuffle" >> beam.Reshuffle()
          | "ToExamples" >> beam.ParDo(make_events_to_examples_fn(
              tracks, shards, eval_percent, span_days, progress_every_s, negatives))
          | "GroupByShard" >> beam.GroupByKey()
          | "WriteShards" >> beam.Map(write))


def direct_runner_flag(mode: str) -> str:
  """The ``--runner`` value of Beam's local runner for a ``direct_running_mode``.

  Beam's DirectRunner first tries to start the Prism runner, a binary it downloads, and
  runs the job on the FnApiRunner when that fails: offline, the attempt costs up to a few
  seconds per job and a network lookup. The in-process modes name the FnApiRunner
  directly; ``multi_processing`` keeps the DirectRunner, whose provisioning hands the
  pipeline options to the worker processes.
  """
  return "FnApiRunner" if mode in _IN_PROCESS_MODES else "DirectRunner"


def pipeline_options(runner: str = "DirectRunner", beam_args: Iterable[str] = (),
                     large: bool = False):
  """Beam options for ``runner``; DirectRunner gets a running mode unless one is given.

  Args:
    runner: DirectRunner, DataflowRunner, FlinkRunner, ... .
    beam_args: extra flags passed as-is (``--project``, ``--region``, ``--temp_location``,
      ``--flink_master`` ...).
    large: for DirectRunner, use ``multi_processing`` over all cores instead of
      ``in_memory``.
  """
  from apache_beam.options.pipeline_options import PipelineOptions  # pylint: disable=g-import-not-at-top
  args = list(beam_args)
  runner_flag = dask_engine.runner_flag(runner)
  if runner == "DirectRunner":
    modes = [a.split("=", 1)[1] for a in args if a.startswith("--direct_running_mode=")]
    if modes:
      mode = modes[-1]
    elif large:
      mode = "multi_processing"
      args += [f"--direct_running_mode={mode}", f"--direct_num_workers={os.cpu_count() or 1}"]
    else:
      mode = "in_memory"
      args += [f"--direct_running_mode={mode}"]
    runner_flag = direct_runner_flag(mode)
  return PipelineOptions([f"--runner={runner_flag}"] + args)


def write_examples(event_chunks: Sequence[Union[str, pa.Table]],
                   tracks: Union[pd.DataFrame, str], out_dir: str, shards: int = 4,
                   runner: str = "DirectRunner", beam_args: Iterable[str] = (),
                   eval_percent: int = splits.DEFAULT_EVAL_PERCENT, large: bool = False,
                   span_days: Sequence[int] = (),
                   progress_every_s: float = 0,
                   dask_workers: int = dask_engine.DEFAULT_LOCAL_WORKERS,
                   negatives=None) -> Dict[str, int]:
  """Runs the examples pipeline; returns counts {"events", "train", "eval"}.

  The counts come from Beam metrics; a runner that reports none (DaskRunner) gives -1.
  ``runner="DaskRunner"`` without ``--dask_client_address`` in ``beam_args`` runs on a
  local cluster of ``dask_workers`` processes (``features.dask_engine``). ``negatives``
  (a ``sampled_negatives.NegativeSampling``) adds sampled negatives beside every play.
  """
  beam = _beam()
  if not event_chunks:
    raise ValueError("event_chunks is empty")
  with dask_engine.beam_args_for(runner, beam_args, dask_workers) as args:
    p = beam.Pipeline(options=pipeline_options(runner, args, large))
    build_examples_pipeline(p, list(event_chunks), tracks, out_dir, shards, eval_percent,
                            span_days, progress_every_s, negatives)
    result = dask_engine.run_to_completion(p)
  counts = {"events": -1, "train": -1, "eval": -1}
  try:
    query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace("melody"))
  except (NotImplementedError, AttributeError):
    return counts
  for c in query["counters"]:
    key = c.key.metric.name.replace("_examples", "")
    if key in counts:
      value = c.committed if c.committed is not None else c.attempted
      counts[key] = max(counts[key], 0) + int(value)
  for key in counts:
    counts[key] = max(counts[key], 0) if query["counters"] else counts[key]
  return counts
