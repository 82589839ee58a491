#!/usr/bin/env bash
# Runs HERE (no GPU): builds what the GPU machine needs and fills .carry/ (git-ignored, < 64 MiB):
#   .carry/node.xz        this machine's Node binary (the GPU machine has none)
#   .carry/bundle.tar.xz  built dist folders, the CUDA addon, and a flat node_modules with the
#                         test runner and the runtime dependencies of the chosen sections
#   .carry/commit         the commit they were built from
#   .carry/sections       the sections asked for (what gpu-check.sh runs by default)
#   .carry/prepared       every section prepared, those the others need included (gpu-check.sh
#                         refuses any other before spending device time)
# Then, from the session: run(command="bash scripts/gpu-check.sh native", carry=[".carry"]).
#
# Usage: bash scripts/gpu-prepare.sh [section...]   (default: native)
# Sections add what they need in prepare_<section> below (packages to build, node_modules roots,
# files to carry); gpu-check.sh has the matching check_<section>.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CARRY="$ROOT/.carry"
mkdir -p "$CARRY"
SECTIONS=("${@:-native}")

# What every section adds to. Paths are relative to the repo root.
MODULE_ROOTS=(vitest)      # packages whose dependency closure goes into the flat node_modules
                           # ("dir:name" resolves name from dir, e.g. a workspace package's own dependency)
CARRY_PATHS=()             # built (git-ignored) files to carry

PREPARED=()               # every section prepared, the ones others need included

# Runs prepare_<section> once, however many sections need it.
need() {
  [[ " ${PREPARED[*]} " == *" $1 "* ]] && return 0
  PREPARED+=("$1")
  "prepare_$1"
}

prepare_native() {
  (cd packages/core && npx tsup >/dev/null)
  (cd packages/native && pnpm run build)
  CARRY_PATHS+=(packages/core/dist packages/native/dist packages/native/build/Release/gpupool_native.node)
}

# @gpupool/workers on CudaDevice: needs core + native (built by prepare_native), its own dist, piscina.
prepare_workers() {
  need native
  (cd packages/workers && npx tsup >/dev/null)
  MODULE_ROOTS+=(packages/workers:piscina fast-check)
  CARRY_PATHS+=(packages/workers/dist)
}

# Benchmarks (gpupool-bench on CudaDevice, peers in Python): bench needs workers (scaling) and chart.js.
prepare_bench() {
  need workers
  (cd packages/bench && npx tsup >/dev/null)
  MODULE_ROOTS+=(packages/bench:chart.js)
  CARRY_PATHS+=(packages/bench/dist)
}

# Pool configurations on CUDA (packages/bench/scripts/backing-variants.mjs): what bench carries.
prepare_variants() {
  need bench
}

# The JavaScript side on the GPU host's CPU (scripts/gpu-sections/cpu.sh): what bench carries.
prepare_cpu() {
  need bench
}

# Held-out real traces (scripts/gpu-sections/traces.sh): what bench carries.
prepare_traces() {
  need bench
}

# The example app on CUDA (workers slices, native kernels).
prepare_example() {
  need workers
  (cd apps/example && npx tsup >/dev/null)
  MODULE_ROOTS+=(apps/example:piscina)
  CARRY_PATHS+=(apps/example/dist)
}

for section in "${SECTIONS[@]}"; do
  if ! declare -F "prepare_$section" >/dev/null; then
    echo "gpu-prepare: unknown section '$section'" >&2
    exit 2
  fi
  need "$section"
done

# The Node binary, compressed once per Node version.
NODE_BIN="$(command -v node)"
NODE_VERSION="$(node --version)"
if [[ ! -f "$CARRY/node.xz" || "$(cat "$CARRY/node.version" 2>/dev/null)" != "$NODE_VERSION" ]]; then
  xz -T2 -6 -c "$NODE_BIN" >"$CARRY/node.xz"
  echo "$NODE_VERSION" >"$CARRY/node.version"
fi

# A flat, self-contained node_modules: pnpm's node_modules are symlinks into node_modules/.pnpm,
# so walk each root's dependency closure and copy real directories (first version found wins).
STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
node - "$STAGE/node_modules" "${MODULE_ROOTS[@]}" <<'NODE'
const fs = require('node:fs');
const path = require('node:path');
const [target, ...roots] = process.argv.slice(2);
const seen = new Map();
function find(name, fromDir) {
  for (let dir = fromDir; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    if (fs.existsSync(path.join(candidate, 'package.json'))) return fs.realpathSync(candidate);
    if (dir === path.dirname(dir)) return undefined;
  }
}
function visit(name, fromDir, optional) {
  const real = find(name, fromDir);
  if (real === undefined) {
    if (!optional) console.error(`gpu-prepare: ${name} not found from ${fromDir}`);
    return;
  }
  if (seen.has(name)) return;
  seen.set(name, real);
  const pkg = JSON.parse(fs.readFileSync(path.join(real, 'package.json'), 'utf8'));
  for (const dep of Object.keys(pkg.dependencies ?? {})) visit(dep, real, false);
  for (const dep of Object.keys(pkg.optionalDependencies ?? {})) visit(dep, real, true);
  for (const [dep, meta] of Object.entries(pkg.peerDependenciesMeta ?? {})) void dep, void meta;
}
for (const root of roots) {
  const [from, name] = root.includes(':') ? root.split(':') : ['.', root];
  visit(name, path.resolve(from), false);
}
for (const [name, real] of seen) {
  const dest = path.join(target, name);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.cpSync(real, dest, { recursive: true, dereference: true, filter: (src) => !/[\\/](test|tests|docs?|\.github)[\\/]?$/.test(src) || src === real });
}
console.log(`gpu-prepare: ${seen.size} packages in the flat node_modules`);
NODE

for p in "${CARRY_PATHS[@]}"; do
  mkdir -p "$STAGE/files/$(dirname "$p")"
  cp -rL "$p" "$STAGE/files/$p"
done
tar -C "$STAGE" -cf - node_modules files | xz -T2 -6 >"$CARRY/bundle.tar.xz"
printf '%s\n' "${SECTIONS[@]}" >"$CARRY/sections"
printf '%s\n' "${PREPARED[@]}" >"$CARRY/prepared" # what gpu-check.sh may run with this carry
# The commit the bundle was built from (the GPU machine's copy has no usable git history); "+" marks
# uncommitted changes in tracked files.
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!docs' 2>/dev/null || echo +)" >"$CARRY/commit"
du -sh "$CARRY"/* | sed 's/^/gpu-prepare: /'
total=$(du -sb "$CARRY" | cut -f1)
if ((total > 60 * 1024 * 1024)); then
  echo "gpu-prepare: .carry is $((total / 1024 / 1024)) MiB: over the 64 MiB carry limit" >&2
  exit 1
fi
