#!/usr/bin/env bash
# A Python virtual environment with what tools/ needs (tools/pyproject.toml), for its checks
# (CI runs `python -m tools.train.test_train` in it) and for the tools themselves:
#
#   tools/setup-python.sh [VENV]          # default: .venv at the repository root
#   .venv/bin/python -m tools.train.test_train
#
# PyTorch comes from PyPI (the CUDA build: about 3 GB to download, 5.4 GB installed; it runs on
# the CPU too). TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu takes the CPU-only build
# instead (about 200 MB) where that index is reachable. On Debian the venv module is the
# python3-venv package (tools/setup-debian.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
if ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    "$venv/bin/python" -m pip install -q ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch
fi
"$venv/bin/python" -m pip install -q -e tools
echo "setup-python: $("$venv/bin/python" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)') in $venv"
