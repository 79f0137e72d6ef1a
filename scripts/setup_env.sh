#!/usr/bin/env bash
# Creates .venv with the locked dependency set and the project (editable).
#
# On hosts whose glibc is older than the TFX 1.21 wheels need (ml-metadata wants
# glibc 2.39 / GLIBCXX_3.4.32), it provisions a private copy of Debian 13's libc6,
# libstdc++6 and libgcc-s1 under .compat/ and starts the venv's interpreter
# through that copy's dynamic loader. Nothing system-wide changes. Idempotent:
# every step checks whether its result is already there.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
PY=${PYTHON:-python3}
VENV=$ROOT/.venv
COMPAT=$ROOT/.compat
LOCK=$ROOT/requirements.lock
NEED_GLIBC=2.39
STAMP=$VENV/.melody-lock.sha256

say() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)

"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || die "Python 3.11 is required (found: $("$PY" --version 2>&1)). Set PYTHON=/path/to/python3.11."
[ "$(uname -m)" = "x86_64" ] || die "Linux x86-64 is required (found $(uname -m))."

host_glibc=$("$PY" -c 'import platform; print(platform.libc_ver()[1])')
needs_compat() {
  "$PY" - "$host_glibc" "$NEED_GLIBC" <<'PYEOF'
import sys
have, need = (tuple(int(x) for x in v.split(".")) for v in sys.argv[1:3])
sys.exit(0 if have < need else 1)
PYEOF
}

