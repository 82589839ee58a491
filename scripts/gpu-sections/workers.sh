# GPU check section for @gpupool/workers (a bash fragment, sourced from the repo root).
# Needs: node (20) on PATH, packages/*/dist built, the native addon built, vitest + piscina in
# node_modules. Runs the workers suite against CudaDevice and prints a one-line summary.
# Worker threads open their own CudaDevice and adopt the arena's range (CudaDevice.adoptRange).
(
  cd packages/workers || exit 1
  export GPUPOOL_TEST_DEVICE=cuda THREADS="${THREADS:-4}" ITERATIONS="${ITERATIONS:-3000}"
  if node -e "const n=require('../native/dist/index.cjs'); process.exit(n.cuda.available ? 0 : 1)"; then
    timeout "${WORKERS_TEST_TIMEOUT_S:-180}" node ../../node_modules/vitest/vitest.mjs run --reporter=default 2>&1 | tee /tmp/gpupool-workers.log
    rc=${PIPESTATUS[0]}
    adopt=$(node -e "const n=require('../native/dist/index.cjs'); console.log(typeof n.CudaDevice.prototype.adoptRange==='function'?'yes':'no')")
    echo "workers[cuda]: rc=$rc adoptRange=$adopt $(grep -E 'Tests ' /tmp/gpupool-workers.log | tail -1 | sed 's/\x1b\[[0-9;]*m//g')"
  else
    echo "workers[cuda]: skipped: $(node -e "console.log(require('../native/dist/index.cjs').cuda.reason)")"
  fi
)
