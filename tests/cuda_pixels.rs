//! Pixel conversions of the CUDA engine against a host implementation of the same arithmetic
//! (kernels/pixels.cu documents it): every format in, with row padding and plane offsets, odd
//! sizes (replicate padding to multiples of 8); every format out, from the engine's own float
//! output, so only the conversion is under test.
//!
//! Without a GPU each test prints "skipped: no usable CUDA GPU (...)" and passes.

mod cuda_common;

use cuda_common::*;
use gstflavrinterp::backend::{FrameLayout, PixelFormat, Precision, YuvMatrix};

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
        format,
        width: w,
        height: h,
        offsets,
        strides,
        size,
        yuv,
    }
}

fn random_bytes(n: usize, seed: u32) -> Vec<u8> {
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

/// Host twin of kernels/pixels.cu `read_pixel`.
fn read_pixel(l: &FrameLayout, src: &[u8], x: usize, y: usize) -> [f32; 3] {
    let yuv = |yv: f32, u: f32, v: f32| {
        let m = l.yuv;
        let (yy, pb, pr) = if m.full_range {
            (yv / 255.0, (u - 128.0) / 255.0, (v - 128.0) / 255.0)
        } else {
            (
                (yv - 16.0) / 219.0,
                (u - 128.0) / 224.0,
                (v - 128.0) / 224.0,
            )
        };
        let r = yy + 2.0 * (1.0 - m.kr) * pr;
        let b = yy + 2.0 * (1.0 - m.kb) * pb;
        let g = (yy - m.kr * r - m.kb * b) / (1.0 - m.kr - m.kb);
        [r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0)]
    };
    let (o, s) = (&l.offsets, &l.strides);
    match l.format {
        PixelFormat::I420 => yuv(
            src[o[0] + y * s[0] + x] as f32,
            src[o[1] + (y / 2) * s[1] + x / 2] as f32,
            src[o[2] + (y / 2) * s[2] + x / 2] as f32,
        ),
        PixelFormat::Nv12 => {
            let uv = o[1] + (y / 2) * s[1] + (x / 2) * 2;
            yuv(
                src[o[0] + y * s[0] + x] as f32,
                src[uv] as f32,
                src[uv + 1] as f32,
            )
        }
        f => {
            let bpp = if f == PixelFormat::Rgb { 3 } else { 4 };
            let p = &src[o[0] + y * s[0] + x * bpp..];
            let bgr = matches!(f, PixelFormat::Bgra | PixelFormat::Bgrx);
            let (r, g, b) = if bgr {
                (p[2], p[1], p[0])
            } else {
                (p[0], p[1], p[2])
            };
            [r as f32 / 255.0, g as f32 / 255.0, b as f32 / 255.0]
        }
    }
}

fn round_byte(v: f32) -> u8 {
    (v.clamp(0.0, 255.0) + 0.5).floor() as u8
}

