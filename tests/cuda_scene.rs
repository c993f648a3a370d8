// SPDX-License-Identifier: MIT OR Apache-2.0
//! Scene-cut detection's box sums on the GPU (kernels/scene.cu, src/cuda/scene.rs) against the
//! CPU's (src/scene.rs `Plane::box_sums`), which they must equal exactly, so that the cut
//! decision does not depend on where a frame was reduced:
//!
//! - every format the reduction reads, odd sizes (101x57, 7x5, 65x37, 3x200), 1920x1080,
//!   rows padded by an odd and an aligned number of bytes, the last row without padding; from
//!   host bytes (uploaded) and from device memory (the plane at an offset, as in a pitched
//!   CUDA-memory frame); saturated 16-bit RGB at 4096x2160, whose box sums pass 2^32;
//! - short planes and a stride that disagrees with the device frame are errors;
//! - the time per 1080p frame of each path is printed (`time_per_1080p_frame`, `--nocapture`);
//! - through the element: `backend=cuda` posts the same cut messages, scores included, as
//!   `backend=cpu` (one cut at a videotestsrc pattern switch, checked on the CPU on any
//!   machine), and its log says the GPU reduced; with `cudaupload ! flavrinterp
//!   cuda-memory=true` (input in CUDA memory, reduced on the GPU, not measured at all before)
//!   the same cut as in system memory.
//!
//! Without a GPU each GPU test prints "skipped: no usable CUDA GPU (...)" and passes (the CPU
//! backend's refusal is checked everywhere); `FLAVR_REQUIRE_GPU=1` (the GPU machine) makes a
//! missing GPU a failure. The CUDA-memory test also needs nvcodec's cudaupload (the GStreamer
//! bundle of tools/device/stage_cudamem.sh) and says "skipped: no cudaupload" without it.

use std::sync::Arc;

use gst::prelude::*;
use gstflavrinterp::backend::cpu::CpuBackend;
use gstflavrinterp::backend::{Backend, PixelFormat, Precision};
use gstflavrinterp::cuda::SceneReducer;
use gstflavrinterp::scene::{Plane, Reduced};

mod cuda_common;
use cuda_common::fixture;
// gst_common's fixture-free part: gst_common itself would load tests/common a second time.
#[path = "gst_common/pipeline.rs"]
mod gst_pipeline;
use gst_pipeline::{cut_to_ball_at, in_cuda_memory, init, launch_with_sink, scene_cuts};
#[path = "../src/test_rng.rs"]
mod test_rng;
use test_rng::bytes as noise;

const M2X: &str = "flavr2x_w8.safetensors";

/// Every format the reduction reads.
const FORMATS: [PixelFormat; 12] = PixelFormat::ALL;

fn plane(format: PixelFormat, width: usize, height: usize, pad: usize) -> Plane {
    let bpp = format.packed().map_or(format.sample_bytes(), |(b, _)| b);
    Plane {
        format,
        width,
        height,
        stride: width * bpp + pad,
    }
}

fn reducer() -> Option<SceneReducer> {
    let model = cuda_common::load_model(M2X);
    let engine = cuda_common::engine(&model, Precision::Fp16)?;
    Some(engine.scene_reducer().expect("scene reducer"))
}

