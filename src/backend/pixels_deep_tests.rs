//! Tests of the 10-bit Y'CbCr and 16-bit RGB conversions of `pixels.rs`: exact round trips,
//! no rounding to 8 bits, the error against a float64 reference, P010's low bits, and the
//! refusal of odd sizes.

use super::*;
use crate::backend::test_layout::padded_by;
use crate::test_rng::xorshift;

const DEEP_YUV: [PixelFormat; 4] = [
    PixelFormat::P010,
    PixelFormat::I420P10,
    PixelFormat::I422P10,
    PixelFormat::Y444P10,
];

const MATRICES: [YuvMatrix; 4] = [
    YuvMatrix::BT601,
    YuvMatrix::BT709,
    YuvMatrix::BT2020,
    YuvMatrix {
        full_range: true,
        ..YuvMatrix::BT2020
    },
];

/// A layout with padded rows and a gap before each plane, to catch stride and offset bugs (even
/// bytes: 16-bit samples stay aligned).
fn padded(format: PixelFormat, w: usize, h: usize, yuv: YuvMatrix) -> FrameLayout {
    padded_by(format, w, h, yuv, [6, 10, 4])
}

/// Writes the codes `(luma(x, y), u(cx, cy), v(cx, cy))` into a frame of `l`.
fn fill_codes(
    l: &FrameLayout,
    frame: &mut [u8],
    luma: impl Fn(usize, usize) -> u16,
    chroma: impl Fn(usize, usize) -> (u16, u16),
) {
    let f = l.format;
    let sb = f.sample_bytes();
    for y in 0..l.height {
        for x in 0..l.width {
            put_code(
                f,
                frame,
                l.offsets[0] + y * l.strides[0] + sb * x,
                luma(x, y),
            );
        }
    }
    let (sx, sy) = f.chroma_block().unwrap();
    for cy in 0..l.height.div_ceil(sy) {
        for cx in 0..l.width.div_ceil(sx) {
            let (u, v) = chroma(cx, cy);
            let (iu, iv) = chroma_pos(l, cx, cy);
            put_code(f, frame, iu, u);
            put_code(f, frame, iv, v);
        }
    }
}

/// The legal code range of luma and chroma at 10 bits.
fn legal(yuv: YuvMatrix) -> ((u16, u16), (u16, u16)) {
    if yuv.full_range {
        ((0, 1023), (0, 1023))
    } else {
        ((64, 940), (64, 960))
    }
}

/// The reference's luma offset and range and chroma zero and range, in `bits`-bit codes
/// (limited range: 16, 219, 128 and 224 levels scaled up from 8 bits; full range: 0 to the
/// largest code).
fn ref_ranges(yuv: YuvMatrix, bits: u32) -> [f64; 4] {
    let scale = f64::from(1u32 << (bits - 8));
    let max = f64::from((1u32 << bits) - 1);
    let c_off = 128.0 * scale;
    if yuv.full_range {
        [0.0, max, c_off, max]
    } else {
        [16.0 * scale, 219.0 * scale, c_off, 224.0 * scale]
    }
}

/// Y'CbCr codes to R'G'B' in float64, clamped to [0, 1]: the reference.
fn ref_to_rgb(yuv: YuvMatrix, bits: u32, y: u16, u: u16, v: u16) -> [f64; 3] {
    let (kr, kb) = (f64::from(yuv.kr), f64::from(yuv.kb));
    let kg = 1.0 - kr - kb;
    let [y_off, y_range, c_off, c_range] = ref_ranges(yuv, bits);
    let yv = (f64::from(y) - y_off) / y_range;
    let cb = (f64::from(u) - c_off) / c_range;
    let cr = (f64::from(v) - c_off) / c_range;
    let r = yv + 2.0 * (1.0 - kr) * cr;
    let b = yv + 2.0 * (1.0 - kb) * cb;
    let g = (yv - kr * r - kb * b) / kg;
    [r, g, b].map(|c| c.clamp(0.0, 1.0))
}

/// R'G'B' (in [0, 1]) to unrounded Y'CbCr codes in float64: the reference.
fn ref_to_yuv(yuv: YuvMatrix, bits: u32, rgb: [f64; 3]) -> [f64; 3] {
    let (kr, kb) = (f64::from(yuv.kr), f64::from(yuv.kb));
    let kg = 1.0 - kr - kb;
    let [y_off, y_range, c_off, c_range] = ref_ranges(yuv, bits);
    let yv = kr * rgb[0] + kg * rgb[1] + kb * rgb[2];
    let cb = (rgb[2] - yv) / (2.0 * (1.0 - kb));
    let cr = (rgb[0] - yv) / (2.0 * (1.0 - kr));
    [
        y_off + yv * y_range,
        c_off + cb * c_range,
        c_off + cr * c_range,
    ]
}

