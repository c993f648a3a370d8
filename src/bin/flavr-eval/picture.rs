// SPDX-License-Identifier: MIT OR Apache-2.0
//! The picture: crops of the frames side by side, written as PNG.

use std::path::Path;

use gst::prelude::*;

use crate::options::Rect;
use crate::pipeline::{BusLog, appsink, chain, make, pull_to_eos, start};
use crate::video::padded_rgb;

/// Encodes packed RGB as PNG with GStreamer's `pngenc`.
pub(crate) fn write_png(path: &Path, rgb: &[u8], w: usize, h: usize) -> Result<(), String> {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(gst::Fraction::new(1, 1))
        .build()
        .map_err(|e| e.to_string())?;
    let src = make("appsrc")?;
    src.set_property("caps", info.to_caps().map_err(|e| e.to_string())?);
    src.set_property_from_str("format", "time");
    let enc = make("pngenc")?;
    let sink = appsink()?;
    let pipeline = chain(&[&src, &enc, &sink])?;
    let mut buffer = gst::Buffer::from_mut_slice(padded_rgb(rgb, &info));
    if let Some(b) = buffer.get_mut() {
        b.set_pts(gst::ClockTime::ZERO);
        b.set_duration(gst::ClockTime::SECOND);
    }
    let mut log = BusLog::default();
    start(&pipeline, &mut log)?;
    let _ = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let mut png = None;
    pull_to_eos(&pipeline, &sink, &mut log, |sample| {
        let b = sample.buffer().ok_or("pngenc gave no buffer")?;
        let map = b.map_readable().map_err(|e| e.to_string())?;
        png = Some(map.as_slice().to_vec());
        Ok(())
    })?;
    let png = png.ok_or("pngenc gave no picture")?;
    std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `r` region of each frame, side by side, 4 white pixels apart.
pub(crate) fn side_by_side(frames: &[&[u8]], w: usize, r: Rect) -> (Vec<u8>, usize) {
    let gap = 4;
    let total = frames.len() * r.w + (frames.len() - 1) * gap;
    let mut out = vec![255u8; total * r.h * 3];
    for (i, f) in frames.iter().enumerate() {
        let x0 = i * (r.w + gap);
        for y in 0..r.h {
            let s = ((r.y + y) * w + r.x) * 3;
            let d = (y * total + x0) * 3;
            out[d..d + r.w * 3].copy_from_slice(&f[s..s + r.w * 3]);
        }
    }
    (out, total)
}

/// The `cw` x `ch` window (on an 8-pixel grid) with the largest error between `a` and `b`.
pub(crate) fn worst_window(a: &[u8], b: &[u8], w: usize, h: usize, cw: usize, ch: usize) -> Rect {
    // Summed-area table of the squared error (all channels).
    let mut sat = vec![0u64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0u64;
        for x in 0..w {
            for c in 0..3 {
                let i = (y * w + x) * 3 + c;
                let d = i64::from(a[i]) - i64::from(b[i]);
                row += (d * d) as u64;
            }
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    let sum = |x: usize, y: usize| {
        let at = |xx: usize, yy: usize| sat[yy * (w + 1) + xx];
        at(x + cw, y + ch) + at(x, y) - at(x + cw, y) - at(x, y + ch)
    };
    let mut best = (0u64, 0usize, 0usize);
    for y in (0..=h - ch).step_by(8) {
        for x in (0..=w - cw).step_by(8) {
            let s = sum(x, y);
            if s > best.0 {
                best = (s, x, y);
            }
        }
    }
    Rect {
        x: best.1,
        y: best.2,
        w: cw,
        h: ch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_window_finds_the_planted_error() {
        let (w, h) = (96, 64);
        let a = vec![100u8; w * h * 3];
        let mut b = a.clone();
        for y in 40..56 {
            for x in 16..40 {
                b[(y * w + x) * 3 + 1] = 0;
            }
        }
        assert_eq!(
            worst_window(&a, &b, w, h, 24, 16),
            Rect {
                x: 16,
                y: 40,
                w: 24,
                h: 16
            }
        );
    }
}
