#!/usr/bin/env bash
# GPU section: the example app (apps/example) on CUDA, with the pool and with --no-pool.
# A bash fragment, run (or sourced) on the GPU machine from the repo root: `node` on PATH, every
# dist/ built, the CUDA addon built, a self-contained node_modules present, $OUT an output folder.
# Writes $OUT/example-cuda-{pool,nopool}.json (one JSON object each), the HTML memory reports and
# the logs; prints frames/s and device calls for both runs. Sets EXAMPLE_STATUS (0 = both runs
# exited 0: every frame right, no leaks). Sourced, it never exits the calling shell; run as
# `bash scripts/gpu-sections/example.sh`, it exits with EXAMPLE_STATUS.
# Knobs: EXAMPLE_CAMERAS (default 4), EXAMPLE_FRAMES per camera (default 100), EXAMPLE_WORKERS (default 4).

EXAMPLE_STATUS=0
EXAMPLE_OUT="${OUT:-out}"
mkdir -p "$EXAMPLE_OUT"
EXAMPLE_ARGS=(--device cuda --json --cameras "${EXAMPLE_CAMERAS:-4}" --frames "${EXAMPLE_FRAMES:-100}" --workers "${EXAMPLE_WORKERS:-4}")
echo "example: card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u +%Y-%m-%dT%H:%MZ); args: ${EXAMPLE_ARGS[*]}"

for example_mode in pool nopool; do
  example_extra=()
  [[ "$example_mode" == nopool ]] && example_extra=(--no-pool)
  example_rc=0
  timeout "${EXAMPLE_TIMEOUT_S:-240}" node apps/example/dist/main.js "${EXAMPLE_ARGS[@]}" "${example_extra[@]}" \
    --report "$EXAMPLE_OUT/example-cuda-$example_mode.html" \
    >"$EXAMPLE_OUT/example-cuda-$example_mode.json" 2>"$EXAMPLE_OUT/example-cuda-$example_mode.log" || example_rc=$?
  if ((example_rc != 0)); then
    EXAMPLE_STATUS=1
    echo "example ($example_mode): exit $example_rc; last lines of the log:"
    tail -30 "$EXAMPLE_OUT/example-cuda-$example_mode.log"
  fi
  node -e '
    const fs = require("fs");
    const [file, mode, rc] = process.argv.slice(1);
    let s;
    try {
      s = JSON.parse(fs.readFileSync(file, "utf8").trim().split("\n").pop());
    } catch (e) {
      console.log(`example (${mode}): no JSON result (exit ${rc})`);
      process.exit(0);
    }
    console.log(
      `example (${mode}): ${s.device}, ${s.kernels} kernels, ${s.workers} workers: ` +
        `${s.framesPerSecond.toFixed(1)} frames/s (${s.msPerFramePerThread.toFixed(2)} ms a frame per thread); ` +
        `device calls ${s.deviceAllocCalls} obtaining + ${s.deviceFreeCalls} freeing for ${s.acquires} tensors; ` +
        `${s.framesChecked} frames checked, ${s.framesWrong} wrong, leaks ${s.leaks}; ` +
        `peak ${s.peakMB.toFixed(1)} MB live, ${s.peakReservedMB.toFixed(1)} MB reserved; exit ${rc}`,
    );
  ' "$EXAMPLE_OUT/example-cuda-$example_mode.json" "$example_mode" "$example_rc"
done
unset example_mode example_extra example_rc
# Run directly (not sourced): report the status as the exit code.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then exit "$EXAMPLE_STATUS"; fi
