#!/usr/bin/env bash
# GPU section: held-out real traces. Records PyTorch workloads of kinds the four shared traces do
# not cover (packages/bench/peers/record_traces.py), then replays each through gpupool's default
# pool (bestFit on CudaDevice and on SimulatedDevice) and through the peers, in this one call.
# Nothing is tuned on these traces: they check that the defaults carry over.
# Needs: node (20) on PATH, the bench dist and native addon built; python3 with torch + cupy.
# Writes $OUT/traces/*.trace.gz, $OUT/traces-bench/*.json(l) and a summary table (printed last).
set -uo pipefail
OUT="${OUT:-$PWD/out}"
T="$OUT/traces"
D="$OUT/traces-bench"
mkdir -p "$T" "$D"
BENCH=(node packages/bench/dist/cli.js)
RUNS="${TRACES_RUNS:-3}"
POLICIES=(${TRACES_POLICIES:-bestFit})   # gpupool policies to replay (default: the default pool's)

step() { # step NAME SECONDS command... : runs with a limit; a failure costs only its own numbers
  local name=$1 limit=$2 t0=$SECONDS
  shift 2
  timeout --kill-after=10 "$limit" "$@" 2>"$D/$name.err"
  local rc=$?
  echo "traces.sh: $name: exit $rc in $((SECONDS - t0)) s" >&2
  ((rc != 0)) && tail -n 5 "$D/$name.err" >&2
  return 0
}

if [[ -n "${TRACES_FROM:-}" ]]; then
  cp "$TRACES_FROM"/*.trace.gz "$T/"            # replay traces recorded earlier
else
  step record "${TRACES_RECORD_TIMEOUT_S:-300}" python3 packages/bench/peers/record_traces.py "$T" \
    ${TRACES_ONLY:+--only "$TRACES_ONLY"}
  cat "$D/record.err" >&2
fi
shopt -s nullglob
RECORDED=("$T"/*.trace.gz)
shopt -u nullglob
if ((${#RECORDED[@]} == 0)); then
  echo "traces.sh: no traces were recorded; see $D/record.err" >&2
  exit 1
fi
for t in "${RECORDED[@]}"; do
  n=$(basename "$t" .trace.gz)
  for p in "${POLICIES[@]}"; do
    for device in cuda simulated; do
      step "replay-$device-$n-$p" 90 "${BENCH[@]}" replay "$t" --policy "$p" --device "$device" --runs "$RUNS" --json \
        >"$D/replay-$device-$n-$p.jsonl"
    done
  done
done
# TRACES_SKIP_PEERS=1 leaves the peers out (their ratios do not change from call to call).
if [[ "${TRACES_SKIP_PEERS:-0}" != 1 ]]; then
  step peers "${TRACES_PEERS_TIMEOUT_S:-240}" python3 packages/bench/peers/replay_peers.py "${RECORDED[@]}" --runs "$RUNS" \
    --timeout 60 >"$D/peers.jsonl"
fi

shopt -s nullglob
RESULTS=()
for f in "$D"/*.jsonl; do [[ -s "$f" ]] && RESULTS+=("$f"); done
shopt -u nullglob
"${BENCH[@]}" merge "${RESULTS[@]}" --json >"$D/bundle.json" 2>"$D/merge.err"
"${BENCH[@]}" merge "$D/bundle.json" >"$D/summary.txt" 2>>"$D/merge.err"
echo "== held-out traces ($(date -u +%Y-%m-%dT%H:%MZ), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)) =="
cat "$D/summary.txt"
