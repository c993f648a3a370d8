// SPDX-License-Identifier: MIT OR Apache-2.0
//! cargo-fuzz target `zip`: see `gst_plugin_flavr_fuzz::zip_target` (fuzz/src/lib.rs).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| gst_plugin_flavr_fuzz::zip_target(data));
