"""The `melody` console script: --help lists the sub-commands and dispatches."""

import os
import shutil
import subprocess
import sys

import pytest

from melody_cli import main as cli


def test_help_lists_data_commands(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["--help"])
  assert exc.value.code == 0
  out = capsys.readouterr().out
  for command in ("data", "train", "pipeline", "serve", "query", "simulate"):
    assert command in out, command


def test_data_group_lists_the_sub_commands_of_both_packages(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["data", "--help"])
  assert exc.value.code == 0
  out = capsys.readouterr().out
  for command in ("import", "generate", "calibrate"):
    assert command in out, command


def test_data_sub_commands_are_handled_by_their_packages():
  parser = cli.build_parser()
  owners = {"import": "features.cli", "generate": "simulation.cli",
            "calibrate": "simulation.cli"}
  for command, module in owners.items():
    args = parser.parse_args(["data", command, "--out", "x"]
                             + (["--source", "kkbox"] if command == "import" else []))
    assert args.handler.__module__ == module, command


def test_simulate_flags_are_kebab_case():
  parser = cli.build_parser()
  args = parser.parse_args(["simulate", "--world-seed", "3", "--grid-step", "0.5",
                            "--ope-logs", "10", "--ope-truth", "20"])
  assert (args.world_seed, args.grid_step, args.ope_logs, args.ope_truth) == (3, 0.5, 10, 20)
  with pytest.raises(SystemExit):
    parser.parse_args(["simulate", "--world_seed", "3"])


def test_help_imports_neither_tensorflow_nor_beam():
  # `melody --help` must stay fast: the sub-command modules import their work lazily.
  code = ("import sys\n"
          "from melody_cli import main\n"
          "parser = main.build_parser()\n"
          "parser.format_help()\n"
          "parser.parse_args(['data', 'generate', '--out', 'x'])\n"
          "print(sorted(m for m in ('tensorflow', 'apache_beam', 'tfx') if m in sys.modules))\n")
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True,
                       text=True, check=True, timeout=120).stdout
  assert out.strip() == "[]"


def test_unknown_command_fails(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["no-such-command"])
  assert exc.value.code == 2


def test_console_script_help():
  exe = os.path.join(os.path.dirname(sys.executable), "melody")
  if not os.path.exists(exe):
    exe = shutil.which("melody")
  if exe is None:
    pytest.skip("melody console script not installed (run make setup)")
  out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True,
                       timeout=120).stdout
  assert "usage: melody" in out
