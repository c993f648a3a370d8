// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element's properties: their settings, specs, and one setter for all of them.

use gst::glib;
use gst::prelude::*;

use super::{BackendKind, PrecisionKind};

const DEFAULT_FACTOR: u32 = 2;
const DEFAULT_MODEL_LOCATION: &str = "";
const DEFAULT_BACKEND: BackendKind = BackendKind::Auto;
const DEFAULT_DEVICE_ID: u32 = 0;
const DEFAULT_DEVICES: &str = "";
const DEFAULT_PRECISION: PrecisionKind = PrecisionKind::Fp16;
const DEFAULT_MAX_IN_FLIGHT: u32 = 1;
pub(super) const MAX_IN_FLIGHT: u32 = 4;
const DEFAULT_SCENE_THRESHOLD: f64 = crate::scene::DEFAULT_THRESHOLD;
/// Off until the zero-copy path is measured on a GPU (issue 17).
const DEFAULT_CUDA_MEMORY: bool = false;

#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub factor: u32,
    pub model_location: String,
    pub backend: BackendKind,
    pub device_id: u32,
    pub devices: String,
    pub precision: PrecisionKind,
    pub max_in_flight: u32,
    pub scene_threshold: f64,
    /// Output frame rate; 0/1: the factor decides (or downstream caps, `rate_caps.rs`).
    pub framerate: gst::Fraction,
    /// Offer `video/x-raw(memory:CUDAMemory)` on both pads where it can be used.
    pub cuda_memory: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            factor: DEFAULT_FACTOR,
            model_location: DEFAULT_MODEL_LOCATION.into(),
            backend: DEFAULT_BACKEND,
            device_id: DEFAULT_DEVICE_ID,
            devices: DEFAULT_DEVICES.into(),
            precision: DEFAULT_PRECISION,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            scene_threshold: DEFAULT_SCENE_THRESHOLD,
            framerate: gst::Fraction::new(0, 1),
            cuda_memory: DEFAULT_CUDA_MEMORY,
        }
    }
}

