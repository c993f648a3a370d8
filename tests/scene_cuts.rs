// SPDX-License-Identifier: MIT OR Apache-2.0
//! Scene cuts in `flavrinterp` (CPU backend, narrow test models): the new frames across a cut
//! are copies of the nearer original, the windows next to it read one shot only, one
//! `flavrinterp-scene-cut` message per cut, and `scene-threshold=0` interpolates across as
//! before. Expected windows and pixels come from the rules in the README and the CPU backend
//! called directly, not from the element.

use std::str::FromStr;

use gst::prelude::*;
use gstflavrinterp::backend::{FrameLayout, PixelFormat, YuvMatrix};
use gstflavrinterp::scene::{DEFAULT_THRESHOLD, Detector, Reduced};

mod gst_common;
#[path = "../src/test_rng.rs"]
mod test_rng;
use gst_common::{
    cpu_harness, cut_to_ball_at, fixture, init, launch_with_sink, reference_window, scene_cuts,
};
use test_rng::unit;

const M2X: &str = "flavr2x_w8.safetensors";
const M4X: &str = "flavr4x_w16.safetensors";
const W: usize = 48;
const H: usize = 32;

fn caps() -> String {
    format!("video/x-raw,format=RGB,width={W},height={H},framerate=30/1")
}

fn pts30(i: u64) -> u64 {
    i * 1_000_000_000 / 30
}

/// Shot `seed` moved right by `shift` pixels: smooth random waves and blobs per channel.
fn picture(seed: u64, shift: f32) -> Vec<u8> {
    let mut rnd = unit(seed);
    let params: Vec<[f32; 6]> = (0..6)
        .map(|_| {
            [
                rnd() * 0.3,
                rnd() * 0.3,
                rnd() * std::f32::consts::TAU,
                rnd() * W as f32,
                rnd() * H as f32,
                rnd() * 2.0 - 1.0,
            ]
        })
        .collect();
    let mut out = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            let (xf, yf) = (x as f32 - shift, y as f32);
            for c in 0..3 {
                let mut v = 0.0;
                for (n, p) in params.iter().enumerate() {
                    let ph = p[2] + c as f32 * (n as f32 + 1.0);
                    v += (p[0] * xf + p[1] * yf + ph).sin();
                    let d2 = (xf - p[3]).powi(2) + (yf - p[4]).powi(2);
                    v += 2.0 * p[5] * (-d2 / 60.0).exp();
                }
                out.push(((0.5 + v / 12.0).clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    out
}

/// Frames 0..n: shot 1 before `cut`, shot 2 from `cut` on, both moving 1.5 pixels a frame.
fn frames(n: usize, cut: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| {
            let seed = if i < cut { 1 } else { 2 };
            picture(seed, i as f32 * 1.5)
        })
        .collect()
}

struct Run {
    out: Vec<gst::Buffer>,
    /// (timestamp, frame, score) of each scene-cut message.
    cuts: Vec<(Option<gst::ClockTime>, u64, f64)>,
}

/// Pushes `input` at 30 fps through a harness; `resync`: input frames flagged RESYNC.
fn run(
    model: &str,
    factor: u32,
    threshold: Option<f64>,
    input: &[Vec<u8>],
    resync: &[usize],
) -> Run {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("factor", factor)
        .property("model-location", fixture(model).to_str().unwrap())
        .build()
        .unwrap();
    el.set_property_from_str("backend", "cpu");
    if let Some(t) = threshold {
        el.set_property("scene-threshold", t);
    }
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps_str(&caps());
    for (i, f) in input.iter().enumerate() {
        let mut b = gst::Buffer::from_mut_slice(f.clone());
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(pts30(i as u64)));
            b.set_duration(gst::ClockTime::from_nseconds(
                pts30(i as u64 + 1) - pts30(i as u64),
            ));
            if resync.contains(&i) {
                b.set_flags(gst::BufferFlags::RESYNC);
            }
        }
        h.push(b).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        out.push(b);
    }
    let mut cuts = Vec::new();
    // One pass: pop_filtered drops the messages of other types.
    while let Some(m) = bus.pop_filtered(&[gst::MessageType::Element, gst::MessageType::Error]) {
        if let gst::MessageView::Error(e) = m.view() {
            panic!("error: {e:?}");
        }
        let s = m.structure().unwrap();
        if s.name() == "flavrinterp-scene-cut" {
            cuts.push((
                s.get::<Option<gst::ClockTime>>("timestamp").unwrap(),
                s.get::<u64>("frame").unwrap(),
                s.get::<f64>("score").unwrap(),
            ));
        }
    }
    Run { out, cuts }
}

fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().as_slice().to_vec()
}

/// The CPU backend on one window: every model output.
fn reference(model: &str, window: [&[u8]; 4]) -> Vec<Vec<u8>> {
    let info = gst_video::VideoInfo::from_caps(&gst::Caps::from_str(&caps()).unwrap()).unwrap();
    let layout = FrameLayout {
        format: PixelFormat::Rgb,
        width: W,
        height: H,
        offsets: info.offset().to_vec(),
        strides: info.stride().iter().map(|&s| s as usize).collect(),
        size: info.size(),
        yuv: YuvMatrix::BT601,
    };
    reference_window(model, &layout, window)
}

/// The detector itself on RGB frames: the frames after which it finds a cut.
fn detector_cuts(input: &[Vec<u8>]) -> Vec<usize> {
    let mut d = Detector::new(DEFAULT_THRESHOLD);
    let mut cuts = Vec::new();
    for (k, f) in input.iter().enumerate() {
        let r = Reduced::from_plane(PixelFormat::Rgb, f, W * 3, W, H).unwrap();
        if let Some(m) = d.push(r) {
            eprintln!("frame {k}: {m:?}");
            if m.cut {
                cuts.push(k);
            }
        }
    }
    cuts
}

#[test]
fn cuts_are_copies_and_no_window_reads_two_shots() {
    let (n, cut) = (10usize, 5usize);
    let input = frames(n, cut);
    assert_eq!(detector_cuts(&input), vec![cut]);
    for (model, f) in [(M2X, 2usize), (M4X, 4)] {
        let r = run(model, f as u32, None, &input, &[cut]);
        assert_eq!(r.out.len(), n * f, "factor {f}");
        // One message, at the first frame of the second shot.
        assert_eq!(r.cuts.len(), 1, "{:?}", r.cuts);
        let (ts, frame, score) = r.cuts[0];
        assert_eq!(ts, Some(gst::ClockTime::from_nseconds(pts30(cut as u64))));
        assert_eq!(frame, cut as u64);
        assert!(score >= 0.3, "{score}");
        // Timestamps as without a cut: evenly spaced, the originals bit-exact.
        for (m, b) in r.out.iter().enumerate() {
            let (i, k) = ((m / f) as u64, (m % f) as u64);
            let want = pts30(i) + ((pts30(i + 1) - pts30(i)) * k + f as u64 / 2) / f as u64;
            assert_eq!(b.pts().unwrap().nseconds(), want, "frame {m}");
            if k == 0 || i as usize == n - 1 {
                // Originals, and the copies of the last one after it.
                assert_eq!(bytes(b), input[i as usize]);
            }
        }
        // Across the cut: copies of the nearer original, without RESYNC or DISCONT.
        let i = cut - 1;
        for k in 1..f {
            let b = &r.out[i * f + k];
            let src = if 2 * k <= f { i } else { i + 1 };
            assert_eq!(bytes(b), input[src], "factor {f}, new frame {k}");
            assert!(
                !b.flags()
                    .intersects(gst::BufferFlags::RESYNC | gst::BufferFlags::DISCONT),
                "{:?}",
                b.flags()
            );
        }
        assert!(r.out[cut * f].flags().contains(gst::BufferFlags::RESYNC));
        // Next to the cut, the windows repeat the nearest frame of their own shot.
        let before = reference(model, [&input[i - 2], &input[i - 1], &input[i], &input[i]]);
        let after = reference(
            model,
            [&input[cut], &input[cut], &input[cut + 1], &input[cut + 2]],
        );
        for k in 1..f {
            assert_eq!(bytes(&r.out[(i - 1) * f + k]), before[k - 1], "before, {k}");
            assert_eq!(bytes(&r.out[cut * f + k]), after[k - 1], "after, {k}");
        }
    }
}

