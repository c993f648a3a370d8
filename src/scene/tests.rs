// SPDX-License-Identifier: MIT OR Apache-2.0
//! The detector on synthetic pictures: shots of smooth random structure that move, change
//! brightness, fade, or cut to another shot.

use super::*;
use crate::test_rng::{bytes as noise, unit};

const W: usize = 160;
const H: usize = 96;

/// A picture of shot `seed`: a few random waves and blobs, moved right by `shift` pixels; luma
/// in [0, 1] before `gain` and `offset` (in levels) are applied.
fn picture(seed: u64, shift: f32, gain: f32, offset: f32) -> Vec<f32> {
    let mut rnd = unit(seed);
    let waves: Vec<[f32; 4]> = (0..4)
        .map(|_| {
            [
                rnd() * 0.15,
                rnd() * 0.15,
                rnd() * std::f32::consts::TAU,
                0.5 + rnd(),
            ]
        })
        .collect();
    let blobs: Vec<[f32; 4]> = (0..5)
        .map(|_| {
            [
                rnd() * W as f32,
                rnd() * H as f32,
                6.0 + rnd() * 20.0,
                rnd() * 2.0 - 1.0,
            ]
        })
        .collect();
    let mut out = Vec::with_capacity(W * H);
    for y in 0..H {
        for x in 0..W {
            let (xf, yf) = (x as f32 - shift, y as f32);
            let mut v = 0.0;
            for w in &waves {
                v += w[3] * (w[0] * xf + w[1] * yf + w[2]).sin();
            }
            for b in &blobs {
                let d2 = (xf - b[0]).powi(2) + (yf - b[1]).powi(2);
                v += 2.0 * b[3] * (-d2 / (b[2] * b[2])).exp();
            }
            out.push(0.5 + v / 10.0);
        }
    }
    out.iter()
        .map(|v| (v.clamp(0.0, 1.0) * gain * 255.0 + offset).clamp(0.0, 255.0))
        .collect()
}

fn luma(p: &[f32]) -> Reduced {
    let bytes: Vec<u8> = p.iter().map(|v| v.round() as u8).collect();
    Reduced::from_plane(PixelFormat::I420, &bytes, W, W, H).unwrap()
}

fn scores(frames: &[Vec<f32>], threshold: f64) -> Vec<Measure> {
    let mut d = Detector::new(threshold);
    frames.iter().filter_map(|f| d.push(luma(f))).collect()
}

#[test]
fn brightness_and_contrast_do_not_matter() {
    let a = luma(&picture(1, 0.0, 1.0, 0.0));
    // The same picture at a fifth of the contrast, dark, and brighter.
    for (gain, offset) in [(0.2, 0.0), (0.15, 5.0), (0.8, 40.0)] {
        let b = luma(&picture(1, 0.0, gain, offset));
        let (diff, hist) = compare(&a, &b);
        assert!(diff < 0.01 && hist < 0.1, "{gain} {offset}: {diff} {hist}");
    }
}

#[test]
fn cuts_are_found_in_bright_and_dark_scenes() {
    for (gain, offset) in [(1.0, 0.0), (0.12, 2.0)] {
        let mut frames: Vec<Vec<f32>> = (0..10)
            .map(|t| picture(3, t as f32 * 1.5, gain, offset))
            .collect();
        frames.extend((0..10).map(|t| picture(4, t as f32 * 1.5, gain, offset)));
        let m = scores(&frames, DEFAULT_THRESHOLD);
        let cuts: Vec<usize> = (0..m.len()).filter(|&k| m[k].cut).map(|k| k + 1).collect();
        assert_eq!(cuts, vec![10], "gain {gain}: {m:?}");
        assert!(m[9].score >= DEFAULT_THRESHOLD, "{:?}", m[9]);
        let others = m
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != 9)
            .map(|(_, m)| m.score)
            .fold(0.0, f64::max);
        assert!(others < 0.1, "gain {gain}: {others}");
    }
}

