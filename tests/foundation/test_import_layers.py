"""The layer order of ``.importlinter`` holds for the tree, and a back-arrow breaks it.

The second test copies the layered packages into a scratch directory, adds one import
against the order (``features`` -> ``simulation``), and checks that the same contracts
then fail and name the offending import, so the first test cannot pass vacuously.
"""

import os
import shutil
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, ".importlinter")
PACKAGES = ("features", "ranking", "serving", "online", "pipeline", "simulation", "bench",
            "melody_cli", "melody_testing")


def _lint(root: str) -> subprocess.CompletedProcess:
  code = ("import sys; from importlinter.cli import lint_imports_command; "
          "sys.exit(lint_imports_command([sys.argv[1], '--no-cache']))")
  env = {**os.environ, "PYTHONPATH": root}
  return subprocess.run([sys.executable, "-c", code, os.path.join(root, ".importlinter")],
                        cwd=root, env=env, capture_output=True, text=True, timeout=300)


def _copy_tree(dst: str) -> None:
  shutil.copy(CONFIG, os.path.join(dst, ".importlinter"))
  shutil.copy(os.path.join(REPO, "keras_guard.py"), dst)
  for package in PACKAGES:
    src = os.path.join(REPO, package)
    if os.path.isdir(src):
      shutil.copytree(src, os.path.join(dst, package),
                      ignore=shutil.ignore_patterns("*.pyc", "__pycache__", "BUILD.bazel"))


@pytest.fixture(name="tree")
def fixture_tree(tmp_path):
  if not os.path.exists(CONFIG):
    pytest.fail(f"{CONFIG} is missing")
  _copy_tree(str(tmp_path))
  return tmp_path


def test_layer_contracts_hold(tree):
  result = _lint(str(tree))
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Contracts: 2 kept, 0 broken" in result.stdout, result.stdout


@pytest.mark.parametrize("package,line,message", [
    ("features", "import simulation  # noqa: F401  (the back-arrow under test)",
     "features is not allowed to import simulation"),
    ("ranking", "import melody_testing  # noqa: F401  (the forbidden import under test)",
     "ranking is not allowed to import melody_testing"),
], ids=["back_arrow_breaks_layer_contract", "production_import_of_test_support_breaks_contract"])
def test_forbidden_import_breaks_a_contract(tree, package, line, message):
  with open(tree / package / "__init__.py", "a", encoding="utf-8") as f:
    f.write(f"\n{line}\n")
  result = _lint(str(tree))
  assert result.returncode != 0
  assert message in result.stdout, result.stdout
