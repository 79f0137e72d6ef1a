"""Runs one pytest module under Bazel: ``pytest_main.py path/to/test_x.py [pytest args]``.

Slow end-to-end tests run under ``make test``; Bazel runs the fast ones of each module.
"""

import os
import sys

import pytest


def main() -> int:
  os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
  test_file, extra = sys.argv[1], sys.argv[2:]
  # Bazel's runfiles tree lays sources out as in the repository; tests/ is our rootdir.
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  sys.path.insert(0, root)
  args = [os.path.join(root, test_file), "-q", "-p", "no:cacheprovider", "-m", "not slow",
          "--rootdir", root] + extra
  code = pytest.main(args)
  if code == pytest.ExitCode.NO_TESTS_COLLECTED:
    # Every test of this module is marked slow: `make test` runs them, Bazel does not.
    print(f"{test_file}: all tests are marked slow; they run under `make test`")
    return 0
  return int(code)


if __name__ == "__main__":
  sys.exit(main())
