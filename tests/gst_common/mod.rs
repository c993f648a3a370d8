// SPDX-License-Identifier: MIT OR Apache-2.0
//! Set-up shared by the GStreamer tests (`element.rs`, `pipelines.rs`).

use std::path::{Path, PathBuf};
use std::sync::Once;

/// Initialises GStreamer once and registers `flavrinterp` from this crate (no plugin path).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstflavrinterp::plugin_register_static().expect("register flavrinterp");
    });
}

/// A file of `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}