#[test]
fn threshold_zero_interpolates_across_as_before() {
    let (n, cut) = (8usize, 4usize);
    let input = frames(n, cut);
    let r = run(M2X, 2, Some(0.0), &input, &[]);
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
    assert_eq!(r.out.len(), 2 * n);
    let across = reference(M2X, [&input[2], &input[3], &input[4], &input[5]]);
    assert_eq!(bytes(&r.out[2 * 3 + 1]), across[0]);
    // The default finds the cut in the same frames.
    let r = run(M2X, 2, None, &input, &[]);
    assert_eq!(r.cuts.len(), 1);
    assert_eq!(bytes(&r.out[2 * 3 + 1]), input[3]);
}

#[test]
fn no_cut_in_one_moving_shot() {
    let input: Vec<Vec<u8>> = (0..12).map(|i| picture(3, i as f32 * 2.0)).collect();
    let r = run(M2X, 2, None, &input, &[]);
    assert!(r.cuts.is_empty(), "{:?}", r.cuts);
}

#[test]
fn empty_gap_buffers_are_not_measured() {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("model-location", fixture(M2X).to_str().unwrap())
        .build()
        .unwrap();
    let (mut h, bus) = cpu_harness(&el);
    h.set_src_caps_str(&caps());
    let input = frames(6, 6);
    for (i, f) in input.iter().enumerate() {
        let mut b = if i == 3 {
            gst::Buffer::new()
        } else {
            gst::Buffer::from_mut_slice(f.clone())
        };
        {
            let b = b.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_nseconds(pts30(i as u64)));
            if i == 3 {
                b.set_flags(gst::BufferFlags::GAP);
            }
        }
        h.push(b).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let mut n = 0;
    while h.try_pull().is_some() {
        n += 1;
    }
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
    // 3 frames (5 out and a copy of the last), the gap, 2 frames (3 out and a copy).
    assert_eq!(n, 6 + 1 + 4);
}

#[test]
fn out_of_range_thresholds_are_refused_with_a_warning() {
    init();
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    assert_eq!(el.property::<f64>("scene-threshold"), 0.3);
    for bad in [1.5, -0.1] {
        el.set_property("scene-threshold", bad);
        assert_eq!(el.property::<f64>("scene-threshold"), 0.3);
        let w = bus.pop_filtered(&[gst::MessageType::Warning]).unwrap();
        let gst::MessageView::Warning(w) = w.view() else {
            unreachable!()
        };
        assert!(
            w.error().to_string().contains("out of range"),
            "{}",
            w.error()
        );
    }
    el.set_property("scene-threshold", 0.0);
    assert_eq!(el.property::<f64>("scene-threshold"), 0.0);
}

/// Runs `desc` to EOS: output count and the scene-cut messages' timestamps.
fn pipeline_cuts(desc: &str, switch_at: Option<u64>) -> (usize, Vec<u64>) {
    let (pipeline, sink) = launch_with_sink(desc);
    if let Some(at) = switch_at {
        cut_to_ball_at(&pipeline, at);
    }
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut count = 0;
    while sink
        .emit_by_name::<Option<gst::Sample>>("pull-sample", &[])
        .is_some()
    {
        count += 1;
    }
    let cuts = scene_cuts(&pipeline.bus().unwrap(), "pipeline error")
        .into_iter()
        .map(|(_, ts, _)| ts)
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    (count, cuts)
}

#[test]
fn videotestsrc_pattern_switch_is_one_cut() {
    let model = fixture(M2X);
    let desc = |n: u32| {
        format!(
            "videotestsrc name=v num-buffers={n} pattern=smpte horizontal-speed=2 ! \
             video/x-raw,format=RGB,width=64,height=48,framerate=30/1 ! \
             flavrinterp backend=cpu model-location={} ! appsink name=sink sync=false",
            model.display()
        )
    };
    let (count, cuts) = pipeline_cuts(&desc(16), None);
    assert_eq!(count, 32);
    assert!(cuts.is_empty(), "{cuts:?}");
    let (count, cuts) = pipeline_cuts(&desc(16), Some(8));
    assert_eq!(count, 32);
    assert_eq!(cuts, vec![pts30(8)]);
}