#[test]
fn fades_are_not_cuts() {
    // A cross-fade of 8 frames from one shot to another, and a fade through black.
    let a = picture(5, 0.0, 1.0, 0.0);
    let b = picture(6, 0.0, 1.0, 0.0);
    let mix = |t: f32| -> Vec<f32> {
        a.iter()
            .zip(&b)
            .map(|(x, y)| x * (1.0 - t) + y * t)
            .collect()
    };
    let cross: Vec<Vec<f32>> = (0..=8).map(|k| mix(k as f32 / 8.0)).collect();
    let m = scores(&cross, DEFAULT_THRESHOLD);
    assert!(m.iter().all(|m| !m.cut), "{m:?}");
    let scale = |p: &[f32], g: f32| -> Vec<f32> { p.iter().map(|v| v * g).collect() };
    let mut through_black: Vec<Vec<f32>> =
        (0..=8).map(|k| scale(&a, 1.0 - k as f32 / 8.0)).collect();
    through_black.extend((1..=8).map(|k| scale(&b, k as f32 / 8.0)));
    let m = scores(&through_black, DEFAULT_THRESHOLD);
    assert!(m.iter().all(|m| !m.cut), "{m:?}");
    // The same shots joined without the fade: a cut.
    let m = scores(&[a.clone(), a.clone(), b.clone()], DEFAULT_THRESHOLD);
    assert!(m[1].cut, "{m:?}");
    // Black itself has no picture: from or to black is never a cut.
    let black = vec![0.0f32; W * H];
    let m = scores(&[a, black.clone(), b], DEFAULT_THRESHOLD);
    assert!(m.iter().all(|m| !m.cut && m.contrast < 1.0), "{m:?}");
}

#[test]
fn the_bar_rises_in_fast_shots() {
    // A shot that moves 12 pixels a frame: its diff is high, but steady.
    let frames: Vec<Vec<f32>> = (0..24)
        .map(|t| picture(7, t as f32 * 12.0, 1.0, 0.0))
        .collect();
    let m = scores(&frames, DEFAULT_THRESHOLD);
    let cuts = m.iter().filter(|m| m.cut).count();
    assert_eq!(cuts, 0, "{m:?}");
    assert!(m[20].typical > 0.02, "{:?}", m[20]);
}

#[test]
fn threshold_zero_turns_detection_off() {
    let frames = vec![picture(8, 0.0, 1.0, 0.0), picture(9, 0.0, 1.0, 0.0)];
    let m = scores(&frames, 0.0);
    assert_eq!(m.len(), 1);
    assert!(!m[0].cut && m[0].score > 0.5, "{m:?}");
}

#[test]
fn reset_forgets_the_previous_frame() {
    let mut d = Detector::new(DEFAULT_THRESHOLD);
    assert!(d.push(luma(&picture(1, 0.0, 1.0, 0.0))).is_none());
    d.reset();
    assert!(d.push(luma(&picture(2, 0.0, 1.0, 0.0))).is_none());
    assert!(
        d.push(luma(&picture(2, 1.0, 1.0, 0.0)))
            .is_some_and(|m| !m.cut)
    );
}

#[test]
fn packed_rgb_and_strides_reduce_like_the_luma_plane() {
    let p = picture(10, 0.0, 1.0, 0.0);
    let y = luma(&p);
    // BGRx with padding at the end of each row: grey pixels have luma = the grey level.
    let stride = W * 4 + 12;
    let mut bgrx = vec![0u8; stride * H];
    for row in 0..H {
        for x in 0..W {
            let v = p[row * W + x].round() as u8;
            bgrx[row * stride + x * 4..row * stride + x * 4 + 4].copy_from_slice(&[v, v, v, 0]);
        }
    }
    let r = Reduced::from_plane(PixelFormat::Bgrx, &bgrx, stride, W, H).unwrap();
    let (diff, hist) = compare(&y, &r);
    assert!(diff < 1e-4 && hist < 0.01, "{diff} {hist}");
    // The last row may end without the padding; one byte less is refused.
    let short = &bgrx[..stride * (H - 1) + W * 4];
    assert!(Reduced::from_plane(PixelFormat::Bgrx, short, stride, W, H).is_ok());
    let e = Reduced::from_plane(PixelFormat::Bgrx, &short[..short.len() - 1], stride, W, H);
    assert!(matches!(e, Err(SceneError::Short { .. })), "{e:?}");
    assert!(Reduced::from_plane(PixelFormat::Rgb, &[], 0, 0, 4).is_err());
    // Frames smaller than the grid: one box per pixel.
    let tiny = Reduced::from_plane(PixelFormat::I420, &[0, 255, 255, 0], 2, 2, 2).unwrap();
    assert_eq!(tiny.z.len(), 4);
}

