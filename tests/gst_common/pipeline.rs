// SPDX-License-Identifier: MIT OR Apache-2.0
//! GStreamer set-up and bus waits that need no fixtures. `gst_common` re-exports them; a test
//! that loads `cuda_common` (which includes tests/common as `gst_common` does) includes this
//! file alone with `#[path = "gst_common/pipeline.rs"]`, so that no file is loaded twice.
#![allow(dead_code)]

use std::sync::Once;

use gst::prelude::*;

/// Initialises GStreamer once and registers `flavrinterp` from this crate (no plugin path).
pub fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        gst::init().unwrap();
        gstflavrinterp::plugin_register_static().expect("register flavrinterp");
    });
}

/// Initialises GStreamer and parses the pipeline `desc`; returns it and its element `sink`.
pub fn launch_with_sink(desc: &str) -> (gst::Pipeline, gst::Element) {
    init();
    let pipeline = gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = pipeline.by_name("sink").unwrap();
    (pipeline, sink)
}

/// A hard cut: the videotestsrc named `v` in `pipeline` switches to pattern `ball` after its
/// buffer `at - 1`.
pub fn cut_to_ball_at(pipeline: &gst::Pipeline, at: u64) {
    let src = pipeline.by_name("v").unwrap();
    let s2 = src.clone();
    src.static_pad("src")
        .unwrap()
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(gst::PadProbeData::Buffer(b)) = &info.data
                && b.offset() + 1 == at
            {
                s2.set_property_from_str("pattern", "ball");
            }
            gst::PadProbeReturn::Ok
        });
}

/// The `flavrinterp-scene-cut` element messages left on `bus`, in order, as (frame,
/// timestamp in ns, score); panics on an error message (`what` names the run).
pub fn scene_cuts(bus: &gst::Bus, what: &str) -> Vec<(u64, u64, f64)> {
    let mut out = Vec::new();
    while let Some(m) = bus.pop_filtered(&[gst::MessageType::Element, gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = m.view() {
            panic!("{what}: {e:?}");
        }
        let s = m.structure().unwrap();
        if s.name() == "flavrinterp-scene-cut" {
            let ts = s.get::<Option<gst::ClockTime>>("timestamp").unwrap();
            out.push((
                s.get::<u64>("frame").unwrap(),
                ts.unwrap().nseconds(),
                s.get::<f64>("score").unwrap(),
            ));
        }
    }
    out
}

/// Waits up to `limit` for a message of type `kind` on `bus` (EOS, ASYNC_DONE, ...): `Err`
/// with the error's text and details when an error comes first, or saying that none came.
pub fn wait_for(
    bus: &gst::Bus,
    kind: gst::MessageType,
    limit: gst::ClockTime,
) -> Result<(), String> {
    let msg = bus
        .timed_pop_filtered(limit, &[kind, gst::MessageType::Error])
        .ok_or_else(|| format!("no {kind:?} within {limit}"))?;
    match msg.view() {
        gst::MessageView::Error(e) => Err(format!("error: {} ({:?})", e.error(), e.debug())),
        _ => Ok(()),
    }
}

/// [`wait_for`] the end of the stream.
pub fn wait_for_eos(bus: &gst::Bus, limit: gst::ClockTime) -> Result<(), String> {
    wait_for(bus, gst::MessageType::Eos, limit)
}

/// Whether the first structure of `caps` is in GStreamer's CUDA memory.
pub fn in_cuda_memory(caps: &gst::CapsRef) -> bool {
    caps.features(0)
        .is_some_and(|f| f.contains("memory:CUDAMemory"))
}
