// SPDX-License-Identifier: MIT OR Apache-2.0
//! Decoding a video to packed RGB, with the exact YUV formula for 4:2:0.

use std::path::Path;

use gst::prelude::*;
use gst_video::prelude::*;

use crate::options::Convert;
use crate::pipeline::{BusLog, appsink, make, run_to_eos};

/// Decoded frames, each packed RGB (`width * 3` bytes a row, no padding).
pub(crate) struct Video {
    pub(crate) width: usize,
    pub(crate) height: usize,
    pub(crate) fps: gst::Fraction,
    pub(crate) frames: Vec<Vec<u8>>,
    /// How the frames were made RGB, for the report.
    pub(crate) rgb_from: String,
}

/// YUV to RGB with the exact formula (no integer approximation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ExactYuvToRgb {
    pub(crate) kr: f64,
    pub(crate) kb: f64,
    pub(crate) full_range: bool,
}

impl ExactYuvToRgb {
    pub(crate) const BT601_LIMITED: ExactYuvToRgb = ExactYuvToRgb {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };

    /// The matrix and range the caps name; what the caps leave out is BT.601 limited range,
    /// as FFmpeg does for untagged video (GStreamer would guess BT.709 for HD sizes).
    pub(crate) fn from_caps(s: &gst::StructureRef) -> Result<(ExactYuvToRgb, String), String> {
        let Ok(text) = s.get::<&str>("colorimetry") else {
            return Ok((
                Self::BT601_LIMITED,
                "untagged: BT.601 limited range".to_string(),
            ));
        };
        let c = text
            .parse::<gst_video::VideoColorimetry>()
            .map_err(|_| format!("the decoder's caps have an unknown colorimetry `{text}`"))?;
        let (kr, kb) = match c.matrix() {
            gst_video::VideoColorMatrix::Unknown => (0.299, 0.114),
            m => m
                .kr_kb()
                .map_err(|_| format!("colorimetry `{text}` has no YUV matrix"))?,
        };
        let full_range = c.range() == gst_video::VideoColorRange::Range0_255;
        let range = if full_range { "full" } else { "limited" };
        Ok((
            ExactYuvToRgb { kr, kb, full_range },
            format!("colorimetry {text}: Kr {kr}, Kb {kb}, {range} range"),
        ))
    }

    /// One pixel; rounded to nearest, clamped to 0..255.
    pub(crate) fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let (y, u, v) = (f64::from(y), f64::from(u), f64::from(v));
        let (y, cb, cr) = if self.full_range {
            (y, u - 128.0, v - 128.0)
        } else {
            (
                (y - 16.0) * 255.0 / 219.0,
                (u - 128.0) * 255.0 / 224.0,
                (v - 128.0) * 255.0 / 224.0,
            )
        };
        let (kr, kb) = (self.kr, self.kb);
        let r = y + 2.0 * (1.0 - kr) * cr;
        let b = y + 2.0 * (1.0 - kb) * cb;
        let g = (y - kr * r - kb * b) / (1.0 - kr - kb);
        let q = |x: f64| (x + 0.5).floor().clamp(0.0, 255.0) as u8;
        [q(r), q(g), q(b)]
    }
}

/// Packed RGB of a mapped video frame: RGB copied row by row, I420 converted with `m`.
pub(crate) fn packed_rgb(
    frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    m: &ExactYuvToRgb,
) -> Result<Vec<u8>, String> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let plane = |i: u32| {
        frame
            .plane_data(i)
            .map_err(|e| format!("cannot read plane {i} of a decoded frame: {e}"))
    };
    let stride = |i: usize| frame.plane_stride()[i] as usize;
    let mut out = vec![0u8; w * h * 3];
    match frame.format() {
        gst_video::VideoFormat::Rgb => {
            let p = plane(0)?;
            for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
                row.copy_from_slice(&p[y * stride(0)..y * stride(0) + w * 3]);
            }
        }
        gst_video::VideoFormat::I420 => {
            let (py, pu, pv) = (plane(0)?, plane(1)?, plane(2)?);
            for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
                let (ry, rc) = (y * stride(0), (y / 2) * stride(1));
                let rv = (y / 2) * stride(2);
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    px.copy_from_slice(&m.rgb(py[ry + x], pu[rc + x / 2], pv[rv + x / 2]));
                }
            }
        }
        f => return Err(format!("unexpected decoded format {f:?}")),
    }
    Ok(out)
}

/// The frame `info` describes (RGB) made of packed RGB `rgb`: its rows at the stride `info`
/// gives.
pub(crate) fn padded_rgb(rgb: &[u8], info: &gst_video::VideoInfo) -> Vec<u8> {
    let (w, stride) = (info.width() as usize, info.stride()[0] as usize);
    let mut data = vec![0u8; info.size()];
    for (y, row) in rgb.chunks_exact(w * 3).enumerate() {
        data[y * stride..y * stride + w * 3].copy_from_slice(row);
    }
    data
}

