"""Round trips and errors of models.config, batching_parameters.txt and monitoring.config."""

import os

import pytest

from serving import model_config
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

STOCK_MODELS_CONFIG = """
# As one would write it for tensorflow_model_server.
model_config_list {
  config {
    name: "melody"
    base_path: "/models/melody"
    model_platform: "tensorflow"
    model_version_policy { specific { versions: 3 versions: 4 } }
    version_labels { key: "stable" value: 3 }
    version_labels { key: "canary" value: 4 }
  }
  config {
    name: "intent"
    base_path: "/models/intent"
    model_platform: "tensorflow"
  }
}
"""


def test_models_config_parses_stock_text():
  melody, intent = model_config.parse_model_config(STOCK_MODELS_CONFIG)
  assert melody == model_config.ModelEntry(
      "melody", "/models/melody", model_config.VersionPolicy("specific", versions=(3, 4)),
      (("canary", 4), ("stable", 3)))
  assert melody.labels == {"stable": 3, "canary": 4}
  assert intent.version_policy == model_config.VersionPolicy("latest", 1)
  assert intent.version_labels == ()


def test_models_config_round_trip(tmp_path):
  entries = (
      model_config.ModelEntry("a", "/m/a", model_config.VersionPolicy("latest", num_versions=2),
                    {"stable": 1, "canary": 2}),
      model_config.ModelEntry("b", "/m/b", model_config.VersionPolicy("all")),
      model_config.ModelEntry("c", "/m/c", model_config.VersionPolicy("specific", versions=(7, 5))),
  )
  path = model_config.write_model_config(str(tmp_path / "models.config"), entries)
  assert model_config.read_model_config(path) == entries
  # The written text is a valid ModelServerConfig for the official proto.
  proto = text_format.Parse(open(path).read(), model_server_config_pb2.ModelServerConfig())
  assert [c.name for c in proto.model_config_list.config] == ["a", "b", "c"]
  assert proto.model_config_list.config[0].model_version_policy.latest.num_versions == 2
  assert dict(proto.model_config_list.config[0].version_labels) == {"stable": 1, "canary": 2}
  assert list(proto.model_config_list.config[2].model_version_policy.specific.versions) == [5, 7]
  assert proto.model_config_list.config[1].model_version_policy.HasField("all")


@pytest.mark.parametrize("text, needle", [
    ("model_config_list { config { name: 'a' base_path: '/x' } config { name: 'a' "
     "base_path: '/y' } }", "'a'"),
    ("model_config_list { config { name: 'a' } }", "base_path"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_platform: 'onnx' } }",
     "onnx"),
    ("model_config_list { config { name: 'a' base_path: '/x' version_labels { key: 'bad label' "
     "value: 1 } } }", "bad label"),
    ("model_config_list { config { name: 'a' base_path: '/x' model_version_policy { specific "
     "{ } } } }", "specific"),
    ("model_config_list { config { nme: 'a' } }", "nme"),
    ("custom_model_config { }", "custom_model_config"),
])
def test_models_config_errors_name_the_problem(text, needle):
  with pytest.raises(ValueError, match=needle):
    model_config.parse_model_config(text)


def test_version_policy_select():
  available = [4, 1, 9, 3]
  assert model_config.VersionPolicy().select(available) == (9,)
  assert model_config.VersionPolicy("latest", 2).select(available) == (4, 9)
  assert model_config.VersionPolicy("all").select(available) == (1, 3, 4, 9)
  assert model_config.VersionPolicy("specific", versions=(3, 5)).select(available) == (3,)
  assert model_config.VersionPolicy("latest", 3).select([]) == ()
  with pytest.raises(ValueError, match="num_versions"):
    model_config.VersionPolicy("latest", 0)
  with pytest.raises(ValueError, match="newest"):
    model_config.VersionPolicy("newest")


