// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavrinterp` driven through `gst_check::Harness` on the CPU backend with the narrow test
//! models (random weights) at small sizes.
//!
//! Expected frame counts, timestamps and windows are computed here from the rules in the
//! README, independently of the element; interpolated pixels are compared with the CPU backend
//! called directly on the windows the rules name.

use std::str::FromStr;
use std::sync::Arc;

use gst::prelude::*;
use gstflavrinterp::backend::{FrameLayout, PixelFormat, Precision, YuvMatrix};
use gstflavrinterp::model::Flavr;
use gstflavrinterp::window::scale;

const M2X: &str = "flavr2x_w8.safetensors";
const M4X: &str = "flavr4x_w16.safetensors";

mod gst_common;
use gst_common::{fixture, init, layout_of_info, reference_window};

fn element(model: &str, factor: u32) -> gst::Element {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("factor", factor)
        .property("model-location", fixture(model).to_str().unwrap())
        // Each window done before `push` returns, so outputs can be counted after each push
        // (windows in flight: element_reliability.rs, element_accounting.rs).
        .property("max-in-flight", 0u32)
        .build()
        .unwrap();
    el.set_property_from_str("backend", "cpu");
    el
}

fn harness(model: &str, factor: u32, caps: &str) -> (gst_check::Harness, gst::Bus) {
    let el = element(model, factor);
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps_str(caps);
    (h, bus)
}

fn caps_str(format: &str, w: u32, h: u32, fps: &str) -> String {
    format!("video/x-raw,format={format},width={w},height={h},framerate={fps}")
}

fn info_of(caps: &str) -> gst_video::VideoInfo {
    init();
    gst_video::VideoInfo::from_caps(&gst::Caps::from_str(caps).unwrap()).unwrap()
}

/// Frame `i`: deterministic content that changes over time and space.
fn frame_bytes(info: &gst_video::VideoInfo, i: u64) -> Vec<u8> {
    let mut v = vec![0u8; info.size()];
    let mut s = 0x9e37_79b9_7f4a_7c15u64 ^ (i.wrapping_mul(0x1000_0000_01b3));
    for (n, b) in v.iter_mut().enumerate() {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        // Mostly a moving gradient, a little noise.
        let g = (n as u64 / 3 + i * 9) % 256;
        *b = ((g * 3 + (s & 31)) / 4) as u8;
    }
    v
}

fn buffer(data: Vec<u8>, pts: Option<u64>, duration: Option<u64>) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(data);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(pts.map(gst::ClockTime::from_nseconds));
        b.set_duration(duration.map(gst::ClockTime::from_nseconds));
    }
    b
}

fn pts30(i: u64) -> u64 {
    i * 1_000_000_000 / 30
}

fn pull_all(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        out.push(b);
    }
    out
}

fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().as_slice().to_vec()
}