#[test]
fn deep_samples_reduce_in_8_bit_levels() {
    let p = picture(12, 0.0, 1.0, 0.0);
    let codes: Vec<u16> = p.iter().map(|v| v.round() as u16).collect();
    let y8: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
    let y8 = Reduced::from_plane(PixelFormat::I420, &y8, W, W, H).unwrap();
    let le = |f: &dyn Fn(u16) -> u16| -> Vec<u8> {
        codes.iter().flat_map(|&c| f(c).to_le_bytes()).collect()
    };
    // The same picture as 10-bit codes (low bits, and P010's top bits) and as 16-bit grey RGB:
    // the same box means, so the same reduced frame.
    for (format, bytes, bpp) in [
        (PixelFormat::I420P10, le(&|c| c * 4), 2),
        (PixelFormat::Y444P10, le(&|c| c * 4), 2),
        (PixelFormat::P010, le(&|c| (c * 4) << 6), 2),
    ] {
        let r = Reduced::from_plane(format, &bytes, W * bpp, W, H).unwrap();
        assert_eq!(r, y8, "{format:?}");
    }
    let rgba64: Vec<u8> = codes
        .iter()
        .flat_map(|&c| {
            let v = (c * 257).to_le_bytes();
            [v[0], v[1], v[0], v[1], v[0], v[1], 0, 0]
        })
        .collect();
    let r = Reduced::from_plane(PixelFormat::Rgba64, &rgba64, W * 8, W, H).unwrap();
    let (diff, hist) = compare(&y8, &r);
    assert!(diff < 1e-6 && hist < 1e-6, "{diff} {hist}");
    // One byte short of the last 16-bit sample is refused.
    let bytes = le(&|c| c * 4);
    let e = Reduced::from_plane(PixelFormat::I420P10, &bytes[..bytes.len() - 1], W * 2, W, H);
    assert!(matches!(e, Err(SceneError::Short { .. })), "{e:?}");
}

#[test]
fn cuts_next_to_black() {
    // Shot a fades down to dark (gain 1 to 0.1, still a picture), then a hard cut to shot b:
    // the cut is found at b. A fade all the way to black then a cut from black to b: black has
    // no picture, so no cut is posted there (the frames between black and b are interpolated,
    // a one-frame fade-in: no ghost of a, which black already ended).
    let a = |g: f32| picture(7, 0.0, g, 0.0);
    let b = picture(8, 0.0, 1.0, 0.0);
    let mut dark: Vec<Vec<f32>> = [1.0, 0.7, 0.45, 0.25, 0.1].iter().map(|&g| a(g)).collect();
    dark.push(b.clone());
    let m = scores(&dark, DEFAULT_THRESHOLD);
    eprintln!(
        "dark then cut: {:?}",
        m.iter().map(|m| (m.score, m.contrast)).collect::<Vec<_>>()
    );
    assert!(m[..m.len() - 1].iter().all(|m| !m.cut), "{m:?}");
    assert!(m.last().unwrap().cut, "{m:?}");
    let mut black: Vec<Vec<f32>> = [1.0, 0.5, 0.2, 0.0].iter().map(|&g| a(g)).collect();
    black.push(b);
    let m = scores(&black, DEFAULT_THRESHOLD);
    eprintln!(
        "black then cut: {:?}",
        m.iter().map(|m| (m.score, m.contrast)).collect::<Vec<_>>()
    );
    assert!(m.iter().all(|m| !m.cut), "{m:?}");
}

/// Every format the reduction reads.
const FORMATS: [PixelFormat; 12] = PixelFormat::ALL;

