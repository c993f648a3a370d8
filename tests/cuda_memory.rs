// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 17 on the GPU: frames in GStreamer's CUDA memory.
//!
//! - The engine's device entry points against its host ones, on one engine (so the same
//!   convolution plans): pitched device frames in, pitched device frames out, byte for byte
//!   the host path's bytes, for NV12, I420, RGBA and BGRx; an address the driver does not
//!   know is an error, not a crash.
//! - `videotestsrc ! cudaupload ! flavrinterp backend=cuda cuda-memory=true ! cudadownload !
//!   appsink` against the same frames in system memory: CUDA memory negotiated on both pads of
//!   flavrinterp, one CUDA context in the whole pipeline (the one cudadownload made, found by
//!   flavrinterp and handed on to cudaupload: exactly one `have-context` of `gst.cuda.context`
//!   on the bus), the same count and times, originals bit-exact, new frames equal or within 2
//!   levels (two element instances plan their convolutions on their own; the one-engine test
//!   above is the byte-for-byte check). With `cuda-memory=false` the same pipeline negotiates
//!   system memory.
//!
//! Skipped without a GPU, or without nvcodec's cudaupload for the pipeline test;
//! `FLAVR_REQUIRE_GPU=1` (the GPU machine) makes either a failure.

use gst::prelude::*;
use gst_video::prelude::*;
use gstflavrinterp::backend::{DeviceFrame, FrameLayout, PixelFormat, Precision, YuvMatrix};

mod cuda_common;
use cuda_common::fixture;
// gst_common's fixture-free part: gst_common itself would load tests/common a second time.
#[path = "gst_common/pipeline.rs"]
mod gst_pipeline;
use gst_pipeline::{in_cuda_memory, init, launch_with_sink, wait_for_eos};

const M2X: &str = "flavr2x_w8.safetensors";

fn required() -> bool {
    std::env::var_os("FLAVR_REQUIRE_GPU").is_some()
}

/// A caps-style layout of `format` at `w` x `h` (even sizes: rows without padding, planes one
/// after the other, as GStreamer lays them out).
fn layout(format: PixelFormat, w: usize, h: usize) -> FrameLayout {
    FrameLayout::packed(format, w, h, YuvMatrix::BT709)
}

/// Deterministic bytes for frame `t`: smooth in x and y, moving with t.
fn bytes(n: usize, t: usize) -> Vec<u8> {
    (0..n)
        .map(|i| ((i * 7 + t * 13 + (i / 97) * 3) % 251) as u8)
        .collect()
}

#[test]
fn device_path_matches_host_path_byte_for_byte() {
    let model = cuda_common::load_model(M2X);
    let Some(mut engine) = cuda_common::engine(&model, Precision::Fp16) else {
        return;
    };
    for (format, w, h) in [
        (PixelFormat::Nv12, 200, 120),
        (PixelFormat::I420, 200, 120),
        (PixelFormat::Rgba, 96, 64),
        (PixelFormat::Bgrx, 96, 64),
    ] {
        let l = layout(format, w, h);
        engine.configure(&l).unwrap();
        let frames: Vec<Vec<u8>> = (0..4).map(|t| bytes(l.size, t)).collect();
        let window = [
            &frames[0][..],
            &frames[1][..],
            &frames[2][..],
            &frames[3][..],
        ];
        for pad in [0, 56] {
            let (host, dev) = engine.device_parity(window, pad).unwrap();
            assert_eq!(host.len(), dev.len());
            for (i, (a, b)) in host.iter().zip(&dev).enumerate() {
                let diff = a.iter().zip(b).filter(|(x, y)| x != y).count();
                assert_eq!(
                    diff, 0,
                    "{format:?} {w}x{h} pad {pad}: output {i}, {diff} bytes differ"
                );
            }
        }
    }
}

#[test]
fn unknown_device_address_is_an_error() {
    let model = std::sync::Arc::new(cuda_common::load_model(M2X));
    let Some(mut b) = cuda_common::backend(model, Precision::Fp16) else {
        return;
    };
    b.configure(&layout(PixelFormat::Nv12, 64, 48)).unwrap();
    let bogus = DeviceFrame {
        context: 0,
        ptr: 0x7f00_dead_0000,
        size: 64 * 48 * 3 / 2,
        offsets: vec![0, 64 * 48],
        strides: vec![64, 64],
    };
    let e = b.load_frame_device(0, &bogus).unwrap_err().to_string();
    assert!(e.contains("cuPointerGetAttribute"), "{e}");
    let e = b
        .interpolate_device([0, 1, 2, 3], &[bogus])
        .unwrap_err()
        .to_string();
    assert!(e.contains("cuPointerGetAttribute"), "{e}");
}

/// (pts, bytes per plane row by row) of each frame of `sink`, the caps flavrinterp
/// negotiated on its sink and source pads, and the CUDA contexts posted in `have-context`
/// messages (their object names, in order).
struct Run {
    frames: Vec<(u64, Vec<u8>)>,
    caps: (gst::Caps, gst::Caps),
    contexts: Vec<String>,
}

