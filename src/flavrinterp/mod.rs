// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `flavrinterp` element: raises the frame rate of raw video with the FLAVR network.

use gst::glib;
use gst::prelude::*;

mod caps;
mod cheap;
mod cuda_mem;
mod cuda_path;
mod engines;
mod imp;
mod inflight;
mod net;
mod props;
mod qos;
mod queries;
mod rate_caps;
mod scene_cut;
mod stats;
mod stream;

glib::wrapper! {
    pub struct FlavrInterp(ObjectSubclass<imp::FlavrInterp>)
        @extends gst_base::BaseTransform, gst::Element, gst::Object;
}

/// Which inference backend the element uses (property `backend`).
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFlavrInterpBackend")]
pub enum BackendKind {
    /// CUDA when it can be opened; otherwise a warning and the CPU backend.
    #[default]
    #[enum_value(
        name = "Auto: CUDA if it can be opened, else CPU (with a warning)",
        nick = "auto"
    )]
    Auto = 0,
    #[enum_value(name = "CUDA: fail at start when no usable GPU", nick = "cuda")]
    Cuda = 1,
    #[enum_value(name = "CPU: exact float32 reference (slow)", nick = "cpu")]
    Cpu = 2,
}

/// Arithmetic of the CUDA backend (property `precision`); the CPU backend always uses fp32.
#[derive(Debug, Eq, PartialEq, Ord, PartialOrd, Hash, Clone, Copy, Default, glib::Enum)]
#[repr(u32)]
#[enum_type(name = "GstFlavrInterpPrecision")]
pub enum PrecisionKind {
    #[enum_value(name = "fp32: float32 everywhere (exact mode)", nick = "fp32")]
    Fp32 = 0,
    #[default]
    #[enum_value(
        name = "fp16: float16 tensor cores, float32 accumulation",
        nick = "fp16"
    )]
    Fp16 = 1,
    #[enum_value(
        name = "bf16: bfloat16 tensor cores, float32 accumulation",
        nick = "bf16"
    )]
    Bf16 = 2,
}

impl From<PrecisionKind> for crate::backend::Precision {
    fn from(p: PrecisionKind) -> Self {
        match p {
            PrecisionKind::Fp32 => crate::backend::Precision::Fp32,
            PrecisionKind::Fp16 => crate::backend::Precision::Fp16,
            PrecisionKind::Bf16 => crate::backend::Precision::Bf16,
        }
    }
}

pub fn register(plugin: &gst::Plugin) -> Result<(), glib::BoolError> {
    #[cfg(feature = "doc")]
    {
        BackendKind::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
        PrecisionKind::static_type().mark_as_plugin_api(gst::PluginAPIFlags::empty());
    }
    gst::Element::register(
        Some(plugin),
        "flavrinterp",
        gst::Rank::NONE,
        FlavrInterp::static_type(),
    )
}