/// The reduction as it was before the box sums were split out (each column's box computed as
/// `x * gw / width`, sums and weights accumulated per pixel), kept to check the split.
fn former_reduction(f: PixelFormat, plane: &[u8], stride: usize, w: usize, h: usize) -> Reduced {
    let sb = f.sample_bytes();
    let bpp = f.packed().map_or(sb, |(bpp, _)| bpp);
    let level = match (f.bits(), f.code_shift()) {
        (8, _) => 1,
        (10, 0) => 4,
        (10, _) => 256,
        _ => 257,
    };
    let sample = |px: &[u8], i: usize| {
        if sb == 2 {
            u64::from(u16::from_le_bytes([px[i], px[i + 1]]))
        } else {
            u64::from(px[i])
        }
    };
    let (gw, gh) = (w.min(GRID.0), h.min(GRID.1));
    let mut sums = vec![0u64; gw * gh];
    let mut counts = vec![0u64; gw * gh];
    for y in 0..h {
        let gy = y * gh / h;
        for x in 0..w {
            let px = &plane[y * stride + x * bpp..];
            let i = gy * gw + x * gw / w;
            match f.packed() {
                None => {
                    sums[i] += sample(px, 0);
                    counts[i] += level;
                }
                Some((_, [r, g, b])) => {
                    sums[i] += 77 * sample(px, r) + 150 * sample(px, g) + 29 * sample(px, b);
                    counts[i] += 256 * level;
                }
            }
        }
    }
    let means: Vec<f32> = sums
        .iter()
        .zip(&counts)
        .map(|(&s, &c)| (s as f64 / c.max(1) as f64) as f32)
        .collect();
    Reduced::from_means(&means)
}

#[test]
fn box_edges_hold_the_pixels_of_each_box() {
    for len in 1..300 {
        for boxes in 1..=len.min(70) {
            let e = box_edges(len, boxes);
            assert_eq!((e[0], e[boxes]), (0, len), "{len} {boxes}");
            for b in 0..boxes {
                assert!(e[b] < e[b + 1], "box {b} of {boxes} over {len} is empty");
                for x in e[b]..e[b + 1] {
                    assert_eq!(x * boxes / len, b, "pixel {x} of {len}, {boxes} boxes");
                }
            }
        }
    }
}

#[test]
fn box_sums_reduce_exactly_as_before() {
    for (i, &f) in FORMATS.iter().enumerate() {
        for (w, h, pad) in [
            (101, 57, 0),
            (101, 57, 13),
            (7, 5, 3),
            (160, 96, 0),
            (301, 203, 6),
        ] {
            let p = Plane {
                format: f,
                width: w,
                height: h,
                stride: w * f.packed().map_or(f.sample_bytes(), |(bpp, _)| bpp) + pad,
            };
            let bytes = noise((i * 1000 + w) as u64, p.stride * h);
            let sums = p.box_sums(&bytes).unwrap();
            assert_eq!(sums.len(), p.grid().0 * p.grid().1);
            let r = Reduced::from_box_sums(&p, &sums).unwrap();
            assert_eq!(
                r,
                former_reduction(f, &bytes, p.stride, w, h),
                "{f:?} {w}x{h}+{pad}"
            );
            assert_eq!(Reduced::from_plane(f, &bytes, p.stride, w, h).unwrap(), r);
            // Sums of a picture (not noise) too.
            if f == PixelFormat::I420 && (w, h) == (160, 96) {
                let pic: Vec<u8> = picture(3, 0.0, 1.0, 0.0).iter().map(|v| *v as u8).collect();
                let r = Reduced::from_box_sums(&p, &p.box_sums(&pic).unwrap()).unwrap();
                assert_eq!(r, former_reduction(f, &pic, w, w, h));
            }
        }
    }
}

#[test]
fn box_sums_of_another_grid_are_refused() {
    let p = Plane {
        format: PixelFormat::I420,
        width: 101,
        height: 57,
        stride: 101,
    };
    let e = Reduced::from_box_sums(&p, &[0; 64 * 35]);
    assert!(
        matches!(
            e,
            Err(SceneError::Sums {
                got: 2240,
                want: 2304
            })
        ),
        "{e:?}"
    );
    let empty = Plane { width: 0, ..p };
    let e = Reduced::from_box_sums(&empty, &[]);
    assert!(matches!(e, Err(SceneError::Empty { .. })), "{e:?}");
    // One byte short of the last pixel is refused by the sums as by the reduction.
    let e = p.box_sums(&vec![0; 101 * 57 - 1]);
    assert!(matches!(e, Err(SceneError::Short { .. })), "{e:?}");
}
