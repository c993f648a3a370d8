//! The CUDA engine in float32 against the CPU backend (the exact reference): the network's
//! float output at several sizes, multiples of 8 and not (max abs error < 1e-3 on [0, 1]
//! outputs), for the narrow fixture models and the full-width architecture with synthetic
//! weights; and both backends end to end through the `Backend` trait (bytes in every pixel
//! format, scrambled slots; codes of the 10- and 16-bit formats).
//!
//! Without a GPU each test prints "skipped: no usable CUDA GPU (...)" and passes.

mod cuda_common;

use std::sync::Arc;

use cuda_common::*;
use gstflavrinterp::backend::cpu::{CpuBackend, CpuModel};
use gstflavrinterp::backend::{Backend, FrameLayout, PixelFormat, Precision, YuvMatrix};
use gstflavrinterp::model::{Flavr, ModelSpec};

/// Four frames `[3, 4, h, w]` of a smooth moving pattern with noise.
fn window(h: usize, w: usize, seed: u32) -> Vec<f32> {
    let mut z = seed.wrapping_mul(747_796_405).max(1);
    let mut out = vec![0f32; 3 * 4 * h * w];
    for c in 0..3 {
        for t in 0..4 {
            for y in 0..h {
                for x in 0..w {
                    z ^= z << 13;
                    z ^= z >> 17;
                    z ^= z << 5;
                    let v = 0.5
                        + 0.3
                            * ((x as f32 - 1.5 * t as f32) * (0.11 + 0.05 * c as f32)).sin()
                            * (y as f32 * 0.07).cos()
                        + 0.05 * ((z % 1000) as f32 / 1000.0 - 0.5);
                    out[((c * 4 + t) * h + y) * w + x] = v.clamp(0.0, 1.0);
                }
            }
        }
    }
    out
}

fn frame_t(win: &[f32], h: usize, w: usize, t: usize) -> Vec<f32> {
    let mut f = Vec::with_capacity(3 * h * w);
    for c in 0..3 {
        f.extend_from_slice(&win[(c * 4 + t) * h * w..][..h * w]);
    }
    f
}

fn float_parity(model: &Flavr, sizes: &[(usize, usize)]) {
    let Some(mut e) = engine(model, Precision::Fp32) else {
        return;
    };
    let cpu = CpuModel::new(model).expect("cpu model");
    for (k, &(w, h)) in sizes.iter().enumerate() {
        let win = window(h, w, k as u32 + 3);
        let want = cpu.forward(&win, h, w).expect("cpu forward");
        e.configure(&rgb_layout(w, h)).expect("configure");
        let slots = [2, 5, 0, 4];
        for (t, &s) in slots.iter().enumerate() {
            e.load_frame_f32(s, &frame_t(&win, h, w, t)).expect("load");
        }
        let got = e.interpolate_f32(slots).expect("interpolate");
        let err = max_abs(&got, &want);
        eprintln!(
            "{w}x{h} n_out {}: max abs error vs CPU {err:.2e}",
            model.spec.n_out
        );
        assert!(
            err < 1e-3,
            "{w}x{h}: max abs error {err} vs the CPU backend"
        );
    }
}

#[test]
fn narrow_models_match_cpu() {
    float_parity(
        &load_model("flavr2x_w8.safetensors"),
        &[(64, 48), (37, 50), (5, 3), (130, 66)],
    );
    float_parity(
        &load_model("flavr4x_w16.safetensors"),
        &[(40, 24), (21, 30)],
    );
}

#[test]
fn full_width_matches_cpu() {
    let model = gstflavrinterp::model::synth::synthetic_model(&ModelSpec::released(1), 3)
        .expect("synthetic");
    float_parity(&model, &[(50, 37), (64, 64)]);
}

/// A packed layout of `format`, RGB rows padded by a byte.
fn layout(format: PixelFormat, w: usize, h: usize) -> FrameLayout {
    let packed = FrameLayout::packed(format, w, h, YuvMatrix::BT709);
    match format {
        PixelFormat::Rgb => FrameLayout {
            strides: vec![3 * w + 1],
            size: (3 * w + 1) * h,
            ..packed
        },
        _ => packed,
    }
}

