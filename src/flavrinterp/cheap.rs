// SPDX-License-Identifier: MIT OR Apache-2.0
//! Cheap frames for windows that would come late ([`super::qos`]): a per-pixel blend of the two
//! originals around the new frame, weighted by its place between them.
//!
//! New frame `k` of `factor` between originals `a` and `b` is, byte by byte,
//! `(a * (factor - k) + b * k + factor / 2) / factor`, sample by sample: bytes for the 8-bit
//! formats, little-endian 16-bit words for the 10- and 16-bit ones (their codes, shifted down
//! first where the format keeps them in the top bits, as P010 does, and back after), so this is
//! a blend of each channel at the format's own depth.
//! A blend rather than a repeat: moving content shows at both places, half as strong, instead
//! of stopping for a frame, and a still picture stays exactly as it is. It costs one pass over
//! three frames (about 1 ms at 640x480 on one core).

use gst_video::prelude::*;

use crate::error::Error;

/// New frame `k` of `factor` between `a` and `b`, frames of `info` (each may carry its own
/// strides in a VideoMeta); the result has `info`'s layout.
pub(super) fn blend(
    info: &gst_video::VideoInfo,
    a: &gst::Buffer,
    b: &gst::Buffer,
    k: u64,
    factor: u64,
) -> Result<gst::Buffer, Error> {
    if factor == 0 || k > factor {
        return Err(Error::Buffer(format!("cannot blend frame {k} of {factor}")));
    }
    let (fa, fb) = (map(a, info)?, map(b, info)?);
    let mut out = gst::Buffer::with_size(info.size())
        .map_err(|e| Error::Buffer(format!("cannot allocate a frame: {e}")))?;
    {
        let out = out
            .get_mut()
            .ok_or_else(|| Error::Buffer("new buffer is shared".into()))?;
        let mut fo = gst_video::VideoFrameRef::from_buffer_ref_writable(out, info)
            .map_err(|e| Error::Buffer(format!("cannot map a frame for writing: {e}")))?;
        // 16-bit samples (10-bit codes, shifted up by `shift` in P010), or bytes.
        let fi = info.format_info();
        let wide = fi.depth().first().is_some_and(|&d| d > 8);
        let shift = fi.shift().first().copied().unwrap_or(0);
        let (wa, wb) = ((factor - k) as u32, k as u32);
        let (f, half) = (factor as u32, (factor / 2) as u32);
        for p in 0..fo.n_planes() {
            let i = p as usize;
            let strides = [
                fa.plane_stride()[i],
                fb.plane_stride()[i],
                fo.plane_stride()[i],
            ];
            let [sa, sb, so] = strides.map(|s| s.unsigned_abs() as usize);
            let row = sa.min(sb).min(so);
            let (pa, pb) = (plane(&fa, p)?, plane(&fb, p)?);
            let po = fo
                .plane_data_mut(p)
                .map_err(|e| Error::Buffer(format!("cannot write plane {p}: {e}")))?;
            let rows = po.len() / so.max(1);
            for r in 0..rows {
                let (Some(ra), Some(rb), Some(ro)) = (
                    pa.get(r * sa..r * sa + row),
                    pb.get(r * sb..r * sb + row),
                    po.get_mut(r * so..r * so + row),
                ) else {
                    break;
                };
                let mix = |x: u32, y: u32| (x * wa + y * wb + half) / f;
                if wide {
                    let words = ro.chunks_exact_mut(2).zip(ra.chunks_exact(2));
                    for ((o, x), y) in words.zip(rb.chunks_exact(2)) {
                        let get = |b: &[u8]| u32::from(u16::from_le_bytes([b[0], b[1]]) >> shift);
                        let v = (mix(get(x), get(y)) as u16) << shift;
                        o.copy_from_slice(&v.to_le_bytes());
                    }
                } else {
                    for ((o, &x), &y) in ro.iter_mut().zip(ra).zip(rb) {
                        *o = mix(u32::from(x), u32::from(y)) as u8;
                    }
                }
            }
        }
    }
    Ok(out)
}