#[test]
fn eight_bit_constants_are_unchanged() {
    for yuv in MATRICES {
        let k = yuv.coeffs();
        assert_eq!(k, yuv.coeffs_bits(8));
        assert_eq!((k.c_off, k.code_max), (128.0, 255.0));
        let t = yuv.coeffs_bits(10);
        assert_eq!((t.c_off, t.code_max), (512.0, 1023.0));
        if yuv.full_range {
            assert_eq!((t.y_off, t.y_range, t.c_range), (0.0, 1023.0, 1023.0));
        } else {
            assert_eq!((t.y_off, t.y_range, t.c_range), (64.0, 876.0, 896.0));
        }
    }
    for f in DEEP_YUV {
        assert_eq!(
            FrameLayout::packed(f, 4, 4, YuvMatrix::BT709)
                .yuv_coeffs()
                .code_max,
            1023.0
        );
    }
}

#[test]
fn known_ten_bit_colours() {
    // White is 1 within float32 rounding (876 * (1 / 876) in f32 is 0.99999994).
    let white = |rgb: [f32; 3]| rgb.iter().all(|&v| (v - 1.0).abs() < 1e-6);
    let k = YuvMatrix::BT2020.coeffs_bits(10);
    assert_eq!(k.to_rgb(64, 512, 512), [0.0; 3]);
    assert!(white(k.to_rgb(940, 512, 512)));
    assert_eq!(k.luma([0.0; 3]), 64);
    assert_eq!(k.luma([1.0; 3]), 940);
    assert_eq!(k.chroma([0.5; 3]), (512, 512));
    // BT.709 10-bit limited-range red is (250, 409, 960).
    let b = YuvMatrix::BT709.coeffs_bits(10);
    assert_eq!(b.luma([1.0, 0.0, 0.0]), 250);
    assert_eq!(b.chroma([1.0, 0.0, 0.0]), (409, 960));
    // Full range: 1023 is white.
    let f = YuvMatrix::BT601_FULL.coeffs_bits(10);
    assert!(white(f.to_rgb(1023, 512, 512)));
    assert_eq!(f.to_rgb(0, 512, 512), [0.0; 3]);
    assert_eq!(f.luma([1.0; 3]), 1023);
}

#[test]
fn rgba64_round_trip_is_exact_for_every_value() {
    let (w, h) = (256, 256);
    let l = padded(PixelFormat::Rgba64, w, h, YuvMatrix::BT709);
    check_layout(&l).unwrap();
    let mut next = xorshift(3);
    let mut src: Vec<u8> = (0..l.size).map(|_| next() as u8).collect();
    // R takes every 16-bit value once.
    for y in 0..h {
        for x in 0..w {
            let i = l.offsets[0] + y * l.strides[0] + 8 * x;
            put16(&mut src, i, (y * w + x) as u16);
        }
    }
    let mut rgb = vec![0.0f32; 3 * w * h];
    to_planar_rgb(&l, &src, &mut rgb).unwrap();
    let worst = (0..w * h)
        .map(|v| (f64::from(rgb[v]) - v as f64 / 65535.0).abs())
        .fold(0.0, f64::max);
    eprintln!("RGBA64 in: worst |v/65535 (f32) - v/65535 (f64)| = {worst:e}");
    assert!(worst < 1e-7, "{worst}");
    let mut dst = src.clone();
    from_planar_rgb(&l, &rgb, &mut dst).unwrap();
    for y in 0..h {
        for x in 0..w {
            let i = l.offsets[0] + y * l.strides[0] + 8 * x;
            assert_eq!(dst[i..i + 6], src[i..i + 6], "({x},{y})");
            assert_eq!(get16(&dst, i + 6), 65535, "alpha");
        }
    }
    // Row padding is not touched.
    assert_eq!(dst[..l.offsets[0]], src[..l.offsets[0]]);
}

