#!/usr/bin/env bash
# Fuzzes the checkpoint readers for SECONDS per target (pickle, zip, safetensors,
# open_checkpoint; fuzz/src/lib.rs), starting from the seeds in fuzz/corpus/TARGET.
# With cargo-fuzz installed (cargo install cargo-fuzz), libFuzzer runs each target through
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -s none` (the stable toolchain, no sanitizer), keeping what
# it finds in target/fuzz-corpus/TARGET (the tracked seeds stay as they are). Without it, or
# with FUZZ_DRIVER=stable, the stable driver of tests/fuzz_corpus.rs mutates the corpus with a
# PRNG through the same entry points. Either way a crash fails the script, its input saved
# under fuzz/artifacts/TARGET/.
# usage: tools/fuzz.sh [SECONDS] [TARGETS]   (default 30 s; TARGETS a comma list, default all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-30}
targets=${2:-pickle,zip,safetensors,open_checkpoint}
if [ "${FUZZ_DRIVER:-}" != stable ] && cargo fuzz --version >/dev/null 2>&1; then
  for t in ${targets//,/ }; do
    mkdir -p "target/fuzz-corpus/$t"
    echo "=== cargo fuzz $t ($seconds s)"
    # libFuzzer's last lines: "Done N runs in S second(s)", or the crash and its file.
    rc=0
    RUSTC_BOOTSTRAP=1 cargo fuzz run -s none "$t" \
        "$PWD/target/fuzz-corpus/$t" "$PWD/fuzz/corpus/$t" -- -max_total_time="$seconds" -max_len=16384 \
        -rss_limit_mb=2048 -timeout=10 >"target/fuzz-$t.log" 2>&1 || rc=$?
    grep -E "^(Done|SUMMARY)|^==[0-9]+==|panicked|[Cc]rash" "target/fuzz-$t.log" | tail -5 || true
    [ "$rc" = 0 ] || { echo "fuzz $t: failed, rc $rc (target/fuzz-$t.log, fuzz/artifacts/$t)"; exit 1; }
  done
else
  echo "=== stable driver (tests/fuzz_corpus.rs, $seconds s per target)"
  FLAVR_FUZZ_SECONDS=$seconds FLAVR_FUZZ_TARGETS=$targets \
    cargo test --release --test fuzz_corpus -- --ignored --exact fuzz_with_mutations --nocapture
fi
