# shellcheck shell=bash
# The GPU machine's fixed places, in one file, sourced by the scripts of tools/device/ (run from
# the repository root, or from a staged folder's root for bench_run.sh and pipeline.sh):
#   /usr/local/cuda-13.0/lib64  NVRTC and cuDNN for the CUDA engine
#   .gpu-train/codec            libx264 for tools/train/codec.py (fetch_codec.sh puts it there)
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/lib64:${LD_LIBRARY_PATH:-}
export FLAVR_CODEC_DIR=${FLAVR_CODEC_DIR:-$PWD/.gpu-train/codec}
export PYTHONUNBUFFERED=1
