# shellcheck shell=bash
# Shared by the example pipelines. Settings come from the environment:
#   FLAVR_MODEL    checkpoint for model-location (empty: the model built into the plugin)
#   FLAVR_BACKEND  auto (default), cuda or cpu
#   FLAVR_FACTOR   2 (default), 4 or 8
#   GST_PLUGIN_PATH  where libgstflavrinterp.so is (e.g. target/release)

FLAVR_BACKEND=${FLAVR_BACKEND:-auto}
FLAVR_FACTOR=${FLAVR_FACTOR:-2}
FLAVR_MODEL=${FLAVR_MODEL:-}

# The flavrinterp element with its properties, as gst-launch-1.0 words.
flavr_element() {
    local e="flavrinterp factor=$FLAVR_FACTOR backend=$FLAVR_BACKEND"
    if [ -n "$FLAVR_MODEL" ]; then
        e="$e model-location=$FLAVR_MODEL"
    fi
    echo "$e"
}

# Runs gst-launch-1.0 with messages on; on success prints warnings and the element's summary
# ("flavrinterp: N frames in, M out, backend ..., X fps out ..."), on failure its whole log.
launch() {
    local log rc=0
    log=$(mktemp)
    gst-launch-1.0 -m -e "$@" >"$log" 2>&1 || rc=$?
    if [ "$rc" -ne 0 ] || grep -q "ERROR:" "$log"; then
        cat "$log" >&2
        rm -f "$log"
        echo "pipeline failed" >&2
        return 1
    fi
    grep '^WARNING: ' "$log" || true
    grep -o 'summary=(string)"[^"]*"' "$log" |
        sed -e 's/^summary=(string)"//' -e 's/"$//' -e 's/\\//g'
    rm -f "$log"
}