LIB=$COMPAT/root/usr/lib/x86_64-linux-gnu
provision_compat() {
  if [ -x "$LIB/ld-linux-x86-64.so.2" ] && [ -e "$LIB/libstdc++.so.6" ]; then
    say "compatibility layer present in .compat/ (glibc $(basename "$(readlink -f "$LIB/libc.so.6")"))"
    return
  fi
  command -v apt-get >/dev/null || die "host glibc $host_glibc < $NEED_GLIBC and apt-get is missing: \
install Python 3.11 on a host with glibc >= $NEED_GLIBC (Ubuntu 24.04, Debian 13), or provide apt-get."
  [ "$(id -u)" = 0 ] || die "host glibc $host_glibc < $NEED_GLIBC: provisioning the private glibc copy \
uses apt-get, which needs root. Re-run 'make setup' as root, or use a host with glibc >= $NEED_GLIBC."
  [ -r /usr/share/keyrings/debian-archive-keyring.gpg ] \
    || die "the Debian archive keyring (/usr/share/keyrings/debian-archive-keyring.gpg) is missing: apt-get install debian-archive-keyring"
  local uri
  uri=$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  if [ -z "$uri" ]; then
    uri=$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 \
      | sed -E 's/^deb (\[[^]]*\] )?//' | awk '{print $1}')
  fi
  [ -n "$uri" ] || die "no Debian mirror URI found in /etc/apt/sources.list(.d)"
  say "host glibc $host_glibc < $NEED_GLIBC: provisioning Debian 13 libc6/libstdc++6/libgcc-s1 into .compat/"
  mkdir -p "$COMPAT"/apt/lists/partial "$COMPAT"/apt/cache/archives/partial "$COMPAT"/debs "$COMPAT"/root
  printf 'deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] %s trixie main\n' "$uri" >"$COMPAT/apt/sources.list"
  local o=(-o "Dir::Etc::SourceList=$COMPAT/apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$COMPAT/apt/lists" -o "Dir::Cache=$COMPAT/apt/cache")
  apt-get "${o[@]}" update -qq || die "apt-get update for the trixie sources failed"
  (cd "$COMPAT/debs" && apt-get "${o[@]}" download libc6 libstdc++6 libgcc-s1) \
    || die "downloading libc6/libstdc++6/libgcc-s1 from trixie failed"
  for f in "$COMPAT"/debs/*.deb; do dpkg -x "$f" "$COMPAT/root"; done
  [ -x "$LIB/ld-linux-x86-64.so.2" ] || die "the unpacked loader $LIB/ld-linux-x86-64.so.2 is missing"
}

write_wrapper() {
  # The venv interpreter becomes a tiny shell script that execs the real
  # interpreter through the private loader; sys.executable is the wrapper, so
  # every Beam/TFX subprocess inherits the same libraries.
  local real pylib target=$VENV/bin/python3.11
  real=$("$PY" -c 'import os, sys; print(os.path.realpath(sys.executable))')
  pylib=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
  local want
  want=$(printf '#!/bin/sh\nexec "%s/ld-linux-x86-64.so.2" --library-path "%s:%s" --argv0 "$0" "%s" "$@"\n' \
    "$LIB" "$LIB" "$pylib" "$real")
  if [ -f "$target" ] && [ ! -L "$target" ] && [ "$(cat "$target")" = "$want" ]; then return; fi
  rm -f "$target"
  printf '%s\n' "$want" >"$target"
  chmod +x "$target"
  ln -sf python3.11 "$VENV/bin/python3"
  ln -sf python3.11 "$VENV/bin/python"
}

COMPAT_ON=0
if needs_compat; then COMPAT_ON=1; provision_compat; else say "host glibc $host_glibc >= $NEED_GLIBC: no compatibility layer needed"; fi

if [ ! -x "$VENV/bin/python" ]; then
  say "creating .venv"
  "$PY" -m venv "$VENV"
fi
[ "$COMPAT_ON" = 1 ] && write_wrapper
VPY=$VENV/bin/python
"$VPY" -c 'import platform; print("[setup] venv interpreter glibc:", platform.libc_ver()[1])'

# Keras 2 for every interpreter and subprocess of the venv (a .pth runs at start-up).
SITE=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf 'import os; os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")\n' >"$SITE/melody_legacy_keras.pth"

NODEPS=$ROOT/requirements-nodeps.txt
want_hash=$(cat "$LOCK" "$NODEPS" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ]; then
  say "locked dependencies already installed (requirements.lock unchanged)"
else
  say "installing the locked dependency set (about 2 minutes on an empty pip cache)"
  "$VPY" -m pip install -q --upgrade pip==24.3.1
  "$VPY" -m pip install -q -r "$LOCK"
  "$VPY" -m pip install -q --no-deps -r "$NODEPS"
  "$VPY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || "$VPY" -m pip install -q --no-deps -e .
  printf '%s\n' "$want_hash" >"$STAMP"
fi

# Debian services the tests start themselves (online/'s Redis backend).
if command -v redis-server >/dev/null; then
  say "redis-server present ($(redis-server --version | awk '{print $3}'))"
elif command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
  say "installing Debian's redis-server (the tests start their own instance on a free port)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null 2>&1 \
    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
  # The package's own service is not needed: tests run private instances.
  command -v systemctl >/dev/null && systemctl disable --now redis-server >/dev/null 2>&1 || true
else
  die "redis-server is missing and cannot be installed here (needs root and apt-get): apt-get install redis-server"
fi

say "checking imports"
export TF_CPP_MIN_LOG_LEVEL=2
"$VPY" - <<'PYEOF'
import os, subprocess, sys
import tfx, ml_metadata, tensorflow_data_validation, tensorflow_recommenders, tensorflow as tf
assert tf.keras.__name__.startswith("tf_keras"), tf.keras.__name__
out = subprocess.run([sys.executable, "-c", "import ml_metadata, os; print(os.environ['TF_USE_LEGACY_KERAS'])"],
                     capture_output=True, text=True, check=True).stdout.strip()
assert out == "1", out
print(f"[setup] tensorflow {tf.__version__}, tfx {tfx.__version__}, tfrs {tensorflow_recommenders.__version__}")
PYEOF
[ -x "$VENV/bin/melody" ] && say "melody CLI at .venv/bin/melody"
say "done in $(( $(date +%s) - t0 )) s"
