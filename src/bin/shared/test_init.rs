// SPDX-License-Identifier: MIT OR Apache-2.0
//! For the binaries' unit tests (each includes this file with `#[path]`).

/// GStreamer and the plugin, once per test binary.
pub(crate) fn init() {
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstflavrinterp::plugin_register_static().unwrap();
    });
}
