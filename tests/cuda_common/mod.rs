//! Shared by the GPU tests: fixtures, engines that skip without a GPU, comparisons.
#![allow(dead_code)]

use std::sync::Arc;

use gstflavrinterp::backend::{Backend, FrameLayout, PixelFormat, Precision, YuvMatrix};
use gstflavrinterp::cuda::{self, Engine, EngineOptions};
use gstflavrinterp::model::{Flavr, Tensor, checkpoint};

#[path = "../common/mod.rs"]
mod common;
pub use common::fixture;
#[path = "../../src/backend/test_layout.rs"]
pub mod test_layout;

pub fn load_model(name: &str) -> Flavr {
    let p = fixture(name);
    Flavr::load_path(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

pub fn read_tensors(name: &str) -> Vec<(String, Tensor)> {
    let p = fixture(name);
    let mut ck = checkpoint::open_path(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let names: Vec<String> = ck.entries().iter().map(|e| e.name.clone()).collect();
    names
        .into_iter()
        .map(|n| {
            let t = ck.read_f32(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, t)
        })
        .collect()
}

/// The engine options of the `FLAVR_CUDA_*` variables (diagnosis runs switch them).
pub fn options() -> EngineOptions {
    EngineOptions::from_env().unwrap_or_else(|e| panic!("{e}"))
}

/// An engine, or `None` with "skipped: ..." when there is no usable GPU. With
/// FLAVR_REQUIRE_GPU=1 (set on the GPU machine) a failure to open is a test failure.
pub fn engine(model: &Flavr, p: Precision) -> Option<Engine> {
    match cuda::open_engine(model, 0, p, options()) {
        Ok(e) => Some(e),
        Err(e) => {
            if std::env::var_os("FLAVR_REQUIRE_GPU").is_some() {
                panic!("FLAVR_REQUIRE_GPU is set but the CUDA engine does not open: {e}");
            }
            eprintln!("skipped: no usable CUDA GPU ({e})");
            None
        }
    }
}

/// The CUDA backend (engine and frame I/O) on GPU 0, or `None` with "skipped: ..." as
/// [`engine`] says.
pub fn backend(model: Arc<Flavr>, p: Precision) -> Option<Box<dyn Backend>> {
    match cuda::open(model, 0, p, options()) {
        Ok(b) => Some(b),
        Err(e) => {
            if std::env::var_os("FLAVR_REQUIRE_GPU").is_some() {
                panic!("FLAVR_REQUIRE_GPU is set but the CUDA backend does not open: {e}");
            }
            eprintln!("skipped: no usable CUDA GPU ({e})");
            None
        }
    }
}

pub fn rgb_layout(w: usize, h: usize) -> FrameLayout {
    FrameLayout::packed(PixelFormat::Rgb, w, h, YuvMatrix::BT709)
}

/// Frame t of an input `[1, 3, 4, h, w]` as planar `[3, h, w]`.
pub fn frame_of(input: &Tensor, t: usize) -> Vec<f32> {
    let (h, w) = (input.shape[3], input.shape[4]);
    let mut out = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        let base = (c * 4 + t) * h * w;
        out.extend_from_slice(&input.data[base..base + h * w]);
    }
    out
}

pub fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `n` pseudo-random bytes (xorshift32) from `seed`: frames with every byte value, the same in
/// every run.
pub fn random_bytes(n: usize, seed: u32) -> Vec<u8> {
    let mut z = seed.wrapping_mul(2_654_435_761).max(1);
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 17;
            z ^= z << 5;
            (z >> 7) as u8
        })
        .collect()
}
