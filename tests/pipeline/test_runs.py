"""Run history: a run reports only its own Evaluator output, and a run whose runner is
gone is ABANDONED, not RUNNING forever.

The ML Metadata state is made by TFX itself, with a small pipeline of stand-in
components wired like Melody's (the resolver of the last blessed model runs before the
Trainer): a first run blesses its model; in a second run the resolver brings that
blessing in and the Trainer stops dead. The stand-in Trainer raises a
``BaseException`` that TFX's launcher does not catch, so its execution stays RUNNING and
nothing after it runs: what a SIGKILL leaves. That run's record is written by another
process, which then exits, as a killed runner's would be.
"""

import os
import socket
import subprocess
import sys

import pytest

import pipeline  # noqa: F401  (Keras 2 before TensorFlow)
from pipeline import run_record
from tfx import v1 as tfx
from tfx.types import standard_artifacts

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class ProcessKilled(BaseException):
  """Stands for SIGKILL: nothing in TFX handles it."""


@tfx.dsl.components.component
def StandInTrainer(  # pylint: disable=invalid-name
    model: tfx.dsl.components.OutputArtifact[standard_artifacts.Model],
    killed: tfx.dsl.components.Parameter[int] = 0):
  """Writes a model, or dies as a killed process would."""
  if killed:
    raise ProcessKilled()
  os.makedirs(model.uri, exist_ok=True)
  with open(os.path.join(model.uri, "weights"), "w", encoding="utf-8") as f:
    f.write("trained")


@tfx.dsl.components.component
def StandInEvaluator(  # pylint: disable=invalid-name
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.ModelBlessing]):
  """Blesses the model as TFX's Evaluator does (the properties the resolver reads)."""
  blessing.set_int_custom_property("blessed", 1)
  blessing.set_int_custom_property("current_model_id", model.id)
  blessing.set_string_custom_property("current_model", model.uri)


def _pipeline(root, killed: bool):
  resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
  ).with_id("latest_blessed_model_resolver")
  trainer = StandInTrainer(killed=int(killed)).with_id("Trainer")
  trainer.add_upstream_node(resolver)
  evaluator = StandInEvaluator(model=trainer.outputs["model"]).with_id("Evaluator")
  return tfx.dsl.Pipeline(
      pipeline_name="runs_test", pipeline_root=str(root / "pipeline_root"),
      components=[resolver, trainer, evaluator], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          str(root / "metadata" / "metadata.sqlite")))


def _record_from_a_process_that_exits(runs_dir: str, run_id: str) -> int:
  code = ("import os; from pipeline import run_record; "
          f"run_record.start({runs_dir!r}, {run_id!r}); print(os.getpid())")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True,
                        capture_output=True, text=True, timeout=120)
  return int(done.stdout.strip())


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory):
  """(metadata path, runs dir, first run id, killed run id)."""
  from pipeline import local_runner, runs
  root = tmp_path_factory.mktemp("runs")
  os.makedirs(root / "metadata")
  metadata = str(root / "metadata" / "metadata.sqlite")
  runs_dir = str(root / "runs")
  first = local_runner.run_pipeline(lambda: _pipeline(root, killed=False), metadata,
                                    runs_dir, verbose=False)
  killed_id = run_record.new_run_id()
  _record_from_a_process_that_exits(runs_dir, killed_id)
  with pytest.raises(ProcessKilled):
    local_runner.execute(_pipeline(root, killed=True), killed_id)
  # The resolver did bring the first run's blessing into the killed run's context.
  store = runs.connect(metadata)
  (ctx,) = [c for c in store.get_contexts_by_type("pipeline_run") if c.name == killed_id]
  linked = store.get_artifacts_by_context(ctx.id)
  types = {t.id: t.name for t in store.get_artifact_types()}
  assert [a.custom_properties["blessed"].int_value for a in linked
          if types[a.type_id] == "ModelBlessing"] == [1]
  return metadata, runs_dir, first.run_id, killed_id


def test_a_killed_run_is_abandoned_and_not_blessed(killed_run):
  from pipeline import runs
  metadata, runs_dir, first_id, killed_id = killed_run
  first, killed = runs.list_runs(metadata, runs_dir=runs_dir)
  assert (first.run_id, first.state, first.blessed) == (first_id, runs.COMPLETE, True)
  assert killed.run_id == killed_id
  assert {c.node: c.state for c in killed.components}["Trainer"] == "RUNNING"
  assert killed.state == runs.ABANDONED
  assert killed.blessed is None and killed.pushed is None
  table = runs.format_runs([first, killed])
  rows, notes = table.split("\n\n")
  (row,) = [line.split() for line in rows.splitlines() if line.startswith(killed_id)]
  assert row[1:3] == ["-", "ABANDONED"] and row[4] == "-"  # no window spans, state, blessed
  assert notes.startswith(f"{killed_id} ABANDONED during Trainer: its runner (pid ")


def test_runs_cli_shows_the_killed_run_as_abandoned(killed_run, capsys):
  from melody_cli import main as cli
  metadata, _, _, killed_id = killed_run
  workdir = os.path.dirname(os.path.dirname(metadata))
  assert cli.main(["pipeline", "runs", "--workdir", workdir]) == 0
  rows = capsys.readouterr().out.split("\n\n")[0]
  (row,) = [line.split() for line in rows.splitlines() if line.startswith(killed_id)]
  # spans, state, secs, blessed, infra, pushed
  assert row[1:7] == ["-", "ABANDONED", row[3], "-", "-", "-"]


def test_the_same_state_with_a_live_runner_is_running(killed_run, tmp_path):
  from pipeline import runs
  metadata, _, _, killed_id = killed_run
  run_record.start(str(tmp_path), killed_id)  # this process: alive
  killed = runs.get_run(metadata, killed_id, runs_dir=str(tmp_path))
  assert killed.state == runs.RUNNING and killed.blessed is None


def test_runner_liveness(tmp_path):
  record = run_record.start(str(tmp_path), "2026-01-01T00:00:00")
  assert run_record.runner_alive(record) is True
  assert os.path.exists(os.path.join(tmp_path, "2026-01-01T00-00-00", "run.json"))
  (read,) = run_record.read_all(str(tmp_path)).values()
  assert read == record
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True, check=True)
  gone = run_record.RunRecord(**{**vars(record), "pid": int(dead.stdout)})
  assert run_record.runner_alive(gone) is False
  if record.process_start is not None:
    reused = run_record.RunRecord(**{**vars(record), "process_start": 1})
    assert run_record.runner_alive(reused) is False
  elsewhere = run_record.RunRecord(**{**vars(record), "host": socket.gethostname() + "-x"})
  assert run_record.runner_alive(elsewhere) is None
  run_record.finish(record, "boom")
  (read,) = run_record.read_all(str(tmp_path)).values()
  assert read.finished is not None and read.error == "boom"
