"""The checked-in curated schema matches the feature spec."""

import os

from tensorflow_metadata.proto.v0 import schema_pb2

from features import feature_spec as feature_spec_lib
from pipeline import configs, schema_tools


def _schema():
  path = os.path.join(configs.CURATED_SCHEMA_DIR, "schema.pbtxt")
  assert os.path.exists(path), "pipeline/schema/schema.pbtxt is missing"
  return schema_tools.read(path)


def test_every_raw_feature_is_in_the_schema_with_its_type_and_shape():
  types = {"string": schema_pb2.BYTES, "int64": schema_pb2.INT, "float32": schema_pb2.FLOAT}
  by_name = {f.name: f for f in _schema().feature}
  assert set(by_name) == set(feature_spec_lib.RAW_BY_NAME)
  for name, spec in feature_spec_lib.RAW_BY_NAME.items():
    feature = by_name[name]
    assert feature.type == types[spec.dtype], name
    assert [d.size for d in feature.shape.dim] == ([spec.length] if spec.length > 1 else []), name
    assert feature.presence.min_fraction == 1.0, name


def test_categorical_domains_list_every_allowed_value():
  domains = {d.name: sorted(d.value) for d in _schema().string_domain}
  # "" is a segment the source does not record (real logs), not an anomaly.
  assert domains["user_segment"] == sorted(feature_spec_lib.SEGMENTS + ("",))
  assert domains["context_activity"] == sorted(feature_spec_lib.ACTIVITIES)
  assert domains["context_surface"] == sorted(feature_spec_lib.SURFACES)
  assert domains["source"] == sorted(feature_spec_lib.SOURCES)


def test_labels_and_weights_have_ranges():
  by_name = {f.name: f for f in _schema().feature}
  for label in feature_spec_lib.LABEL_KEYS:
    weight = by_name[feature_spec_lib.weight_key(label)]
    assert (weight.float_domain.min, weight.float_domain.max) == (0.0, 1.0)
  assert by_name["interest_completion"].float_domain.max == 1.0
  assert by_name["exposure"].float_domain.min == 0.0


def test_schema_parses_like_the_feature_spec():
  from tensorflow_transform.tf_metadata import schema_utils
  spec = schema_utils.schema_as_feature_spec(_schema()).feature_spec
  expected = feature_spec_lib.raw_feature_spec()
  assert set(spec) == set(expected)
  for name, feature in expected.items():
    assert list(spec[name].shape) == list(feature.shape), name
    assert spec[name].dtype == feature.dtype, name


def test_curate_is_idempotent():
  schema = _schema()
  assert schema_tools.curate(schema) == schema


def test_drift_thresholds_live_in_the_schema():
  by_name = {f.name: f for f in _schema().feature}
  for name, threshold in schema_tools.LINF_DRIFT.items():
    assert by_name[name].drift_comparator.infinity_norm.threshold == threshold, name
  for name, threshold in schema_tools.JS_DRIFT.items():
    assert (by_name[name].drift_comparator.jensen_shannon_divergence.threshold
            == threshold), name
