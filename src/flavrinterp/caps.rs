// SPDX-License-Identifier: MIT OR Apache-2.0
//! Caps arithmetic of `flavrinterp`: the formats it takes, frame rates times or over the
//! factor (caps transform and fixation), why caps are refused, and the backend's view of the
//! negotiated format.

use gst::glib;
use gst::prelude::*;
use gst_video::VideoFormat;

use crate::backend::{FrameLayout, PixelFormat, YuvMatrix};
use crate::error::Error;

/// The formats the backends convert to and from the network's RGB; the same format goes out.
/// The 8-bit ones first: what upstream picks when it can give anything. The 10- and 16-bit
/// ones never pass through 8 bits (src/backend/pixels.rs).
const FORMATS: [(VideoFormat, PixelFormat); 12] = [
    (VideoFormat::Rgb, PixelFormat::Rgb),
    (VideoFormat::Rgba, PixelFormat::Rgba),
    (VideoFormat::Bgra, PixelFormat::Bgra),
    (VideoFormat::Rgbx, PixelFormat::Rgbx),
    (VideoFormat::Bgrx, PixelFormat::Bgrx),
    (VideoFormat::I420, PixelFormat::I420),
    (VideoFormat::Nv12, PixelFormat::Nv12),
    (VideoFormat::P01010le, PixelFormat::P010),
    (VideoFormat::I42010le, PixelFormat::I420P10),
    (VideoFormat::I42210le, PixelFormat::I422P10),
    (VideoFormat::Y44410le, PixelFormat::Y444P10),
    (VideoFormat::Rgba64Le, PixelFormat::Rgba64),
];
const FORMAT_NAMES: &str = "RGB, RGBA, BGRA, RGBx, BGRx, I420, NV12, P010_10LE, I420_10LE, \
                            I422_10LE, Y444_10LE and RGBA64_LE";

/// The backend's pixel format of a GStreamer one, if the element takes it.
fn pixel_format(f: VideoFormat) -> Option<PixelFormat> {
    FORMATS.iter().find(|(v, _)| *v == f).map(|&(_, p)| p)
}

/// Multiplies (`up`) or divides a frame rate by `factor`; `None` when it does not fit.
fn scale_fraction(fr: gst::Fraction, factor: u32, up: bool) -> Option<gst::Fraction> {
    let (mut n, mut d) = (i64::from(fr.numer()), i64::from(fr.denom()));
    if d <= 0 || n < 0 {
        return None;
    }
    if up {
        n *= i64::from(factor);
    } else {
        d *= i64::from(factor);
    }
    if n == 0 {
        return Some(gst::Fraction::new(0, 1));
    }
    let g = gcd(n, d);
    let (n, d) = (n / g, d / g);
    Some(gst::Fraction::new(
        i32::try_from(n).ok()?,
        i32::try_from(d).ok()?,
    ))
}

fn gcd(mut a: i64, mut b: i64) -> i64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// Scales a `framerate` caps value (fraction, range or list). `None`: no rate of it fits.
fn scale_rate(v: &glib::Value, factor: u32, up: bool) -> Option<glib::SendValue> {
    if let Ok(fr) = v.get::<gst::Fraction>() {
        return scale_fraction(fr, factor, up).map(|f| f.to_send_value());
    }
    if let Ok(r) = v.get::<gst::FractionRange>() {
        let min = scale_fraction(r.min(), factor, up)?;
        let max = scale_fraction(r.max(), factor, up).unwrap_or(gst::Fraction::new(i32::MAX, 1));
        if min >= max {
            return Some(min.to_send_value());
        }
        return Some(gst::FractionRange::new(min, max).to_send_value());
    }
    if let Ok(l) = v.get::<gst::List>() {
        let items: Vec<glib::SendValue> =
            l.iter().filter_map(|v| scale_rate(v, factor, up)).collect();
        return (!items.is_empty()).then(|| gst::List::from_values(items).to_send_value());
    }
    None
}

