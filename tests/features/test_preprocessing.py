"""Tests of features.preprocessing: tft_beam and the exported graph agree, id conventions."""

import os

import numpy as np
import pyarrow as pa
import pytest

from features import events as events_lib
from features import example_io
from features import feature_spec
from features import preprocessing
from melody_testing import toy_events

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-order
import tensorflow_transform as tft  # pylint: disable=g-import-not-at-top,wrong-import-order


def _write(path, records):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path, options="GZIP") as w:
    for r in records:
      w.write(r)


def _read(pattern, spec):
  records = list(example_io.iter_records(pattern))
  return {k: v.numpy() for k, v in tf.io.parse_example(records, spec).items()}


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
  """Analyze + transform toy examples; the eval split is ONE held-out raw example."""
  root = tmp_path_factory.mktemp("tft")
  events, tracks = toy_events.toy_events(n_users=6, events_per_user=12, n_tracks=40)
  records = example_io.events_to_examples(events, tracks)
  probe = records[30]  # a user's 7th play: non-empty history and padding
  _write(str(root / "raw" / "train-0.tfrecord.gz"), records)
  _write(str(root / "raw_probe" / "eval-0.tfrecord.gz"), [probe])
  paths = preprocessing.transform_dataset(str(root / "raw" / "*.gz"), str(root / "out"),
                                          eval_file_pattern=str(root / "raw_probe" / "*.gz"),
                                          shards=1)
  tfo = tft.TFTransformOutput(paths["transform_output"])
  spec = tfo.transformed_feature_spec()
  return {"tfo": tfo, "root": root, "records": records, "probe": probe,
          "train": _read(paths["train"], spec), "eval": _read(paths["eval"], spec)}


def _layer_outputs(tfo, records):
  raw = tf.io.parse_example(records, feature_spec.raw_feature_spec())
  return {k: v.numpy() for k, v in tfo.transform_features_layer()(raw).items()}


def test_outputs_match_feature_spec(transformed):
  spec = transformed["tfo"].transformed_feature_spec()
  assert set(spec) == set(feature_spec.TRANSFORMED_FEATURES) | set(feature_spec.PASSTHROUGH_KEYS)
  dtypes = {"int64": tf.int64, "float32": tf.float32}
  for name, (dtype, length, cardinality) in feature_spec.TRANSFORMED_FEATURES.items():
    assert spec[name].dtype == dtypes[dtype], name
    assert list(spec[name].shape) == ([length] if length > 1 else []), name
    values = transformed["train"][name]
    if cardinality:
      assert values.min() >= 0 and values.max() < cardinality, name
  for key in feature_spec.PASSTHROUGH_KEYS:
    assert spec[key].dtype == (tf.int64 if key in feature_spec.CLASS_LABELS else tf.float32)


def test_tft_beam_and_exported_graph_agree_on_one_example(transformed):
  from_beam = transformed["eval"]
  from_layer = _layer_outputs(transformed["tfo"], [transformed["probe"]])
  assert set(from_beam) == set(from_layer)
  for name in from_beam:
    np.testing.assert_array_equal(from_beam[name][0], from_layer[name][0], err_msg=name)


def test_saved_model_signature_over_serialized_examples(transformed, tmp_path):
  tfo = transformed["tfo"]

  class Module(tf.Module):

    def __init__(self):
      super().__init__()
      self.tft_layer = tfo.transform_features_layer()

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def transform_features(self, examples):
      return self.tft_layer(tf.io.parse_example(examples, feature_spec.raw_feature_spec()))

  module = Module()
  path = str(tmp_path / "sm")
  tf.saved_model.save(module, path,
                      signatures={"transform_features": module.transform_features})
  loaded = tf.saved_model.load(path).signatures["transform_features"]
  out = loaded(examples=tf.constant([transformed["probe"]]))
  for name, value in transformed["eval"].items():
    np.testing.assert_array_equal(out[name].numpy()[0], value[0], err_msg=name)


def test_padding_maps_to_zero_and_real_ids_do_not(transformed):
  t = transformed["train"]
  for prefix, length in (("hist", feature_spec.HISTORY_LEN), ("sess", feature_spec.SESSION_LEN)):
    n = t[f"{prefix}_len_xf"]
    pos = np.arange(length)[None, :]
    for kind in ("track", "artist"):
      ids = t[f"{prefix}_{kind}_ids_xf"]
      assert (ids[pos >= n[:, None]] == 0).all()
      assert (ids[pos < n[:, None]] > 0).all()
  tags, num = t["cand_tags_xf"], t["cand_num_tags_xf"]
  pos = np.arange(feature_spec.MAX_TAGS)[None, :]
  assert (tags[pos >= num[:, None]] == 0).all() and (tags[pos < num[:, None]] > 0).all()
  assert (t["cand_track_id_xf"] > 0).all() and (t["user_id_xf"] > 0).all()


