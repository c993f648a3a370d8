//! The CUDA engine against the PyTorch reference's golden outputs (computed in float64): the
//! narrow fixture models (2x, and 4x with encoder biases) and the full-width 2x architecture
//! with synthetic weights, at sizes that are and are not multiples of 8. float32 must agree to
//! 1e-3 (max abs error on [0, 1] outputs); float16 and bfloat16 are checked loosely here (the
//! 45 dB PSNR bound is measured by `bench --frames` on real frames).
//!
//! Without a GPU each test prints "skipped: no usable CUDA GPU (...)" and passes.

mod cuda_common;

use cuda_common::*;
use gstflavrinterp::backend::Precision;
use gstflavrinterp::cuda::{Engine, EngineOptions};
use gstflavrinterp::model::Flavr;

fn check_golden(model: &Flavr, golden: &str, p: Precision, tol: f32) {
    let Some(mut e) = engine(model, p) else {
        return;
    };
    let t = read_tensors(golden);
    let get = |n: &str| {
        t.iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{golden}: no {n}"))
    };
    let mut k = 0;
    while t.iter().any(|(n, _)| *n == format!("case{k}.input")) {
        let input = get(&format!("case{k}.input"));
        let want = get(&format!("case{k}.output"));
        let (h, w) = (input.shape[3], input.shape[4]);
        e.configure(&rgb_layout(w, h))
            .unwrap_or_else(|e| panic!("configure {w}x{h}: {e}"));
        // Slots in a scrambled order: the window names them.
        let slots = [3, 0, 5, 1];
        for (tt, &s) in slots.iter().enumerate() {
            e.load_frame_f32(s, &frame_of(&input, tt)).expect("load");
        }
        let got = e.interpolate_f32(slots).expect("interpolate");
        assert!(
            got.iter().all(|v| v.is_finite()),
            "{golden} case{k} {p:?}: non-finite output"
        );
        let err = max_abs(&got, &want.data);
        eprintln!("{golden} case{k} {w}x{h} {p:?}: max abs error {err:.2e}");
        assert!(
            err < tol,
            "{golden} case{k} {w}x{h} {p:?}: max abs error {err} >= {tol}"
        );
        k += 1;
    }
    assert!(k > 0, "{golden} has no cases");
}

#[test]
fn narrow_2x_fp32_matches_reference() {
    check_golden(
        &load_model("flavr2x_w8.safetensors"),
        "golden2x.safetensors",
        Precision::Fp32,
        1e-3,
    );
}

#[test]
fn narrow_4x_fp32_matches_reference() {
    check_golden(
        &load_model("flavr4x_w16.safetensors"),
        "golden4x.safetensors",
        Precision::Fp32,
        1e-3,
    );
}

#[test]
fn full_width_fp32_matches_reference() {
    let spec = gstflavrinterp::model::ModelSpec::released(1);
    let model = gstflavrinterp::model::synth::synthetic_model(&spec, 1).expect("synthetic model");
    check_golden(&model, "golden_full2x.safetensors", Precision::Fp32, 1e-3);
}

#[test]
fn half_precisions_stay_close() {
    let spec = gstflavrinterp::model::ModelSpec::released(1);
    let full = gstflavrinterp::model::synth::synthetic_model(&spec, 1).expect("synthetic model");
    for p in [Precision::Fp16, Precision::Bf16] {
        check_golden(&full, "golden_full2x.safetensors", p, 3e-2);
        check_golden(
            &load_model("flavr2x_w8.safetensors"),
            "golden2x.safetensors",
            p,
            5e-2,
        );
    }
}

