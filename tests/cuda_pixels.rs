//! Pixel conversions of the CUDA engine against the CPU reference (src/backend/pixels.rs),
//! which the kernels must match bit for bit: every format in, with row padding and plane
//! offsets, odd sizes (replicate padding to multiples of 8); every format out, from the
//! engine's own float output, so only the conversion is under test. The same for the 10-bit
//! Y'CbCr formats and 16-bit RGB (`deep_formats_in_and_out`).
//!
//! Without a GPU each test prints "skipped: no usable CUDA GPU (...)" and passes.

mod cuda_common;

use cuda_common::test_layout::padded_by;
use cuda_common::*;
use gstflavrinterp::backend::pixels::{from_planar_rgb, to_planar_rgb};
use gstflavrinterp::backend::{FrameLayout, PixelFormat, Precision, YuvMatrix};
use gstflavrinterp::cuda::Engine;

fn layout(format: PixelFormat, w: usize, h: usize, yuv: YuvMatrix) -> FrameLayout {
    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
    let (offsets, strides, size) = match format {
        PixelFormat::Rgb => (vec![3], vec![3 * w + 5], 3 + (3 * w + 5) * h),
        PixelFormat::I420 => {
            let (ys, cs) = (w + 3, cw + 2);
            let u = ys * h + 7;
            let v = u + cs * ch + 3;
            (vec![0, u, v], vec![ys, cs, cs], v + cs * ch + 1)
        }
        PixelFormat::Nv12 => {
            let (ys, cs) = (w + 1, 2 * cw + 4);
            let uv = ys * h + 2;
            (vec![0, uv], vec![ys, cs], uv + cs * ch)
        }
        _ => (vec![0], vec![4 * w + 8], (4 * w + 8) * h),
    };
    FrameLayout {
        offsets,
        strides,
        size,
        ..FrameLayout::packed(format, w, h, yuv)
    }
}

#[test]
fn every_format_in_and_out() {
    let model = load_model("flavr2x_w8.safetensors");
    let Some(mut e) = engine(&model, Precision::Fp32) else {
        return;
    };
    let (w, h) = (37, 21);
    let cases = [
        (PixelFormat::Rgb, YuvMatrix::BT709),
        (PixelFormat::Rgba, YuvMatrix::BT709),
        (PixelFormat::Bgra, YuvMatrix::BT709),
        (PixelFormat::Rgbx, YuvMatrix::BT709),
        (PixelFormat::Bgrx, YuvMatrix::BT709),
        (PixelFormat::I420, YuvMatrix::BT601),
        (PixelFormat::Nv12, YuvMatrix::BT709),
        (
            PixelFormat::I420,
            YuvMatrix {
                full_range: true,
                ..YuvMatrix::BT2020
            },
        ),
    ];
    for (ci, &(format, yuv)) in cases.iter().enumerate() {
        let l = layout(format, w, h, yuv);
        check_in_and_out(&mut e, &l, ci);
    }
}

/// 10-bit Y'CbCr and 16-bit RGB, with padded rows and gaps between planes; even sizes (the
/// subsampled 10-bit formats refuse odd ones) that are not multiples of 8.
#[test]
fn deep_formats_in_and_out() {
    let model = load_model("flavr2x_w8.safetensors");
    let Some(mut e) = engine(&model, Precision::Fp32) else {
        return;
    };
    let (w, h) = (38, 22);
    let full2020 = YuvMatrix {
        full_range: true,
        ..YuvMatrix::BT2020
    };
    let cases = [
        (PixelFormat::P010, YuvMatrix::BT2020),
        (PixelFormat::I420P10, YuvMatrix::BT709),
        (PixelFormat::I422P10, YuvMatrix::BT2020),
        (PixelFormat::Y444P10, full2020),
        (PixelFormat::P010, full2020),
        (PixelFormat::Rgba64, YuvMatrix::BT709),
    ];
    for (ci, &(format, yuv)) in cases.iter().enumerate() {
        // 2 bytes in, 6 bytes of row padding (a 2-byte multiple, as GStreamer's) and 4 bytes
        // between planes.
        let l = padded_by(format, w, h, yuv, [2, 6, 4]);
        check_in_and_out(&mut e, &l, 100 + ci);
    }
    // Odd sizes of the subsampled 10-bit formats are refused with a reason, not a crash.
    for format in [
        PixelFormat::P010,
        PixelFormat::I420P10,
        PixelFormat::I422P10,
    ] {
        let l = FrameLayout::packed(format, 37, 22, YuvMatrix::BT2020);
        let err = e.configure(&l).expect_err("odd width").to_string();
        eprintln!("{format:?} 37x22: {err}");
        assert!(err.contains("odd size"), "{format:?}: {err}");
    }
}

/// Configures `e` for `l`, loads four random frames and checks the slots and one output
/// frame against the CPU conversions, bit for bit.
fn check_in_and_out(e: &mut Engine, l: &FrameLayout, ci: usize) {
    let (format, yuv, w, h) = (l.format, l.yuv, l.width, l.height);
    e.configure(l)
        .unwrap_or_else(|err| panic!("{format:?}: {err}"));
    let (ph, pw) = e.padded_size().expect("configured");
    assert_eq!((ph, pw), (h.div_ceil(8) * 8, w.div_ceil(8) * 8));
    let frames: Vec<Vec<u8>> = (0..4)
        .map(|t| random_bytes(l.size, (ci * 10 + t + 1) as u32))
        .collect();
    for (s, f) in frames.iter().enumerate() {
        e.load_frame(s, f).expect("load");
    }
    // In: each slot is the frame converted and replicate-padded.
    for (si, f) in frames.iter().enumerate() {
        let slot = e.read_slot(si).expect("read slot");
        let mut rgb = vec![0f32; 3 * w * h];
        to_planar_rgb(l, f, &mut rgb).expect("cpu conversion");
        let (mut worst, mut differ) = (0f32, 0usize);
        for y in 0..ph {
            for x in 0..pw {
                let src = y.min(h - 1) * w + x.min(w - 1);
                let got = &slot[(y * pw + x) * 4..][..4];
                for c in 0..3 {
                    let d = (got[c] - rgb[c * w * h + src]).abs();
                    worst = worst.max(d);
                    differ += (d != 0.0) as usize;
                }
                assert_eq!(got[3], 0.0);
            }
        }
        eprintln!(
            "{format:?} {yuv:?} slot {si}: {differ} values differ from the CPU's, worst {worst:e}"
        );
        assert_eq!(
            differ, 0,
            "{format:?} {yuv:?} slot {si}: input conversion differs (worst {worst})"
        );
    }
    // Out: the bytes the engine writes are the CPU conversion of its float output.
    let f = e.interpolate_f32([0, 1, 2, 3]).expect("float output");
    let mut got = vec![0u8; l.size];
    e.interpolate([0, 1, 2, 3], &mut [&mut got[..]])
        .expect("byte output");
    // Row padding is not written by either: start both from the engine's bytes.
    let mut want = got.clone();
    from_planar_rgb(l, &f, &mut want).expect("cpu conversion");
    let differ: Vec<usize> = (0..l.size).filter(|&i| got[i] != want[i]).collect();
    let worst = differ
        .iter()
        .map(|&i| (got[i] as i32 - want[i] as i32).abs())
        .max()
        .unwrap_or(0);
    eprintln!(
        "{format:?} {yuv:?}: {} output bytes differ from the CPU's, worst {worst}",
        differ.len()
    );
    assert!(
        differ.is_empty(),
        "{format:?} {yuv:?}: {} bytes differ, worst {worst}",
        differ.len()
    );
}
