#!/usr/bin/env bash
# One training call on the device machine, from the repository root:
#
#   bash tools/device/train.sh MINUTES [train.py options...]
#
# Restores the state from $STATE (default .gpu-train/state, carried in), trains for MINUTES
# (keep it <= 8: the call's limit is 10 minutes and setup + final validation + save take about
# a minute), writes the new state (weights 2 parts, optimizer 1 part, 2 manifests, train.log) to
# $OUT/state and to $STATE, in parts of at most 15 MB (the device tool brings back files of at
# most 16 MiB), and prints a summary. Refuses to start from scratch unless FRESH=1,
# so a call that forgot to carry the state fails instead of silently starting over.
# INIT=weights.safetensors (an export.py file) starts from those weights instead.
# Env: PHOTOS (default .gpu-train/photos), STATE, FRESH, INIT, PY (default python3).
set -uo pipefail
# shellcheck source=env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
MINUTES="${1:-8}"
shift || true
PHOTOS="${PHOTOS:-.gpu-train/photos}"
STATE="${STATE:-.gpu-train/state}"
PY="${PY:-python3}"
: "${OUT:?OUT is not set (the device tool sets it; elsewhere set it to a folder)}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"
if [ ! -d "$PHOTOS/train" ] || [ ! -d "$PHOTOS/val" ]; then
    echo "no photos in $PHOTOS (make them with tools/data/make_photos.py and carry them)" >&2
    exit 2
fi
if [ -f "$STATE/model.json" ]; then
    "$PY" -m tools.train.state verify "$STATE" || exit 2
    REQ=--require-state
elif [ -n "${INIT:-}" ]; then
    echo "no state in $STATE: starting from the weights $INIT"
    REQ="--init $INIT"
elif [ "${FRESH:-0}" = 1 ]; then
    echo "no state in $STATE: starting from scratch (FRESH=1)"
    REQ=
else
    echo "no state in $STATE: carry it, or set FRESH=1 to start from scratch" >&2
    exit 2
fi
"$PY" -m tools.train.train --photos "$PHOTOS" --state "$STATE" --out-state "$OUT/state" \
    --max-part-mb 15 --minutes "$MINUTES" $REQ "$@"
rc=$?
ls -l "$OUT/state" 2>/dev/null
"$PY" -m tools.train.state verify "$OUT/state" || rc=3
exit $rc
