#!/usr/bin/env bash
# Installs what gst-flavr needs on Debian 12 (or a similar Debian/Ubuntu): the GStreamer
# development packages and plugins the element, its tests and the example pipelines use, a C
# toolchain, and Rust through rustup when cargo is missing or older than the crate needs.
# Runs as root (CI) or through sudo.
set -euo pipefail

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
fi

packages=(
    build-essential pkg-config curl ca-certificates
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
    gstreamer1.0-tools
    gstreamer1.0-plugins-base-apps  # gst-discoverer-1.0 (the flavr-convert tests)
    gstreamer1.0-plugins-base  # videotestsrc, videoconvert, decodebin, playbin, appsink
    gstreamer1.0-plugins-good  # mp4mux, qtdemux
    gstreamer1.0-plugins-bad   # h264parse
    gstreamer1.0-plugins-ugly  # x264enc
    gstreamer1.0-libav         # avdec_h264
    python3-venv               # tools/setup-python.sh (the Python tools' checks)
)
missing=()
for p in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y --no-install-recommends \
        "${missing[@]}"
fi

# Rust: the crate needs rust-version (Cargo.toml) or newer, with rustfmt and clippy for CI.
need=$(sed -n 's/^rust-version *= *"\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
if [ -f "$HOME/.cargo/env" ]; then
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
fi
have=$(cargo --version 2>/dev/null | awk '{print $2}' || true)
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
    if command -v rustup >/dev/null 2>&1; then
        rustup toolchain install stable --profile minimal --component rustfmt,clippy
        rustup default stable
    else
        echo "setup: installing Rust (rustup, stable)"
        curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
            sh -s -- -y --profile minimal --component rustfmt,clippy
    fi
    # shellcheck disable=SC1091
    . "$HOME/.cargo/env"
elif [ "${CI:-}" = "true" ] && command -v rustup >/dev/null 2>&1; then
    rustup component add rustfmt clippy
fi
echo "setup: $(cargo --version), GStreamer $(pkg-config --modversion gstreamer-1.0)"
