"""Data benchmark (``make bench-data``): generator throughput, streaming memory, examples/s.

Three measurements, each next to a baseline measured in the same run:

(a) world generator: simulated events per CPU-second (= per core) of
    ``simulation.world.World.iter_events``; baseline: writing the very same Arrow tables
    to parquet (the cheapest thing one can do with those rows), as events/s.
(b) streaming: ``BENCH_STREAM_EVENTS`` (10M) events from the world streamed to parquet
    shards by ``features.dataset_writer.stream_events`` in a child process; its peak RSS
    must stay under 2 GB.
(c) examples: raw ``tf.train.Example`` s per second through the Beam path
    (``features.examples_beam.write_examples``, DirectRunner in_memory, one core), and the
    serialization step alone (Arrow batch + tfx_bsl C++ encoder) against the
    straightforward baseline (one ``tf.train.Example`` proto built per row in Python,
    then ``SerializeToString``) on the same rows.

Environment knobs: ``BENCH_STREAM_EVENTS`` (default 10,000,000), ``BENCH_GEN_USERS``
(default 2,000).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import features  # noqa: F401  (Keras 2 guard before TensorFlow)
from bench import common

TARGET_EVENTS_PER_CORE = 200_000
RSS_LIMIT_MB = 2048
SEED = 7
N_TRACKS = 5000
DAYS = 7


def _world():
  from simulation.world import World  # pylint: disable=g-import-not-at-top
  from simulation.world_config import WorldConfig  # pylint: disable=g-import-not-at-top
  return World(WorldConfig(n_tracks=N_TRACKS), seed=SEED)


def bench_generator(users: int):
  """(a) events per CPU-second of the world vs parquet writing of the same tables."""
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  world = _world()
  list(world.iter_events(50, 1, chunk_users=50))  # warm caches and lazy imports
  cpu0, t0 = time.process_time(), time.perf_counter()
  tables = list(world.iter_events(users, DAYS, chunk_users=500))
  cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
  events = sum(t.num_rows for t in tables)
  with tempfile.TemporaryDirectory() as tmp:
    cpu0 = time.process_time()
    for i, t in enumerate(tables):
      pq.write_table(t, os.path.join(tmp, f"part-{i:05d}.parquet"))
    write_cpu = time.process_time() - cpu0
  return {
      "users": users, "days": DAYS, "events": events,
      "events_per_user_day": events / (users * DAYS),
      "events_per_cpu_s": events / cpu, "events_per_wall_s": events / wall,
      "baseline_parquet_events_per_cpu_s": events / write_cpu,
      "ratio_vs_parquet_write": (events / cpu) / (events / write_cpu),
      "target_events_per_core": TARGET_EVENTS_PER_CORE,
      "meets_target": events / cpu >= TARGET_EVENTS_PER_CORE,
  }, tables


def _own_peak_rss_mb() -> float:
  """Peak RSS of this process image (VmHWM).

  ``getrusage``'s ru_maxrss survives fork+exec on Linux, so a child started from a
  parent that had TensorFlow loaded would report the parent's peak; VmHWM belongs to
  the new address space only.
  """
  try:
    with open("/proc/self/status") as f:
      for line in f:
        if line.startswith("VmHWM:"):
          return int(line.split()[1]) / 1024.0
  except OSError:
    pass
  return common.peak_rss_mb()


def _stream_child(out_dir: str, target_events: int, users: int) -> None:
  """Runs in a child process: world -> parquet until ``target_events``; prints JSON."""
  from features import dataset_writer  # pylint: disable=g-import-not-at-top
  world = _world()
  cpu0, t0 = time.process_time(), time.perf_counter()
  stream = dataset_writer.stream_events(world.iter_events(users, DAYS, chunk_users=1000),
                                        out_dir, max_events=target_events)
  size = sum(os.path.getsize(p) for p in stream.paths)
  print(json.dumps({"events": stream.events, "files": len(stream.paths),
                    "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - cpu0,
                    "parquet_mb": size / 2**20, "peak_rss_mb": _own_peak_rss_mb()}))


def bench_stream(target_events: int, events_per_user_day: float):
  """(b) streams ``target_events`` to parquet in a child process; returns its peak RSS."""
  users = int(target_events / (events_per_user_day * DAYS) * 1.2) + 1000
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory() as tmp:
    code = ("import sys; import bench.data as d; "
            f"d._stream_child({tmp!r}, {target_events}, {users})")
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                          text=True, check=False)
  if proc.returncode != 0:
    raise RuntimeError(f"stream child failed:\n{proc.stderr[-3000:]}")
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  result["events_per_wall_s"] = result["events"] / result["wall_s"]
  result["events_per_cpu_s"] = result["events"] / result["cpu_s"]
  result["rss_limit_mb"] = RSS_LIMIT_MB
  result["under_limit"] = result["peak_rss_mb"] < RSS_LIMIT_MB
  return result


def bench_examples(tables, max_events: int = 150_000, baseline_rows: int = 2000):
  """(c) examples/s through Beam, and the serialization step vs the proto baseline."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import pyarrow as pa  # pylint: disable=g-import-not-at-top
  import pyarrow.parquet as pq  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from features import example_io  # pylint: disable=g-import-not-at-top
  from features import examples_beam  # pylint: disable=g-import-not-at-top
  from features import raw_features  # pylint: disable=g-import-not-at-top
  from features import feature_spec  # pylint: disable=g-import-not-at-top
  import apache_beam  # noqa: F401 pylint: disable=g-import-not-at-top,unused-import

  world = _world()
  chunks, n = [], 0
  for t in tables:
    if n >= max_events:
      break
    chunks.append(t)
    n += t.num_rows
  events = pa.concat_tables(chunks)
  index = raw_features.TrackIndex(world.tracks)

  # Stage breakdown on one core, in this process.
  t0 = time.perf_counter()
  batch = raw_features.events_to_record_batch(events, index)
  t1 = time.perf_counter()
  records = example_io.encode_record_batch(batch)
  t2 = time.perf_counter()
  framed = example_io.tfrecord_frames(records)
  t3 = time.perf_counter()
  import zlib  # pylint: disable=g-import-not-at-top
  zlib.compress(framed, example_io.GZIP_LEVEL)
  t4 = time.perf_counter()
  zlib.compress(framed, 6)
  t5 = time.perf_counter()
  rows = len(records)

  # Baseline: the same rows built as tf.train.Example protos one by one.
  sample = tf.io.parse_example(records[:baseline_rows], feature_spec.raw_feature_spec())
  sample = {k: v.numpy() for k, v in sample.items()}
  dicts = [{k: v[i] for k, v in sample.items()} for i in range(len(records[:baseline_rows]))]
  b0 = time.perf_counter()
  for d in dicts:
    example_io.reference_example(d)
  baseline_s = time.perf_counter() - b0
  fast_sample = pa.Table.from_batches([batch]).slice(0, len(dicts)).to_batches()[0]
  f0 = time.perf_counter()
  example_io.encode_record_batch(fast_sample)
  fast_sample_s = time.perf_counter() - f0

  # The Beam path end to end (files written), DirectRunner in_memory.
  with tempfile.TemporaryDirectory() as tmp:
    paths = []
    for i, c in enumerate(chunks):
      paths.append(os.path.join(tmp, f"events-{i:05d}.parquet"))
      pq.write_table(c, paths[-1])
    tracks_path = os.path.join(tmp, "tracks.parquet")
    pq.write_table(pa.Table.from_pandas(world.tracks, preserve_index=False), tracks_path)
    b0 = time.perf_counter()
    counts = examples_beam.write_examples(paths, tracks_path, os.path.join(tmp, "examples"),
                                          shards=4, beam_args=["--direct_running_mode=in_memory"])
    beam_s = time.perf_counter() - b0
    out_bytes = sum(os.path.getsize(os.path.join(tmp, "examples", f))
                    for f in os.listdir(os.path.join(tmp, "examples")))
  made = counts["train"] + counts["eval"]
  return {
      "events": events.num_rows, "examples": rows,
      "bytes_per_example": float(np.mean([len(r) for r in records])),
      "gzip_bytes_per_example": out_bytes / max(made, 1),
      "build_batch_per_s": rows / (t1 - t0), "encode_per_s": rows / (t2 - t1),
      "frame_per_s": rows / (t3 - t2), f"gzip{example_io.GZIP_LEVEL}_per_s": rows / (t4 - t3),
      "gzip6_per_s": rows / (t5 - t4),
      "serialize_fast_per_s": len(dicts) / fast_sample_s,
      "serialize_baseline_per_s": len(dicts) / baseline_s,
      "serialize_ratio": baseline_s / fast_sample_s,
      "beam_examples": made, "beam_wall_s": beam_s, "beam_examples_per_s": made / beam_s,
      "beam_vs_baseline_serialize_only": (made / beam_s) / (len(dicts) / baseline_s),
  }


