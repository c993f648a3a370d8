// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavrinterp` at any output rate (`framerate`, or a rate downstream fixes) on the CPU backend
//! with the narrow test model at tiny sizes: frame counts, exact output timestamps, inputs on the
//! output grid bit-exact, the same frames as the factor where the rate is a multiple, and clear
//! errors for bad rates. The 100,000-frame drift check is in `src/window/tests/rate.rs` (the
//! schedule without the network).

use gst::prelude::*;

mod gst_common;
use gst_common::{cpu_harness, fixture, init, launch_with_sink};

const M2X: &str = "flavr2x_w8.safetensors";
const SEC: u128 = 1_000_000_000;

/// `round(i * 1e9 * d / n)`: frame `i`'s time at `n/d` fps.
fn stamp(i: u64, n: u64, d: u64) -> u64 {
    ((u128::from(i) * SEC * u128::from(d) * 2 + u128::from(n)) / (2 * u128::from(n))) as u64
}

fn element(factor: u32, framerate: Option<(i32, i32)>) -> gst::Element {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("factor", factor)
        .property("model-location", fixture(M2X).to_str().unwrap())
        .property("max-in-flight", 0u32)
        // The test frames change wholesale from one to the next: no scene cuts (copies).
        .property("scene-threshold", 0.0f64)
        .build()
        .unwrap();
    if let Some((n, d)) = framerate {
        el.set_property("framerate", gst::Fraction::new(n, d));
    }
    el
}

fn caps(fps: &str) -> String {
    format!("video/x-raw,format=RGB,width=16,height=12,framerate={fps}")
}

/// Frame `i`: content that differs from frame to frame.
fn frame(i: u64) -> Vec<u8> {
    (0..16 * 12 * 3)
        .map(|n| ((n as u64 * 7 + i * 31) % 251) as u8)
        .collect()
}

fn buffer(i: u64, pts: u64) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(frame(i));
    b.get_mut()
        .unwrap()
        .set_pts(gst::ClockTime::from_nseconds(pts));
    b
}

fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().as_slice().to_vec()
}

