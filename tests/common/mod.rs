// SPDX-License-Identifier: MIT OR Apache-2.0
//! Shared by every test file: where the fixtures are. `gst_common` and `cuda_common` re-export
//! it; other test files include it with `mod common;`, flavr-eval's unit tests with `#[path]`.
#![allow(dead_code)]

use std::path::PathBuf;

/// The fixtures folder: `$FLAVR_FIXTURES` when set (a copy elsewhere, as on the GPU machine),
/// else `tests/fixtures` of this crate.
pub fn fixtures() -> PathBuf {
    std::env::var_os("FLAVR_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"))
}

/// A file of the fixtures folder.
pub fn fixture(name: &str) -> PathBuf {
    fixtures().join(name)
}

/// The bytes of a fixture; panics naming the file when it cannot be read.
pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let p = fixture(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}
