// SPDX-License-Identifier: MIT OR Apache-2.0
//! gst-flavr: frame-rate interpolation with the FLAVR network.
//!
//! Where things live:
//! - [`flavrinterp`]: the GStreamer element (the only module that knows GStreamer).
//! - [`window`]: the four-frame window and the output schedule (timestamps, drain).
//! - [`model`]: the network description, weights and checkpoint loaders.
//! - [`scene`]: scene-cut detection on a reduced luma frame.
//! - [`backend`]: the inference interface, the CPU backend and the pixel conversions.
//! - [`dispatch`]: windows spread over several engines and handed back in order.
//! - [`cuda`]: the CUDA engine (the only module that touches cudarc), built with the `cuda`
//!   cargo feature (on by default). Without it, `cuda` is a stand-in whose `open` fails with
//!   an error naming the feature (`src/cuda_disabled.rs`).

pub mod backend;
#[cfg(feature = "cuda")]
pub mod cuda;
#[cfg(not(feature = "cuda"))]
#[path = "cuda_disabled.rs"]
pub mod cuda;
pub mod dispatch;
pub mod error;
pub mod flavrinterp;
pub mod model;
pub mod scene;
#[cfg(test)]
mod test_rng;
pub mod window;

use gst::glib;

fn plugin_init(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    flavrinterp::register(plugin)
}

gst::plugin_define!(
    flavrinterp,
    env!("CARGO_PKG_DESCRIPTION"),
    plugin_init,
    concat!(env!("CARGO_PKG_VERSION"), "-", env!("COMMIT_ID")),
    "MIT/X11",
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_NAME"),
    env!("CARGO_PKG_REPOSITORY"),
    env!("BUILD_REL_DATE")
);
