#!/usr/bin/env bash
# After a device call: check the state it brought back and make it the current one.
#
#   bash tools/device/pull_state.sh FILES_AT [DEST]
#
# FILES_AT is the run's `files_at` folder (it holds state/); DEST defaults to the main
# checkout's .gpu-train/state. The previous state is kept as DEST.prev.
set -euo pipefail
SRC="$(realpath "${1:?usage: pull_state.sh FILES_AT [DEST]}")/state"
DEST="$(realpath -m "${2:-/work/main/.gpu-train/state}")"
cd "$(dirname "${BASH_SOURCE[0]}")/../.."   # for python3 -m tools...
python3 -m tools.train.state verify "$SRC"
rm -rf "$DEST.prev"
if [ -d "$DEST" ]; then mv "$DEST" "$DEST.prev"; fi
mkdir -p "$(dirname "$DEST")"
cp -r "$SRC" "$DEST"
chmod -R u+w "$DEST"
python3 -m tools.train.state info "$DEST" | tail -n 3
