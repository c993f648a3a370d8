// SPDX-License-Identifier: MIT OR Apache-2.0
//! Set-up shared by the GStreamer tests (`element.rs`, `pipelines.rs`, ...).

use std::sync::Arc;

use gst::prelude::*;

use gstflavrinterp::backend::cpu::CpuBackend;
use gstflavrinterp::backend::{Backend, FrameLayout, PixelFormat, YuvMatrix};
use gstflavrinterp::model::Flavr;

#[path = "../common/mod.rs"]
mod common;
pub use common::fixture;
mod pipeline;
pub use pipeline::*;

/// Sets `backend=cpu` on `el` (a `flavrinterp`), gives it a bus of its own (for its error
/// messages) and wraps it in a harness on its `sink` and `src` pads.
#[allow(dead_code)]
pub fn cpu_harness(el: &gst::Element) -> (gst_check::Harness, gst::Bus) {
    el.set_property_from_str("backend", "cpu");
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let h = gst_check::Harness::with_element(el, Some("sink"), Some("src"));
    (h, bus)
}

/// The CPU backend with the fixture `model` on one window of frames of `layout`: every model
/// output.
#[allow(dead_code)]
pub fn reference_window(model: &str, layout: &FrameLayout, window: [&[u8]; 4]) -> Vec<Vec<u8>> {
    let m = Arc::new(Flavr::load_path(&fixture(model)).unwrap());
    let mut b = CpuBackend::new(m).unwrap();
    b.configure(layout).unwrap();
    for (s, f) in window.iter().enumerate() {
        b.load_frame(s, f).unwrap();
    }
    let mut outs = vec![vec![0u8; layout.size]; b.n_outputs()];
    let mut slices: Vec<&mut [u8]> = outs.iter_mut().map(|v| v.as_mut_slice()).collect();
    b.interpolate([0, 1, 2, 3], &mut slices).unwrap();
    outs
}

/// The layout GStreamer gives frames of `info` (its offsets and strides), read as `format`
/// with `yuv`.
#[allow(dead_code)]
pub fn layout_of_info(
    info: &gst_video::VideoInfo,
    format: PixelFormat,
    yuv: YuvMatrix,
) -> FrameLayout {
    FrameLayout {
        format,
        width: info.width() as usize,
        height: info.height() as usize,
        offsets: info.offset().to_vec(),
        strides: info.stride().iter().map(|&s| s as usize).collect(),
        size: info.size(),
        yuv,
    }
}

/// Runs the ignored test `name` of this test binary alone, with the environment variable
/// `var=value`, prints its output, and asserts that it ran and passed.
#[allow(dead_code)]
pub fn run_child(name: &str, (var, value): (&str, &str)) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(var, value)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(out.status.success(), "{name} failed:\n{text}");
    assert!(text.contains("1 passed"), "{name} did not run:\n{text}");
}