/// `cuda`: cudaupload and cudadownload around flavrinterp; `cuda_memory`: its property.
fn run(format: &str, cuda: bool, cuda_memory: bool) -> Run {
    // cudaupload passes system memory through when downstream takes it: with the property on,
    // a caps filter asks it for CUDA memory (it links before the element starts, negotiates
    // after).
    let (up, down) = match (cuda, cuda_memory) {
        (true, true) => (
            "cudaupload ! video/x-raw(memory:CUDAMemory) !",
            "cudadownload !",
        ),
        (true, false) => ("cudaupload !", "cudadownload !"),
        _ => ("", ""),
    };
    let desc = format!(
        "videotestsrc num-buffers=10 pattern=ball ! \
         video/x-raw,format={format},width=200,height=120,framerate=30/1 ! {up} \
         flavrinterp name=f backend=cuda cuda-memory={cuda_memory} model-location={} ! {down} \
         video/x-raw,format={format} ! appsink name=sink sync=false",
        fixture(M2X).display()
    );
    let (pipeline, sink) = launch_with_sink(&desc);
    let contexts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    {
        let contexts = contexts.clone();
        pipeline.bus().unwrap().set_sync_handler(move |_, msg| {
            if let gst::MessageView::HaveContext(m) = msg.view() {
                let c = m.context();
                if c.context_type() == "gst.cuda.context" {
                    let name = c
                        .structure()
                        .get::<gst::Object>("gst.cuda.context")
                        .map(|o| o.name().to_string())
                        .unwrap_or_else(|_| format!("{:?}", c.structure()));
                    contexts.lock().unwrap().push(name);
                }
            }
            gst::BusSyncReply::Pass
        });
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut frames = Vec::new();
    while let Some(s) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        let info = gst_video::VideoInfo::from_caps(s.caps().unwrap()).unwrap();
        let b = s.buffer().unwrap();
        let f = gst_video::VideoFrameRef::from_buffer_ref_readable(b, &info).unwrap();
        let mut tight = Vec::new();
        for p in 0..f.n_planes() {
            let stride = f.plane_stride()[p as usize] as usize;
            let data = f.plane_data(p).unwrap();
            let comp = (0..4)
                .find(|&c| info.format_info().plane()[c] == p)
                .unwrap_or(0);
            let rows = info.format_info().scale_height(comp as u8, info.height()) as usize;
            let row = info.format_info().pixel_stride()[comp] as usize
                * info.format_info().scale_width(comp as u8, info.width()) as usize;
            for r in 0..rows {
                tight.extend_from_slice(&data[r * stride..r * stride + row]);
            }
        }
        frames.push((b.pts().unwrap().nseconds(), tight));
    }
    wait_for_eos(&pipeline.bus().unwrap(), gst::ClockTime::from_seconds(120))
        .unwrap_or_else(|e| panic!("{desc}: {e}"));
    let f = pipeline.by_name("f").unwrap();
    let caps = |pad: &str| f.static_pad(pad).unwrap().current_caps().unwrap();
    let caps = (caps("sink"), caps("src"));
    pipeline.set_state(gst::State::Null).unwrap();
    let contexts = contexts.lock().unwrap().clone();
    Run {
        frames,
        caps,
        contexts,
    }
}

#[test]
fn cudaupload_to_cudadownload_matches_system_memory() {
    init();
    let model = cuda_common::load_model(M2X);
    if cuda_common::engine(&model, Precision::Fp16).is_none() {
        return;
    }
    if gst::ElementFactory::find("cudaupload").is_none() {
        assert!(
            !required(),
            "FLAVR_REQUIRE_GPU is set but nvcodec's cudaupload is missing"
        );
        eprintln!("skipped: no cudaupload (gst-plugins-bad's nvcodec with a GPU)");
        return;
    }
    for format in ["NV12", "I420", "RGBA", "BGRx"] {
        let gpu = run(format, true, true);
        assert!(
            in_cuda_memory(&gpu.caps.0) && in_cuda_memory(&gpu.caps.1),
            "{format}: flavrinterp did not negotiate CUDA memory: {:?}",
            gpu.caps
        );
        // One context: flavrinterp takes the one cudadownload made and posted, and makes none.
        println!("{format}: CUDA contexts posted: {:?}", gpu.contexts);
        assert_eq!(
            gpu.contexts.len(),
            1,
            "{format}: more than one CUDA context in the pipeline: {:?}",
            gpu.contexts
        );
        let off = run(format, true, false);
        assert!(
            !in_cuda_memory(&off.caps.0) && !in_cuda_memory(&off.caps.1),
            "{format}: cuda-memory=false negotiated CUDA memory: {:?}",
            off.caps
        );
        assert!(
            off.frames.len() > 10,
            "{format}: {} frames",
            off.frames.len()
        );
        let sys = run(format, false, false);
        assert!(!in_cuda_memory(&sys.caps.0), "{:?}", sys.caps);
        assert_eq!(gpu.frames.len(), sys.frames.len(), "{format}");
        assert!(
            gpu.frames.len() > 10,
            "{format}: {} frames",
            gpu.frames.len()
        );
        let (mut max, mut differ) = (0u8, 0);
        for (n, (a, b)) in sys.frames.iter().zip(&gpu.frames).enumerate() {
            assert_eq!(a.0, b.0, "{format} frame {n}: time");
            if n % 2 == 0 {
                assert!(a.1 == b.1, "{format}: original {n} not bit-exact");
            } else {
                let d =
                    a.1.iter()
                        .zip(&b.1)
                        .map(|(x, y)| x.abs_diff(*y))
                        .max()
                        .unwrap();
                max = max.max(d);
                differ += usize::from(d > 0);
            }
        }
        println!("{format}: new frames differing {differ}, largest difference {max}");
        assert!(max <= 2, "{format}: new frames differ by {max}");
    }
}