/// GPU sums (from the host and from device memory at `off`) against the CPU's, and the same
/// reduced frame from both.
fn check(r: &mut SceneReducer, p: &Plane, bytes: &[u8], off: usize, what: &str) {
    let cpu = p.box_sums(bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
    let host = r
        .host_sums(p, bytes)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(host == cpu, "{what}: sums from host bytes differ");
    let (dev, _) = r
        .device_sums_at(p, bytes, off, 1)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(dev == cpu, "{what}: sums from device memory differ");
    assert_eq!(
        Reduced::from_box_sums(p, &dev).unwrap(),
        Reduced::from_plane(p.format, bytes, p.stride, p.width, p.height).unwrap(),
        "{what}"
    );
}

#[test]
fn gpu_box_sums_equal_the_cpu_sums_for_every_format() {
    let Some(mut r) = reducer() else {
        return;
    };
    let mut n = 0;
    for (i, &f) in FORMATS.iter().enumerate() {
        for (w, h) in [(101, 57), (1920, 1080), (7, 5), (65, 37), (3, 200)] {
            for (pad, off) in [(0, 0), (13, 40), (64, 4096)] {
                let p = plane(f, w, h, pad);
                // The last row ends at its last pixel (no padding after it).
                let bytes = noise((i * 7919 + w * 31 + pad) as u64, p.span().unwrap());
                check(&mut r, &p, &bytes, off, &format!("{f:?} {w}x{h} pad {pad}"));
                n += 1;
            }
        }
    }
    assert_eq!(n, 12 * 5 * 3);
}

#[test]
fn saturated_deep_rgb_sums_pass_32_bits() {
    let Some(mut r) = reducer() else {
        return;
    };
    let p = plane(PixelFormat::Rgba64, 4096, 2160, 0);
    let bytes = vec![0xffu8; p.span().unwrap()];
    let cpu = p.box_sums(&bytes).unwrap();
    // 64 x 60 pixels of 256 x 65535 in each box.
    assert_eq!(cpu[0], 64 * 60 * 256 * 65535);
    assert!(cpu[0] > u64::from(u32::MAX));
    check(&mut r, &p, &bytes, 0, "saturated RGBA64 4096x2160");
}

/// Prints the time per 1920x1080 frame of the sums from host bytes (upload included), from
/// device memory, and on the CPU, for NV12 (its Y plane) and BGRx (`--nocapture`); checks only
/// that they agree.
#[test]
fn time_per_1080p_frame() {
    let Some(mut r) = reducer() else {
        return;
    };
    for f in [PixelFormat::Nv12, PixelFormat::Bgrx] {
        let p = plane(f, 1920, 1080, 0);
        let bytes = noise(77, p.span().unwrap());
        let cpu = p.box_sums(&bytes).unwrap();
        let n = 20;
        let ms = |t: std::time::Instant| t.elapsed().as_secs_f64() * 1e3 / n as f64;
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(p.box_sums(&bytes).unwrap() == cpu);
        }
        let t_cpu = ms(t);
        let t = std::time::Instant::now();
        for _ in 0..n {
            assert!(r.host_sums(&p, &bytes).unwrap() == cpu);
        }
        let t_host = ms(t);
        let (dev, secs) = r.device_sums_at(&p, &bytes, 0, n).unwrap();
        assert!(dev == cpu);
        eprintln!(
            "{f:?} 1920x1080: CPU {t_cpu:.2} ms, GPU from the host {t_host:.2} ms, GPU from \
             device memory {:.3} ms per frame",
            secs * 1e3
        );
    }
}

#[test]
fn bad_planes_are_errors() {
    let Some(mut r) = reducer() else {
        return;
    };
    let p = plane(PixelFormat::Nv12, 101, 57, 3);
    let bytes = noise(5, p.span().unwrap());
    let e = r.host_sums(&p, &bytes[..bytes.len() - 1]).unwrap_err();
    assert!(e.to_string().contains("too small"), "{e}");
    let narrow = Plane { stride: 100, ..p };
    assert!(r.host_sums(&narrow, &bytes).is_err());
    let empty = Plane { width: 0, ..p };
    assert!(r.host_sums(&empty, &bytes).is_err());
    // The device frame's first stride is the plane's, and its size holds the plane.
    let frame = gstflavrinterp::backend::DeviceFrame {
        context: 0,
        ptr: 0x7f00_dead_0000,
        size: bytes.len(),
        offsets: vec![0],
        strides: vec![p.stride + 1],
    };
    let e = r.device_sums(&p, &frame).unwrap_err();
    assert!(e.to_string().contains("stride"), "{e}");
    // An address the driver does not know: an error, not a crash.
    let frame = gstflavrinterp::backend::DeviceFrame {
        strides: vec![p.stride],
        ..frame
    };
    let e = r.device_sums(&p, &frame).unwrap_err();
    assert!(e.to_string().contains("cuPointerGetAttribute"), "{e}");
    // Still usable afterwards.
    check(&mut r, &p, &bytes, 8, "NV12 after errors");
}

#[test]
fn backends_offer_gpu_sums_or_refuse() {
    let model = Arc::new(cuda_common::load_model(M2X));
    let cpu = CpuBackend::new(model.clone()).unwrap();
    let e = cpu
        .scene_sums()
        .err()
        .expect("the CPU backend has no GPU sums");
    assert!(e.to_string().contains("scene-cut"), "{e}");
    let Some(b) = cuda_common::backend(model, Precision::Fp16) else {
        return;
    };
    let mut s = b.scene_sums().expect("CUDA backend sums");
    assert!(s.name().starts_with("cuda:"), "{}", s.name());
    let p = plane(PixelFormat::Bgrx, 101, 57, 12);
    let bytes = noise(9, p.span().unwrap());
    assert_eq!(s.host(&p, &bytes).unwrap(), p.box_sums(&bytes).unwrap());
}

/// The element's log lines about where scene-cut detection runs (its DEBUG level on).
fn scene_logs() -> Arc<std::sync::Mutex<Vec<String>>> {
    static LOGS: std::sync::OnceLock<Arc<std::sync::Mutex<Vec<String>>>> =
        std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(std::sync::Mutex::new(Vec::new()));
        let l = logs.clone();
        gst::log::set_threshold_for_name("flavrinterp", gst::DebugLevel::Debug);
        // Not printed unless asked for with GST_DEBUG.
        if std::env::var_os("GST_DEBUG").is_none() {
            gst::log::remove_default_log_function();
        }
        gst::log::add_log_function(move |cat, _, _, _, _, _, msg| {
            if cat.name() == "flavrinterp"
                && let Some(m) = msg.get()
                && m.contains("scene-cut detection")
            {
                l.lock().unwrap().push(m.to_string());
            }
        });
        logs
    })
    .clone()
}