/// Decodes a video file to packed RGB (see the module doc for `convert`).
pub(crate) fn decode(path: &Path, convert: Convert) -> Result<Video, String> {
    if !path.is_file() {
        return Err(format!("{}: no such file", path.display()));
    }
    let pipeline = gst::Pipeline::new();
    let src = make("filesrc")?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let decodebin = make("decodebin")?;
    let conv = make("videoconvert")?;
    let sink = appsink()?;
    let caps = match convert {
        // I420 passes through from 4:2:0 decoders; RGB-family decodes become RGB losslessly.
        Convert::Exact => "video/x-raw,format={I420,RGB}",
        Convert::VideoConvert => "video/x-raw,format=RGB",
    };
    sink.set_property(
        "caps",
        caps.parse::<gst::Caps>().map_err(|e| e.to_string())?,
    );
    pipeline
        .add_many([&src, &decodebin, &conv, &sink])
        .map_err(|e| e.to_string())?;
    src.link(&decodebin).map_err(|e| e.to_string())?;
    gst::Element::link_many([&conv, &sink]).map_err(|e| e.to_string())?;
    let conv_weak = conv.downgrade();
    decodebin.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if let (true, Some(conv)) = (is_video, conv_weak.upgrade())
            && let Some(sinkpad) = conv.static_pad("sink")
            && !sinkpad.is_linked()
        {
            let _ = pad.link(&sinkpad);
        }
    });

    let mut frames = Vec::new();
    let mut first: Option<(usize, usize, gst::Fraction, String)> = None;
    let mut matrix = ExactYuvToRgb::BT601_LIMITED;
    let mut log = BusLog::default();
    run_to_eos(&pipeline, &sink, &mut log, |sample| {
        let caps = sample.caps().ok_or("a decoded sample without caps")?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        match &first {
            None => {
                let s = caps.structure(0).ok_or("empty caps")?;
                let rgb_from = match info.format() {
                    gst_video::VideoFormat::I420 => {
                        let (m, how) = ExactYuvToRgb::from_caps(s)?;
                        matrix = m;
                        format!("I420 -> RGB here, exact formula, {how}, chroma per 2x2")
                    }
                    _ if convert == Convert::VideoConvert => "videoconvert to RGB".to_string(),
                    f => format!("{f:?} -> RGB by videoconvert"),
                };
                first = Some((w, h, info.fps(), rgb_from));
            }
            Some((fw, fh, ..)) if (*fw, *fh) != (w, h) => {
                return Err(format!("the size changes from {fw}x{fh} to {w}x{h}"));
            }
            _ => {}
        }
        let buffer = sample.buffer().ok_or("a decoded sample without a buffer")?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|_| "cannot map a decoded frame".to_string())?;
        frames.push(packed_rgb(&frame, &matrix)?);
        Ok(())
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let (width, height, fps, rgb_from) =
        first.ok_or_else(|| format!("{}: no video frame decoded", path.display()))?;
    Ok(Video {
        width,
        height,
        fps,
        frames,
        rgb_from,
    })
}

/// Raw `rgb24` frames of `w` x `h`.
pub(crate) fn read_raw_rgb(path: &Path, w: usize, h: usize) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = w * h * 3;
    if data.is_empty() || !data.len().is_multiple_of(size) {
        return Err(format!(
            "{}: {} bytes is not a whole number of {w}x{h} rgb24 frames",
            path.display(),
            data.len()
        ));
    }
    Ok(data.chunks_exact(size).map(<[u8]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::init;

    #[test]
    fn yuv_to_rgb_is_the_exact_formula() {
        let bt709_full = ExactYuvToRgb {
            kr: 0.2126,
            kb: 0.0722,
            full_range: true,
        };
        // Values of the float formula in numpy (round half up, clamp).
        for (yuv, bt601l, bt709f) in [
            ((81, 90, 240), [254, 0, 0], [255, 36, 10]),
            ((145, 54, 34), [0, 255, 1], [0, 203, 8]),
            ((41, 240, 110), [0, 0, 255], [13, 28, 249]),
            ((200, 100, 180), [255, 183, 158], [255, 181, 148]),
        ] {
            let (y, u, v) = yuv;
            assert_eq!(ExactYuvToRgb::BT601_LIMITED.rgb(y, u, v), bt601l, "{yuv:?}");
            assert_eq!(bt709_full.rgb(y, u, v), bt709f, "{yuv:?}");
        }
        assert_eq!(ExactYuvToRgb::BT601_LIMITED.rgb(235, 128, 128), [255; 3]);
        assert_eq!(ExactYuvToRgb::BT601_LIMITED.rgb(16, 128, 128), [0; 3]);
    }

    #[test]
    fn matrix_follows_the_caps_and_defaults_to_bt601_limited() {
        init();
        let s = |c: &str| c.parse::<gst::Caps>().unwrap();
        let m = |c: &gst::Caps| ExactYuvToRgb::from_caps(c.structure(0).unwrap()).unwrap().0;
        let untagged = s("video/x-raw,format=I420,width=1280,height=720");
        assert_eq!(m(&untagged), ExactYuvToRgb::BT601_LIMITED);
        let hd = m(&s("video/x-raw,format=I420,colorimetry=bt709"));
        assert_eq!((hd.kr, hd.kb, hd.full_range), (0.2126, 0.0722, false));
        let jpeg = m(&s("video/x-raw,format=I420,colorimetry=1:4:0:0"));
        assert_eq!((jpeg.kr, jpeg.kb, jpeg.full_range), (0.299, 0.114, true));
        let bad = s("video/x-raw,format=I420,colorimetry=nonsense");
        assert!(ExactYuvToRgb::from_caps(bad.structure(0).unwrap()).is_err());
    }
}
