#!/usr/bin/env bash
# Session 9, device call 3 (carry .gpu-c10, made by `DEST=.gpu-c10 FEATURES="--no-default-features
# --features cuda" tools/device/stage.sh`, the plugin left out): after the merges of the 10-bit
# formats (tenbit) and of several engines (multigpu), the GPU tests again (10-bit formats bit for
# bit against the CPU in cuda_pixels and cuda_cpu_parity), two engines on one GPU
# (tests/cuda_dispatch.rs, with a fault in one), and the GPU fault injection of tests/faults.rs.
set -u
D=.gpu-c10
PARITY=${PARITY:-0}
# shellcheck source=gpu_tests.sh
source "$(dirname "${BASH_SOURCE[0]}")/gpu_tests.sh"
# shellcheck disable=SC1090,SC1091
source $D/gst/env.sh
step "two engines on one GPU"
$D/cuda_dispatch --nocapture --test-threads=1 2>&1 | tee "$OUT/dispatch.log" | grep -E "test |result|panicked|differ|skipp|warning" | head -40
step "faults through the element (GPU)"
$D/faults gpu_ --test-threads=1 2>&1 | tee "$OUT/faults.log" | grep -E "test |result|panicked|skipp"
step done
