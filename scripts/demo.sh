#!/usr/bin/env bash
# `make demo`: the main job end to end on embedded defaults — seeded simulator, Beam
# DirectRunner, LocalDagRunner with SQLite ML Metadata, Melody's TF-Serving-compatible
# gRPC server — then ranked lists for sample listeners over the TF Serving Predict API.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/melody ] || { echo "run 'make setup' first" >&2; exit 1; }
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
OUT=${DEMO_OUT:-runs/demo}
USERS=${DEMO_USERS:-400}
DAYS=${DEMO_DAYS:-3}
STEPS=${DEMO_STEPS:-400}
PORT=${DEMO_PORT:-8500}
start=$(date +%s)
rm -rf "$OUT"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)  # absolute: the server resolves the base path itself

echo "== 1/4 simulate $USERS listeners x $DAYS days and write training examples"
.venv/bin/melody data generate --users "$USERS" --days "$DAYS" --out "$OUT/data" --seed 7

echo "== 2/4 TFX pipeline: validate, transform, train, evaluate, infra-validate, push"
.venv/bin/melody pipeline run --data "$OUT/data" --workdir "$OUT/pipeline" --steps "$STEPS"
versions=$(ls "$OUT/pipeline/serving_model" 2>/dev/null || true)
if [ -z "$versions" ]; then
  echo "no model was pushed (not blessed); see the table above" >&2
  exit 1
fi
echo "pushed versions: $versions"

echo "== 3/4 serve the pushed model over gRPC on 127.0.0.1:$PORT"
.venv/bin/melody serve --model_name melody --model_base_path "$OUT/pipeline/serving_model" \
  --port "$PORT" --rest_api_port 0 > "$OUT/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
  grep -q "gRPC on" "$OUT/server.log" 2>/dev/null && break
  kill -0 $server 2>/dev/null || { cat "$OUT/server.log" >&2; exit 1; }
  sleep 1
done
grep "gRPC on" "$OUT/server.log"

echo "== 4/4 ranked lists for sample listeners (rank signature: scores per head, fused, reasons)"
users=$(.venv/bin/python -c "
import glob, pyarrow.parquet as pq
t = pq.read_table(sorted(glob.glob('$OUT/data/events/*.parquet'))[0], columns=['user_id', 'user_segment'])
seen = {}
for u, s in zip(t.column('user_id').to_pylist(), t.column('user_segment').to_pylist()):
  seen.setdefault(s, u)
print(' '.join(list(seen.values())[:3]))")
ctx=(commute explore focus)
i=0
for u in $users; do
  .venv/bin/melody query --server "127.0.0.1:$PORT" --model melody --user "$u" \
    --context "${ctx[$i]}" --data "$OUT/data" --k 10
  i=$((i + 1))
done
echo "== recommend (in-graph retrieval over the whole catalog) for the first listener"
.venv/bin/melody query --server "127.0.0.1:$PORT" --model melody --signature recommend \
  --user "${users%% *}" --context commute --data "$OUT/data" --k 10
if [ "${DEMO_LIVE:-1}" = 1 ]; then
  echo "== live loop: ${DEMO_LIVE_USERS:-200} simulated listeners for ${DEMO_LIVE_DAYS:-1} day(s)" \
    "through the gateway, nearline state, canary test, controller and report"
  # The pushed model above is the first stable (same world: 5,000 tracks, seed 7), so
  # the loop trains only between its days; the last day's candidate would serve no one.
  .venv/bin/melody live --users "${DEMO_LIVE_USERS:-200}" --days "${DEMO_LIVE_DAYS:-1}" \
    --workdir "$OUT/live" --tracks 5000 --seed 7 \
    --stable-model "$OUT/pipeline/serving_model" --no-last-day-run \
    --warm-steps 20 --canary-share 0.5 --sessions-per-day 2
  ls "$OUT/live/reports"
fi
echo "== demo done in $(( $(date +%s) - start )) s"
