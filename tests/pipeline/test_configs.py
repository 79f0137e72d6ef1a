"""Pipeline config and Beam argument shapes for Direct, Dataflow and Flink."""

import pytest

from pipeline import configs, schedule


def test_direct_args_modes():
  # The in-process modes run on the FnApiRunner, never through the DirectRunner's attempt
  # to start Prism; worker processes keep the DirectRunner.
  # They also tell TFX's Beam executors that this interpreter is the workers' environment,
  # so that none builds and stages an sdist of TFX first.
  assert configs.direct_beam_args("in_memory") == (
      "--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1",
      "--sdk_container_image=in-process")
  threads = configs.parse_beam_flags(configs.direct_beam_args("multi_threading", 2))
  assert threads["runner"] == "FnApiRunner" and threads["sdk_container_image"] == "in-process"
  args = configs.parse_beam_flags(configs.direct_beam_args("multi_processing", 2))
  assert args == {"runner": "DirectRunner", "direct_running_mode": "multi_processing",
                  "direct_num_workers": "2"}
  with pytest.raises(ValueError, match="bogus"):
    configs.direct_beam_args("bogus")


@pytest.mark.parametrize("beam_args, large, runner, mode", [
    ((), False, "FnApiRunner", "in_memory"),
    ((), True, "DirectRunner", "multi_processing"),
    (("--direct_running_mode=multi_processing",), False, "DirectRunner", "multi_processing"),
    (("--direct_running_mode=multi_threading",), True, "FnApiRunner", "multi_threading"),
])
def test_examples_job_runner_follows_the_running_mode(beam_args, large, runner, mode):
  from features import examples_beam
  options = examples_beam.pipeline_options("DirectRunner", beam_args, large).get_all_options()
  assert (options["runner"], options["direct_running_mode"]) == (runner, mode)


def test_dataflow_args_shape():
  args = configs.parse_beam_flags(configs.dataflow_beam_args(
      "p", "us-central1", "gs://b/tmp", max_workers=4, sdk_container_image="img:1"))
  assert args["runner"] == "DataflowRunner"
  assert args["project"] == "p" and args["region"] == "us-central1"
  assert args["temp_location"] == "gs://b/tmp" and args["max_num_workers"] == "4"
  assert args["sdk_container_image"] == "img:1"
  with pytest.raises(ValueError, match="temp_location"):
    configs.dataflow_beam_args("p", "r", "/local/tmp")
  with pytest.raises(ValueError, match="project"):
    configs.dataflow_beam_args("", "r", "gs://b")


def test_flink_args_shape():
  args = configs.parse_beam_flags(configs.flink_beam_args("localhost:8081", 3, "PROCESS",
                                                          '{"command": "/opt/boot"}'))
  assert args == {"runner": "FlinkRunner", "flink_master": "localhost:8081",
                  "parallelism": "3", "environment_type": "PROCESS",
                  "environment_config": '{"command": "/opt/boot"}'}
  with pytest.raises(ValueError, match="parallelism"):
    configs.flink_beam_args("h:1", 0)


def test_config_validation(tmp_path):
  cfg = configs.local_config(tmp_path / "data", tmp_path / "work", train_steps=10)
  assert cfg.metadata_path.endswith("metadata.sqlite")
  assert cfg.trainer_custom_config()["model_config"] == "mmoe"
  with pytest.raises(ValueError, match="train_steps"):
    configs.local_config(tmp_path, tmp_path, train_steps=0)
  with pytest.raises(ValueError, match="--key=value"):
    configs.parse_beam_flags(["runner=Direct"])


def test_cron_conversion_and_dry_run(capsys):
  assert schedule.to_kfp_cron("0 3 * * *") == "0 0 3 * * *"
  assert schedule.to_kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
  with pytest.raises(ValueError, match="5 fields"):
    schedule.to_kfp_cron("0 3 *")
  req = schedule.schedule("spec.json", "30 2 * * 1-5", dry_run=True, host="http://kfp:8888")
  out = capsys.readouterr().out
  assert '"cron_expression": "0 30 2 * * 1-5"' in out and "http://kfp:8888" in out
  assert req["pipeline_package_path"] == "spec.json" and req["max_concurrency"] == 1