fn map<'a>(
    buf: &'a gst::Buffer,
    info: &gst_video::VideoInfo,
) -> Result<gst_video::VideoFrameRef<&'a gst::BufferRef>, Error> {
    gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), info)
        .map_err(|e| Error::Buffer(format!("cannot map a frame to blend: {e}")))
}

fn plane<'a>(
    frame: &'a gst_video::VideoFrameRef<&gst::BufferRef>,
    p: u32,
) -> Result<&'a [u8], Error> {
    frame
        .plane_data(p)
        .map_err(|e| Error::Buffer(format!("cannot read plane {p}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(info: &gst_video::VideoInfo, v: u8) -> gst::Buffer {
        gst::Buffer::from_mut_slice(vec![v; info.size()])
    }

    #[test]
    fn blends_by_place_between_the_originals() {
        gst::init().unwrap();
        for format in [gst_video::VideoFormat::Rgb, gst_video::VideoFormat::I420] {
            let info = gst_video::VideoInfo::builder(format, 7, 5).build().unwrap();
            let (a, b) = (frame(&info, 10), frame(&info, 250));
            let mid = blend(&info, &a, &b, 1, 2).unwrap();
            let q = blend(&info, &a, &b, 1, 4).unwrap();
            let f =
                gst_video::VideoFrameRef::from_buffer_ref_readable(mid.as_ref(), &info).unwrap();
            let g = gst_video::VideoFrameRef::from_buffer_ref_readable(q.as_ref(), &info).unwrap();
            for p in 0..f.n_planes() {
                let w = info.comp_width(info.format_info().plane()[p as usize] as u8) as usize;
                let s = f.plane_stride()[p as usize] as usize;
                let row = &f.plane_data(p).unwrap()[..s];
                // Each sample of the row (RGB: 3 bytes a pixel).
                let n = if format == gst_video::VideoFormat::Rgb {
                    3 * w
                } else {
                    w
                };
                assert!(row[..n].iter().all(|&x| x == 130), "{format:?} plane {p}");
                let row = &g.plane_data(p).unwrap()[..s];
                assert!(row[..n].iter().all(|&x| x == 70), "{format:?} plane {p}");
            }
        }
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 4, 4)
            .build()
            .unwrap();
        assert!(blend(&info, &frame(&info, 0), &frame(&info, 0), 3, 2).is_err());
    }

    /// A frame of `format` whose every 16-bit sample is `v`.
    fn frame16(info: &gst_video::VideoInfo, v: u16) -> gst::Buffer {
        gst::Buffer::from_mut_slice(v.to_le_bytes().repeat(info.size() / 2))
    }

    #[test]
    fn deep_formats_blend_whole_samples() {
        gst::init().unwrap();
        use gst_video::VideoFormat as F;
        // (format, a, b, the mid frame's sample): 10-bit codes in the low bits, P010's in the
        // top bits (low 6 bits stay 0), 16-bit RGBA. A byte-wise blend gets each of these wrong
        // (the low bytes carry into nothing).
        for (format, a, b, mid) in [
            (F::I42010le, 100u16, 901, 501),
            (F::Y44410le, 1023, 0, 512),
            (F::P01010le, 100 << 6, 901 << 6, 501 << 6),
            (F::Rgba64Le, 0x00ff, 0x0101, 0x0100),
        ] {
            let info = gst_video::VideoInfo::builder(format, 6, 4).build().unwrap();
            let out = blend(&info, &frame16(&info, a), &frame16(&info, b), 1, 2).unwrap();
            let f =
                gst_video::VideoFrameRef::from_buffer_ref_readable(out.as_ref(), &info).unwrap();
            for p in 0..f.n_planes() {
                let s = f.plane_stride()[p as usize] as usize;
                let row = &f.plane_data(p).unwrap()[..s];
                let n = (info.comp_width(info.format_info().plane()[p as usize] as u8) as usize)
                    * info.format_info().pixel_stride()[p as usize] as usize;
                for w in row[..n].chunks_exact(2) {
                    assert_eq!(
                        u16::from_le_bytes([w[0], w[1]]),
                        mid,
                        "{format:?} plane {p}"
                    );
                }
            }
        }
    }
}
