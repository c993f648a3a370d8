// SPDX-License-Identifier: MIT OR Apache-2.0
//! Frame accounting under random sequences of events (issue 14): buffers with missing,
//! repeated and backwards timestamps, DISCONT and GAP buffers, GAP events, flushes, new
//! segments (seeks), SEGMENT_DONE (segment seeks), caps changes and EOS, through the element
//! (CPU backend, the narrow 2x test model, 32x24), with 0 to 2 windows in flight.
//!
//! The output is checked against a simple model of the README's rules, written here apart
//! from the element: every original comes out once, bit-exact, in its place; `factor - 1` new
//! frames between every two originals of a run; after the last original of a run, copies of it
//! (its bytes, no DISCONT) at the `factor - 1` places of its slot that come before the next
//! input (a DISCONT, GAP or backwards buffer, a GAP event), so the output rate stays constant;
//! timestamps and durations as the rules say, so
//! PTS strictly increase within a run and every frame lasts until the next. A flush may throw
//! away frames not yet pushed: what came out before it must be a prefix of what a drain would
//! have given.
//!
//! `FLAVR_ACCOUNTING_CASES=N` sets the number of cases (default 200, about 30 s; thousands for a long run).
//! `FLAVR_ACCOUNTING_DEVICES=cpu:3` (any `devices` value) runs the cases on several engines.

use gstflavrinterp::window::scale;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

mod gst_common;
use gst_common::{cpu_harness, fixture, init};

const FRAME: u64 = 33_333_333;
const FORMATS: [&str; 2] = ["RGB", "I420"];

fn caps(format: usize) -> String {
    format!(
        "video/x-raw,format={},width=32,height=24,framerate=30/1",
        FORMATS[format]
    )
}

fn frame_size(format: usize) -> usize {
    match format {
        0 => 32 * 24 * 3,
        _ => 32 * 24 * 3 / 2,
    }
}

/// One thing the test does to the element.
#[derive(Clone, Debug)]
enum Ev {
    /// A buffer: the time step from the previous one (in 1/4 frames, may be negative), its
    /// duration (0: none, 1: a frame, 2: zero), flags, and whether its timestamp is left out
    /// (only where the rules can derive it).
    Buf {
        step: i64,
        dur: u8,
        discont: bool,
        gap: bool,
        no_pts: bool,
    },
    Flush,
    Segment,
    SegmentDone,
    GapEvent,
    Caps,
}

fn ev() -> impl Strategy<Value = Ev> {
    let buf = (
        prop_oneof![8 => Just(4i64), 2 => 1i64..12, 1 => -12i64..=0],
        0u8..3,
        prop::bool::weighted(0.08),
        prop::bool::weighted(0.06),
        prop::bool::weighted(0.08),
    )
        .prop_map(|(step, dur, discont, gap, no_pts)| Ev::Buf {
            step,
            dur,
            discont,
            gap,
            no_pts,
        });
    prop_oneof![
        40 => buf,
        1 => Just(Ev::Flush),
        1 => Just(Ev::Segment),
        1 => Just(Ev::SegmentDone),
        1 => Just(Ev::GapEvent),
        1 => Just(Ev::Caps),
    ]
}

/// An expected output frame.
#[derive(Clone, Debug, PartialEq)]
enum Out {
    /// Input buffer `idx`, unchanged bytes.
    Orig {
        idx: usize,
        pts: u64,
        dur: Option<u64>,
    },
    New {
        pts: u64,
        dur: Option<u64>,
        size: usize,
    },
    /// A copy of input `idx` (its bytes) in the rest of its slot.
    Copy {
        idx: usize,
        pts: u64,
        dur: Option<u64>,
    },
}

/// The rules, apart from the element.
struct Model {
    f: u64,
    format: usize,
    /// The current run: input index, pts, duration (zero durations already dropped).
    run: Vec<(usize, u64, Option<u64>)>,
    last_end: Option<u64>,
    out: Vec<Out>,
}