fn pts30(i: u64) -> u64 {
    i * 1_000_000_000 / 30
}

/// Runs `desc` (videotestsrc `v` switching to pattern `ball` after buffer `switch_at - 1`,
/// flavrinterp `f`, appsink `sink`) to EOS: output count, (frame, timestamp, score) of each
/// scene-cut message, and whether flavrinterp's input was in CUDA memory.
fn cuts(desc: &str, switch_at: u64) -> (usize, Vec<(u64, u64, f64)>, bool) {
    let (pipeline, sink) = launch_with_sink(desc);
    cut_to_ball_at(&pipeline, switch_at);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut count = 0;
    while sink
        .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
        .is_some()
    {
        count += 1;
    }
    let f = pipeline.by_name("f").unwrap();
    let caps = f.static_pad("sink").unwrap().current_caps().unwrap();
    let in_cuda = in_cuda_memory(&caps);
    let out = scene_cuts(&pipeline.bus().unwrap(), desc);
    pipeline.set_state(gst::State::Null).unwrap();
    (count, out, in_cuda)
}

fn desc(backend: &str, format: &str, up: &str, down: &str, cuda_memory: bool) -> String {
    format!(
        "videotestsrc name=v num-buffers=16 pattern=smpte horizontal-speed=2 ! \
         video/x-raw,format={format},width=101,height=57,framerate=30/1 ! {up} \
         flavrinterp name=f backend={backend} cuda-memory={cuda_memory} model-location={} ! \
         {down} video/x-raw,format={format} ! appsink name=sink sync=false",
        fixture(M2X).display()
    )
}

#[test]
fn element_on_the_gpu_cuts_where_the_cpu_does() {
    init();
    let logs = scene_logs();
    let mut runs = Vec::new();
    for format in ["RGB", "I420", "NV12", "BGRx"] {
        let (n, cpu, _) = cuts(&desc("cpu", format, "", "", false), 8);
        assert_eq!(n, 32, "{format}");
        assert_eq!(cpu.len(), 1, "{format}: {cpu:?}");
        assert_eq!((cpu[0].0, cpu[0].1), (8, pts30(8)), "{format}");
        runs.push((format, cpu));
    }
    let said = logs.lock().unwrap().clone();
    assert!(
        said.iter().any(|m| m.contains("does not reduce frames")),
        "the CPU backend reduces on the CPU: {said:?}"
    );
    let model = cuda_common::load_model(M2X);
    if cuda_common::engine(&model, Precision::Fp16).is_none() {
        return;
    }
    for (format, cpu) in runs {
        logs.lock().unwrap().clear();
        let (n, gpu, in_cuda) = cuts(&desc("cuda", format, "", "", false), 8);
        assert!(!in_cuda);
        assert_eq!(n, 32, "{format}");
        // The same sums, so the same score to the last bit.
        assert_eq!(gpu, cpu, "{format}");
        let said = logs.lock().unwrap().clone();
        assert!(
            said.iter()
                .any(|m| m.contains("scene-cut detection on cuda:")),
            "{format}: not reduced on the GPU: {said:?}"
        );
        assert!(!said.iter().any(|m| m.contains("failed")), "{said:?}");
    }
}

#[test]
fn cuda_memory_input_is_measured_on_the_gpu() {
    init();
    let model = cuda_common::load_model(M2X);
    if cuda_common::engine(&model, Precision::Fp16).is_none() {
        return;
    }
    if gst::ElementFactory::find("cudaupload").is_none() {
        // Not an error with FLAVR_REQUIRE_GPU: tools/device/stage.sh's GStreamer bundle has no
        // nvcodec (stage_cudamem.sh's has).
        eprintln!("skipped: no cudaupload (gst-plugins-bad's nvcodec with a GPU)");
        return;
    }
    let logs = scene_logs();
    for format in ["NV12", "RGBA"] {
        let (_, system, _) = cuts(&desc("cuda", format, "", "", false), 8);
        // A caps filter: cudaupload would pass system memory through (flavrinterp takes it).
        let up = "cudaupload ! video/x-raw(memory:CUDAMemory) !";
        let d = desc("cuda", format, up, "cudadownload !", true);
        logs.lock().unwrap().clear();
        let (n, cuda, in_cuda) = cuts(&d, 8);
        assert!(in_cuda, "{format}: input not in CUDA memory");
        let said = logs.lock().unwrap().clone();
        assert!(
            !said
                .iter()
                .any(|m| m.contains("is off") || m.contains("failed")),
            "{format}: {said:?}"
        );
        assert_eq!(n, 32, "{format}");
        // cudaupload's pitched frames, the same pixels: the same cut and score.
        assert_eq!(cuda, system, "{format}");
        assert_eq!(cuda.len(), 1, "{format}: {cuda:?}");
    }
}
