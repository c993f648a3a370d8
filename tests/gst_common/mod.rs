// SPDX-License-Identifier: MIT OR Apache-2.0
//! Set-up shared by the GStreamer tests (`element.rs`, `pipelines.rs`).

use std::sync::Once;

#[path = "../common/mod.rs"]
mod common;
pub use common::fixture;

/// Initialises GStreamer once and registers `flavrinterp` from this crate (no plugin path).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstflavrinterp::plugin_register_static().expect("register flavrinterp");
    });
}