/// Host twin of kernels/pixels.cu `out_frame`: frame `[3, h, w]` (unclamped) into `dst`;
/// returns which bytes it wrote.
fn write_frame(l: &FrameLayout, rgb: &[f32], dst: &mut [u8]) -> Vec<bool> {
    let (w, h) = (l.width, l.height);
    let mut written = vec![false; l.size];
    let px = |x: usize, y: usize| {
        let i = y * w + x;
        [
            rgb[i].clamp(0.0, 1.0),
            rgb[w * h + i].clamp(0.0, 1.0),
            rgb[2 * w * h + i].clamp(0.0, 1.0),
        ]
    };
    let (o, s) = (&l.offsets, &l.strides);
    let mut put = |i: usize, v: u8, dst: &mut [u8]| {
        dst[i] = v;
        written[i] = true;
    };
    match l.format {
        PixelFormat::I420 | PixelFormat::Nv12 => {
            let m = l.yuv;
            let kg = 1.0 - m.kr - m.kb;
            for gy in 0..h.div_ceil(2) {
                for gx in 0..w.div_ceil(2) {
                    let (mut sr, mut sg, mut sb, mut n) = (0f32, 0f32, 0f32, 0);
                    for dy in 0..2 {
                        for dx in 0..2 {
                            let (x, y) = (2 * gx + dx, 2 * gy + dy);
                            if x >= w || y >= h {
                                continue;
                            }
                            let [r, g, b] = px(x, y);
                            let luma = m.kr * r + kg * g + m.kb * b;
                            let v = if m.full_range {
                                255.0 * luma
                            } else {
                                16.0 + 219.0 * luma
                            };
                            put(o[0] + y * s[0] + x, round_byte(v), dst);
                            sr += r;
                            sg += g;
                            sb += b;
                            n += 1;
                        }
                    }
                    let (r, g, b) = (sr / n as f32, sg / n as f32, sb / n as f32);
                    let luma = m.kr * r + kg * g + m.kb * b;
                    let pb = (b - luma) / (2.0 * (1.0 - m.kb));
                    let pr = (r - luma) / (2.0 * (1.0 - m.kr));
                    let cs = if m.full_range { 255.0 } else { 224.0 };
                    let (u, v) = (round_byte(128.0 + cs * pb), round_byte(128.0 + cs * pr));
                    if l.format == PixelFormat::I420 {
                        put(o[1] + gy * s[1] + gx, u, dst);
                        put(o[2] + gy * s[2] + gx, v, dst);
                    } else {
                        put(o[1] + gy * s[1] + 2 * gx, u, dst);
                        put(o[1] + gy * s[1] + 2 * gx + 1, v, dst);
                    }
                }
            }
        }
        f => {
            let bpp = if f == PixelFormat::Rgb { 3 } else { 4 };
            let bgr = matches!(f, PixelFormat::Bgra | PixelFormat::Bgrx);
            for y in 0..h {
                for x in 0..w {
                    let [r, g, b] = px(x, y);
                    let at = o[0] + y * s[0] + x * bpp;
                    let (r8, g8, b8) = (
                        round_byte(r * 255.0),
                        round_byte(g * 255.0),
                        round_byte(b * 255.0),
                    );
                    put(at + if bgr { 2 } else { 0 }, r8, dst);
                    put(at + 1, g8, dst);
                    put(at + if bgr { 0 } else { 2 }, b8, dst);
                    if bpp == 4 {
                        put(at + 3, 255, dst);
                    }
                }
            }
        }
    }
    written
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
        e.configure(&l)
            .unwrap_or_else(|err| panic!("{format:?}: {err}"));
        let (ph, pw) = e.padded_size().expect("configured");
        assert_eq!((ph, pw), (24, 40));
        let frames: Vec<Vec<u8>> = (0..4)
            .map(|t| random_bytes(l.size, (ci * 10 + t + 1) as u32))
            .collect();
        for (s, f) in frames.iter().enumerate() {
            e.load_frame(s, f).expect("load");
        }
        // In: each slot is the frame converted and replicate-padded.
        for (s, f) in frames.iter().enumerate() {
            let slot = e.read_slot(s).expect("read slot");
            let mut worst = 0f32;
            for y in 0..ph {
                for x in 0..pw {
                    let want = read_pixel(&l, f, x.min(w - 1), y.min(h - 1));
                    let got = &slot[(y * pw + x) * 4..][..4];
                    for c in 0..3 {
                        worst = worst.max((got[c] - want[c]).abs());
                    }
                    assert_eq!(got[3], 0.0);
                }
            }
            assert!(
                worst < 2e-6,
                "{format:?} {yuv:?} slot {s}: input conversion off by {worst}"
            );
        }
        // Out: the bytes the engine writes are the host conversion of its float output.
        let f = e.interpolate_f32([0, 1, 2, 3]).expect("float output");
        let mut got = vec![0u8; l.size];
        e.interpolate([0, 1, 2, 3], &mut [&mut got[..]])
            .expect("byte output");
        let mut want = vec![0u8; l.size];
        let written = write_frame(&l, &f, &mut want);
        let (mut off_by_one, mut total) = (0, 0);
        for i in 0..l.size {
            if !written[i] {
                continue;
            }
            total += 1;
            let d = (got[i] as i32 - want[i] as i32).abs();
            assert!(
                d <= 1,
                "{format:?} {yuv:?}: byte {i} is {} not {}",
                got[i],
                want[i]
            );
            off_by_one += (d == 1) as usize;
        }
        assert!(
            off_by_one * 200 <= total,
            "{format:?}: {off_by_one} of {total} bytes off by one"
        );
    }
}