/// Pushes frames at `pts` through `el` with input caps `fps`, then EOS; everything out, and
/// the output caps' rate.
fn run(el: &gst::Element, fps: &str, pts: &[u64]) -> (Vec<gst::Buffer>, gst::Fraction) {
    let (mut h, bus) = cpu_harness(el);
    h.set_src_caps_str(&caps(fps));
    for (i, &p) in pts.iter().enumerate() {
        h.push(buffer(i as u64, p)).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let mut out = Vec::new();
    while let Some(b) = h.try_pull() {
        out.push(b);
    }
    assert!(bus.pop_filtered(&[gst::MessageType::Error]).is_none());
    let c = h.sinkpad().unwrap().current_caps().unwrap();
    let fr = c
        .structure(0)
        .unwrap()
        .get::<gst::Fraction>("framerate")
        .unwrap();
    (out, fr)
}

#[test]
fn common_rates_give_exact_counts_and_timestamps() {
    // (in n/d, out n/d, inputs)
    for ((a, b), (c, d), n) in [
        ((24, 1), (60, 1), 5u64),
        ((25, 1), (50, 1), 4),
        ((30000, 1001), (60000, 1001), 4),
        ((50, 1), (60, 1), 6),
    ] {
        let el = element(2, Some((c as i32, d as i32)));
        let pts: Vec<u64> = (0..n).map(|i| stamp(i, a, b)).collect();
        let (out, fr) = run(&el, &format!("{a}/{b}"), &pts);
        assert_eq!(fr, gst::Fraction::new(c as i32, d as i32));
        // The grid up to the end of the last input's slot (one caps frame): ceil(n * out / in).
        let want = (n * c * b).div_ceil(d * a) as usize;
        assert_eq!(out.len(), want, "{a}/{b} -> {c}/{d}");
        for (j, buf) in out.iter().enumerate() {
            let j = j as u64;
            assert_eq!(buf.pts().unwrap().nseconds(), stamp(j, c, d), "frame {j}");
            assert_eq!(
                buf.duration().unwrap().nseconds(),
                stamp(j + 1, c, d) - stamp(j, c, d)
            );
            assert_eq!(buf.offset(), j);
            // On the grid of the inputs: that input, bit for bit; after the last one, it again.
            if stamp(j, c, d) > pts[n as usize - 1] {
                assert_eq!(bytes(buf), frame(n - 1), "{a}/{b} -> {c}/{d}: frame {j}");
            } else if (j * d * a).is_multiple_of(c * b) {
                let i = j * d * a / (c * b);
                assert_eq!(bytes(buf), frame(i), "{a}/{b} -> {c}/{d}: frame {j}");
            } else {
                let same: Vec<u64> = (0..n).filter(|&i| bytes(buf) == frame(i)).collect();
                assert!(
                    same.is_empty(),
                    "{a}/{b} -> {c}/{d}: frame {j} is input {same:?}"
                );
            }
        }
    }
}

#[test]
fn a_multiple_of_the_input_rate_makes_the_factors_frames() {
    let pts: Vec<u64> = (0..4).map(|i| stamp(i, 25, 1)).collect();
    let (by_factor, _) = run(&element(2, None), "25/1", &pts);
    let (by_rate, fr) = run(&element(2, Some((50, 1))), "25/1", &pts);
    assert_eq!(fr, gst::Fraction::new(50, 1));
    assert_eq!(by_rate.len(), by_factor.len());
    for (r, f) in by_rate.iter().zip(&by_factor) {
        assert_eq!(r.pts(), f.pts());
        assert_eq!(bytes(r), bytes(f));
    }
}

#[test]
fn variable_rate_input_lands_on_the_output_grid() {
    let pts = [0u64, 30, 45, 100, 110].map(|m| m * 1_000_000);
    let (out, fr) = run(&element(2, Some((60, 1))), "0/1", &pts);
    assert_eq!(fr, gst::Fraction::new(60, 1));
    // 0 .. 120 ms (the last slot: the last interval, 10 ms) at 60 fps: 8 frames.
    assert_eq!(out.len(), 8);
    for (j, buf) in out.iter().enumerate() {
        assert_eq!(buf.pts().unwrap().nseconds(), stamp(j as u64, 60, 1));
    }
    assert_eq!(bytes(&out[0]), frame(0));
}

#[test]
fn downstream_caps_fix_the_rate() {
    let desc = format!(
        "videotestsrc num-buffers=4 pattern=ball ! \
         video/x-raw,format=RGB,width=16,height=12,framerate=25/1 ! \
         flavrinterp factor=2 backend=cpu model-location={} ! video/x-raw,framerate=60/1 ! \
         appsink name=sink sync=false",
        fixture(M2X).to_str().unwrap()
    );
    let (pipeline, sink) = launch_with_sink(&desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut pts = Vec::new();
    let mut rate = None;
    // appsink's action signal: a sample, or none at EOS.
    while let Some(s) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        rate = s
            .caps()
            .and_then(|c| c.structure(0)?.get::<gst::Fraction>("framerate").ok());
        pts.push(s.buffer().unwrap().pts().unwrap().nseconds());
    }
    let bus = pipeline.bus().unwrap();
    let err = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(err.is_none(), "{err:?}");
    assert_eq!(rate, Some(gst::Fraction::new(60, 1)));
    // 0 .. 160 ms (the last input's slot included) at 60 fps.
    assert_eq!(pts, (0..10).map(|j| stamp(j, 60, 1)).collect::<Vec<_>>());
}

fn error_of(bus: &gst::Bus) -> String {
    bus.pop_filtered(&[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => format!("{} ({:?})", e.error(), e.debug()),
            _ => unreachable!(),
        })
        .unwrap_or_default()
}

#[test]
fn a_rate_below_the_input_is_an_error() {
    let el = element(2, Some((24, 1)));
    let (mut h, bus) = cpu_harness(&el);
    h.set_src_caps_str(&caps("30/1"));
    let r = h.push(buffer(0, 0));
    assert_eq!(r, Err(gst::FlowError::NotNegotiated));
    let e = error_of(&bus);
    assert!(
        e.contains("output framerate 24/1 is below the input's 30/1"),
        "{e}"
    );
}

#[test]
fn a_framerate_that_is_not_a_positive_fraction_fails_at_start() {
    for (n, d) in [(-60, 1), (60, -1)] {
        let el = element(2, Some((n, d)));
        el.set_property_from_str("backend", "cpu");
        let pipeline = gst::Pipeline::new();
        let src = gst::ElementFactory::make("videotestsrc").build().unwrap();
        let sink = gst::ElementFactory::make("fakesink").build().unwrap();
        pipeline.add_many([&src, &el, &sink]).unwrap();
        gst::Element::link_many([&src, &el, &sink]).unwrap();
        assert!(pipeline.set_state(gst::State::Playing).is_err());
        let e = error_of(&pipeline.bus().unwrap());
        pipeline.set_state(gst::State::Null).unwrap();
        assert!(e.contains("is not a positive fraction"), "{n}/{d}: {e}");
    }
}