def main() -> None:
  users = int(os.environ.get("BENCH_GEN_USERS", "2000"))
  target = int(os.environ.get("BENCH_STREAM_EVENTS", "10000000"))

  gen, tables = bench_generator(users)
  print(f"[data] generator: {gen['events']:,} events, {gen['events_per_cpu_s']:,.0f} events/s "
        f"per core", flush=True)
  exm = bench_examples(tables)
  del tables
  print(f"[data] examples: {exm['beam_examples_per_s']:,.0f} examples/s through Beam",
        flush=True)
  stream = bench_stream(target, gen["events_per_user_day"])
  print(f"[data] stream: {stream['events']:,} events, peak RSS {stream['peak_rss_mb']:.0f} MB",
        flush=True)

  rows = [
      {"measure": "(a) world events/s per core", "value": gen["events_per_cpu_s"],
       "baseline": gen["baseline_parquet_events_per_cpu_s"],
       "baseline_is": "parquet write of the same tables, events/s per core",
       "ratio": gen["ratio_vs_parquet_write"],
       "check": f">= {TARGET_EVENTS_PER_CORE:,}: {gen['meets_target']}"},
      {"measure": f"(b) stream {stream['events']:,} events: peak RSS MB",
       "value": stream["peak_rss_mb"], "baseline": float(RSS_LIMIT_MB),
       "baseline_is": "limit", "ratio": stream["peak_rss_mb"] / RSS_LIMIT_MB,
       "check": f"< {RSS_LIMIT_MB} MB: {stream['under_limit']}"},
      {"measure": "(b) stream events/s (wall, world + parquet)",
       "value": stream["events_per_wall_s"], "baseline": "", "baseline_is": "", "ratio": "",
       "check": ""},
      {"measure": "(c) serialize examples/s (batch -> tfx_bsl)",
       "value": exm["serialize_fast_per_s"], "baseline": exm["serialize_baseline_per_s"],
       "baseline_is": "tf.train.Example proto per row", "ratio": exm["serialize_ratio"],
       "check": ""},
      {"measure": "(c) Beam examples/s (build+encode+gzip, 1 core)",
       "value": exm["beam_examples_per_s"], "baseline": exm["serialize_baseline_per_s"],
       "baseline_is": "proto serialization alone", "ratio":
           exm["beam_vs_baseline_serialize_only"], "check": ""},
  ]
  print(common.table(rows, ["measure", "value", "baseline", "baseline_is", "ratio", "check"]))
  stages = {k: v for k, v in exm.items() if k.endswith("_per_s")}
  print("stages (examples/s, one core): " + ", ".join(f"{k}={v:,.0f}"
                                                      for k, v in stages.items()))
  common.write_results("data", {"generator": gen, "stream": stream, "examples": exm,
                                "table": rows})


if __name__ == "__main__":
  main()
