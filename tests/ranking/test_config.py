"""Tests of ranking.config: defaults from the feature spec, validation, names, round trips."""

import dataclasses

import pytest

from features import feature_spec
from ranking import config as config_lib


def test_defaults_follow_the_issue_and_feature_spec():
  c = config_lib.ModelConfig()
  assert (c.d_model, c.num_layers, c.history_len,
          c.session_len) == (64, 2, feature_spec.HISTORY_LEN, feature_spec.SESSION_LEN)
  assert c.mixture == "mmoe"
  assert c.tasks == tuple(feature_spec.TASKS)
  assert c.labels == feature_spec.LABEL_KEYS
  assert not c.single_task
  assert c.train_precision == "auto"   # resolved per host by ranking.hardware
  assert config_lib.TrainConfig().batch_size == 512


def test_frozen():
  with pytest.raises(dataclasses.FrozenInstanceError):
    config_lib.ModelConfig().d_model = 32


@pytest.mark.parametrize("kwargs,message", [
    ({"d_model": 0}, "d_model must be positive, got 0"),
    ({"d_model": 30, "num_heads": 4}, "d_model must be divisible by num_heads, got 30 and 4"),
    ({"mixture": "moe"}, "mixture must be one of .* got 'moe'"),
    ({"tasks": ("interest", "ctr")}, "unknown task 'ctr'"),
    ({"tasks": ()}, "tasks must name at least one task"),
    ({"dropout": 1.0}, r"dropout must be in \[0, 1\), got 1.0"),
    ({"user_id_dropout": -0.1}, r"user_id_dropout must be in \[0, 1\), got -0.1"),
    ({"train_precision": "float16"}, "train_precision must be one of .* got .float16."),
    ({"ffn_activation": "swish"}, "ffn_activation must be 'relu' or 'gelu', got 'swish'"),
    ({"expert_units": (64, -1)}, "expert_units must be positive widths"),
    ({"interest_weights": (1.0, -0.1, 0.2)}, "interest_weights must be three non-negative"),
])
def test_model_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    config_lib.ModelConfig(**kwargs)


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size must be positive, got 0"),
    ({"dynamic_weighting": "gradnorm"}, "dynamic_weighting must be one of"),
    ({"completion_floor": 1.5}, r"completion_floor must be in \[0, 1\], got 1.5"),
    ({"task_weights": (("interest", 1.0), ("clicks", 1.0))}, "unknown task 'clicks'"),
    ({"ramp_steps": -1}, "ramp_steps must be >= 0, got -1"),
])
def test_train_config_validation(kwargs, message):
  with pytest.raises(ValueError, match=message):
    config_lib.TrainConfig(**kwargs)


def test_config_names():
  assert config_lib.model_config_from_name("ple").mixture == "ple"
  single = config_lib.model_config_from_name("single:interest")
  assert single.tasks == ("interest",) and single.single_task
  assert single.labels == ("interest_completion", "interest_skip", "interest_like")
  assert config_lib.model_config_from_name("shared_bottom", d_model=32).d_model == 32
  with pytest.raises(ValueError, match="unknown task 'likes' in config 'single:likes'"):
    config_lib.model_config_from_name("single:likes")
  with pytest.raises(ValueError, match="unknown model config 'dnn'"):
    config_lib.model_config_from_name("dnn")


def test_dict_round_trips():
  c = config_lib.ModelConfig(mixture="ple", expert_units=(32, 16), tasks=("interest",))
  assert config_lib.ModelConfig.from_dict(c.to_dict()) == c
  for precision in config_lib.TRAIN_PRECISIONS:
    d = config_lib.ModelConfig(train_precision=precision).to_dict()
    assert config_lib.ModelConfig.from_dict(d).train_precision == precision
  t = config_lib.TrainConfig(task_weights={"interest": 2.0, "exposure": 1.0},
                             completion_floor=0.4, interest_only_steps=10)
  assert config_lib.TrainConfig.from_dict(t.to_dict()) == t
  assert t.weights == {"interest": 2.0, "exposure": 1.0}
  with pytest.raises(ValueError, match=r"unknown ModelConfig fields \['width'\]"):
    config_lib.ModelConfig.from_dict({"width": 3})