#[test]
fn repeated_runs_are_identical() {
    let model = load_model("flavr2x_w8.safetensors");
    let Some(mut e) = engine(&model, Precision::Fp16) else {
        return;
    };
    let t = read_tensors("golden2x.safetensors");
    let input = &t.iter().find(|(n, _)| n == "case1.input").expect("case1").1;
    let (h, w) = (input.shape[3], input.shape[4]);
    e.configure(&rgb_layout(w, h)).expect("configure");
    for s in 0..4 {
        e.load_frame_f32(s, &frame_of(input, s)).expect("load");
    }
    let a = e.interpolate_f32([0, 1, 2, 3]).expect("run");
    let b = e.interpolate_f32([0, 1, 2, 3]).expect("run");
    assert_eq!(a, b, "two runs on the same input differ (a race?)");
}

/// The network replayed as a captured CUDA graph computes what its launches issued one by one
/// compute, for each window it is given (the graph reads the window's slots from device memory,
/// so one capture serves every window), and after a new configure. Both paths are first held
/// to the golden output of the window [0, 1, 2, 3], so a failure says which one is wrong.
#[test]
fn captured_graph_matches_launches() {
    let model = load_model("flavr2x_w8.safetensors");
    for p in [Precision::Fp32, Precision::Fp16] {
        captured_graph_matches_launches_in(&model, p);
    }
}

fn captured_graph_matches_launches_in(model: &Flavr, p: Precision) {
    let eager = EngineOptions {
        capture: false,
        ..options()
    };
    let captured = EngineOptions {
        capture: true,
        ..options()
    };
    // Skips without a GPU.
    if engine(model, p).is_none() {
        return;
    }
    let open = |o: EngineOptions| gstflavrinterp::cuda::open_engine(model, 0, p, o).expect("open");
    let (mut a, mut b) = (open(eager), open(captured));
    let tol = if p == Precision::Fp32 { 1e-3 } else { 5e-2 };
    let t = read_tensors("golden2x.safetensors");
    let get = |n: &str| &t.iter().find(|(k, _)| k == n).expect("golden tensor").1;
    for case in ["case0", "case1"] {
        let input = get(&format!("{case}.input"));
        let golden = get(&format!("{case}.output"));
        let (h, w) = (input.shape[3], input.shape[4]);
        for e in [&mut a, &mut b] {
            e.configure(&rgb_layout(w, h)).expect("configure");
            for s in 0..4 {
                e.load_frame_f32(s, &frame_of(input, s)).expect("load");
            }
            // Slots 4 and 5 (the last two of the six): frames 3 and 2.
            for s in 4..6 {
                e.load_frame_f32(s, &frame_of(input, 7 - s)).expect("load");
            }
        }
        let mut outs = Vec::new();
        for window in [[0, 1, 2, 3], [4, 5, 2, 3], [0, 1, 2, 3]] {
            let want = a.interpolate_f32(window).expect("launches");
            let got = b.interpolate_f32(window).expect("graph");
            assert_eq!(
                b.capture_failure(),
                None,
                "{case} {p:?}: the network could not be captured"
            );
            if outs.is_empty() {
                let (ea, eb) = (max_abs(&want, &golden.data), max_abs(&got, &golden.data));
                eprintln!(
                    "{case} {w}x{h} {p:?}: launches {ea:.2e}, graph replay {eb:.2e} from the golden output"
                );
                assert!(
                    ea < tol,
                    "{case} {p:?}: the launches are {ea} from the golden output"
                );
                assert!(
                    eb < tol,
                    "{case} {p:?}: graph replay is {eb} from the golden output"
                );
            }
            let d = max_abs(&got, &want);
            assert!(
                d <= if p == Precision::Fp32 { 1e-5 } else { 1e-2 },
                "{case} {p:?} window {window:?}: graph replay differs from the launches by {d}"
            );
            outs.push(got);
        }
        assert_ne!(
            outs[0], outs[1],
            "{case}: another window gave the same output"
        );
        assert_eq!(
            outs[0], outs[2],
            "{case}: the same window gave another output"
        );
    }
}