def test_schedule_cli_dry_run(capsys):
  from melody_cli import main as cli
  assert cli.main(["pipeline", "schedule", "--cron", "0 3 * * *", "--dry-run"]) == 0
  assert "0 0 3 * * *" in capsys.readouterr().out


def test_eval_config_thresholds():
  from pipeline import eval_config
  cfg = eval_config.create_eval_config()
  by_output = {s.output_names[0]: {m.class_name: m for m in s.metrics} for s in cfg.metrics_specs}
  gated = by_output["interest_skip"]["AUC"].per_slice_thresholds
  assert len(gated) == 1 and list(gated[0].slicing_specs) == [eval_config.tfma.SlicingSpec()]
  skip_auc = gated[0].threshold
  assert skip_auc.value_threshold.lower_bound.value == 0.55
  assert not skip_auc.HasField("change_threshold")
  # The change gate is the paired bootstrap bound, on the overall slice only.
  for head in ("interest_skip", "interest_like"):
    change = by_output[head]["PairedAUCChange"]
    assert change.module == "pipeline.paired_auc"
    (gate,) = change.per_slice_thresholds
    assert list(gate.slicing_specs) == [eval_config.tfma.SlicingSpec()]
    assert gate.threshold.change_threshold.absolute.value == -eval_config.AUC_DROP_TOLERANCE
    assert (gate.threshold.change_threshold.direction
            == eval_config.tfma.MetricDirection.HIGHER_IS_BETTER)
  assert "PairedAUCChange" not in by_output["subscription"]
  assert not by_output["subscription"]["AUC"].per_slice_thresholds
  strict = eval_config.create_eval_config(floors=eval_config.Floors(subscription_auc=0.6))
  sub = next(m for s in strict.metrics_specs if s.output_names == ["subscription"]
             for m in s.metrics if m.class_name == "AUC")
  sub = sub.per_slice_thresholds[0].threshold
  assert sub.value_threshold.lower_bound.value == 0.6
  assert not sub.HasField("change_threshold")
  rmse = by_output["interest_completion"]["RootMeanSquaredError"].per_slice_thresholds[0]
  assert rmse.threshold.value_threshold.upper_bound.value == 0.45
  assert not rmse.threshold.value_threshold.HasField("lower_bound")
  assert dict(cfg.model_specs[0].example_weight_keys)["exposure"] == "exposure_weight"
  assert [list(s.feature_keys) for s in cfg.slicing_specs] == [
      [], ["user_segment"], ["context_activity"]]
  with pytest.raises(ValueError, match="bogus"):
    eval_config.create_eval_config({"out": "bogus"})


def test_the_drop_tolerance_follows_the_config_and_the_cli(tmp_path):
  from melody_cli.main import build_parser
  from pipeline import cli, eval_config
  from pipeline import pipeline as melody_pipeline

  def change_gate(config):
    cfg = eval_config.create_eval_config(floors=melody_pipeline._floors(config))
    (spec,) = [s for s in cfg.metrics_specs if s.output_names == ["interest_like"]]
    (change,) = [m for m in spec.metrics if m.class_name == "PairedAUCChange"]
    return change.per_slice_thresholds[0].threshold.change_threshold.absolute.value

  base = configs.local_config(str(tmp_path / "data"), str(tmp_path / "work"))
  assert base.auc_drop_tolerance is None
  assert change_gate(base) == -eval_config.AUC_DROP_TOLERANCE
  args = build_parser().parse_args(["pipeline", "run", "--data", str(tmp_path / "data"),
                                    "--workdir", str(tmp_path / "work"),
                                    "--auc-drop-tolerance", "0.05"])
  wide = cli._local_config(args)
  assert wide.auc_drop_tolerance == 0.05
  assert change_gate(wide) == pytest.approx(-0.05)
  with pytest.raises(ValueError, match="auc_drop_tolerance must be in"):
    eval_config.Floors(auc_drop_tolerance=-0.01)