#[test]
fn backends_agree_on_bytes() {
    let model = Arc::new(load_model("flavr2x_w8.safetensors"));
    let Some(mut gpu) = backend(model.clone(), Precision::Fp32) else {
        return;
    };
    let mut cpu = CpuBackend::new(model).expect("cpu backend");
    let (w, h) = (45, 27);
    for format in [
        PixelFormat::Rgb,
        PixelFormat::Bgrx,
        PixelFormat::I420,
        PixelFormat::Nv12,
    ] {
        let l = layout(format, w, h);
        gpu.configure(&l).expect("gpu configure");
        cpu.configure(&l).expect("cpu configure");
        // Five frames as bytes: the CPU's own conversion of a smooth pattern.
        let win = window(h, w, 11);
        let mut frames = Vec::new();
        for t in 0..5 {
            let mut f = vec![0u8; l.size];
            gstflavrinterp::backend::pixels::from_planar_rgb(
                &l,
                &frame_t(&win, h, w, t % 4),
                &mut f,
            )
            .expect("to bytes");
            if t == 4 {
                f.iter_mut().step_by(7).for_each(|b| *b = b.wrapping_add(9));
            }
            frames.push(f);
        }
        let slots = [4, 1, 3, 0, 2];
        for (f, &s) in frames.iter().zip(&slots) {
            gpu.load_frame(s, f).expect("gpu load");
            cpu.load_frame(s, f).expect("cpu load");
        }
        for win in [[4, 1, 3, 0], [1, 3, 0, 2]] {
            let mut a = vec![0u8; l.size];
            let mut b = vec![0u8; l.size];
            gpu.interpolate(win, &mut [&mut a[..]]).expect("gpu run");
            cpu.interpolate(win, &mut [&mut b[..]]).expect("cpu run");
            let differ = a.iter().zip(&b).filter(|(x, y)| x != y).count();
            for (i, _) in a
                .iter()
                .zip(&b)
                .enumerate()
                .filter(|(_, (x, y))| x != y)
                .take(8)
            {
                eprintln!("    byte {i}: gpu {} cpu {}", a[i], b[i]);
            }
            let worst = a
                .iter()
                .zip(&b)
                .map(|(x, y)| (*x as i32 - *y as i32).abs())
                .max()
                .unwrap_or(0);
            eprintln!(
                "{format:?} window {win:?}: {differ} of {} bytes differ, worst {worst}",
                l.size
            );
            // Float results agree to ~1e-7; a byte can flip only at a rounding boundary.
            assert!(worst <= 1, "{format:?}: bytes differ by {worst}");
            assert!(differ * 1000 <= l.size, "{format:?}: {differ} bytes differ");
        }
    }
}

/// The same end to end in 10-bit Y'CbCr and 16-bit RGB, compared sample by sample (codes).
#[test]
fn backends_agree_on_deep_formats() {
    let model = Arc::new(load_model("flavr2x_w8.safetensors"));
    let Some(mut gpu) = backend(model.clone(), Precision::Fp32) else {
        return;
    };
    let mut cpu = CpuBackend::new(model).expect("cpu backend");
    let (w, h) = (46, 26);
    for format in [
        PixelFormat::P010,
        PixelFormat::I420P10,
        PixelFormat::I422P10,
        PixelFormat::Y444P10,
        PixelFormat::Rgba64,
    ] {
        let l = FrameLayout::packed(format, w, h, YuvMatrix::BT2020);
        gpu.configure(&l).expect("gpu configure");
        cpu.configure(&l).expect("cpu configure");
        let win = window(h, w, 13);
        for t in 0..4 {
            let mut f = vec![0u8; l.size];
            gstflavrinterp::backend::pixels::from_planar_rgb(&l, &frame_t(&win, h, w, t), &mut f)
                .expect("to bytes");
            gpu.load_frame(t, &f).expect("gpu load");
            cpu.load_frame(t, &f).expect("cpu load");
        }
        let mut a = vec![0u8; l.size];
        let mut b = vec![0u8; l.size];
        gpu.interpolate([0, 1, 2, 3], &mut [&mut a[..]])
            .expect("gpu run");
        cpu.interpolate([0, 1, 2, 3], &mut [&mut b[..]])
            .expect("cpu run");
        let shift = if format == PixelFormat::P010 { 6 } else { 0 };
        let codes = |v: &[u8]| -> Vec<i32> {
            v.chunks_exact(2)
                .map(|s| i32::from(u16::from_le_bytes([s[0], s[1]]) >> shift))
                .collect()
        };
        let (ca, cb) = (codes(&a), codes(&b));
        let differ = ca.iter().zip(&cb).filter(|(x, y)| x != y).count();
        let worst = ca
            .iter()
            .zip(&cb)
            .map(|(x, y)| (x - y).abs())
            .max()
            .unwrap_or(0);
        eprintln!(
            "{format:?}: {differ} of {} samples differ, worst {worst} codes",
            ca.len()
        );
        // Float results agree to ~1e-7; a code can flip only at a rounding boundary.
        assert!(worst <= 1, "{format:?}: samples differ by {worst}");
        assert!(
            differ * 100 <= ca.len(),
            "{format:?}: {differ} samples differ"
        );
    }
}
