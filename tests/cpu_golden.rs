//! The CPU backend against the PyTorch reference: `tests/fixtures/golden{2x,4x}.safetensors`
//! hold inputs and the outputs of `tools/reference/flavr_ref.py::interpolate` computed in
//! float64, for narrow models at sizes that are and are not multiples of 8.

mod common;

use common::fixture;
use gstflavrinterp::backend::cpu::{self, CpuModel};
use gstflavrinterp::model::{Flavr, checkpoint};

/// Largest accepted difference from the float64 reference.
const TOL: f32 = 1e-4;

/// Runs every case of `golden` through `model`; returns the largest error over all cases.
fn check(model_file: &str, golden: &str, n_out: usize) -> f32 {
    let model = Flavr::load_path(&fixture(model_file)).unwrap();
    assert_eq!(model.spec.n_out, n_out);
    let prepared = CpuModel::new(&model).unwrap();
    let mut g = checkpoint::open_path(&fixture(golden)).unwrap();
    let mut cases: Vec<String> = g
        .entries()
        .iter()
        .filter_map(|e| e.name.strip_suffix(".input").map(str::to_string))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut worst = 0.0f32;
    for case in cases {
        let input = g.read_f32(&format!("{case}.input")).unwrap();
        let expect = g.read_f32(&format!("{case}.output")).unwrap();
        let s = &input.shape;
        assert_eq!(&s[..3], &[1, 3, 4]);
        let (h, w) = (s[3], s[4]);
        assert_eq!(expect.shape, vec![n_out, 3, h, w]);
        let got = prepared.forward(&input.data, h, w).unwrap();
        assert_eq!(got.len(), expect.data.len());
        let err = got
            .iter()
            .zip(&expect.data)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!("{golden} {case} {w}x{h}: max abs error {err:.3e}");
        assert!(err <= TOL, "{golden} {case}: max abs error {err}");
        worst = worst.max(err);
        // A window leaves no trace in the next result (per-thread scratch is reused).
        let other: Vec<f32> = input.data.iter().map(|v| 1.0 - v).collect();
        prepared.forward(&other, h, w).unwrap();
        assert_eq!(prepared.forward(&input.data, h, w).unwrap(), got);
        // The free function gives the same result as the prepared model.
        assert_eq!(cpu::forward(&model, &input.data, h, w), got);
    }
    worst
}

// The same weights in each container the loader reads: the released files' zip and legacy
// (pre-1.6) PyTorch containers, and safetensors.
const CONTAINERS: [&str; 3] = ["pth", "legacy.pth", "safetensors"];

#[test]
fn golden_2x_every_container() {
    for ext in CONTAINERS {
        let e = check(&format!("flavr2x_w8.{ext}"), "golden2x.safetensors", 1);
        println!("2x {ext} worst {e:.3e}");
    }
}

#[test]
fn golden_4x_every_container() {
    for ext in CONTAINERS {
        let e = check(&format!("flavr4x_w16.{ext}"), "golden4x.safetensors", 3);
        println!("4x {ext} worst {e:.3e}");
    }
}
