# shellcheck shell=bash
# The environment of the CUDA-memory device calls (issue 17), sourced by session10_cudamem.sh
# (and the record session10_call4.sh), run from the repository root on the
# GPU machine with carry .gpu-cm (made here by stage_cudamem.sh): D, the staged folder; OUT,
# where the logs go; the GPU machine's places (env.sh); the bundle's GStreamer; the fixtures,
# the plan cache and the plugin of the staged folder; a GPU required by the tests.
D=.gpu-cm
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck disable=SC1091
source $D/gst/env.sh
export FLAVR_REQUIRE_GPU=1 FLAVR_FIXTURES=$PWD/$D/fixtures FLAVR_CUDA_PLAN_CACHE=/tmp/plans.tsv
export GST_PLUGIN_PATH=$PWD/$D/plugin
