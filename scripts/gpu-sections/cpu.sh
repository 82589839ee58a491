#!/usr/bin/env bash
# GPU-host CPU section: the JavaScript side alone (SimulatedDevice), on the GPU machine's CPU, under
# several V8 flag sets: Node's defaults, V8's young generation held at 16 MiB
# (--min-semi-space-size=16, what bench.sh and traces.sh run with), and that plus a larger inlining
# budget (--max-inlined-bytecode-size-cumulative=2000): per-replay ns/op and page faults on the four
# shared traces (packages/bench/scripts/young-gen.mjs), and the warm acquire+release pair of the
# default policy, each setting in fresh processes. Needs node (20) on PATH and the bench dist; no GPU.
# ~3 minutes. CPU_FLAG_SETS: the flag sets, ';'-separated ('' = Node's defaults).
# Writes $OUT/cpu/*.txt and prints them; exits non-zero when a step failed (the others still run).
set -uo pipefail
rc=0
OUT="${OUT:-$PWD/out}"
D="$OUT/cpu"
mkdir -p "$D"
TRACES=(packages/core/test/fixtures/{kv_decode,pipeline,train_resnet,transformer_varlen}.trace.gz)
PROCESSES="${CPU_PROCESSES:-4}" # fresh processes per (trace or pair, flag set)
FLAG_SETS="${CPU_FLAG_SETS-;--min-semi-space-size=16;--min-semi-space-size=16 --max-inlined-bytecode-size-cumulative=2000}"
echo "cpu: $(node -p 'os.cpus()[0].model + " x" + os.cpus().length'); node $(node --version); $(date -u +%Y-%m-%dT%H:%MZ)" | tee "$D/machine.txt"
timeout 360 node packages/bench/scripts/young-gen.mjs --processes "$PROCESSES" --flags "$FLAG_SETS" \
  "${TRACES[@]}" | tee "$D/young-gen.txt" || rc=1
IFS=';' read -r -a SETS <<<"$FLAG_SETS"
for flags in "${SETS[@]}"; do
  echo "latency [${flags:-defaults}] (bestFit, SimulatedDevice, $PROCESSES processes):" | tee -a "$D/latency.txt"
  # shellcheck disable=SC2086
  timeout 120 node $flags packages/bench/dist/cli.js latency --policy bestFit --sizes 512,8192 \
    --processes "$PROCESSES" | tee -a "$D/latency.txt" || rc=1
done
exit "$rc"
