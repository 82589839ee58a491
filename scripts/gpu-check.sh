#!/usr/bin/env bash
# Runs THERE (the GPU machine: CUDA, no Node, no registry), from the repo root, after
# scripts/gpu-prepare.sh filled .carry/ here:  run(command="bash scripts/gpu-check.sh native", carry=[".carry"])
# Unpacks Node and the bundle, links the workspace packages, runs each section's checks, and ends
# with a short summary (also written to $OUT/summary.txt, with logs and results under $OUT).
#
# Usage: bash scripts/gpu-check.sh [section...]   (default: every section in .carry/sections)
# Add a section by defining check_<name> (and prepare_<name> in gpu-prepare.sh); a check appends
# one line to SUMMARY via `summary` and returns non-zero on failure.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARRY="$ROOT/.carry"
OUT="${OUT:-$ROOT/out}"
mkdir -p "$OUT"
SUMMARY=()
STATUS=0
summary() { SUMMARY+=("$*"); }

setup() {
  mkdir -p "$CARRY/bin"
  if [[ ! -x "$CARRY/bin/node" ]] || ! "$CARRY/bin/node" --version >/dev/null 2>&1; then
    xz -dc "$CARRY/node.xz" >"$CARRY/bin/node" && chmod +x "$CARRY/bin/node"
  fi
  export PATH="$CARRY/bin:$PATH"
  local stage
  stage="$(mktemp -d)"
  xz -dc "$CARRY/bundle.tar.xz" | tar -C "$stage" -xf -
  rm -rf "$ROOT/node_modules"
  mv "$stage/node_modules" "$ROOT/node_modules"
  cp -r "$stage/files/." "$ROOT/"
  rm -rf "$stage"
  # Workspace links, as pnpm would make them: every package sees every @gpupool package.
  for consumer in packages/* apps/*; do
    [[ -f "$consumer/package.json" ]] || continue
    mkdir -p "$consumer/node_modules/@gpupool"
    for pkg in packages/*; do
      [[ -f "$pkg/package.json" ]] || continue
      ln -sfn "$ROOT/$pkg" "$consumer/node_modules/@gpupool/$(basename "$pkg")"
    done
  done
  # bench.sh's `commit:` line: the commit the bundle was built from, not this copy's git metadata.
  [[ -f "$CARRY/commit" ]] && export GPUPOOL_COMMIT="$(cat "$CARRY/commit")"
  CARD="$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
  echo "gpu-check: node $(node --version); card: ${CARD:-none}; $(date -u +%Y-%m-%dT%H:%MZ)"
}

# Counts from a vitest JSON report: "passed failed skipped". Tests that never ran because their
# file's worker died (a crash, a heap overflow) count as failed, so a dead file cannot look green.
vitest_counts() {
  node -e '
    const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
    const skipped = r.numPendingTests + (r.numTodoTests ?? 0);
    const notRun = Math.max(0, r.numTotalTests - r.numPassedTests - r.numFailedTests - skipped);
    console.log(`${r.numPassedTests} ${r.numFailedTests + notRun} ${skipped}`);
  ' "$1" 2>/dev/null || echo "0 1 0"
}

check_native() {
  local dir=packages/native log="$OUT/native-vitest.log" rc=0
  (cd "$dir" && GPUPOOL_RESULTS_DIR="$OUT/native-results" timeout "${NATIVE_TEST_TIMEOUT_S:-220}" node "$ROOT/node_modules/vitest/vitest.mjs" run \
    --reporter=default --reporter=json --outputFile.json="$OUT/native-vitest.json") >"$log" 2>&1 || rc=1
  read -r passed failed skipped < <(vitest_counts "$OUT/native-vitest.json")
  grep -E '^GPUPOOL_(DEVICE|BENCH|KERNEL)' "$log" | sort -u | sed 's/^/  /'
  summary "native tests: $passed passed, $failed failed, $skipped skipped (vitest, all files)"
  ((rc == 0)) || { tail -60 "$log"; STATUS=1; }

  # memcheck over every GPU test file; API errors the tests provoke on purpose are not memory errors.
  local mlog="$OUT/native-memcheck.log" mrc=0
  if [[ "${NATIVE_MEMCHECK:-1}" == 0 ]]; then
    summary "native memcheck: skipped (NATIVE_MEMCHECK=0)"
  elif command -v compute-sanitizer >/dev/null; then
    (cd "$dir" && GPUPOOL_GPU_LIGHT=1 timeout "${NATIVE_MEMCHECK_TIMEOUT_S:-260}" compute-sanitizer --tool memcheck --report-api-errors no \
      --target-processes all --log-file "$mlog" \
      node "$ROOT/node_modules/vitest/vitest.mjs" run test/cuda-gpu.test.ts test/cuda-conformance.test.ts --pool=threads \
      --reporter=default --reporter=json --outputFile.json="$OUT/native-memcheck-vitest.json") \
      >"$OUT/native-memcheck-vitest.log" 2>&1 || mrc=1
    read -r mpassed mfailed mskipped < <(vitest_counts "$OUT/native-memcheck-vitest.json")
    local errors
    errors=$(grep -hoE 'ERROR SUMMARY: [0-9]+' "$mlog"* 2>/dev/null | awk '{s += $3} END {print s + 0}')
    local processes
    processes=$(grep -hcE 'ERROR SUMMARY' "$mlog"* 2>/dev/null | awk '{s += $1} END {print s + 0}')
    summary "native memcheck: $errors errors in $processes processes; tests under memcheck: $mpassed passed, $mfailed failed, $mskipped skipped"
    if ((mrc != 0 || errors != 0)); then
      tail -40 "$OUT/native-memcheck-vitest.log"
      grep -m 20 -E '=========' "$mlog"* | head -40
      STATUS=1
    fi
  else
    summary "native memcheck: compute-sanitizer not found (skipped)"
  fi
}

# @gpupool/workers on CudaDevice (GPUPOOL_TEST_DEVICE=cuda): scripts/gpu-sections/workers.sh prints
# one "workers[cuda]: rc=… adoptRange=… Tests …" line, which goes into the summary.
check_workers() {
  local log="$OUT/workers-vitest.log" line
  WORKERS_TEST_TIMEOUT_S="${WORKERS_TEST_TIMEOUT_S:-180}" bash -c 'source scripts/gpu-sections/workers.sh' >"$log" 2>&1
  line=$(grep -E '^workers\[cuda\]:' "$log" | tail -1)
  summary "${line:-workers[cuda]: no result line (see workers-vitest.log)}"
  if [[ "$line" != *"rc=0 "* ]]; then
    tail -60 "$log"
    return 1
  fi
}

# Benchmarks: scripts/gpu-sections/bench.sh (every trace × policy on CudaDevice, peers, latency,
# scaling; its summary table last). Pool configurations: the `variants` section.
check_bench() {
  local log="$OUT/bench.log" rc=0
  OUT="$OUT" bash scripts/gpu-sections/bench.sh >"$log" 2>&1 || rc=1
  sed -n '/== gpupool bench summary/,$p' "$log" | head -80
  summary "bench: $( ((rc == 0)) && echo ran || echo 'had failures (see bench.log)'); results in bench/"
  return "$rc"
}

# The JavaScript side on this machine's CPU (SimulatedDevice): replays and the warm pair, with Node's
# default flags, with the young generation fixed, and with a larger inlining budget as well
# (scripts/gpu-sections/cpu.sh).
check_cpu() {
  local log="$OUT/cpu.log" rc=0
  OUT="$OUT" bash scripts/gpu-sections/cpu.sh >"$log" 2>&1 || rc=1
  cat "$log"
  summary "cpu: $( ((rc == 0)) && echo ran || echo 'had failures (see cpu.log)'); results in cpu/"
  return "$rc"
}

# Pool configurations only (backing-variants.mjs on CUDA), for choosing defaults; VARIANTS_CONFIGS
# (JSON) overrides the script's list.
check_variants() {
  local extra=()
  [[ -n "${VARIANTS_CONFIGS:-}" ]] && extra=(--configs "$VARIANTS_CONFIGS")
  # VARIANTS_TRACES: trace files, space-separated (globs expand); default: the four shared traces.
  local traces=(${VARIANTS_TRACES:-packages/core/test/fixtures/*.trace.gz})
  timeout "${VARIANTS_TIMEOUT_S:-300}" node packages/bench/scripts/backing-variants.mjs --device cuda --runs "${VARIANTS_RUNS:-3}" \
    "${extra[@]}" "${traces[@]}" >"$OUT/variants-cuda.txt" 2>&1
  local rc=$?
  sed -n '/^cuda:/,$p' "$OUT/variants-cuda.txt"
  summary "variants: exit $rc (variants-cuda.txt)"
  return "$rc"
}

# Held-out real traces: records PyTorch workloads, replays them through the default pool and the
# peers (scripts/gpu-sections/traces.sh); the traces come back under $OUT/traces.
check_traces() {
  local log="$OUT/traces.log" rc=0
  OUT="$OUT" bash scripts/gpu-sections/traces.sh >"$log" 2>&1 || rc=1
  grep -E '^(traces.sh|[a-z_]+: [0-9]+ ops)' "$log"
  sed -n '/== held-out traces/,$p' "$log" | head -30
  summary "traces: $( ((rc == 0)) && echo ran || echo 'had failures (see traces.log)'); $(ls "$OUT"/traces/*.trace.gz 2>/dev/null | wc -l) recorded"
  return "$rc"
}

# The example app on CUDA, with the pool and with --no-pool (scripts/gpu-sections/example.sh).
check_example() {
  local log="$OUT/example.log"
  bash scripts/gpu-sections/example.sh >"$log" 2>&1
  local rc=$?
  grep -E '^example' "$log"
  summary "example: $(grep -E '^example \((pool|nopool)\)' "$log" | tr '\n' ' ')"
  ((rc == 0)) || { tail -40 "$log"; return 1; }
}

SECTIONS=("$@")
((${#SECTIONS[@]} > 0)) || mapfile -t SECTIONS <"$CARRY/sections"
# A section the carry was not prepared for fails part-way, after spending device time (its Node
# packages are missing): refuse it before anything runs.
if [[ -f "$CARRY/prepared" ]]; then
  for section in "${SECTIONS[@]}"; do
    if ! grep -qx -- "$section" "$CARRY/prepared"; then
      echo "gpu-check: the carry was not prepared for '$section' (it was for: $(paste -sd' ' "$CARRY/prepared")); here, run: bash scripts/gpu-prepare.sh ${SECTIONS[*]}" >&2
      exit 2
    fi
  done
fi
setup
for section in "${SECTIONS[@]}"; do
  if declare -F "check_$section" >/dev/null; then
    echo "gpu-check: section $section"
    "check_$section" || STATUS=1
  else
    summary "$section: no check_$section in scripts/gpu-check.sh"
    STATUS=1
  fi
done

{
  echo "== gpu-check summary ($(date -u +%Y-%m-%d), ${CARD:-no GPU}) =="
  printf '%s\n' "${SUMMARY[@]}"
  echo "result: $([[ $STATUS == 0 ]] && echo PASS || echo FAIL)"
} | tee "$OUT/summary.txt"
exit "$STATUS"