def test_batching_parameters_round_trip(tmp_path):
  params = model_config.BatchingParameters(max_batch_size=32, batch_timeout_micros=5000,
                                 num_batch_threads=4, max_enqueued_batches=7)
  path = model_config.write_batching_parameters(str(tmp_path / "batching_parameters.txt"), params)
  text = open(path).read()
  assert "max_batch_size { value: 32 }" in text
  assert "batch_timeout_micros { value: 5000 }" in text
  assert model_config.read_batching_parameters(path) == params


def test_batching_parameters_parse_stock_layout():
  text = """
  # TF Serving layout, one field per block, comments allowed.
  max_batch_size { value: 64 }
  batch_timeout_micros {
    value: 2000
  }
  num_batch_threads { value: 2 }  # = cores
  """
  assert model_config.parse_batching_parameters(text) == model_config.BatchingParameters(
      max_batch_size=64, batch_timeout_micros=2000, num_batch_threads=2,
      max_enqueued_batches=100)


@pytest.mark.parametrize("text, needle", [
    ("max_batch_size { value: 0 }", "max_batch_size"),
    ("max_batch_size { value: sixty }", "max_batch_size"),
    ("allowed_batch_sizes { value: 8 }", "allowed_batch_sizes"),
    ("max_batch_size: 8", "max_batch_size"),
    ("max_batch_size { value: 8 }\nmax_batch_size { value: 9 }", "twice"),
    ("max_batch_size { value: 8 ", "missing"),
    ("num_batch_threads { value: -1 }", "num_batch_threads"),
])
def test_batching_parameters_errors_name_the_field(text, needle):
  with pytest.raises(ValueError, match=needle):
    model_config.parse_batching_parameters(text)


def test_monitoring_config_round_trip(tmp_path):
  for config in (model_config.MonitoringConfig(), model_config.MonitoringConfig(False, "/metrics")):
    path = model_config.write_monitoring_config(str(tmp_path / "monitoring.config"), config)
    assert model_config.read_monitoring_config(path) == config
  text = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
  assert model_config.parse_monitoring_config(text.replace(
      ",", "")) == model_config.MonitoringConfig(True, "/monitoring/prometheus/metrics")


@pytest.mark.parametrize("text, needle", [
    ("prometheus_config { enable: maybe }", "enable"),
    ("prometheus_config { enable: true path: metrics }", "path"),
    ('prometheus_config { enable: true path: "no-slash" }', "no-slash"),
    ("prometheus_config { port: 9 }", "port"),
    ("grafana_config { }", "grafana_config"),
])
def test_monitoring_config_errors(text, needle):
  with pytest.raises(ValueError, match=needle):
    model_config.parse_monitoring_config(text)


def test_write_server_configs_and_list_versions(tmp_path):
  base = tmp_path / "model"
  for name in ("1", "12", ".tmp-13", "notes"):
    os.makedirs(base / name)
  (base / "1" / "saved_model.pb").write_bytes(b"")
  (base / "12" / "saved_model.pb").write_bytes(b"")
  (base / ".tmp-13" / "saved_model.pb").write_bytes(b"")
  os.makedirs(base / "14")  # No saved_model.pb yet: not a version.
  assert model_config.list_versions(str(base)) == [1, 12]
  assert model_config.list_versions(str(tmp_path / "missing")) == []

  entry = model_config.ModelEntry("melody", str(base), version_labels={"stable": 1, "canary": 12})
  paths = model_config.write_server_configs(str(tmp_path / "config"), [entry])
  assert sorted(os.listdir(tmp_path / "config")) == sorted([
      model_config.MODELS_CONFIG, model_config.BATCHING_PARAMETERS, model_config.MONITORING_CONFIG
  ])
  assert model_config.read_model_config(paths[model_config.MODELS_CONFIG]) == (entry,)
  assert model_config.read_batching_parameters(
      paths[model_config.BATCHING_PARAMETERS]) == model_config.BatchingParameters()
  assert model_config.read_monitoring_config(
      paths[model_config.MONITORING_CONFIG]) == model_config.MonitoringConfig()
