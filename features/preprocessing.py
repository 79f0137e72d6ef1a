"""The TensorFlow Transform ``preprocessing_fn`` and a Beam analyze-and-transform runner.

This module owns the mapping raw examples (``feature_spec.RAW_FEATURES``) -> transformed
features (``feature_spec.TRANSFORMED_FEATURES``, suffix ``_xf``) that the ranking model
consumes, used in three places with the same graph: ``tft_beam`` here
(``transform_dataset``), the TFX Transform component (module path
``features.preprocessing.preprocessing_fn``) and the serving ``transform_features``
signature.

Id convention of every vocabulary (``feature_spec.VOCABS``): 0 = padding / missing,
1..top_k = vocabulary entries (most frequent first), top_k+1..top_k+oov = hash buckets
of out-of-vocabulary values. The history and session sequences go through the same
track (and artist) vocabulary as the candidate: one vocabulary is computed over the
concatenation of candidate, history and session ids, so an id means the same track
wherever it appears. TFT drops empty strings from vocabularies, and padding is mapped
to 0 explicitly before the lookup result is used.

Shapes: a feature of length 1 is a ``[batch]`` tensor (like the raw scalars); a
sequence of length L is ``[batch, L]``.
"""

import os
from typing import Dict, Iterable, Optional

import tensorflow as tf
import tensorflow_transform as tft

from features import feature_spec
# Vocabulary file names inside the transform output (tft.TFTransformOutput
# .vocabulary_file_by_name(name)); serving and simulation read them by these names.
VOCAB_FILES: Dict[str, str] = {v: f"vocab_{v}" for v in feature_spec.VOCABS}


