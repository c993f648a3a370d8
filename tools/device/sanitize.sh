#!/usr/bin/env bash
# Runs on the GPU machine from the staged folder (tools/device/stage.sh): compute-sanitizer's
# memcheck, racecheck and synccheck over the GPU test binaries and `bench` at small sizes, each
# under a time limit, then a summary (one line per run: tool, what, exit status, the tool's own
# error count, seconds). Exit status: 0 when every run finished with no error reported.
# usage: bash .gpu-cuda/tools/device/sanitize.sh [TOOLS]   TOOLS: comma list of
#        memcheck,racecheck,synccheck (default: all three); LIMIT=seconds per run (default 600)
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT/sanitize"
tools=${1:-memcheck,synccheck,racecheck}
limit=${LIMIT:-600}
# shellcheck source=env.sh
source tools/device/env.sh
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/fixtures
# A plan cache would make later runs skip the tuning launches: every run does the same work.
export FLAVR_CUDA_PLAN_CACHE=off
cs=${COMPUTE_SANITIZER:-/usr/local/cuda-13.0/bin/compute-sanitizer}
[ -x "$cs" ] || cs=$(command -v compute-sanitizer) || { echo "no compute-sanitizer"; exit 2; }
"$cs" --version | tail -1
has() { [[ ",$tools," == *",$1,"* ]]; }
summary=()
# run TOOL NAME CMD...: one sanitizer run, its log in $OUT/sanitize/TOOL-NAME.log.
run() {
  local tool=$1 name=$2; shift 2
  local log="$OUT/sanitize/$tool-$name.log" t0=$SECONDS rc
  echo "=== $tool $name: $*"
  timeout --kill-after=30 "$limit" "$cs" --tool "$tool" --error-exitcode 99 --print-limit 50 \
    ${SAN_OPTS:-} "$@" >"$log" 2>&1
  rc=$?
  # memcheck/synccheck: "ERROR SUMMARY: N errors"; racecheck: "RACECHECK SUMMARY: N hazards".
  local errs
  errs=$(grep -hoE "(ERROR SUMMARY: [0-9]+ errors?|RACECHECK SUMMARY: [0-9]+ hazards? displayed \([0-9]+ errors?, [0-9]+ warnings?\))" "$log" | tail -1)
  local tests
  tests=$(grep -hoE "test result: [a-z]+\. [0-9]+ passed; [0-9]+ failed" "$log" | tail -1)
  [ "$rc" = 124 ] && errs="TIME LIMIT ($limit s) ${errs}"
  summary+=("$(printf '%-10s %-34s rc %-3s %-5ss  %s  %s' "$tool" "$name" "$rc" "$((SECONDS - t0))" "${errs:-no summary line}" "$tests")")
  grep -E "^========= (Invalid|Race|Barrier|Uninitialized|Program hit|Leaked|Error)" "$log" | sort | uniq -c | head -10
  tail -3 "$log"
}
# The narrow (small) models and small frames everywhere; the full-width cases take minutes
# under memcheck.
if has memcheck; then
  SAN_OPTS="--leak-check full" run memcheck parity-narrow ./cuda_parity --test-threads=1 narrow
  SAN_OPTS="--leak-check full" run memcheck parity-repeat ./cuda_parity --test-threads=1 repeated_runs_are_identical
  SAN_OPTS="--leak-check full" run memcheck pixels ./cuda_pixels --test-threads=1
  SAN_OPTS="--leak-check full" run memcheck cpu-parity-narrow ./cuda_cpu_parity --test-threads=1 narrow
  SAN_OPTS="--leak-check full" run memcheck errors ./cuda_errors --test-threads=1
  SAN_OPTS="--leak-check full" run memcheck bench-64x64 ./bench --sizes 64x64 --precisions fp32,fp16 --runs 2 --warmup 1
fi
if has synccheck; then
  run synccheck parity-narrow ./cuda_parity --test-threads=1 narrow
  run synccheck pixels ./cuda_pixels --test-threads=1
  run synccheck bench-64x64 ./bench --sizes 64x64 --precisions fp16 --runs 2 --warmup 1
fi
if has racecheck; then
  # Shared-memory hazards; slow (it did not finish a bench run in 150 s): one tiny case.
  run racecheck parity-narrow-2x ./cuda_parity --test-threads=1 --exact narrow_2x_fp32_matches_reference
  run racecheck bench-32x32 ./bench --sizes 32x32 --precisions fp16 --runs 1 --warmup 0
fi
echo "=== summary (logs in $OUT/sanitize)"
bad=0
for s in "${summary[@]}"; do
  echo "$s"
  case "$s" in
    *"rc 0 "*"ERROR SUMMARY: 0 errors"*|*"rc 0 "*"RACECHECK SUMMARY: 0 hazards"*) ;;
    *) bad=1 ;;
  esac
done
exit $bad
