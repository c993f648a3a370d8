#!/usr/bin/env bash
# After a device call: check the state it brought back and make it the current one.
#
#   bash tools/train/pull_state.sh FILES_AT [DEST]
#
# FILES_AT is the run's `files_at` folder (it holds state/); DEST defaults to the main
# checkout's .gpu-train/state. The previous state is kept as DEST.prev.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SRC="${1:?usage: pull_state.sh FILES_AT [DEST]}/state"
DEST="${2:-/work/main/.gpu-train/state}"
python3 "$HERE/state.py" verify "$SRC"
rm -rf "$DEST.prev"
if [ -d "$DEST" ]; then mv "$DEST" "$DEST.prev"; fi
mkdir -p "$(dirname "$DEST")"
cp -r "$SRC" "$DEST"
chmod -R u+w "$DEST"
python3 "$HERE/state.py" info "$DEST" | tail -n 3