/// The caps of both pad templates: the formats the backends convert, progressive only (the
/// network has no notion of fields). Any size: the backends pad to a multiple of 8 and crop
/// back.
/// With the CUDA backend built, the formats of [`super::cuda_path::FORMATS`] in CUDA memory
/// come first: whether they are offered is decided at run time (libgstcuda, the GPU, the
/// pipeline's context; [`super::cuda_path::memory_variants`]), since GStreamer's registry keeps
/// the templates across runs.
pub(super) fn template() -> gst::Caps {
    let system = gst_video::VideoCapsBuilder::new()
        .format_list(FORMATS.iter().map(|&(v, _)| v))
        .field("interlace-mode", "progressive")
        .build();
    if !cfg!(feature = "cuda") {
        return system;
    }
    let mut caps = super::cuda_path::template();
    caps.merge(system);
    caps
}

/// `caps` with every frame rate multiplied (`up`: sink to src) or divided by `factor`;
/// structures with no rate that fits are left out.
pub(super) fn transform(caps: &gst::Caps, factor: u32, up: bool) -> Option<gst::Caps> {
    let mut out = gst::Caps::new_empty();
    {
        let out = out.get_mut()?;
        for (s, features) in caps.iter_with_features() {
            let mut s = s.to_owned();
            if let Ok(v) = s.value("framerate") {
                match scale_rate(v, factor, up) {
                    Some(v) => s.set_value("framerate", v),
                    None => continue,
                }
            }
            out.append_structure_full(s, Some(features.to_owned()));
        }
    }
    Some(out)
}

/// Fixates `othercaps` for the fixed `caps` on the other side, preferring `transformed` (what
/// `caps` transforms to): same size, rate times (`up`) or over `factor`.
pub(super) fn fixate(
    caps: &gst::Caps,
    othercaps: gst::Caps,
    transformed: Option<&gst::Caps>,
    factor: u32,
    up: bool,
) -> gst::Caps {
    let mut other = othercaps;
    if let Some(t) = transformed {
        let i = other.intersect_with_mode(t, gst::CapsIntersectMode::First);
        if !i.is_empty() {
            other = i;
        }
    }
    other.truncate();
    if let Some(s_in) = caps.structure(0)
        && let Some(s_out) = other.make_mut().structure_mut(0)
    {
        for dim in ["width", "height"] {
            if let Ok(v) = s_in.get::<i32>(dim)
                && s_out.has_field(dim)
            {
                s_out.fixate_field_nearest_int(dim, v);
            }
        }
        if let Ok(fr) = s_in.get::<gst::Fraction>("framerate")
            && let Some(target) = scale_fraction(fr, factor, up)
            && s_out.has_field("framerate")
        {
            s_out.fixate_field_nearest_fraction("framerate", target);
        }
    }
    other.fixate();
    other
}

/// Why fixed caps cannot be taken, in words; `None` when they can. `cuda`: CUDA memory can be
/// used now.
pub(super) fn caps_problem(caps: &gst::CapsRef, factor: u32, cuda: bool) -> Option<String> {
    let Some(s) = caps.structure(0) else {
        return Some("empty caps".into());
    };
    if s.name() != "video/x-raw" {
        return Some(format!(
            "only raw video (video/x-raw) is accepted, not {}",
            s.name()
        ));
    }
    if let Some(f) = caps.features(0)
        && !f.is_any()
        && f.iter().any(|f| f != "memory:SystemMemory")
    {
        if f.size() == 1 && f.contains(super::cuda_mem::FEATURE) {
            if let Some(p) = super::cuda_path::cuda_caps_problem(caps, cuda) {
                return Some(p);
            }
        } else {
            return Some(format!(
                "only video in system memory (or CUDA memory) is accepted, not {f} (download it \
                 first)"
            ));
        }
    }
    if let Ok(format) = s.get::<&str>("format") {
        let Some(fmt) = pixel_format(VideoFormat::from_string(format)) else {
            return Some(format!(
                "format {format} is not supported: flavrinterp takes {FORMAT_NAMES} \
                 (put videoconvert before it)"
            ));
        };
        if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height"))
            && w > 0
            && h > 0
            && let Some(why) = crate::backend::pixels::odd_size_problem(fmt, w as usize, h as usize)
        {
            return Some(format!("format {format}: {why}"));
        }
    }
    if let Ok(mode) = s.get::<&str>("interlace-mode")
        && mode != "progressive"
    {
        return Some(format!(
            "interlaced video (interlace-mode={mode}) is not supported: put deinterlace \
             before flavrinterp"
        ));
    }
    for dim in ["width", "height"] {
        if let Ok(v) = s.get::<i32>(dim)
            && v < 1
        {
            return Some(format!("{dim} {v} is not a frame size"));
        }
    }
    if let Ok(fr) = s.get::<gst::Fraction>("framerate")
        && scale_fraction(fr, factor, true).is_none()
    {
        return Some(format!(
            "framerate {}/{} times factor {factor} cannot be represented",
            fr.numer(),
            fr.denom()
        ));
    }
    None
}

