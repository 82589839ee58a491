# What the GPU bench sections share (sourced by bench.sh and traces.sh; $D is their results folder).

# The CLI as both sections run it: V8's young generation held at its largest default size. With
# Node's defaults V8 resizes it between GCs, and the replays that fault its pages back in ran 2-3x
# slower (packages/bench/scripts/young-gen.mjs). BENCH_NODE_FLAGS='' runs with Node's defaults.
# shellcheck disable=SC2206
NODE_FLAGS=(${BENCH_NODE_FLAGS---min-semi-space-size=16})
BENCH=(node "${NODE_FLAGS[@]}" packages/bench/dist/cli.js)

# step NAME SECONDS command... : runs the command with a time limit, its stderr in $D/NAME.err,
# and reports how it ended; a failure costs only its own numbers. A step whose name starts with a
# word of STEP_SKIP is left out.
step() {
  local name=$1 limit=$2 skip tag
  tag=$(basename "$0")
  shift 2
  for skip in ${STEP_SKIP:-}; do
    if [[ "$name" == "$skip"* ]]; then
      echo "$tag: $name: skipped" >&2
      return 0
    fi
  done
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" 2>"$D/$name.err"
  local rc=$?
  echo "$tag: $name: exit $rc in $((SECONDS - t0)) s" >&2
  ((rc != 0)) && tail -n 5 "$D/$name.err" >&2
  return 0
}

# merge_results [merge options...] : folds every result file in $D into $D/bundle.json and writes
# the summary tables to $D/summary.txt (extra options, e.g. --report FILE, go to the second merge).
# Fails when there is nothing to merge.
merge_results() {
  local f results=()
  shopt -s nullglob
  for f in "$D"/*.json "$D"/*.jsonl; do [[ -s "$f" && "$f" != "$D/bundle.json" ]] && results+=("$f"); done
  shopt -u nullglob
  if ((${#results[@]} == 0)); then
    echo "$(basename "$0"): no results were produced; see $D/*.err" >&2
    return 1
  fi
  "${BENCH[@]}" merge "${results[@]}" --json >"$D/bundle.json" 2>"$D/merge.err"
  "${BENCH[@]}" merge "$D/bundle.json" "$@" >"$D/summary.txt" 2>>"$D/merge.err"
}