/// Pushes `n` frames at 30 fps, then EOS; returns inputs and everything pushed out.
fn run_stream(
    model: &str,
    factor: u32,
    caps: &str,
    n: u64,
) -> (Vec<gst::Buffer>, Vec<gst::Buffer>) {
    let info = info_of(caps);
    let (mut h, bus) = harness(model, factor, caps);
    let mut inputs = Vec::new();
    for i in 0..n {
        let b = buffer(
            frame_bytes(&info, i),
            Some(pts30(i)),
            Some(pts30(i + 1) - pts30(i)),
        );
        inputs.push(b.clone());
        h.push(b).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    assert!(
        bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
        "no error expected"
    );
    (inputs, out)
}

/// Every input fills its slot: `f - 1` new frames after it, or copies of it after the last.
fn expected_count(n: u64, f: u64) -> u64 {
    n * f
}

fn layout_of(info: &gst_video::VideoInfo) -> FrameLayout {
    let format = match info.format() {
        gst_video::VideoFormat::Rgb => PixelFormat::Rgb,
        gst_video::VideoFormat::I420 => PixelFormat::I420,
        gst_video::VideoFormat::Nv12 => PixelFormat::Nv12,
        gst_video::VideoFormat::Bgrx => PixelFormat::Bgrx,
        f => panic!("no layout for {f:?} in this test"),
    };
    layout_of_info(info, format, YuvMatrix::BT601)
}

/// The CPU backend on one window of byte frames: all model outputs.
fn reference(model: &str, info: &gst_video::VideoInfo, window: [&[u8]; 4]) -> Vec<Vec<u8>> {
    reference_window(model, &layout_of(info), window)
}

fn error_text(bus: &gst::Bus) -> Option<String> {
    bus.pop_filtered(&[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => format!("{} ({:?})", e.error(), e.debug()),
            _ => unreachable!(),
        })
}

fn warning_text(bus: &gst::Bus) -> Option<String> {
    bus.pop_filtered(&[gst::MessageType::Warning])
        .map(|m| match m.view() {
            gst::MessageView::Warning(e) => format!("{} ({:?})", e.error(), e.debug()),
            _ => unreachable!(),
        })
}

#[test]
fn frame_counts_for_each_factor_and_model() {
    let caps = caps_str("RGB", 64, 48, "30/1");
    // (model, factor): direct, recursive (2x model at 4x and 8x), subset (4x model at 2x).
    for (model, factor) in [(M2X, 2), (M4X, 4), (M2X, 4), (M2X, 8), (M4X, 2), (M4X, 8)] {
        let n = 5;
        let (inputs, out) = run_stream(model, factor, &caps, n);
        let f = u64::from(factor);
        assert_eq!(
            out.len() as u64,
            expected_count(n, f),
            "{model} factor {factor}"
        );
        // Originals at every f-th place, bit for bit, in the same memory.
        for (i, input) in inputs.iter().enumerate() {
            let o = &out[i * factor as usize];
            let a = input.map_readable().unwrap();
            let b = o.map_readable().unwrap();
            assert_eq!(a.as_slice(), b.as_slice(), "original {i} changed");
            assert_eq!(a.as_ptr(), b.as_ptr(), "original {i} was copied");
        }
        // New frames are full frames and not copies of a neighbour; after the last original,
        // copies of it (its memory) at the constant rate.
        let last = (n as usize - 1) * factor as usize;
        for (j, o) in out.iter().enumerate() {
            assert_eq!(o.size(), inputs[0].size());
            if j > last {
                let a = inputs[n as usize - 1].map_readable().unwrap();
                let b = o.map_readable().unwrap();
                assert_eq!(a.as_ptr(), b.as_ptr(), "frame {j} is not the last original");
                assert!(!o.flags().contains(gst::BufferFlags::DISCONT));
                assert_eq!(
                    o.pts().unwrap().nseconds(),
                    pts30(n - 1) + scale(pts30(n) - pts30(n - 1), (j - last) as u64, f),
                    "frame {j}"
                );
            } else if j % factor as usize != 0 {
                let prev = &inputs[j / factor as usize];
                assert_ne!(bytes(o), bytes(prev), "frame {j} is a copy");
            }
        }
    }
}

#[test]
fn new_frames_come_from_the_right_windows() {
    let caps = caps_str("RGB", 64, 48, "30/1");
    let info = info_of(&caps);
    let (inputs, out) = run_stream(M2X, 2, &caps, 4);
    let fr: Vec<Vec<u8>> = inputs.iter().map(bytes).collect();
    // Pair (i, i+1) reads (i-1, i, i+1, i+2), repeating the end frames.
    let windows = [[0, 0, 1, 2], [0, 1, 2, 3], [1, 2, 3, 3]];
    for (i, w) in windows.iter().enumerate() {
        let want = reference(M2X, &info, w.map(|k| fr[k].as_slice()));
        assert_eq!(bytes(&out[2 * i + 1]), want[0], "pair {i}");
    }
}

#[test]
fn recursion_reads_the_doubled_sequence() {
    // 4x from the 2x model: first the halves, then the quarters from the doubled sequence.
    let caps = caps_str("RGB", 64, 48, "30/1");
    let info = info_of(&caps);
    let (inputs, out) = run_stream(M2X, 4, &caps, 4);
    let o: Vec<Vec<u8>> = inputs.iter().map(bytes).collect();
    let r = |w: [&[u8]; 4]| reference(M2X, &info, w).remove(0);
    let h0 = r([&o[0], &o[0], &o[1], &o[2]]);
    let h1 = r([&o[0], &o[1], &o[2], &o[3]]);
    let h2 = r([&o[1], &o[2], &o[3], &o[3]]);
    assert_eq!(bytes(&out[2]), h0);
    assert_eq!(bytes(&out[6]), h1);
    assert_eq!(bytes(&out[10]), h2);
    // Frame 1.25: (0.5, 1, 1.5, 2); frame 1.75: (1, 1.5, 2, 2.5).
    assert_eq!(bytes(&out[5]), r([&h0, &o[1], &h1, &o[2]]));
    assert_eq!(bytes(&out[7]), r([&o[1], &h1, &o[2], &h2]));
    // Start: frame 0.25 reads (0, 0, 0.5, 1).
    assert_eq!(bytes(&out[1]), r([&o[0], &o[0], &h0, &o[1]]));
}

#[test]
fn subset_of_a_bigger_model() {
    // The 4x model (3 outputs at 1/4, 2/4, 3/4) at factor 2 uses its middle output.
    let caps = caps_str("RGB", 64, 48, "30/1");
    let info = info_of(&caps);
    let (inputs, out) = run_stream(M4X, 2, &caps, 3);
    let o: Vec<Vec<u8>> = inputs.iter().map(bytes).collect();
    let want = reference(M4X, &info, [&o[0], &o[0], &o[1], &o[2]]);
    assert_eq!(bytes(&out[1]), want[1]);
}

#[test]
fn timestamps_and_durations() {
    for factor in [2u32, 4, 8] {
        let caps = caps_str("RGB", 32, 24, "30/1");
        let (inputs, out) = run_stream(M2X, factor, &caps, 4);
        let f = u64::from(factor);
        for (j, o) in out.iter().enumerate() {
            // After the last original: its slot is its duration, the next frame's time here.
            let (i, k) = (j as u64 / f, j as u64 % f);
            let p0 = pts30(i);
            let want = if k == 0 {
                p0
            } else {
                let span = pts30(i + 1) - p0;
                p0 + (span * k + f / 2) / f
            };
            assert_eq!(
                o.pts().unwrap().nseconds(),
                want,
                "factor {factor} frame {j}"
            );
        }
        for w in out.windows(2) {
            assert_eq!(
                w[0].pts().unwrap() + w[0].duration().unwrap(),
                w[1].pts().unwrap()
            );
        }
        // The last original lasts its own duration divided by the factor, and copies of it
        // fill the rest of its slot: the last one ends where the input's duration does.
        let n = inputs.len();
        let orig = &out[(n - 1) * factor as usize];
        let in_last = inputs.last().unwrap();
        let d = in_last.duration().unwrap().nseconds();
        assert_eq!(orig.duration().unwrap().nseconds(), (d + f / 2) / f);
        assert_eq!(orig.pts(), in_last.pts());
        let last = out.last().unwrap();
        assert_eq!(
            last.pts().unwrap() + last.duration().unwrap(),
            in_last.pts().unwrap() + in_last.duration().unwrap()
        );
        assert_eq!(out.len(), n * factor as usize);
    }
}

#[test]
fn variable_frame_rate_uses_buffer_timestamps() {
    let caps = caps_str("RGB", 32, 24, "0/1");
    let info = info_of(&caps);
    let (mut h, _bus) = harness(M2X, 2, &caps);
    let times = [0u64, 10_000_000, 40_000_000, 50_000_000];
    for (i, &t) in times.iter().enumerate() {
        h.push(buffer(frame_bytes(&info, i as u64), Some(t), None))
            .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    let pts: Vec<u64> = out.iter().map(|b| b.pts().unwrap().nseconds()).collect();
    // The last frame's slot: the last interval (10 ms), a copy half-way.
    assert_eq!(
        pts,
        vec![
            0, 5_000_000, 10_000_000, 25_000_000, 40_000_000, 45_000_000, 50_000_000, 55_000_000
        ]
    );
    // Output caps keep the variable rate.
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    let s = caps.structure(0).unwrap();
    assert_eq!(
        s.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(0, 1)
    );
}

#[test]
fn missing_timestamps_follow_the_rule() {
    let caps = caps_str("RGB", 32, 24, "25/1");
    let info = info_of(&caps);
    // The first buffer without a timestamp: a clear error.
    let (mut h, bus) = harness(M2X, 2, &caps);
    let r = h.push(buffer(frame_bytes(&info, 0), None, None));
    assert_eq!(r, Err(gst::FlowError::Error));
    let e = error_text(&bus).unwrap();
    assert!(e.contains("no timestamp"), "{e}");
    // Later ones: the previous timestamp plus one frame (40 ms at 25 fps).
    let (mut h, _bus) = harness(M2X, 2, &caps);
    h.push(buffer(frame_bytes(&info, 0), Some(0), None))
        .unwrap();
    h.push(buffer(frame_bytes(&info, 1), None, None)).unwrap();
    h.push(buffer(frame_bytes(&info, 2), None, None)).unwrap();
    h.push_event(gst::event::Eos::new());
    let pts: Vec<u64> = pull_all(&mut h)
        .iter()
        .map(|b| b.pts().unwrap().nseconds())
        .collect();
    assert_eq!(
        pts,
        [0u64, 20, 40, 60, 80, 100].map(|m| m * 1_000_000).to_vec()
    );
}

#[test]
fn output_caps_multiply_the_frame_rate() {
    for (factor, fps, want) in [
        (2, "30/1", gst::Fraction::new(60, 1)),
        (4, "30000/1001", gst::Fraction::new(120000, 1001)),
        (8, "25/2", gst::Fraction::new(100, 1)),
    ] {
        let caps = caps_str("I420", 32, 24, fps);
        let info = info_of(&caps);
        let (mut h, _bus) = harness(M2X, factor, &caps);
        h.push(buffer(frame_bytes(&info, 0), Some(0), None))
            .unwrap();
        let out_caps = h.sinkpad().unwrap().current_caps().unwrap();
        let s = out_caps.structure(0).unwrap();
        assert_eq!(s.get::<gst::Fraction>("framerate").unwrap(), want);
        assert_eq!(s.get::<&str>("format").unwrap(), "I420");
        assert_eq!(s.get::<i32>("width").unwrap(), 32);
        assert_eq!(s.get::<i32>("height").unwrap(), 24);
    }
}

#[test]
fn caps_queries_scale_ranges_both_ways() {
    init();
    let el = element(M2X, 4);
    let sink = el.static_pad("sink").unwrap();
    let src = el.static_pad("src").unwrap();
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    // Downstream wants 100 fps: upstream must give 25.
    h.set_sink_caps_str("video/x-raw,format=RGB,width=64,height=48,framerate=100/1");
    let caps = sink.query_caps(None);
    let s = caps.structure(0).unwrap();
    assert_eq!(
        s.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(25, 1)
    );
    // A range downstream: [40, 80] -> [10, 20].
    h.set_sink_caps_str("video/x-raw,format=RGB,width=64,height=48,framerate=[40/1,80/1]");
    let caps = sink.query_caps(None);
    let r = caps
        .structure(0)
        .unwrap()
        .get::<gst::FractionRange>("framerate")
        .unwrap();
    assert_eq!(
        (r.min(), r.max()),
        (gst::Fraction::new(10, 1), gst::Fraction::new(20, 1))
    );
    // Upstream gives 30 fps: downstream is offered 120.
    h.set_src_caps_str("video/x-raw,format=RGB,width=64,height=48,framerate=30/1");
    let caps = src.query_caps(None);
    let s = caps.structure(0).unwrap();
    assert_eq!(
        s.get::<gst::Fraction>("framerate").unwrap(),
        gst::Fraction::new(120, 1)
    );
}

#[test]
fn latency_adds_the_frames_the_window_waits_for() {
    for (model, factor, frames) in [(M2X, 2u32, 2u64), (M4X, 4, 2), (M2X, 4, 3)] {
        let caps = caps_str("RGB", 32, 24, "30/1");
        let (mut h, _bus) = harness(model, factor, &caps);
        h.set_upstream_latency(gst::ClockTime::from_mseconds(10));
        let lat = h.query_latency().unwrap();
        let frame = 33_333_333u64; // 1/30 s, rounded
        assert_eq!(
            lat.nseconds(),
            10_000_000 + frames * frame,
            "{model} factor {factor}"
        );
    }
}

#[test]
fn eos_drains_short_streams() {
    let caps = caps_str("RGB", 32, 24, "30/1");
    for factor in [2u32, 4, 8] {
        for n in 1..=3u64 {
            let (inputs, out) = run_stream(M2X, factor, &caps, n);
            assert_eq!(
                out.len() as u64,
                expected_count(n, u64::from(factor)),
                "{n} frames, factor {factor}"
            );
            assert_eq!(bytes(&out[0]), bytes(&inputs[0]));
            assert_eq!(bytes(out.last().unwrap()), bytes(inputs.last().unwrap()));
        }
    }
}

#[test]
fn flush_leaves_no_stale_frame() {
    let caps = caps_str("RGB", 32, 24, "30/1");
    let info = info_of(&caps);
    let (mut h, _bus) = harness(M2X, 2, &caps);
    for i in 0..3 {
        h.push(buffer(frame_bytes(&info, i), Some(pts30(i)), None))
            .unwrap();
    }
    // Frames 0 and 1 and the one between are out; frame 2 waits for the window.
    let before = pull_all(&mut h);
    assert_eq!(before.len(), 3);
    assert!(h.push_event(gst::event::FlushStart::new()));
    assert!(h.push_event(gst::event::FlushStop::new(true)));
    assert!(
        h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
            gst::ClockTime,
        >::new()))
    );
    let base = 10_000_000_000u64;
    let mut inputs = Vec::new();
    for i in 0..3 {
        let b = buffer(frame_bytes(&info, 100 + i), Some(base + pts30(i)), None);
        inputs.push(b.clone());
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let after = pull_all(&mut h);
    assert_eq!(after.len(), 6);
    assert!(after.iter().all(|b| b.pts().unwrap().nseconds() >= base));
    assert_eq!(bytes(&after[0]), bytes(&inputs[0]));
    // The new frame between 0 and 1 is made from the new stream only.
    let o: Vec<Vec<u8>> = inputs.iter().map(bytes).collect();
    let want = reference(M2X, &info, [&o[0], &o[0], &o[1], &o[2]]);
    assert_eq!(bytes(&after[1]), want[0]);
}

#[test]
fn caps_change_drains_the_old_window() {
    let caps_a = caps_str("RGB", 32, 24, "30/1");
    let caps_b = caps_str("RGB", 40, 16, "30/1");
    let (ia, ib) = (info_of(&caps_a), info_of(&caps_b));
    let (mut h, bus) = harness(M2X, 2, &caps_a);
    for i in 0..3 {
        h.push(buffer(frame_bytes(&ia, i), Some(pts30(i)), None))
            .unwrap();
    }
    h.set_src_caps_str(&caps_b);
    for i in 3..6 {
        h.push(buffer(frame_bytes(&ib, i), Some(pts30(i)), None))
            .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert!(error_text(&bus).is_none());
    // Each run to the end of its last frame's slot: 3 + 2 + 1 copy.
    assert_eq!(out.len(), 6 + 6);
    assert!(out[..6].iter().all(|b| b.size() == ia.size()));
    assert!(out[6..].iter().all(|b| b.size() == ib.size()));
    let caps = h.sinkpad().unwrap().current_caps().unwrap();
    assert_eq!(caps.structure(0).unwrap().get::<i32>("width").unwrap(), 40);
}

#[test]
fn discont_and_gap_are_not_interpolated_across() {
    let caps = caps_str("RGB", 32, 24, "30/1");
    let info = info_of(&caps);
    let (mut h, _bus) = harness(M2X, 2, &caps);
    let mut inputs = Vec::new();
    for i in 0..7u64 {
        let mut b = buffer(frame_bytes(&info, i), Some(pts30(i)), Some(33_333_333));
        if i == 3 {
            b.get_mut().unwrap().set_flags(gst::BufferFlags::DISCONT);
        }
        inputs.push(b.clone());
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    // Runs 0..3 and 3..7: 3 + 2 and 4 + 3, each with a copy of its last frame after it.
    assert_eq!(out.len(), 6 + 8);
    assert_eq!(bytes(&out[4]), bytes(&inputs[2]));
    assert_eq!(bytes(&out[5]), bytes(&inputs[2]));
    assert_eq!(out[5].pts().unwrap().nseconds(), pts30(2) + 16_666_667);
    assert!(!out[5].flags().contains(gst::BufferFlags::DISCONT));
    assert_eq!(bytes(&out[6]), bytes(&inputs[3]));
    assert!(out[6].flags().contains(gst::BufferFlags::DISCONT));

    // A GAP buffer goes out unchanged and splits the stream; so does a GAP event.
    let (mut h, _bus) = harness(M2X, 2, &caps);
    let mut inputs = Vec::new();
    for i in 0..7u64 {
        let mut b = buffer(frame_bytes(&info, i), Some(pts30(i)), Some(33_333_333));
        if i == 2 {
            b.get_mut().unwrap().set_flags(gst::BufferFlags::GAP);
        }
        inputs.push(b.clone());
        if i == 5 {
            h.push_event(
                gst::event::Gap::builder(gst::ClockTime::from_nseconds(pts30(5) - 1000))
                    .duration(gst::ClockTime::from_nseconds(500))
                    .build(),
            );
        }
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    // Runs: 0..2 (3 frames out and a copy), the gap buffer (1), 3..5 (3 and a copy: the
    // GAP event is after its slot), 5..7 (3 and a copy).
    assert_eq!(out.len(), 4 + 1 + 4 + 4);
    assert_eq!(bytes(&out[3]), bytes(&inputs[1]));
    let gap = &out[4];
    assert!(gap.flags().contains(gst::BufferFlags::GAP));
    assert_eq!(gap.duration(), inputs[2].duration());
    assert_eq!(gap.pts(), inputs[2].pts());
    assert_eq!(bytes(&out[7]), bytes(&inputs[4]));
    assert_eq!(bytes(&out[8]), bytes(&inputs[4]));
    assert_eq!(bytes(&out[9]), bytes(&inputs[5]));
}

#[test]
fn odd_and_tiny_sizes() {
    for (format, w, h) in [
        ("RGB", 33, 17),
        ("I420", 35, 19),
        ("NV12", 13, 7),
        ("BGRx", 9, 11),
        ("RGB", 1, 1),
        ("I420", 2, 2),
        ("NV12", 1, 3),
    ] {
        let caps = caps_str(format, w, h, "30/1");
        let info = info_of(&caps);
        let (inputs, out) = run_stream(M2X, 2, &caps, 3);
        assert_eq!(out.len(), 6, "{format} {w}x{h}");
        for (i, input) in inputs.iter().enumerate() {
            assert_eq!(bytes(&out[2 * i]), bytes(input), "{format} {w}x{h}");
        }
        for o in &out {
            assert_eq!(o.size(), info.size());
        }
        // The element's new frame is the backend's, padded and cropped by it.
        if format != "BGRx" {
            let fr: Vec<Vec<u8>> = inputs.iter().map(bytes).collect();
            let want = reference(M2X, &info, [&fr[0], &fr[0], &fr[1], &fr[2]]);
            assert_eq!(bytes(&out[1]), want[0], "{format} {w}x{h}");
        }
    }
}

#[test]
fn bad_caps_fail_with_a_reason() {
    let cases = [
        (
            "video/x-raw,format=RGB,width=32,height=24,framerate=30/1,interlace-mode=interleaved",
            "interlaced",
        ),
        (
            "video/x-raw,format=I420,width=32,height=24,framerate=30/1,interlace-mode=mixed",
            "interlaced",
        ),
        (
            "video/x-raw,format=YUY2,width=32,height=24,framerate=30/1",
            "YUY2",
        ),
        (
            "video/x-raw,format=GRAY8,width=32,height=24,framerate=30/1",
            "GRAY8",
        ),
        (
            "video/x-raw,format=I420_10LE,width=33,height=24,framerate=30/1",
            "odd size",
        ),
        (
            "video/x-raw(memory:GLMemory),format=RGBA,width=32,height=24,framerate=30/1",
            "system memory",
        ),
        ("video/x-h264,width=32,height=24", "raw video"),
        (
            "video/x-raw,format=RGB,width=32,height=24,framerate=2147483647/1",
            "framerate",
        ),
    ];
    for (caps, reason) in cases {
        let (mut h, bus) = harness(M2X, 2, caps);
        let r = h.push(gst::Buffer::with_size(32 * 24 * 3).unwrap());
        assert_eq!(r, Err(gst::FlowError::NotNegotiated), "{caps}");
        let w = warning_text(&bus).unwrap_or_else(|| panic!("no reason given for {caps}"));
        assert!(w.contains(reason), "{caps}: {w}");
    }
}

#[test]
fn properties_and_refusals() {
    init();
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    assert_eq!(el.property::<u32>("factor"), 2);
    assert_eq!(el.property::<String>("model-location"), "");
    assert_eq!(el.property::<u32>("device-id"), 0);
    let v = el.property_value("backend");
    assert_eq!(glib_enum_nick(&v), "auto", "default backend should be auto");
    let v = el.property_value("precision");
    assert_eq!(glib_enum_nick(&v), "fp16");
    // Factor 3 is kept and fails start() (element_reliability.rs).
    el.set_property("factor", 3u32);
    assert_eq!(el.property::<u32>("factor"), 3);
    el.set_property("factor", 8u32);
    assert_eq!(el.property::<u32>("factor"), 8);

    // Running: changing the factor or the model is refused with a warning.
    let caps = caps_str("RGB", 32, 24, "30/1");
    let (h, bus) = harness(M2X, 2, &caps);
    let el = h.element().unwrap();
    el.set_property("factor", 4u32);
    assert_eq!(el.property::<u32>("factor"), 2);
    let w = warning_text(&bus).unwrap();
    assert!(w.contains("factor"), "{w}");
    el.set_property("model-location", "/somewhere/else.pth");
    assert!(el.property::<String>("model-location").ends_with(M2X));
    let w = warning_text(&bus).unwrap();
    assert!(w.contains("model-location"), "{w}");
}

fn glib_enum_nick(v: &glib::Value) -> String {
    let (_, e) = glib::EnumValue::from_value(v).unwrap();
    e.nick().to_string()
}

use gst::glib;

/// Starts the element in a pipeline; the first error message, if start failed.
fn start_error(el: &gst::Element) -> Option<String> {
    let pipeline = gst::Pipeline::new();
    pipeline.add(el).unwrap();
    let r = pipeline.set_state(gst::State::Paused);
    let bus = pipeline.bus().unwrap();
    let msg = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    match (r, msg) {
        (Err(_), Some(m)) => match m.view() {
            gst::MessageView::Error(e) => Some(format!("{} ({:?})", e.error(), e.debug())),
            _ => None,
        },
        (Err(_), None) => Some("state change failed without a message".into()),
        (Ok(_), _) => None,
    }
}

#[test]
fn empty_model_location_runs_the_embedded_model() {
    init();
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    assert_eq!(el.property::<String>("model-location"), "");
    el.set_property_from_str("backend", "cpu");
    let caps = caps_str("RGB", 40, 24, "25/1");
    let info = info_of(&caps);
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), Some("src"));
    h.set_src_caps_str(&caps);
    let inputs: Vec<gst::Buffer> = (0..3)
        .map(|i| {
            buffer(
                frame_bytes(&info, i),
                Some(i * 40_000_000),
                Some(40_000_000),
            )
        })
        .collect();
    for b in &inputs {
        h.push(b.clone()).unwrap();
    }
    assert!(h.push_event(gst::event::Eos::new()));
    let out = pull_all(&mut h);
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
    assert_eq!(out.len(), 6);
    for (i, input) in inputs.iter().enumerate() {
        assert_eq!(bytes(&out[2 * i]), bytes(input), "original {i} changed");
    }
    // The trained model's new frames are real frames, not copies of a neighbour.
    for j in [1, 3] {
        assert_ne!(bytes(&out[j]), bytes(&inputs[j / 2]));
        assert_ne!(bytes(&out[j]), bytes(&inputs[j / 2 + 1]));
        assert_eq!(
            out[j].pts(),
            Some(gst::ClockTime::from_nseconds(j as u64 * 20_000_000))
        );
    }
}

#[test]
fn start_errors_name_the_cause() {
    init();
    let el = element(M2X, 2);
    el.set_property("model-location", "/nonexistent/FLAVR_2x.pth");
    let e = start_error(&el).unwrap();
    assert!(e.contains("/nonexistent/FLAVR_2x.pth"), "{e}");

    let dir = std::env::temp_dir().join(format!("flavrinterp-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let junk = dir.join("junk.pth");
    std::fs::write(&junk, b"this is not a checkpoint at all").unwrap();
    let el = element(M2X, 2);
    el.set_property("model-location", junk.to_str().unwrap());
    let e = start_error(&el).unwrap();
    assert!(e.contains("junk.pth"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);

    // PyTorch containers (zip and legacy) load too.
    for m in ["flavr2x_w8.pth", "flavr2x_w8.legacy.pth", "flavr4x_w16.pth"] {
        let el = element(m, 2);
        assert_eq!(start_error(&el), None, "{m}");
    }
}

#[test]
fn cuda_backend_fails_clearly_or_works_and_auto_falls_back() {
    init();
    // Whether CUDA works here: the library's CUDA backend opened as the element opens it (GPU 0,
    // the default fp16), and closed again.
    let model = Arc::new(Flavr::load_path(&fixture(M2X)).unwrap());
    let options = gstflavrinterp::cuda::EngineOptions::from_env().unwrap();
    let cuda_fails = gstflavrinterp::cuda::open(model, 0, Precision::Fp16, options)
        .err()
        .map(|e| e.to_string());
    // cuda: starts where CUDA works, else fails naming CUDA.
    let el = element(M2X, 2);
    el.set_property_from_str("backend", "cuda");
    match (start_error(&el), &cuda_fails) {
        (Some(e), Some(_)) => assert!(e.contains("CUDA"), "{e}"),
        (None, None) => {}
        (e, why) => panic!("backend=cuda start error {e:?}, but CUDA opening here gives {why:?}"),
    }
    // auto: CUDA where it works, else a warning and the CPU backend; either way it starts.
    let el = element(M2X, 2);
    el.set_property_from_str("backend", "auto");
    let pipeline = gst::Pipeline::new();
    pipeline.add(&el).unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let bus = pipeline.bus().unwrap();
    let fallback = warning_text(&bus).filter(|w| w.contains("using the CPU backend"));
    pipeline.set_state(gst::State::Null).unwrap();
    assert_eq!(
        fallback.is_some(),
        cuda_fails.is_some(),
        "fallback warning {fallback:?}, CUDA opening here gives {cuda_fails:?}"
    );
}

#[test]
fn allocation_asks_for_the_frames_held() {
    let caps = caps_str("RGB", 32, 24, "30/1");
    for (model, factor, min) in [(M2X, 2, 3u32), (M2X, 4, 5)] {
        let (h, _bus) = harness(model, factor, &caps);
        let el = h.element().unwrap();
        let mut q = gst::query::Allocation::new(Some(&gst::Caps::from_str(&caps).unwrap()), true);
        assert!(el.static_pad("sink").unwrap().query(&mut q));
        let pools: Vec<_> = q.allocation_pools().collect();
        assert!(!pools.is_empty());
        assert!(pools.iter().all(|p| p.2 >= min), "{pools:?}");
    }
}

#[test]
fn new_segment_drains_the_window() {
    let caps = caps_str("RGB", 32, 24, "30/1");
    let info = info_of(&caps);
    let (mut h, _bus) = harness(M2X, 2, &caps);
    for i in 0..3 {
        h.push(buffer(frame_bytes(&info, i), Some(pts30(i)), None))
            .unwrap();
    }
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_start(gst::ClockTime::from_seconds(5));
    assert!(h.push_event(gst::event::Segment::new(&seg)));
    for i in 0..3 {
        let pts = 5_000_000_000 + pts30(i);
        h.push(buffer(frame_bytes(&info, 10 + i), Some(pts), None))
            .unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 6 + 6);
    assert_eq!(out[4].pts().unwrap().nseconds(), pts30(2));
    // The copy of the old run's last frame, then the new segment.
    assert_eq!(out[5].pts().unwrap().nseconds(), pts30(2) + 16_666_667);
    assert_eq!(out[6].pts().unwrap().nseconds(), 5_000_000_000);
}

#[test]
fn short_buffers_are_an_error_not_a_crash() {
    let caps = caps_str("RGB", 32, 24, "30/1");
    let (mut h, bus) = harness(M2X, 2, &caps);
    let mut results = Vec::new();
    for i in 0..3 {
        results.push(h.push(buffer(vec![7u8; 10], Some(pts30(i)), None)));
    }
    assert!(results.contains(&Err(gst::FlowError::Error)), "{results:?}");
    let e = error_text(&bus).unwrap();
    assert!(e.contains("smaller than"), "{e}");
}
