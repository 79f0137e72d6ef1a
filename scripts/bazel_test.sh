#!/usr/bin/env bash
# bazel test //... on the venv's interpreter; installs Debian's bazel-bootstrap if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v bazel >/dev/null || [ ! -d /usr/share/bazel/rules/java ]; then
  command -v apt-get >/dev/null || { echo "bazel is missing and apt-get is not available" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "bazel is missing; installing it with apt-get needs root" >&2; exit 1; }
  echo "[bazel] installing Debian's bazel-bootstrap and bazel-rules-java"
  apt-get update -qq && apt-get install -y -qq bazel-bootstrap bazel-rules-java >/dev/null
fi
[ -x .venv/bin/python ] || { echo "run 'make setup' first" >&2; exit 1; }
start=$(date +%s)
# Bazel's python stub runs `python3` from PATH: point it at the venv.
bazel test \
  --test_env=PATH="$PWD/.venv/bin:/usr/bin:/bin" \
  --test_env=MELODY_DATA_DIR="${MELODY_DATA_DIR:-$(cd .. && pwd)/shared/data}" \
  //... "$@"
echo "[bazel] bazel test //... took $(( $(date +%s) - start )) s"
