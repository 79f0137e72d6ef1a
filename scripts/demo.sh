#!/usr/bin/env bash
# `make demo`: the main job end to end on embedded defaults (seeded simulator, Beam
# DirectRunner, LocalDagRunner with SQLite ML Metadata). Grows as the project does.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/melody ] || { echo "run 'make setup' first" >&2; exit 1; }
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
OUT=${DEMO_OUT:-runs/demo}
USERS=${DEMO_USERS:-400}
DAYS=${DEMO_DAYS:-3}
STEPS=${DEMO_STEPS:-300}
start=$(date +%s)
rm -rf "$OUT"
echo "== 1/2 simulate $USERS listeners x $DAYS days and write training examples"
.venv/bin/melody data generate --users "$USERS" --days "$DAYS" --out "$OUT/data" --seed 7
echo "== 2/2 TFX pipeline: validate, transform, train, evaluate, infra-validate, push"
.venv/bin/melody pipeline run --data "$OUT/data" --workdir "$OUT/pipeline" --steps "$STEPS"
echo "== pushed models:"; ls "$OUT/pipeline/serving_model" 2>/dev/null || echo "(none pushed)"
echo "== demo done in $(( $(date +%s) - start )) s"
