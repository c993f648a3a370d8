// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 17 on any machine: `memory:CUDAMemory` in the pad templates, and system memory
//! negotiated wherever CUDA memory is not asked for (`cuda-memory` off, the default) or cannot
//! be used (the CPU backend, libgstcuda or the GPU missing) even when downstream asks for CUDA
//! memory first; the plugin loads and runs without libgstcuda. The GPU path itself is
//! tests/cuda_memory.rs.

use gst::prelude::*;

mod gst_common;
use gst_common::{fixture, in_cuda_memory, init, launch_with_sink, run_child, wait_for_eos};

const M2X: &str = "flavr2x_w8.safetensors";
/// Names the library the element opens instead of libgstcuda-1.0.so.0.
const LIBRARY_ENV: &str = "FLAVR_GSTCUDA_LIBRARY";

/// Runs `videotestsrc ! NV12 ! flavrinterp backend=BACKEND cuda-memory=CUDA_MEMORY ! (CUDA
/// memory first, then system) ! appsink` over 6 frames; returns the caps flavrinterp gave and
/// the frames out.
fn run(backend: &str, cuda_memory: bool) -> (gst::Caps, usize) {
    let desc = format!(
        "videotestsrc num-buffers=6 ! video/x-raw,format=NV12,width=64,height=48,framerate=30/1 \
         ! flavrinterp name=f backend={backend} cuda-memory={cuda_memory} model-location={} \
         ! video/x-raw(memory:CUDAMemory);video/x-raw ! appsink name=sink sync=false",
        fixture(M2X).display()
    );
    let (pipeline, sink) = launch_with_sink(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = 0;
    while let Some(s) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        let b = s.buffer().unwrap();
        assert_eq!(b.size(), 64 * 48 * 3 / 2);
        frames += 1;
    }
    wait_for_eos(&pipeline.bus().unwrap(), gst::ClockTime::from_seconds(60))
        .unwrap_or_else(|e| panic!("pipeline failed: {e}"));
    let caps = pipeline
        .by_name("f")
        .unwrap()
        .static_pad("src")
        .unwrap()
        .current_caps()
        .expect("negotiated");
    pipeline.set_state(gst::State::Null).unwrap();
    (caps, frames)
}

#[test]
fn templates_offer_cuda_memory_for_six_formats() {
    init();
    let factory = gst::ElementFactory::find("flavrinterp").unwrap();
    for t in factory.static_pad_templates() {
        let caps = t.caps();
        let cuda: Vec<_> = caps
            .iter_with_features()
            .filter(|(_, f)| f.contains("memory:CUDAMemory"))
            .map(|(s, _)| s.to_owned())
            .collect();
        assert_eq!(cuda.len(), 1, "{}: {caps}", t.name_template());
        let formats = cuda[0].get::<gst::List>("format").unwrap();
        let mut names: Vec<&str> = formats.iter().map(|v| v.get::<&str>().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["BGRA", "BGRx", "I420", "NV12", "RGBA", "RGBx"]);
        // System memory keeps every format, the 10-bit ones included.
        assert!(
            caps.can_intersect(
                &gst::Caps::builder("video/x-raw")
                    .field("format", "P010_10LE")
                    .build()
            )
        );
    }
}

/// `cuda-memory` is off unless set.
#[test]
fn cuda_memory_is_off_by_default() {
    init();
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    assert!(!el.property::<bool>("cuda-memory"));
    el.set_property("cuda-memory", true);
    assert!(el.property::<bool>("cuda-memory"));
}

/// With `cuda-memory` off (the default) the element negotiates as it did before CUDA memory:
/// system memory, though downstream asks for CUDA memory first and `backend=auto` may open a
/// GPU with nvcodec present.
#[test]
fn cuda_memory_off_negotiates_system_memory() {
    let (caps, frames) = run("auto", false);
    assert!(!in_cuda_memory(&caps), "{caps}");
    assert!(frames > 6, "{frames} frames out of 6");
    // The caps query answers system memory only, in a state where a GPU could be opened.
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    el.set_state(gst::State::Ready).unwrap();
    let any = el.static_pad("sink").unwrap().query_caps(None);
    assert!(!any.is_empty());
    assert!(
        any.iter_with_features()
            .all(|(_, f)| !f.contains("memory:CUDAMemory")),
        "{any}"
    );
    el.set_state(gst::State::Null).unwrap();
}

/// The CPU backend never offers CUDA memory, even with `cuda-memory` on: downstream's first
/// choice is refused.
#[test]
fn cpu_backend_negotiates_system_memory() {
    let (caps, frames) = run("cpu", true);
    assert!(!in_cuda_memory(&caps), "{caps}");
    assert!(frames > 6, "{frames} frames out of 6");
}

/// A CUDA memory caps query answers only system memory while the element cannot use it.
#[test]
fn caps_query_drops_cuda_memory_when_unusable() {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property_from_str("backend", "cpu")
        .property("cuda-memory", true)
        .build()
        .unwrap();
    let filter = gst::Caps::builder("video/x-raw")
        .features(["memory:CUDAMemory"])
        .field("format", "NV12")
        .build();
    let sink = el.static_pad("sink").unwrap();
    let caps = sink.query_caps(Some(&filter));
    assert!(caps.is_empty(), "{caps}");
    let any = sink.query_caps(None);
    assert!(!any.is_empty());
    assert!(
        any.iter_with_features()
            .all(|(_, f)| !f.contains("memory:CUDAMemory")),
        "{any}"
    );
}

/// Before the element starts, with `cuda-memory` on, the CUDA backend asked and libgstcuda
/// usable (it and the NVIDIA driver present), its caps offer CUDA memory, so that a CUDA-memory caps filter next to it links (as
/// in `nvh264dec ! video/x-raw(memory:CUDAMemory) ! flavrinterp`); negotiation, after start,
/// gives the real answer. With the property off they do not.
#[test]
fn cuda_memory_is_offered_before_start_where_it_may_be_used() {
    init();
    // libgstcuda is usable where it and the CUDA driver library open (the element loads the
    // driver through it).
    for lib in ["libgstcuda-1.0.so.0", "libcuda.so.1"] {
        // SAFETY: only probes whether the library opens.
        if unsafe { libloading::Library::new(lib) }.is_err() {
            eprintln!("skipped: no {lib} on this machine");
            return;
        }
    }
    let filter = gst::Caps::builder("video/x-raw")
        .features(["memory:CUDAMemory"])
        .field("format", "NV12")
        .build();
    for on in [true, false] {
        let el = gst::ElementFactory::make("flavrinterp")
            .property_from_str("backend", "cuda")
            .property("cuda-memory", on)
            .build()
            .unwrap();
        let caps = el.static_pad("sink").unwrap().query_caps(Some(&filter));
        assert_eq!(!caps.is_empty(), on, "cuda-memory={on}: {caps}");
    }
}

/// Without libgstcuda (a library name that does not exist) the plugin loads, `backend=auto`
/// runs, and system memory is negotiated.
#[test]
fn runs_without_libgstcuda() {
    run_child(
        "child_without_libgstcuda",
        (LIBRARY_ENV, "libgstcuda-missing-for-this-test.so.0"),
    );
}

#[test]
#[ignore = "run by runs_without_libgstcuda in a child process"]
fn child_without_libgstcuda() {
    assert!(std::env::var(LIBRARY_ENV).is_ok());
    let (caps, frames) = run("auto", true);
    assert!(!in_cuda_memory(&caps), "{caps}");
    assert!(frames > 6, "{frames} frames out of 6");
}