def test_history_and_candidate_share_one_track_vocabulary(transformed):
  raw = {k: v.numpy() for k, v in tf.io.parse_example(
      transformed["records"], feature_spec.raw_feature_spec()).items()}
  got = _layer_outputs(transformed["tfo"], transformed["records"])
  mapping = {}
  pairs = [(raw["cand_track_id"], got["cand_track_id_xf"]),
           (raw["hist_track_ids"].ravel(), got["hist_track_ids_xf"].ravel()),
           (raw["sess_track_ids"].ravel(), got["sess_track_ids_xf"].ravel())]
  for raw_ids, xf_ids in pairs:
    for r, x in zip(raw_ids.tolist(), xf_ids.tolist()):
      assert mapping.setdefault(r, x) == x, r
  top_k, _ = feature_spec.VOCABS["track"]
  real = {r: x for r, x in mapping.items() if r != feature_spec.PAD_TOKEN}
  assert mapping[feature_spec.PAD_TOKEN] == 0
  assert len(set(real.values())) == len(real)  # one id per track
  assert sorted(real.values()) == list(range(1, len(real) + 1))  # 1..n, no gaps
  assert max(real.values()) <= top_k
  vocab = transformed["tfo"].vocabulary_by_name(preprocessing.VOCAB_FILES["track"])
  assert {v.decode() if isinstance(v, bytes) else v for v in vocab} == {
      r.decode() for r in real}


def test_unseen_ids_go_to_oov_buckets_and_categoricals_to_fixed_indices(transformed):
  table = pa.Table.from_pylist([{
      "user_id": "stranger", "session_id": "s", "ts": 10, "plays": 1, "track_id": "never",
      "artist_id": "nobody", "source": "sim", "user_segment": "paid",
      "user_tenure_days": 5.0, "context_activity": "workout", "context_surface": "radio",
      "is_promo": True, "completion": None, "skip": None, "like": None,
      "subscription": None, "exposure": None}], schema=events_lib.EVENT_SCHEMA)
  records = example_io.events_to_examples(table, toy_events.toy_tracks(40))
  got = _layer_outputs(transformed["tfo"], records)
  for key, vocab in (("cand_track_id_xf", "track"), ("cand_artist_id_xf", "artist"),
                     ("user_id_xf", "user")):
    top_k, oov = feature_spec.VOCABS[vocab]
    assert top_k < got[key][0] <= top_k + oov, key
  assert got["user_segment_xf"][0] == feature_spec.SEGMENTS.index("paid")
  assert got["context_activity_xf"][0] == feature_spec.ACTIVITIES.index("workout")
  assert got["context_surface_xf"][0] == feature_spec.SURFACES.index("radio")
  assert got["cand_is_promo_xf"][0] == 1
  assert got["hist_len_xf"][0] == 0 and not got["hist_track_ids_xf"][0].any()


def test_buckets_and_z_scores(transformed):
  t = transformed["train"]
  assert abs(t["user_tenure_days_xf"].mean()) < 1e-4
  assert t["user_tenure_days_xf"].std() == pytest.approx(1.0, abs=1e-3)
  assert abs(t["cand_popularity_xf"].mean()) < 1e-4
  raw = {k: v.numpy() for k, v in tf.io.parse_example(
      transformed["records"], feature_spec.raw_feature_spec()).items()}
  expected = np.searchsorted(np.asarray(feature_spec.DURATION_BOUNDARIES_S), raw["cand_duration_s"],
                             side="right")
  got = _layer_outputs(transformed["tfo"], transformed["records"])
  np.testing.assert_array_equal(got["cand_duration_s_xf"], expected)
  gap_expected = np.searchsorted(np.asarray(feature_spec.GAP_BOUNDARIES_S), raw["hist_gap_s"],
                                 side="right")
  np.testing.assert_array_equal(got["hist_gap_s_xf"], gap_expected)
  assert gap_expected.max() > 0  # the toy data has gaps beyond the first boundary
  for key in feature_spec.PASSTHROUGH_KEYS:
    np.testing.assert_array_equal(got[key], raw[key])


@pytest.mark.slow
def test_other_schemas_give_the_same_outputs(transformed, tmp_path):
  """[batch, 1] scalars (SchemaGen's inferred shapes) and sparse sequences work too."""
  import tensorflow_transform.beam as tft_beam  # pylint: disable=g-import-not-at-top
  from tensorflow_transform.tf_metadata import dataset_metadata  # pylint: disable=g-import-not-at-top
  spec = {}
  for f in feature_spec.RAW_FEATURES:
    dtype = {"string": tf.string, "int64": tf.int64, "float32": tf.float32}[f.dtype]
    if f.name == "hist_track_ids":
      spec[f.name] = tf.io.VarLenFeature(dtype)
    else:
      spec[f.name] = tf.io.FixedLenFeature([f.length], dtype)
  metadata = dataset_metadata.DatasetMetadata.from_feature_spec(spec)
  parsed = tf.io.parse_example(transformed["records"], spec)
  rows = []
  for i in range(len(transformed["records"])):
    row = {}
    for name, value in parsed.items():
      if isinstance(value, tf.SparseTensor):
        dense = tf.sparse.to_dense(value, default_value=feature_spec.PAD_TOKEN).numpy()[i]
        row[name] = dense[dense
                          != feature_spec.PAD_TOKEN]  # drop the padding: truly variable length
      else:
        row[name] = value.numpy()[i]
    rows.append(row)
  with tft_beam.Context(temp_dir=str(tmp_path)):
    (out, _), _ = ((rows, metadata) |
                   tft_beam.AnalyzeAndTransformDataset(preprocessing.preprocessing_fn))
  expected = _layer_outputs(transformed["tfo"], transformed["records"])
  for name in ("hist_track_ids_xf", "cand_track_id_xf", "user_segment_xf", "hist_len_xf",
               "user_tenure_days_xf", "interest_like_weight"):
    got = np.stack([np.asarray(r[name]) for r in out])
    np.testing.assert_allclose(got.reshape(expected[name].shape), expected[name],
                               rtol=1e-6, err_msg=name)
    assert got.shape == expected[name].shape, name