/// Every legal luma code survives Y'CbCr -> float -> Y'CbCr, and each gives its own float:
/// nothing is rounded to 8 bits on the way.
#[test]
fn ten_bit_codes_round_trip_without_8_bit_rounding() {
    for format in DEEP_YUV {
        for yuv in MATRICES {
            let ((lo, hi), _) = legal(yuv);
            let n = usize::from(hi - lo + 1);
            let (w, h) = (64, n.div_ceil(64) + n.div_ceil(64) % 2);
            let l = padded(format, w, h, yuv);
            check_layout(&l).unwrap();
            let mut src = vec![0x5au8; l.size];
            let code = |x: usize, y: usize| lo + ((y * w + x) % n) as u16;
            fill_codes(&l, &mut src, code, |_, _| (512, 512));
            let mut rgb = vec![0.0f32; 3 * w * h];
            to_planar_rgb(&l, &src, &mut rgb).unwrap();
            let mut distinct: Vec<u32> = rgb[..w * h].iter().map(|v| v.to_bits()).collect();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), n, "{format:?} {yuv:?}: distinct levels");
            let mut again = src.clone();
            from_planar_rgb(&l, &rgb, &mut again).unwrap();
            assert_eq!(again, src, "{format:?} {yuv:?}");
        }
    }
}

/// Random legal codes in, compared with the float64 conversion; float64 R'G'B' out, compared
/// with the float64 codes before rounding. Also the quantisation error of float -> 10 bits ->
/// float against float -> 8 bits -> float on the same picture.
#[test]
fn error_against_a_float_reference() {
    let (w, h) = (48, 32);
    for format in DEEP_YUV {
        let (sx, sy) = format.chroma_block().unwrap();
        for (mi, yuv) in MATRICES.into_iter().enumerate() {
            let l = padded(format, w, h, yuv);
            let ((ylo, yhi), (clo, chi)) = legal(yuv);
            let mut next = xorshift(11 + mi as u64);
            let mut pick = |lo: u16, hi: u16| lo + (next() % u64::from(hi - lo + 1)) as u16;
            let lum: Vec<u16> = (0..w * h).map(|_| pick(ylo, yhi)).collect();
            let chr: Vec<(u16, u16)> = (0..w * h)
                .map(|_| (pick(clo, chi), pick(clo, chi)))
                .collect();
            let mut src = vec![0u8; l.size];
            fill_codes(
                &l,
                &mut src,
                |x, y| lum[y * w + x],
                |cx, cy| chr[cy * w + cx],
            );
            let mut rgb = vec![0.0f32; 3 * w * h];
            to_planar_rgb(&l, &src, &mut rgb).unwrap();
            let mut worst_in = 0.0f64;
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = chr[(y / sy) * w + x / sx];
                    let r = ref_to_rgb(yuv, 10, lum[y * w + x], u, v);
                    for (c, rc) in r.iter().enumerate() {
                        let d = (f64::from(rgb[c * w * h + y * w + x]) - rc).abs();
                        worst_in = worst_in.max(d);
                    }
                }
            }
            // Out: smooth float R'G'B' (no clamping) against the float64 codes.
            let smooth: Vec<f32> = (0..3 * w * h)
                .map(|i| {
                    let (c, p) = (i / (w * h), i % (w * h));
                    let (x, y) = ((p % w) as f32, (p / w) as f32);
                    0.5 + 0.4 * ((x * 0.13 + y * 0.07 + c as f32).sin())
                })
                .collect();
            let mut out = vec![0u8; l.size];
            from_planar_rgb(&l, &smooth, &mut out).unwrap();
            let at = |c: usize, x: usize, y: usize| f64::from(smooth[c * w * h + y * w + x]);
            let mut worst_out = 0.0f64;
            let sb = format.sample_bytes();
            for y in 0..h {
                for x in 0..w {
                    let want = ref_to_yuv(yuv, 10, [at(0, x, y), at(1, x, y), at(2, x, y)])[0];
                    let got = get_code(format, &out, l.offsets[0] + y * l.strides[0] + sb * x);
                    worst_out = worst_out.max((f64::from(got) - want).abs());
                }
            }
            for cy in 0..h / sy {
                for cx in 0..w / sx {
                    let mut mean = [0.0f64; 3];
                    for y in sy * cy..sy * cy + sy {
                        for x in sx * cx..sx * cx + sx {
                            for (c, m) in mean.iter_mut().enumerate() {
                                *m += at(c, x, y) / (sx * sy) as f64;
                            }
                        }
                    }
                    let want = ref_to_yuv(yuv, 10, mean);
                    let (u, v) = chroma_at(&l, &out, cx, cy);
                    worst_out = worst_out.max((f64::from(u) - want[1]).abs());
                    worst_out = worst_out.max((f64::from(v) - want[2]).abs());
                }
            }
            // Quantisation: a grey ramp (no chroma) float -> 10 bits -> float, and the same
            // through 8-bit I420 (same matrix and range).
            let grey: Vec<f32> = (0..3 * w * h)
                .map(|i| 0.05 + 0.9 * ((i % (w * h)) as f32 / (w * h) as f32))
                .collect();
            let round_trip = |l: &FrameLayout| {
                let mut bytes = vec![0u8; l.size];
                from_planar_rgb(l, &grey, &mut bytes).unwrap();
                let mut back = vec![0.0f32; 3 * w * h];
                to_planar_rgb(l, &bytes, &mut back).unwrap();
                let se: f64 = grey
                    .iter()
                    .zip(&back)
                    .map(|(a, b)| f64::from(a - b).powi(2))
                    .sum();
                (se / grey.len() as f64).sqrt()
            };
            let q10 = round_trip(&l);
            let q8 = round_trip(&FrameLayout::packed(PixelFormat::I420, w, h, yuv));
            eprintln!(
                "{format:?} {yuv:?}: in worst {worst_in:.2e} (of 1); out worst {worst_out:.3} \
                 codes before rounding; grey round trip RMS {q10:.2e} at 10 bits, {q8:.2e} \
                 through 8-bit I420"
            );
            assert!(worst_in < 1e-6, "{format:?} {yuv:?}: in {worst_in}");
            assert!(
                worst_out <= 0.5 + 1e-3,
                "{format:?} {yuv:?}: out {worst_out}"
            );
            assert!(q10 < q8 / 3.0, "{format:?} {yuv:?}: {q10} vs {q8}");
        }
    }
}