def _vocab_lookup(vocab: str, columns: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """One TFT vocabulary over all ``columns``; each column mapped with the id convention."""
  top_k, oov = feature_spec.VOCABS[vocab]
  flat = tf.concat([tf.reshape(c, [-1]) for c in columns.values()], axis=0)
  vocab_file = tft.vocabulary(flat, top_k=top_k, vocab_filename=VOCAB_FILES[vocab],
                              name=f"vocabulary_{vocab}")
  out = {}
  for name, x in columns.items():
    index = tft.apply_vocabulary(x, vocab_file, default_value=-1, name=f"apply_{name}")
    oov_id = top_k + 1 + tf.strings.to_hash_bucket_fast(x, oov)
    ids = tf.where(index >= 0, index + 1, oov_id)
    out[name] = tf.where(tf.equal(x, feature_spec.PAD_TOKEN), tf.zeros_like(ids), ids)
  return out


def _fixed_index(x: tf.Tensor, values) -> tf.Tensor:
  """Position of ``x`` in the ``values`` tuple; 0 (the 'unknown'/first entry) if absent."""
  matches = tf.cast(tf.equal(tf.expand_dims(x, -1), tf.constant(values)), tf.int64)
  return tf.reduce_sum(matches * tf.range(len(values), dtype=tf.int64), axis=-1)


def _bucketize(x: tf.Tensor, boundaries) -> tf.Tensor:
  """Bucket ids 0..len(boundaries): bucket i+1 holds boundaries[i] <= x < boundaries[i+1]."""
  return tf.cast(tf.raw_ops.Bucketize(input=tf.cast(x, tf.float32),
                                      boundaries=[float(b) for b in boundaries]), tf.int64)


def _clip(x: tf.Tensor, hi: int) -> tf.Tensor:
  return tf.clip_by_value(tf.cast(x, tf.int64), 0, hi)


def _dense(name: str, x) -> tf.Tensor:
  """``x`` as ``[batch]`` (length 1) or ``[batch, L]``, whatever schema parsed it.

  ``raw_feature_spec()`` gives exactly that; a TFX schema may instead give ``[batch, 1]``
  scalars (SchemaGen's inferred shapes) or sparse/ragged values (no inferred shape).
  """
  f = feature_spec.RAW_BY_NAME[name]
  if isinstance(x, tf.RaggedTensor):
    x = x.to_sparse()
  if isinstance(x, tf.SparseTensor):
    x = tf.sparse.to_dense(x, default_value=tf.constant(f.default, dtype=x.dtype))
    if f.length > 1:  # pad or cut to the fixed length
      x = tf.pad(x, [[0, 0], [0, tf.maximum(f.length - tf.shape(x)[1], 0)]],
                 constant_values=tf.constant(f.default, dtype=x.dtype))[:, :f.length]
      x = tf.reshape(x, [-1, f.length])  # static length for the output schema
    else:
      x = tf.pad(x, [[0, 0], [0, tf.maximum(1 - tf.shape(x)[1], 0)]],
                 constant_values=tf.constant(f.default, dtype=x.dtype))[:, 0]
  elif f.length == 1 and x.shape.rank == 2:
    x = tf.reshape(x, [-1])
  return x


def preprocessing_fn(inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  """Maps raw features to ``feature_spec.TRANSFORMED_FEATURES`` plus labels/weights.

  Args:
    inputs: raw tensors parsed with ``feature_spec.raw_feature_spec()`` (or any schema
      with the same names: ``[batch, 1]`` scalars and sparse values are accepted).

  Returns:
    Exactly the keys of ``TRANSFORMED_FEATURES`` and ``PASSTHROUGH_KEYS``.
  """
  xf = feature_spec.xf
  inputs = {k: _dense(k, v) for k, v in inputs.items() if k in feature_spec.RAW_BY_NAME}
  out: Dict[str, tf.Tensor] = {}

  ids = {}
  ids.update(_vocab_lookup("user", {"user_id": inputs["user_id"]}))
  ids.update(_vocab_lookup("track", {k: inputs[k] for k in (
      "cand_track_id", "hist_track_ids", "sess_track_ids")}))
  ids.update(_vocab_lookup("artist", {k: inputs[k] for k in (
      "cand_artist_id", "hist_artist_ids", "sess_artist_ids")}))
  ids.update(_vocab_lookup("tag", {"cand_tags": inputs["cand_tags"]}))
  for name, value in ids.items():
    out[xf(name)] = value

  out[xf("user_segment")] = _fixed_index(inputs["user_segment"], feature_spec.SEGMENTS)
  out[xf("context_activity")] = _fixed_index(inputs["context_activity"], feature_spec.ACTIVITIES)
  out[xf("context_surface")] = _fixed_index(inputs["context_surface"], feature_spec.SURFACES)
  out[xf("context_hour")] = _clip(inputs["context_hour"], feature_spec.NUM_HOURS - 1)
  out[xf("context_weekday")] = _clip(inputs["context_weekday"], 6)

  tenure = tf.math.log1p(tf.maximum(tf.cast(inputs["user_tenure_days"], tf.float32), 0.0))
  out[xf("user_tenure_days")] = tft.scale_to_z_score(tenure, name="zscore_tenure")
  out[xf("cand_popularity")] = tft.scale_to_z_score(
      tf.cast(inputs["cand_popularity"], tf.float32), name="zscore_popularity")

  for prefix in ("hist", "sess"):
    out[xf(f"{prefix}_completion")] = tf.cast(inputs[f"{prefix}_completion"], tf.float32)
    out[xf(f"{prefix}_skip")] = tf.cast(inputs[f"{prefix}_skip"], tf.float32)
    out[xf(f"{prefix}_gap_s")] = _bucketize(inputs[f"{prefix}_gap_s"],
                                            feature_spec.GAP_BOUNDARIES_S)
    out[xf(f"{prefix}_len")] = tf.cast(inputs[f"{prefix}_len"], tf.int64)

  out[xf("cand_num_tags")] = _clip(inputs["cand_num_tags"], feature_spec.MAX_TAGS)
  out[xf("cand_duration_s")] = _bucketize(inputs["cand_duration_s"],
                                          feature_spec.DURATION_BOUNDARIES_S)
  out[xf("cand_is_promo")] = _clip(inputs["cand_is_promo"], 1)

  for key in feature_spec.PASSTHROUGH_KEYS:
    dtype = tf.int64 if key in feature_spec.CLASS_LABELS else tf.float32
    out[key] = tf.cast(inputs[key], dtype)
  return out


def raw_metadata():
  """``tft.DatasetMetadata`` of the raw examples.

  TFT schemas cannot carry defaults for fixed-length features; every raw example holds
  every feature (``features.raw_features`` builds them all), so none is needed.
  """
  from tensorflow_transform.tf_metadata import dataset_metadata  # pylint: disable=g-import-not-at-top
  spec = {k: tf.io.FixedLenFeature(v.shape, v.dtype)
          for k, v in feature_spec.raw_feature_spec().items()}
  return dataset_metadata.DatasetMetadata.from_feature_spec(spec)


def transform_dataset(raw_file_pattern: str, out_dir: str,
                      eval_file_pattern: Optional[str] = None,
                      runner: str = "DirectRunner", beam_args: Iterable[str] = (),
                      shards: int = 0, temp_dir: Optional[str] = None) -> Dict[str, str]:
  """Analyzes raw examples with tft_beam, transforms them and writes everything.

  Layout under ``out_dir``:
    ``transform_fn/``, ``transformed_metadata/`` — a ``tft.TFTransformOutput(out_dir)``;
    ``transformed/train-*.tfrecord.gz`` (and ``transformed/eval-*`` when
    ``eval_file_pattern`` is given, transformed with the train analysis).

  Args:
    raw_file_pattern: gzip TFRecords of raw examples to analyze and transform.
    out_dir: output directory.
    eval_file_pattern: optional raw examples transformed with the same transform_fn.
    runner: Beam runner name.
    beam_args: extra Beam flags (DirectRunner defaults to in_memory).
    shards: output files per split; 0 lets the runner choose.
    temp_dir: tft_beam scratch directory (default ``out_dir/tmp``).

  Returns:
    {"transform_output": out_dir, "train": pattern, "eval": pattern or ""}.
  """
  import apache_beam as beam  # pylint: disable=g-import-not-at-top
  import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
  from tfx_bsl.coders import example_coder  # pylint: disable=g-import-not-at-top
  from tfx_bsl.public import tfxio  # pylint: disable=g-import-not-at-top

  from features import examples_beam  # pylint: disable=g-import-not-at-top

  if shards < 0:
    raise ValueError(f"shards must be >= 0, got {shards}")
  if not tf.io.gfile.glob(raw_file_pattern):
    raise ValueError(f"no files match raw_file_pattern {raw_file_pattern!r}")
  temp_dir = temp_dir or os.path.join(out_dir, "tmp")
  xf_dir = os.path.join(out_dir, "transformed")
  schema = raw_metadata().schema
  options = examples_beam.pipeline_options(runner, beam_args)

  def read(p, pattern, label):
    source = tfxio.TFExampleRecord(file_pattern=pattern, schema=schema,
                                   telemetry_descriptors=["melody"])
    return p | f"Read{label}" >> source.BeamSource(), source.TensorAdapterConfig()

  def write(batches, split):
    return (batches
            | f"Encode{split}" >> beam.FlatMapTuple(
                lambda batch, _: example_coder.RecordBatchToExamples(batch))
            | f"Write{split}" >> beam.io.WriteToTFRecord(
                os.path.join(xf_dir, split), file_name_suffix=".tfrecord.gz",
                num_shards=shards, compression_type=beam.io.filesystem.CompressionTypes.GZIP))

  with beam.Pipeline(options=options) as p:
    with tft_beam.Context(temp_dir=temp_dir):
      raw, adapter = read(p, raw_file_pattern, "Train")
      (train_xf, _), transform_fn = ((raw, adapter) | "AnalyzeAndTransform" >>
                                     tft_beam.AnalyzeAndTransformDataset(
                                         preprocessing_fn, output_record_batches=True))
      write(train_xf, "train")
      if eval_file_pattern:
        raw_eval, eval_adapter = read(p, eval_file_pattern, "Eval")
        eval_xf, _ = (((raw_eval, eval_adapter), transform_fn) | "TransformEval" >>
                      tft_beam.TransformDataset(output_record_batches=True))
        write(eval_xf, "eval")
      _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(out_dir)
  return {"transform_output": out_dir,
          "train": os.path.join(xf_dir, "train-*.tfrecord.gz"),
          "eval": os.path.join(xf_dir, "eval-*.tfrecord.gz") if eval_file_pattern else ""}
