#!/usr/bin/env bash
# GPU section: held-out real traces. Records PyTorch workloads of kinds the four shared traces do
# not cover (packages/bench/peers/record_traces.py), then replays each through gpupool
# (TRACES_POLICIES, on CudaDevice and on SimulatedDevice) and through the peers, in this one call:
# a check that the defaults carry over to workloads they were not chosen on.
# Needs: node (20) on PATH, the bench dist and native addon built; python3 with torch + cupy.
# Writes $OUT/traces/*.trace.gz (when it records), $OUT/traces-bench/*.json(l) and a summary table.
set -uo pipefail
OUT="${OUT:-$PWD/out}"
T="$OUT/traces"
D="$OUT/traces-bench"
mkdir -p "$T" "$D"
source "$(dirname "${BASH_SOURCE[0]}")/steps.sh" # step, merge_results, BENCH (the CLI with its Node flags)
RUNS="${TRACES_RUNS:-3}"
POLICIES=(${TRACES_POLICIES:-bestFitPools})   # gpupool policies to replay (default: CudaDevice's default)

# TRACES_FROM=DIR replays traces recorded earlier, where they are; else they are recorded into $T
# (and come back with $OUT).
if [[ -z "${TRACES_FROM:-}" ]]; then
  step record "${TRACES_RECORD_TIMEOUT_S:-300}" python3 packages/bench/peers/record_traces.py "$T" \
    ${TRACES_ONLY:+--only "$TRACES_ONLY"}
  cat "$D/record.err" >&2
fi
shopt -s nullglob
RECORDED=("${TRACES_FROM:-$T}"/*.trace.gz)
shopt -u nullglob
if ((${#RECORDED[@]} == 0)); then
  echo "traces.sh: no traces in ${TRACES_FROM:-$T}; see $D/record.err" >&2
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

merge_results || exit 1
echo "== held-out traces ($(date -u +%Y-%m-%dT%H:%MZ), $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)) =="
cat "$D/summary.txt"