#[test]
fn p010_ignores_and_clears_the_low_bits() {
    let l = padded(PixelFormat::P010, 6, 4, YuvMatrix::BT2020);
    let mut clean = vec![0u8; l.size];
    fill_codes(
        &l,
        &mut clean,
        |x, y| 64 + (x * 37 + y * 101) as u16,
        |cx, cy| (300 + (cx * 50) as u16, 700 - (cy * 60) as u16),
    );
    let mut dirty = clean.clone();
    for p in 0..2 {
        let (row, rows) = plane_extent(&l, p);
        for y in 0..rows {
            for i in (0..row).step_by(2) {
                dirty[l.offsets[p] + y * l.strides[p] + i] |= 0x2b; // low 6 bits
            }
        }
    }
    let (mut a, mut b) = (vec![0.0f32; 72], vec![0.0f32; 72]);
    to_planar_rgb(&l, &clean, &mut a).unwrap();
    to_planar_rgb(&l, &dirty, &mut b).unwrap();
    assert_eq!(a, b);
    let mut out = dirty.clone();
    from_planar_rgb(&l, &a, &mut out).unwrap();
    for p in 0..2 {
        let (row, rows) = plane_extent(&l, p);
        for y in 0..rows {
            for i in (0..row).step_by(2) {
                assert_eq!(out[l.offsets[p] + y * l.strides[p] + i] & 0x3f, 0);
            }
        }
    }
}

#[test]
fn odd_sizes_of_subsampled_ten_bit_formats_are_refused() {
    for (format, w, h, refused) in [
        (PixelFormat::P010, 7, 4, true),
        (PixelFormat::P010, 8, 5, true),
        (PixelFormat::I420P10, 3, 3, true),
        (PixelFormat::I422P10, 5, 2, true),
        (PixelFormat::I422P10, 6, 3, false),
        (PixelFormat::Y444P10, 5, 3, false),
        (PixelFormat::Rgba64, 5, 3, false),
        (PixelFormat::I420, 5, 3, false),
        (PixelFormat::Nv12, 1, 1, false),
    ] {
        let l = FrameLayout::packed(format, w, h, YuvMatrix::BT2020);
        let r = check_layout(&l);
        assert_eq!(r.is_err(), refused, "{format:?} {w}x{h}: {r:?}");
        if let Err(e) = r {
            assert!(e.to_string().contains("odd size"), "{e}");
            let mut rgb = vec![0.0f32; 3 * w * h];
            assert!(to_planar_rgb(&l, &vec![0u8; l.size], &mut rgb).is_err());
        }
        assert_eq!(odd_size_problem(format, w, h).is_some(), refused);
    }
}

#[test]
fn deep_layouts_fit_their_planes() {
    for format in DEEP_YUV.into_iter().chain([PixelFormat::Rgba64]) {
        let l = FrameLayout::packed(format, 6, 4, YuvMatrix::BT709);
        check_layout(&l).unwrap();
        let want = match format {
            PixelFormat::Rgba64 => 6 * 4 * 8,
            PixelFormat::Y444P10 => 3 * 6 * 4 * 2,
            PixelFormat::I422P10 => (6 * 4 + 2 * 3 * 4) * 2,
            _ => (6 * 4 + 2 * 3 * 2) * 2,
        };
        assert_eq!(l.size, want, "{format:?}");
        let mut short = l.clone();
        short.size -= 1;
        assert!(check_layout(&short).is_err(), "{format:?}");
    }
}