impl Model {
    /// Ends the run; `until`: the next input's time, when known.
    fn end_run(&mut self, until: Option<u64>) {
        let run = std::mem::take(&mut self.run);
        let n = run.len();
        let f = self.f;
        for (i, &(idx, pts, dur)) in run.iter().enumerate() {
            if i + 1 == n {
                let d = dur.unwrap_or(FRAME);
                self.out.push(Out::Orig {
                    idx,
                    pts,
                    dur: Some(scale(d, 1, f)),
                });
                for k in 1..f {
                    let at = pts + scale(d, k, f);
                    if until.is_some_and(|u| at >= u) {
                        break;
                    }
                    self.out.push(Out::Copy {
                        idx,
                        pts: at,
                        dur: Some(scale(d, k + 1, f) - scale(d, k, f)),
                    });
                }
                continue;
            }
            let span = run[i + 1].1 - pts;
            for k in 0..f {
                let p = pts + scale(span, k, f);
                let d = Some(scale(span, k + 1, f) - scale(span, k, f));
                self.out.push(if k == 0 {
                    Out::Orig {
                        idx,
                        pts: p,
                        dur: d,
                    }
                } else {
                    Out::New {
                        pts: p,
                        dur: d,
                        size: frame_size(self.format),
                    }
                });
            }
        }
    }
}

fn frame_bytes(idx: usize, size: usize) -> Vec<u8> {
    let mut v: Vec<u8> = (0..size)
        .map(|n| ((n * 7 + idx * 13) % 251) as u8)
        .collect();
    v[..4].copy_from_slice(&(idx as u32).to_le_bytes());
    v
}

struct Case {
    factor: u32,
    in_flight: u32,
    events: Vec<Ev>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop_oneof![Just(2u32), Just(4)],
        0u32..3,
        prop::collection::vec(ev(), 1..40),
    )
        .prop_map(|(factor, in_flight, events)| Case {
            factor,
            in_flight,
            events,
        })
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "factor {} in-flight {} events {:?}",
            self.factor, self.in_flight, self.events
        )
    }
}

/// Checks the frames of one epoch (between flushes) against the model's.
fn check_epoch(
    got: &[gst::Buffer],
    want: &[Out],
    inputs: &[Vec<u8>],
    flushed: bool,
) -> Result<(), TestCaseError> {
    if flushed {
        prop_assert!(
            got.len() <= want.len(),
            "{} frames out before a flush, a drain would give {}",
            got.len(),
            want.len()
        );
    } else {
        prop_assert_eq!(got.len(), want.len(), "frames out");
    }
    for (n, (b, w)) in got.iter().zip(want).enumerate() {
        let pts = b.pts().map(gst::ClockTime::nseconds);
        let dur = b.duration().map(gst::ClockTime::nseconds);
        let map = b.map_readable().unwrap();
        match w {
            Out::Orig {
                idx,
                pts: p,
                dur: d,
            } => {
                prop_assert!(
                    map.as_slice() == inputs[*idx].as_slice(),
                    "frame {}: not input {} bit-exact",
                    n,
                    idx
                );
                prop_assert_eq!(pts, Some(*p), "frame {} (input {}) pts", n, idx);
                prop_assert_eq!(dur, *d, "frame {} (input {}) duration", n, idx);
            }
            Out::Copy {
                idx,
                pts: p,
                dur: d,
            } => {
                prop_assert!(
                    map.as_slice() == inputs[*idx].as_slice(),
                    "frame {}: not a copy of input {}",
                    n,
                    idx
                );
                prop_assert!(
                    !b.flags().contains(gst::BufferFlags::DISCONT),
                    "frame {}: a copy marked DISCONT",
                    n
                );
                prop_assert_eq!(pts, Some(*p), "frame {} (copy of {}) pts", n, idx);
                prop_assert_eq!(dur, *d, "frame {} (copy of {}) duration", n, idx);
            }
            Out::New {
                pts: p,
                dur: d,
                size,
            } => {
                prop_assert!(
                    !inputs.iter().any(|i| i.as_slice() == map.as_slice()),
                    "frame {}: an input where a new frame belongs",
                    n
                );
                prop_assert_eq!(map.len(), *size, "frame {} size", n);
                prop_assert_eq!(pts, Some(*p), "frame {} (new) pts", n);
                prop_assert_eq!(dur, *d, "frame {} (new) duration", n);
            }
        }
    }
    Ok(())
}