pub(super) fn specs() -> Vec<glib::ParamSpec> {
    let d = Settings::default();
    vec![
        glib::ParamSpecUInt::builder("factor")
            .nick("Factor")
            .blurb(
                "Frame-rate multiplier: 2, 4 or 8 (factor - 1 new frames between every two input \
                 frames; 3, 5, 6 and 7 fail at start). Cannot change while running.",
            )
            .minimum(2)
            .maximum(8)
            .default_value(d.factor)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("model-location")
            .nick("Model location")
            .blurb(
                "FLAVR checkpoint: a released FLAVR_2x/4x/8x.pth (PyTorch zip or legacy) or a \
                 .safetensors file. Empty: the model built into the plugin (our own 2x model). \
                 Cannot change while running.",
            )
            .default_value(Some(DEFAULT_MODEL_LOCATION))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("backend", d.backend)
            .nick("Backend")
            .blurb("Inference backend. Cannot change while running.")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("device-id")
            .nick("Device ID")
            .blurb("CUDA device to run on (backend=cuda or auto)")
            .default_value(d.device_id)
            .mutable_ready()
            .build(),
        glib::ParamSpecString::builder("devices")
            .nick("Devices")
            .blurb(
                "Engines to spread windows over: GPU ids \"0,1,2,3\" (an id may repeat: two \
                 engines on one GPU), \"all\" (every GPU), \"cpu:N\" (N CPU engines; with \
                 backend=cpu a list also means one CPU engine per entry). Empty: one engine on \
                 device-id. Cannot change while running.",
            )
            .default_value(Some(DEFAULT_DEVICES))
            .mutable_ready()
            .build(),
        glib::ParamSpecEnum::builder_with_default("precision", d.precision)
            .nick("Precision")
            .blurb("Arithmetic of the CUDA backend (the CPU backend always uses fp32)")
            .mutable_ready()
            .build(),
        glib::ParamSpecUInt::builder("max-in-flight")
            .nick("Windows in flight")
            .blurb(
                "Windows queued to the network thread while the streaming thread goes on, per \
                 engine (adds as many input frames of latency per engine; 0: wait for each \
                 window). Cannot change while running.",
            )
            .minimum(0)
            .maximum(MAX_IN_FLIGHT)
            .default_value(d.max_in_flight)
            .mutable_ready()
            .build(),
        glib::ParamSpecDouble::builder("scene-threshold")
            .nick("Scene-cut threshold")
            .blurb(
                "Score (0 to 1) from which two input frames belong to different shots: nothing \
                 is interpolated across a cut, the new frames there are copies of the nearer \
                 original, and a flavrinterp-scene-cut message is posted. Lower finds more cuts; \
                 0 turns detection off. Can change while playing.",
            )
            .minimum(f64::MIN)
            .maximum(f64::MAX)
            .default_value(d.scene_threshold)
            .mutable_playing()
            .build(),
        gst::ParamSpecFraction::builder("framerate")
            .nick("Output frame rate")
            .blurb(
                "Output frame rate, any positive fraction at or above the input's (e.g. \
                 60000/1001 from 24000/1001): each output frame is made at its phase between \
                 two inputs, snapped to 1/8 of an input interval. 0/1: the factor decides, or \
                 a rate downstream fixes. Cannot change while running.",
            )
            .default_value(d.framerate)
            .mutable_ready()
            .build(),
        glib::ParamSpecBoolean::builder("cuda-memory")
            .nick("CUDA memory")
            .blurb(
                "Offer video/x-raw(memory:CUDAMemory) on both pads when nvcodec's libgstcuda and \
                 a CUDA engine are available; experimental until measured. Off: system memory \
                 only. Cannot change while running.",
            )
            .default_value(d.cuda_memory)
            .mutable_ready()
            .build(),
    ]
}

/// Stores `value` in `field` unless `running`; whether it differs from the current value.
fn put<T>(field: &mut T, value: &glib::Value, running: bool) -> bool
where
    T: PartialEq + for<'a> glib::value::FromValue<'a>,
{
    let v: T = value.get().expect("type checked upstream");
    let changed = v != *field;
    if !running {
        *field = v;
    }
    changed
}

impl Settings {
    /// Sets property `name` (when not `running`); whether the value differs from the current.
    pub fn set(&mut self, name: &str, value: &glib::Value, running: bool) -> bool {
        match name {
            "factor" => put(&mut self.factor, value, running),
            "model-location" => {
                let v = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                put(&mut self.model_location, &v.to_value(), running)
            }
            "backend" => put(&mut self.backend, value, running),
            "device-id" => put(&mut self.device_id, value, running),
            "devices" => {
                let v = value
                    .get::<Option<String>>()
                    .expect("type checked upstream")
                    .unwrap_or_default();
                put(&mut self.devices, &v.to_value(), running)
            }
            "precision" => put(&mut self.precision, value, running),
            "max-in-flight" => put(&mut self.max_in_flight, value, running),
            "framerate" => put(&mut self.framerate, value, running),
            "cuda-memory" => put(&mut self.cuda_memory, value, running),
            _ => unimplemented!("property {name}"),
        }
    }

    pub fn get(&self, name: &str) -> glib::Value {
        match name {
            "factor" => self.factor.to_value(),
            "model-location" => self.model_location.to_value(),
            "backend" => self.backend.to_value(),
            "device-id" => self.device_id.to_value(),
            "devices" => self.devices.to_value(),
            "precision" => self.precision.to_value(),
            "max-in-flight" => self.max_in_flight.to_value(),
            "scene-threshold" => self.scene_threshold.to_value(),
            "framerate" => self.framerate.to_value(),
            "cuda-memory" => self.cuda_memory.to_value(),
            _ => unimplemented!("property {name}"),
        }
    }
}
