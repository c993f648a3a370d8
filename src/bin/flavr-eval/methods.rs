// SPDX-License-Identifier: MIT OR Apache-2.0
//! The methods that rebuild a frame: blend, and `ours` through the element.

use std::path::Path;
use std::time::Instant;

use gst::prelude::*;

use crate::pipeline::{BusLog, appsink, chain, make, pull_to_eos, start};
use crate::video::{ExactYuvToRgb, packed_rgb, padded_rgb};

/// `(a + b + 1) >> 1` per sample.
pub(crate) fn blend(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((u16::from(x) + u16::from(y) + 1) >> 1) as u8)
        .collect()
}

/// Settings of the element for `ours`.
pub(crate) struct ElementSettings<'a> {
    /// `None`: the model built into the plugin (`model-location` empty).
    pub(crate) model: Option<&'a Path>,
    pub(crate) backend: &'a str,
    pub(crate) precision: &'a str,
    pub(crate) device_id: u32,
}

/// What `ours` gives back.
pub(crate) struct OursRun {
    /// Output frames 1, 3, 5, ... (the new ones).
    pub(crate) rebuilt: Vec<Vec<u8>>,
    pub(crate) summary: String,
}

/// Pushes `even` (packed RGB, `w` x `h`, one every `frame_ns * 2`) through
/// `appsrc ! flavrinterp factor=2 ! appsink`; checks the output count and the originals.
pub(crate) fn run_ours(
    even: &[Vec<u8>],
    w: usize,
    h: usize,
    fps: gst::Fraction,
    s: &ElementSettings,
) -> Result<OursRun, String> {
    if even.is_empty() {
        return Err("no input frame for `ours`".into());
    }
    let rate = gst::Fraction::new(fps.numer(), fps.denom() * 2);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(rate)
        .build()
        .map_err(|e| format!("cannot describe {w}x{h} RGB: {e}"))?;
    // Duration of one even frame: 2 / fps seconds.
    let pts = |i: usize| -> Result<gst::ClockTime, String> {
        (i as u64)
            .mul_div_floor(
                2 * gst::ClockTime::SECOND.nseconds() * fps.denom() as u64,
                fps.numer() as u64,
            )
            .map(gst::ClockTime::from_nseconds)
            .ok_or_else(|| format!("bad frame rate {fps}"))
    };

    let src = make("appsrc")?;
    src.set_property("caps", info.to_caps().map_err(|e| e.to_string())?);
    src.set_property_from_str("format", "time");
    src.set_property("block", true);
    src.set_property("max-bytes", (2 * info.size()) as u64);
    let interp = make("flavrinterp")?;
    interp.set_property("factor", 2u32);
    let location = s.model.map(|m| m.to_string_lossy().to_string());
    interp.set_property("model-location", location.unwrap_or_default());
    interp.set_property_from_str("backend", s.backend);
    interp.set_property_from_str("precision", s.precision);
    interp.set_property("device-id", s.device_id);
    let sink = appsink()?;
    let pipeline = chain(&[&src, &interp, &sink])?;

    // Originals and the frames between them, then the copy of the last original that fills its
    // slot at EOS: 2n frames.
    let expected = 2 * even.len();
    let mut rebuilt = Vec::with_capacity(even.len());
    let mut count = 0usize;
    let mut log = BusLog::default();
    let t0 = Instant::now();
    // Started before the feeder: an appsrc that never starts would block it for good.
    start(&pipeline, &mut log)?;
    let result = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| -> Result<(), String> {
            for (i, frame) in even.iter().enumerate() {
                let mut buffer = gst::Buffer::from_mut_slice(padded_rgb(frame, &info));
                {
                    let b = buffer.get_mut().ok_or("a new buffer is not writable")?;
                    b.set_pts(pts(i)?);
                    b.set_duration(pts(i + 1)? - pts(i)?);
                }
                let ret = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
                if ret != gst::FlowReturn::Ok {
                    return Ok(()); // the pipeline stopped: its bus says why
                }
            }
            let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
            Ok(())
        });
        let pulled = pull_to_eos(&pipeline, &sink, &mut log, |sample| {
            let k = count;
            count += 1;
            if k >= expected {
                return Ok(()); // counted below
            }
            let caps = sample.caps().ok_or("an output sample without caps")?;
            let oinfo = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
            if (oinfo.width() as usize, oinfo.height() as usize) != (w, h)
                || oinfo.format() != gst_video::VideoFormat::Rgb
            {
                return Err(format!("unexpected output caps {caps}"));
            }
            let buffer = sample.buffer().ok_or("an output sample without a buffer")?;
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &oinfo)
                .map_err(|_| "cannot map an output frame".to_string())?;
            let rgb = packed_rgb(&frame, &ExactYuvToRgb::BT601_LIMITED)?;
            if k.is_multiple_of(2) {
                if rgb != even[k / 2] {
                    return Err(format!(
                        "output frame {k} is not input frame {} bit for bit",
                        k / 2
                    ));
                }
            } else if k + 1 == expected {
                if rgb != even[even.len() - 1] {
                    return Err(format!(
                        "output frame {k}, after the last input, is not a copy of it"
                    ));
                }
            } else {
                rebuilt.push(rgb);
            }
            Ok(())
        });
        let pushed = pusher
            .join()
            .unwrap_or_else(|_| Err("the appsrc thread panicked".into()));
        pulled.and(pushed)
    });
    result?;
    if count != expected {
        return Err(format!(
            "flavrinterp gave {count} frames for {} inputs, expected {expected}",
            even.len()
        ));
    }
    let wall = t0.elapsed().as_secs_f64();
    let summary = match &log.stats {
        Some(st) => format!(
            "{} ({:.1} s in the pipeline)",
            st.get::<&str>("summary").unwrap_or("no summary"),
            wall
        ),
        None => format!("no flavrinterp-stats message ({wall:.1} s in the pipeline)"),
    };
    Ok(OursRun { rebuilt, summary })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{fixture, init, synth};

    #[test]
    fn blend_rounds_half_up() {
        assert_eq!(
            blend(&[1, 0, 254, 7], &[2, 255, 255, 7]),
            vec![2, 128, 255, 7]
        );
    }

    #[test]
    fn ours_rebuilds_the_odd_frames_and_checks_the_originals() {
        init();
        let (w, h) = (40, 24);
        let even: Vec<Vec<u8>> = (0..5).map(|i| synth(w, h, i).1).collect();
        let model = fixture("flavr2x_w8.safetensors");
        let s = ElementSettings {
            model: Some(&model),
            backend: "cpu",
            precision: "fp32",
            device_id: 0,
        };
        let run = run_ours(&even, w, h, gst::Fraction::new(25, 1), &s).unwrap();
        assert_eq!(run.rebuilt.len(), 4);
        assert!(run.rebuilt.iter().all(|f| f.len() == w * h * 3));
        assert!(
            run.summary.contains("5 frames in, 10 out"),
            "{}",
            run.summary
        );
        // A missing model: the element's start error, named.
        let missing = fixture("no-such-model.safetensors");
        let err = run_ours(
            &even,
            w,
            h,
            gst::Fraction::new(25, 1),
            &ElementSettings {
                model: Some(&missing),
                ..s
            },
        )
        .err()
        .unwrap();
        assert!(err.contains("no-such-model"), "{err}");
    }
}