fn run_case(c: &Case) -> Result<(), TestCaseError> {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property(
            "model-location",
            fixture("flavr2x_w8.safetensors").to_str().unwrap(),
        )
        .property("factor", c.factor)
        .property("max-in-flight", c.in_flight)
        .build()
        .unwrap();
    if let Ok(devices) = std::env::var("FLAVR_ACCOUNTING_DEVICES") {
        gst::prelude::ObjectExt::set_property(&el, "devices", devices);
    }
    let (mut h, bus) = cpu_harness(&el);
    let mut m = Model {
        f: u64::from(c.factor),
        format: 0,
        run: Vec::new(),
        last_end: None,
        out: Vec::new(),
    };
    h.set_src_caps_str(&caps(0));
    let mut inputs: Vec<Vec<u8>> = Vec::new();
    let mut epochs: Vec<(Vec<gst::Buffer>, Vec<Out>, bool)> = Vec::new();
    let mut got: Vec<gst::Buffer> = Vec::new();
    let mut t: u64 = 10 * FRAME;
    for e in &c.events {
        match e {
            Ev::Buf {
                step,
                dur,
                discont,
                gap,
                no_pts,
            } => {
                t = t.saturating_add_signed(step * FRAME as i64 / 4);
                let given = t;
                let omit = *no_pts && m.last_end.is_some();
                let pts = if omit { m.last_end.unwrap() } else { given };
                let d = match dur {
                    0 => None,
                    1 => Some(FRAME),
                    _ => Some(0),
                };
                let idx = inputs.len();
                let bytes = frame_bytes(idx, frame_size(m.format));
                inputs.push(bytes.clone());
                let mut b = gst::Buffer::from_mut_slice(bytes);
                {
                    let b = b.get_mut().unwrap();
                    b.set_pts((!omit).then(|| gst::ClockTime::from_nseconds(given)));
                    b.set_duration(d.map(gst::ClockTime::from_nseconds));
                    if *discont {
                        b.set_flags(gst::BufferFlags::DISCONT);
                    }
                    if *gap {
                        b.set_flags(gst::BufferFlags::GAP);
                    }
                }
                let d = d.filter(|d| *d > 0);
                if *gap {
                    m.end_run(Some(pts));
                    m.out.push(Out::Orig { idx, pts, dur: d });
                } else {
                    if m.run.last().is_some_and(|&(_, p, _)| *discont || pts <= p) {
                        m.end_run(Some(pts));
                    }
                    m.run.push((idx, pts, d));
                }
                m.last_end = Some(pts + d.unwrap_or(FRAME));
                prop_assert_eq!(h.push(b), Ok(gst::FlowSuccess::Ok), "push {}", idx);
            }
            Ev::Flush => {
                got.extend(std::iter::from_fn(|| h.try_pull()));
                prop_assert!(h.push_event(gst::event::FlushStart::new()));
                prop_assert!(h.push_event(gst::event::FlushStop::new(true)));
                prop_assert!(
                    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                        gst::ClockTime,
                    >::new()))
                );
                got.extend(std::iter::from_fn(|| h.try_pull()));
                // What a drain would have given; a prefix of it came out.
                m.end_run(None);
                m.last_end = None;
                epochs.push((std::mem::take(&mut got), std::mem::take(&mut m.out), true));
            }
            Ev::Segment => {
                m.end_run(None);
                prop_assert!(
                    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
                        gst::ClockTime,
                    >::new()))
                );
            }
            Ev::SegmentDone => {
                m.end_run(None);
                prop_assert!(h.push_event(gst::event::SegmentDone::new(
                    gst::ClockTime::from_nseconds(t)
                )));
            }
            Ev::GapEvent => {
                m.end_run(Some(t));
                prop_assert!(
                    h.push_event(
                        gst::event::Gap::builder(gst::ClockTime::from_nseconds(t))
                            .duration(gst::ClockTime::from_nseconds(FRAME))
                            .build()
                    )
                );
            }
            Ev::Caps => {
                m.end_run(None);
                m.last_end = None;
                m.format = 1 - m.format;
                h.set_src_caps_str(&caps(m.format));
            }
        }
    }
    m.end_run(None);
    prop_assert!(h.push_event(gst::event::Eos::new()));
    got.extend(std::iter::from_fn(|| h.try_pull()));
    epochs.push((got, std::mem::take(&mut m.out), false));
    if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
        return Err(TestCaseError::fail(format!("error: {msg:?}")));
    }
    for (n, (got, want, flushed)) in epochs.iter().enumerate() {
        check_epoch(got, want, &inputs, *flushed)
            .map_err(|e| TestCaseError::fail(format!("epoch {n}: {e}")))?;
    }
    Ok(())
}

#[test]
fn every_frame_accounted_for() {
    let cases = std::env::var("FLAVR_ACCOUNTING_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let t0 = std::time::Instant::now();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&case(), |c| run_case(&c));
    println!("{cases} cases in {:.1} s", t0.elapsed().as_secs_f64());
    if let Err(e) = result {
        panic!("{e}");
    }
}