/// Smooth random-looking RGB frames, planar float32 `[3, h, w]` on [0, 1], four of them.
fn smooth_frames(w: usize, h: usize) -> Vec<Vec<f32>> {
    (0..4)
        .map(|t| {
            (0..3 * w * h)
                .map(|i| {
                    let (c, y, x) = (i / (w * h), i / w % h, i % w);
                    let v = (x as f32 * 0.071 + y as f32 * 0.043 + t as f32 * 0.5).sin() * 0.4
                        + 0.5
                        + c as f32 * 0.03;
                    v.clamp(0.0, 1.0)
                })
                .collect()
        })
        .collect()
}

/// Two engines on the full-width architecture in float16 and bfloat16, one with `a`'s options
/// and one with `b`'s, at sizes whose output grid is not a multiple of 16 (and one smaller than
/// 16 x 16), over [`smooth_frames`]: their outputs may differ by at most `tol(p)`. `active`
/// checks, after each configure, that the two engines really run differently. No GPU: None.
fn engines_agree(
    what: &str,
    a: EngineOptions,
    b: EngineOptions,
    tol: fn(Precision) -> f32,
    active: fn(&Engine, &Engine) -> bool,
) -> Option<()> {
    let spec = gstflavrinterp::model::ModelSpec::released(1);
    let model = gstflavrinterp::model::synth::synthetic_model(&spec, 1).expect("synthetic model");
    for p in [Precision::Fp16, Precision::Bf16] {
        engine(&model, p)?;
        let open = |o: &EngineOptions| {
            gstflavrinterp::cuda::open_engine(&model, 0, p, o.clone()).expect("open")
        };
        let (mut ea, mut eb) = (open(&a), open(&b));
        for (w, h) in [(130, 66), (24, 16), (333, 190)] {
            let frames = smooth_frames(w, h);
            let mut outs = Vec::new();
            for e in [&mut ea, &mut eb] {
                e.configure(&rgb_layout(w, h)).expect("configure");
                for (s, f) in frames.iter().enumerate() {
                    e.load_frame_f32(s, f).expect("load");
                }
                outs.push(e.interpolate_f32([0, 1, 2, 3]).expect("run"));
            }
            assert!(
                active(&ea, &eb),
                "{w}x{h} {p:?}: {what}: both engines run alike"
            );
            let (d, tol) = (max_abs(&outs[0], &outs[1]), tol(p));
            eprintln!("{w}x{h} {p:?}: {what}: max abs difference {d:.2e}");
            assert!(d <= tol, "{w}x{h} {p:?}: {what}: differ by {d} (> {tol})");
        }
    }
    Some(())
}

/// Our outconv kernel (kernels/outconv.cu, `FLAVR_CUDA_OUTCONV`) against cuDNN's convolution of
/// the same layer: the two engines differ only in that conv, so their outputs may differ only
/// by the rounding of its sums.
#[test]
fn own_outconv_matches_cudnn() {
    let own = |own: bool| EngineOptions {
        own_outconv: own,
        ..options()
    };
    engines_agree(
        "our outconv against cuDNN's",
        own(true),
        own(false),
        |p| if p == Precision::Fp16 { 2e-3 } else { 1.6e-2 },
        |a, b| a.own_outconv_active() && !b.own_outconv_active(),
    );
}

/// The last stage's SE gate folded into the fuse's filter (`FLAVR_CUDA_GATEFOLD`) against the
/// gated epilogue: the same function (a LeakyReLU commutes with a positive gate), rounded in
/// other places (the gate applied to the fuse's weights rather than to the activations, the
/// pool over the LeakyReLU's inverse).
#[test]
fn gate_fold_matches_the_gated_epilogue() {
    let fold = |on: bool| EngineOptions {
        gate_fold: on,
        ..options()
    };
    engines_agree(
        "the gate folded into the fuse against the gated epilogue",
        fold(true),
        fold(false),
        |p| if p == Precision::Fp16 { 2e-3 } else { 1.6e-2 },
        |a, b| {
            let (on, fused) = a.gate_fold_active();
            eprintln!("gate folded; its bias + LeakyReLU inside the conv: {fused}");
            on && !b.gate_fold_active().0
        },
    );
}
