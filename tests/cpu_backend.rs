//! `CpuBackend` end to end: frames in a pixel layout go into slots, `interpolate` gives the same
//! bytes as running `forward` on the frames and converting by hand (`v / 255` in,
//! `floor(clamp(v, 0, 1) * 255 + 0.5)` out, opaque padding byte).

mod common;

use std::sync::Arc;

use gstflavrinterp::backend::cpu::{self, CpuBackend};
use gstflavrinterp::backend::{Backend, FrameLayout, PixelFormat, YuvMatrix};
use gstflavrinterp::model::Flavr;

fn model(name: &str) -> Arc<Flavr> {
    Arc::new(Flavr::load_path(&common::fixture(name)).unwrap())
}

/// An RGBx layout with padded rows (stride = 4 * w + 8) and a 16-byte header before the plane.
fn rgbx(w: usize, h: usize) -> FrameLayout {
    let stride = 4 * w + 8;
    FrameLayout {
        format: PixelFormat::Rgbx,
        width: w,
        height: h,
        offsets: vec![16],
        strides: vec![stride],
        size: 16 + stride * h,
        yuv: YuvMatrix::BT709,
    }
}

/// A moving gradient with some texture, as RGBx bytes (x byte and padding set to 77).
fn frame(l: &FrameLayout, t: usize) -> Vec<u8> {
    let mut f = vec![77u8; l.size];
    for y in 0..l.height {
        for x in 0..l.width {
            let i = l.offsets[0] + y * l.strides[0] + 4 * x;
            let xs = x + 2 * t;
            f[i] = ((xs * 9 + y * 3) % 256) as u8;
            f[i + 1] = ((xs * 5 + y * 11 + 40) % 256) as u8;
            f[i + 2] = (((xs ^ y) * 7) % 256) as u8;
        }
    }
    f
}

fn check(model_name: &str, w: usize, h: usize) {
    let m = model(model_name);
    let n = m.spec.n_out;
    let layout = rgbx(w, h);
    let mut be = CpuBackend::new(m.clone()).unwrap();
    assert_eq!(be.n_outputs(), n);
    be.configure(&layout).unwrap();
    let frames: Vec<Vec<u8>> = (0..4).map(|t| frame(&layout, t)).collect();
    // Slots in a scrambled order, as the element's ring would have them.
    let window = [4, 0, 5, 2];
    for (t, &slot) in window.iter().enumerate() {
        be.load_frame(slot, &frames[t]).unwrap();
    }
    let mut outs = vec![vec![0u8; layout.size]; n];
    {
        let mut refs: Vec<&mut [u8]> = outs.iter_mut().map(|o| o.as_mut_slice()).collect();
        be.interpolate(window, &mut refs).unwrap();
    }

    // By hand: [3, 4, h, w] in [0, 1].
    let plane = w * h;
    let mut x = vec![0.0f32; 12 * plane];
    for (t, f) in frames.iter().enumerate() {
        for y in 0..h {
            for xx in 0..w {
                let i = layout.offsets[0] + y * layout.strides[0] + 4 * xx;
                for c in 0..3 {
                    x[(c * 4 + t) * plane + y * w + xx] = f[i + c] as f32 / 255.0;
                }
            }
        }
    }
    let y = cpu::forward(&m, &x, h, w);
    for (k, out) in outs.iter().enumerate() {
        for yy in 0..h {
            for xx in 0..w {
                let i = layout.offsets[0] + yy * layout.strides[0] + 4 * xx;
                for c in 0..3 {
                    let v = y[(k * 3 + c) * plane + yy * w + xx];
                    let expect = (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8;
                    assert_eq!(out[i + c], expect, "frame {k} ({xx},{yy}) channel {c}");
                }
                assert_eq!(out[i + 3], 255);
            }
        }
        // Bytes outside the pixels are left alone (zero as allocated).
        assert!(out[..16].iter().all(|&b| b == 0));
    }
    // The output is an image, not a copy of an input.
    assert_ne!(outs[0], frames[1]);
}

#[test]
fn interpolate_rgbx_2x() {
    check("flavr2x_w8.safetensors", 37, 21);
}

#[test]
fn interpolate_rgbx_4x() {
    check("flavr4x_w16.safetensors", 16, 8);
}

#[test]
fn misuse_is_an_error() {
    let layout = rgbx(8, 8);
    let mut be = CpuBackend::new(model("flavr2x_w8.safetensors")).unwrap();
    let f = frame(&layout, 0);
    // Before configure.
    assert!(be.load_frame(0, &f).is_err());
    be.configure(&layout).unwrap();
    // Slot out of range, short frame.
    assert!(be.load_frame(99, &f).is_err());
    assert!(be.load_frame(0, &f[..f.len() - 1]).is_err());
    for s in 0..3 {
        be.load_frame(s, &f).unwrap();
    }
    let mut out = vec![0u8; layout.size];
    // Slot 3 holds no frame.
    assert!(
        be.interpolate([0, 1, 2, 3], &mut [out.as_mut_slice()])
            .is_err()
    );
    be.load_frame(3, &f).unwrap();
    // Wrong number of outputs; short output buffer.
    assert!(be.interpolate([0, 1, 2, 3], &mut []).is_err());
    let mut short = vec![0u8; layout.size - 1];
    assert!(
        be.interpolate([0, 1, 2, 3], &mut [short.as_mut_slice()])
            .is_err()
    );
    be.interpolate([0, 1, 2, 3], &mut [out.as_mut_slice()])
        .unwrap();
    // A new configure forgets the slots.
    be.configure(&rgbx(16, 8)).unwrap();
    assert!(
        be.interpolate([0, 1, 2, 3], &mut [out.as_mut_slice()])
            .is_err()
    );
    // Bad layouts are refused.
    let mut bad = rgbx(8, 8);
    bad.size = 16 + bad.strides[0] * 7 + 4 * 8 - 1; // last row one byte short
    assert!(be.configure(&bad).is_err());
}
