"""``melody export``: its flags, and that parsing them imports nothing heavy.

The export itself (from a real ``melody train`` output) is tested with the training run
in ``tests/pipeline/test_trainer.py``.
"""

import subprocess
import sys

import pytest

from melody_cli import main as cli


def test_export_help_lists_its_flags(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["export", "--help"])
  assert exc.value.code == 0
  out = capsys.readouterr().out
  assert "usage: melody export" in out
  for flag in ("--train-out", "--data", "--base-dir", "--config", "--version",
               "--model-name", "--n-max"):
    assert flag in out, flag


def test_export_requires_its_directories(capsys):
  with pytest.raises(SystemExit) as exc:
    cli.main(["export", "--train-out", "runs/train"])
  assert exc.value.code == 2
  assert "--data" in capsys.readouterr().err


def test_export_flags_parse_without_tensorflow():
  code = ("import sys; from melody_cli import main; "
          "args = main.build_parser().parse_args(['export', '--train-out', 'o', '--data', "
          "'d', '--base-dir', 'b', '--n-max', '50']); "
          "assert args.n_max == 50 and args.base_dir == 'b'; "
          "assert 'tensorflow' not in sys.modules, 'tensorflow imported'")
  subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
