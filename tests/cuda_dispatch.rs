// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 18 on one GPU: two CUDA engines on the same device (`devices=0,0`) against the single
//! CUDA engine: the same frames in the same order and times, originals bit-exact, new frames
//! equal or within 2 levels (the engines plan their convolutions on their own); and engine 1
//! failing after 2 windows (`FLAVR_FAULT_ENGINE=1:after:2`, in a child process): a warning,
//! every frame out. Skipped without a GPU (`FLAVR_REQUIRE_GPU=1` makes that a failure).

use gst::prelude::*;
use gstflavrinterp::backend::Precision;
use gstflavrinterp::model::Flavr;

mod gst_common;
use gst_common::{fixture, init, run_child};

const M2X: &str = "flavr2x_w8.safetensors";
const W: usize = 64;
const H: usize = 48;
const FRAME: u64 = 33_333_333;

fn caps() -> String {
    format!("video/x-raw,format=RGB,width={W},height={H},framerate=30/1")
}

/// Whether a CUDA engine opens on GPU 0; says "skipped" when not (a failure with
/// FLAVR_REQUIRE_GPU=1).
fn gpu() -> bool {
    let model = Flavr::load_path(&fixture(M2X)).unwrap();
    let options = gstflavrinterp::cuda::EngineOptions::from_env().unwrap();
    match gstflavrinterp::cuda::open_engine(&model, 0, Precision::Fp32, options) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var_os("FLAVR_REQUIRE_GPU").is_none(),
                "FLAVR_REQUIRE_GPU is set but the CUDA engine does not open: {e}"
            );
            eprintln!("skipped: no usable CUDA GPU ({e})");
            false
        }
    }
}

fn frame(i: u64) -> gst::Buffer {
    let mut v = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            for c in 0..3 {
                let t = (x as f32 - i as f32 * 1.5) * 0.3 + y as f32 * 0.2 + c as f32;
                v.push(((0.5 + 0.45 * t.sin()) * 255.0) as u8);
            }
        }
    }
    let mut b = gst::Buffer::from_mut_slice(v);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(i * FRAME));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME));
    }
    b
}

struct Out {
    frames: Vec<(u64, u64, Vec<u8>)>,
    warnings: Vec<String>,
    errors: Vec<String>,
}

fn run(factor: &str, devices: &str, n: u64) -> Out {
    init();
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    el.set_property_from_str("backend", "cuda");
    el.set_property_from_str("precision", "fp32");
    el.set_property_from_str("factor", factor);
    el.set_property_from_str("model-location", fixture(M2X).to_str().unwrap());
    el.set_property_from_str("devices", devices);
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps_str(&caps());
    for i in 0..n {
        if h.push(frame(i)).is_err() {
            break;
        }
    }
    h.push_event(gst::event::Eos::new());
    let frames = std::iter::from_fn(|| h.try_pull())
        .map(|b| {
            (
                b.pts().unwrap().nseconds(),
                b.offset(),
                b.map_readable().unwrap().to_vec(),
            )
        })
        .collect();
    let (mut warnings, mut errors) = (Vec::new(), Vec::new());
    while let Some(m) = bus.pop() {
        match m.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => errors.push(e.error().to_string()),
            _ => {}
        }
    }
    Out {
        frames,
        warnings,
        errors,
    }
}

/// Checks `multi` against `single`: counts, times, offsets, originals; the largest difference
/// of a new frame's bytes, and how many new frames differ at all.
fn compare(single: &Out, multi: &Out, factor: u64) -> (u8, usize) {
    assert!(multi.errors.is_empty(), "{:?}", multi.errors);
    assert_eq!(multi.frames.len(), single.frames.len());
    let (mut max, mut differ) = (0u8, 0);
    for (n, (a, b)) in single.frames.iter().zip(&multi.frames).enumerate() {
        assert_eq!((a.0, a.1), (b.0, b.1), "frame {n}: times or offset");
        if (n as u64).is_multiple_of(factor) {
            assert!(a.2 == b.2, "original {n} not bit-exact");
            let i = n as u64 / factor;
            assert!(
                b.2 == frame(i).map_readable().unwrap().to_vec(),
                "original {i}"
            );
        } else {
            let d =
                a.2.iter()
                    .zip(&b.2)
                    .map(|(x, y)| x.abs_diff(*y))
                    .max()
                    .unwrap_or(0);
            max = max.max(d);
            differ += usize::from(d > 0);
        }
    }
    (max, differ)
}

#[test]
fn two_engines_on_one_gpu_match_one_engine() {
    if !gpu() {
        return;
    }
    for factor in [2u64, 4] {
        let f = factor.to_string();
        let single = run(&f, "", 16);
        assert!(single.errors.is_empty(), "{:?}", single.errors);
        assert_eq!(single.frames.len() as u64, 16 * factor);
        let multi = run(&f, "0,0", 16);
        assert!(multi.warnings.is_empty(), "{:?}", multi.warnings);
        let (max, differ) = compare(&single, &multi, factor);
        println!(
            "factor {factor}, devices=0,0: {} frames; new frames differing from one engine: {differ}, \
             largest difference {max}",
            multi.frames.len()
        );
        assert!(max <= 2, "new frames differ by up to {max}");
    }
}

#[test]
fn a_failing_engine_on_one_gpu_is_taken_out() {
    if !gpu() {
        return;
    }
    run_child(
        "child_cuda_engine_1_fails",
        ("FLAVR_FAULT_ENGINE", "1:after:2"),
    );
}

#[test]
#[ignore = "run by a_failing_engine_on_one_gpu_is_taken_out"]
fn child_cuda_engine_1_fails() {
    let single = run("2", "", 16);
    let multi = run("2", "0,0", 16);
    assert_eq!(multi.warnings.len(), 1, "{:?}", multi.warnings);
    assert!(
        multi.warnings[0].contains("Engine 1") && multi.warnings[0].contains("1 engine(s) left"),
        "{}",
        multi.warnings[0]
    );
    let (max, differ) = compare(&single, &multi, 2);
    println!(
        "devices=0,0 with engine 1 failing after 2 windows: {} frames, warning: {}; new frames \
         differing: {differ}, largest difference {max}",
        multi.frames.len(),
        multi.warnings[0]
    );
    assert!(max <= 2);
}