/// The backend's view of a negotiated video format.
pub(super) fn layout_from_info(info: &gst_video::VideoInfo) -> Result<FrameLayout, Error> {
    let Some(format) = pixel_format(info.format()) else {
        return Err(Error::Caps(format!(
            "format {} is not supported: flavrinterp takes {FORMAT_NAMES}",
            info.format().to_str()
        )));
    };
    let colorimetry = info.colorimetry();
    let mut yuv = match colorimetry.matrix() {
        gst_video::VideoColorMatrix::Bt709 => YuvMatrix::BT709,
        gst_video::VideoColorMatrix::Bt2020 => YuvMatrix::BT2020,
        _ => YuvMatrix::BT601,
    };
    yuv.full_range = colorimetry.range() == gst_video::VideoColorRange::Range0_255;
    let strides = info
        .stride()
        .iter()
        .map(|&s| {
            usize::try_from(s).map_err(|_| Error::Caps(format!("negative stride {s} in {info:?}")))
        })
        .collect::<Result<Vec<usize>, Error>>()?;
    Ok(FrameLayout {
        format,
        width: info.width() as usize,
        height: info.height() as usize,
        offsets: info.offset().to_vec(),
        strides,
        size: info.size(),
        yuv,
    })
}

/// Nanoseconds of one frame at `fps`, if the rate is fixed and non-zero.
pub(super) fn frame_duration(fps: gst::Fraction) -> Option<u64> {
    let (n, d) = (
        u64::try_from(fps.numer()).ok()?,
        u64::try_from(fps.denom()).ok()?,
    );
    if n == 0 || d == 0 {
        return None;
    }
    gst::ClockTime::SECOND.nseconds().mul_div_round(d, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_scale_both_ways() {
        let f = |n, d| gst::Fraction::new(n, d);
        assert_eq!(scale_fraction(f(30, 1), 2, true), Some(f(60, 1)));
        assert_eq!(
            scale_fraction(f(30000, 1001), 4, true),
            Some(f(120000, 1001))
        );
        assert_eq!(scale_fraction(f(60, 1), 8, false), Some(f(15, 2)));
        assert_eq!(scale_fraction(f(0, 1), 8, true), Some(f(0, 1)));
        assert_eq!(scale_fraction(f(i32::MAX, 1), 2, true), None);
        assert_eq!(
            scale_fraction(f(i32::MAX, 2), 2, true),
            Some(f(i32::MAX, 1))
        );
    }

    #[test]
    fn caps_values_scale() {
        gst::init().unwrap();
        let r = gst::FractionRange::new(gst::Fraction::new(0, 1), gst::Fraction::new(i32::MAX, 1));
        let v = scale_rate(&r.to_value(), 4, true).unwrap();
        let r = v.get::<gst::FractionRange>().unwrap();
        assert_eq!(r.min(), gst::Fraction::new(0, 1));
        assert_eq!(r.max(), gst::Fraction::new(i32::MAX, 1));
        let r = gst::FractionRange::new(gst::Fraction::new(10, 1), gst::Fraction::new(30, 1));
        let v = scale_rate(&r.to_value(), 2, false).unwrap();
        let r = v.get::<gst::FractionRange>().unwrap();
        assert_eq!(
            (r.min(), r.max()),
            (gst::Fraction::new(5, 1), gst::Fraction::new(15, 1))
        );
        let l = gst::List::new([gst::Fraction::new(25, 1), gst::Fraction::new(i32::MAX, 1)]);
        let v = scale_rate(&l.to_value(), 2, true).unwrap();
        let l = v.get::<gst::List>().unwrap();
        assert_eq!(l.len(), 1);
        assert_eq!(
            l[0].get::<gst::Fraction>().unwrap(),
            gst::Fraction::new(50, 1)
        );
    }

    #[test]
    fn caps_problems_are_named() {
        gst::init().unwrap();
        let p = |s: &str| caps_problem(&gst::Caps::from_str(s).unwrap(), 2, false);
        assert_eq!(
            p("video/x-raw,format=I420,width=64,height=48,framerate=30/1"),
            None
        );
        assert!(
            p("video/x-raw,format=I420,width=64,height=48,interlace-mode=interleaved")
                .unwrap()
                .contains("interlaced")
        );
        assert!(
            p("video/x-raw,format=YUY2,width=64,height=48")
                .unwrap()
                .contains("YUY2")
        );
        for (format, w, h, refused) in [
            ("P010_10LE", 63, 48, true),
            ("P010_10LE", 64, 47, true),
            ("I420_10LE", 65, 49, true),
            ("I422_10LE", 63, 48, true),
            ("I422_10LE", 64, 47, false),
            ("Y444_10LE", 63, 47, false),
            ("RGBA64_LE", 63, 47, false),
            ("I420", 63, 47, false),
            ("P010_10LE", 64, 48, false),
        ] {
            let r = p(&format!("video/x-raw,format={format},width={w},height={h}"));
            assert_eq!(r.is_some(), refused, "{format} {w}x{h}: {r:?}");
            if let Some(r) = r {
                assert!(r.contains("odd size") && r.contains(format), "{r}");
            }
        }
        assert!(p("video/x-h264").unwrap().contains("raw video"));
        assert!(
            p("video/x-raw(memory:GLMemory),format=RGBA,width=64,height=48")
                .unwrap()
                .contains("system memory")
        );
        assert!(
            p("video/x-raw,format=RGB,width=64,height=48,framerate=2147483647/1")
                .unwrap()
                .contains("framerate")
        );
    }

    #[test]
    fn deep_formats_map_to_layouts() {
        gst::init().unwrap();
        for (caps, format, planes, size) in [
            ("P010_10LE", PixelFormat::P010, 2, 64 * 48 * 3),
            ("I420_10LE", PixelFormat::I420P10, 3, 64 * 48 * 3),
            ("I422_10LE", PixelFormat::I422P10, 3, 64 * 48 * 4),
            ("Y444_10LE", PixelFormat::Y444P10, 3, 64 * 48 * 6),
            ("RGBA64_LE", PixelFormat::Rgba64, 1, 64 * 48 * 8),
        ] {
            let c = gst::Caps::from_str(&format!(
                "video/x-raw,format={caps},width=64,height=48,framerate=30/1,\
                 colorimetry=bt2100-pq"
            ))
            .unwrap();
            let info = gst_video::VideoInfo::from_caps(&c).unwrap();
            let l = layout_from_info(&info).unwrap();
            assert_eq!(l.format, format);
            assert_eq!(l.size, size, "{caps}");
            assert!(l.offsets.len() >= planes);
            if format != PixelFormat::Rgba64 {
                assert_eq!(l.yuv, YuvMatrix::BT2020, "{caps}");
            }
            crate::backend::pixels::check_layout(&l).unwrap();
            assert!(template().can_intersect(&c), "{caps}");
        }
    }

    use std::str::FromStr;
}
