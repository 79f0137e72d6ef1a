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
