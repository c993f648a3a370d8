// SPDX-License-Identifier: MIT OR Apache-2.0
//! Tests of the window against a simulated element and backend.
//!
//! The simulated frames carry their exact position in the run (in input frames); the simulated
//! network makes output `k` of window `(w0, w1, w2, w3)` at `w1 + (w2 - w1) * (k + 1) / (n + 1)`.
//! If the schedule reads the right neighbours, every pushed frame carries its own tick's
//! position, which is checked independently of the schedule's own arithmetic.

use std::collections::{HashMap, HashSet};

use super::*;

const MS: u64 = 1_000_000;

#[derive(Clone, Debug, PartialEq)]
struct Out {
    key: Key,
    pts: u64,
    duration: Option<u64>,
    original: bool,
    /// Position in the run, in input frames.
    pos: f64,
    /// For originals: the input frame number.
    input: Option<u64>,
    /// For copies: the original copied.
    copy_of: Option<Key>,
}

struct Sim {
    w: Window,
    n: usize,
    /// Frames the element holds: position in run, and input number for originals.
    held: HashMap<Key, (f64, Option<u64>)>,
    slots: Vec<Option<(Key, f64)>>,
    out: Vec<Out>,
    loads: HashMap<Key, usize>,
    /// Windows run, as positions (and the run they belong to).
    windows: Vec<(u64, [f64; 4])>,
    inputs: u64,
    max_held_inputs: usize,
}

impl Sim {
    fn new(factor: u32, n: usize, frame_duration: Option<u64>) -> Sim {
        let plan = Plan::new(factor, n).unwrap();
        Sim {
            w: Window::new(plan, 6, frame_duration),
            n,
            held: HashMap::new(),
            slots: vec![None; 6],
            out: Vec::new(),
            loads: HashMap::new(),
            windows: Vec::new(),
            inputs: 0,
            max_held_inputs: 0,
        }
    }

    fn factor(&self) -> u64 {
        self.w.plan().factor()
    }

    fn push(&mut self, pts: Option<u64>, duration: Option<u64>, discont: bool) -> Pushed {
        let p = self
            .w
            .push(FrameIn {
                pts,
                duration,
                discont,
                cut: false,
            })
            .unwrap();
        self.store(&p);
        p
    }

    /// A frame at `pts` that starts a new shot when `cut`.
    fn push_cut(&mut self, pts: u64, cut: bool) -> Pushed {
        let p = self
            .w
            .push(FrameIn {
                pts: Some(pts),
                cut,
                ..FrameIn::default()
            })
            .unwrap();
        self.store(&p);
        p
    }

    fn store(&mut self, p: &Pushed) {
        let pos = p.key.tick as f64 / self.factor() as f64;
        self.held.insert(p.key, (pos, Some(self.inputs)));
        self.inputs += 1;
        let held_inputs = self.held.values().filter(|v| v.1.is_some()).count();
        self.max_held_inputs = self.max_held_inputs.max(held_inputs);
        self.apply(&p.steps);
    }

    fn drain(&mut self) {
        let steps = self.w.drain().unwrap();
        self.apply(&steps);
        assert!(self.held.is_empty(), "drain left {:?}", self.held);
        assert_eq!(self.w.held(), 0);
    }

    fn apply(&mut self, steps: &[Step]) {
        for s in steps {
            match s {
                Step::Load { key, slot } => {
                    let (pos, _) = self.held[key];
                    self.slots[*slot] = Some((*key, pos));
                    *self.loads.entry(*key).or_default() += 1;
                }
                Step::Run { window, outputs } => {
                    let frames = window.map(|s| self.slots[s].unwrap());
                    let run = frames[0].0.run;
                    assert!(frames.iter().all(|f| f.0.run == run), "window mixes runs");
                    let pos = frames.map(|f| f.1);
                    self.windows.push((run, pos));
                    for &(idx, key) in outputs {
                        assert!(idx < self.n);
                        let v =
                            pos[1] + (pos[2] - pos[1]) * (idx as f64 + 1.0) / (self.n as f64 + 1.0);
                        assert!(
                            self.held.insert(key, (v, None)).is_none(),
                            "{key:?} made twice"
                        );
                    }
                }
                Step::Emit {
                    key,
                    pts,
                    duration,
                    original,
                } => {
                    let (pos, input) = *self.held.get(key).unwrap_or_else(|| panic!("{key:?}"));
                    self.out.push(Out {
                        key: *key,
                        pts: *pts,
                        duration: *duration,
                        original: *original,
                        pos,
                        input,
                        copy_of: None,
                    });
                }
                Step::EmitCopy {
                    key,
                    source,
                    pts,
                    duration,
                } => {
                    assert_eq!(key.run, source.run);
                    let (pos, input) = *self
                        .held
                        .get(source)
                        .unwrap_or_else(|| panic!("copy of {source:?}, not held"));
                    assert!(input.is_some(), "copy of a new frame {source:?}");
                    self.out.push(Out {
                        key: *key,
                        pts: *pts,
                        duration: *duration,
                        original: false,
                        pos,
                        input: None,
                        copy_of: Some(*source),
                    });
                }
                Step::Release { key } => {
                    assert!(self.held.remove(key).is_some(), "{key:?} released twice");
                }
            }
        }
    }

    fn originals(&self) -> Vec<u64> {
        self.out.iter().filter_map(|o| o.input).collect()
    }
}

fn all_plans() -> Vec<(u32, usize)> {
    let mut v = Vec::new();
    for f in [2u32, 4, 8] {
        for n in [1usize, 3, 7] {
            v.push((f, n));
        }
    }
    v
}

fn check_stream(sim: &Sim) {
    let f = sim.factor();
    // Every pushed frame carries its own position (copies: the original's): the windows read
    // the right neighbours.
    for o in &sim.out {
        let want = match o.copy_of {
            Some(k) => k.tick as f64 / f as f64,
            None => o.key.tick as f64 / f as f64,
        };
        assert!(
            (o.pos - want).abs() < 1e-9,
            "frame {:?} has content of position {} (want {want})",
            o.key,
            o.pos
        );
        assert_eq!(o.original, o.key.tick % f == 0);
        assert_eq!(o.original, o.input.is_some());
    }
    // Originals: every input once, in order.
    let originals = sim.originals();
    assert_eq!(originals, (0..sim.inputs).collect::<Vec<_>>());
    // Times strictly increase; inside a run each frame ends where the next starts.
    for pair in sim.out.windows(2) {
        assert!(pair[1].pts > pair[0].pts, "{pair:?}");
        if pair[0].key.run == pair[1].key.run {
            assert_eq!(pair[0].pts + pair[0].duration.unwrap(), pair[1].pts);
        }
    }
}

#[test]
fn frame_counts_for_every_plan_and_length() {
    for (f, n) in all_plans() {
        for len in 1..=12u64 {
            let mut sim = Sim::new(f, n, Some(40 * MS));
            for i in 0..len {
                sim.push(Some(i * 40 * MS), Some(40 * MS), i == 0);
            }
            sim.drain();
            // Every original fills its slot: new frames between, copies after the last.
            let want = len * u64::from(f);
            assert_eq!(
                sim.out.len() as u64,
                want,
                "factor {f}, n {n}, {len} frames"
            );
            check_stream(&sim);
            // 40 ms at factor 2/4/8: 20/10/5 ms, exactly.
            for o in &sim.out {
                assert_eq!(o.duration, Some(40 * MS / u64::from(f)), "{o:?}");
                assert_eq!(o.pts, o.key.tick * 40 * MS / u64::from(f));
            }
            assert!(
                sim.max_held_inputs as u64 <= sim.w.plan().max_held_inputs(),
                "held {} inputs, plan says {}",
                sim.max_held_inputs,
                sim.w.plan().max_held_inputs()
            );
        }
    }
}

#[test]
fn windows_repeat_the_nearest_frame_at_the_ends() {
    let mut sim = Sim::new(2, 1, None);
    for i in 0..5 {
        sim.push(Some(i * 10), None, false);
    }
    sim.drain();
    let w: Vec<[f64; 4]> = sim.windows.iter().map(|w| w.1).collect();
    assert_eq!(
        w,
        vec![
            [0.0, 0.0, 1.0, 2.0],
            [0.0, 1.0, 2.0, 3.0],
            [1.0, 2.0, 3.0, 4.0],
            [2.0, 3.0, 4.0, 4.0]
        ]
    );
    // Two frames: one window (0, 0, 1, 1). Three: (0, 0, 1, 2), (0, 1, 2, 2).
    let mut sim = Sim::new(2, 1, None);
    sim.push(Some(0), None, false);
    sim.push(Some(10), None, false);
    sim.drain();
    assert_eq!(sim.windows, vec![(0, [0.0, 0.0, 1.0, 1.0])]);
    let mut sim = Sim::new(2, 1, None);
    for i in 0..3 {
        sim.push(Some(i * 10), None, false);
    }
    sim.drain();
    let w: Vec<[f64; 4]> = sim.windows.iter().map(|w| w.1).collect();
    assert_eq!(w, vec![[0.0, 0.0, 1.0, 2.0], [0.0, 1.0, 2.0, 2.0]]);
}

#[test]
fn recursion_reads_the_doubled_sequence() {
    // 4x from a 2x model: the frame at 1.25 comes from (0.5, 1, 1.5, 2), the one at 1.75 from
    // (1, 1.5, 2, 2.5).
    let mut sim = Sim::new(4, 1, None);
    for i in 0..6 {
        sim.push(Some(i * 40), None, false);
    }
    sim.drain();
    let w: Vec<[f64; 4]> = sim.windows.iter().map(|w| w.1).collect();
    assert!(w.contains(&[0.5, 1.0, 1.5, 2.0]), "{w:?}");
    assert!(w.contains(&[1.0, 1.5, 2.0, 2.5]), "{w:?}");
    assert!(w.contains(&[0.0, 1.0, 2.0, 3.0]), "{w:?}");
    // Start: (0, 0, 0.5, 1) — the missing -0.5 is the first frame.
    assert!(w.contains(&[0.0, 0.0, 0.5, 1.0]), "{w:?}");
    // End: (4.5, 5, 5, 5)? No: the last interval (4, 5) reads (3.5, 4, 4.5, 5).
    assert!(w.contains(&[3.5, 4.0, 4.5, 5.0]), "{w:?}");
    assert!(w.contains(&[4.0, 4.5, 5.0, 5.0]), "{w:?}");
    // One run per level-1 interval and two per level-2 interval.
    assert_eq!(w.len(), 5 + 10);
}

#[test]
fn each_frame_is_converted_once_in_single_level_plans() {
    for (f, n) in [(2, 1), (4, 3), (8, 7), (4, 7), (2, 7), (2, 3)] {
        let mut sim = Sim::new(f, n, None);
        for i in 0..30 {
            sim.push(Some(i * 100), None, false);
        }
        sim.drain();
        assert_eq!(sim.loads.len(), 30);
        assert!(
            sim.loads.values().all(|&c| c == 1),
            "{f} {n}: {:?}",
            sim.loads
        );
    }
}

#[test]
fn recursion_loads_few_frames_twice() {
    for (f, n) in [(4, 1), (8, 1), (8, 3)] {
        let mut sim = Sim::new(f, n, None);
        let len = 40;
        for i in 0..len {
            sim.push(Some(i * 1000), None, false);
        }
        sim.drain();
        let total: usize = sim.loads.values().sum();
        let distinct = sim.loads.len();
        // Every original and every level frame that some window reads is loaded at least once;
        // with six slots, reloads stay rare.
        assert!(
            total <= distinct + distinct / 2,
            "{f} {n}: {total} loads of {distinct} frames"
        );
        if (f, n) == (4, 1) {
            assert_eq!(total, distinct, "4x from 2x fits in six slots");
        }
    }
}

#[test]
fn outputs_leave_as_soon_as_the_window_is_complete() {
    // Single level: after frame k arrives, everything up to original k - 1 is out.
    let mut sim = Sim::new(4, 3, None);
    let mut expect = Vec::new();
    for k in 0..8u64 {
        sim.push(Some(k * 100), None, false);
        expect.push(sim.out.len());
    }
    let f = 4;
    let want: Vec<usize> = (0..8u64)
        .map(|k| if k < 2 { 0 } else { (1 + (k - 1) * f) as usize })
        .collect();
    assert_eq!(expect, want);
    assert_eq!(sim.w.plan().latency_frames(), 2);
    // Two levels wait one frame more.
    let mut sim = Sim::new(4, 1, None);
    let mut got = Vec::new();
    for k in 0..8u64 {
        sim.push(Some(k * 100), None, false);
        got.push(sim.out.len());
    }
    let want: Vec<usize> = (0..8u64)
        .map(|k| if k < 3 { 0 } else { (1 + (k - 2) * f) as usize })
        .collect();
    assert_eq!(got, want);
    assert_eq!(sim.w.plan().latency_frames(), 3);
}

#[test]
fn timestamps_follow_variable_frame_rates() {
    let mut sim = Sim::new(2, 1, None);
    for pts in [0, 10, 30, 60] {
        sim.push(Some(pts), None, false);
    }
    sim.drain();
    let times: Vec<(u64, Option<u64>)> = sim.out.iter().map(|o| (o.pts, o.duration)).collect();
    assert_eq!(
        times,
        vec![
            (0, Some(5)),
            (5, Some(5)),
            (10, Some(10)),
            (20, Some(10)),
            (30, Some(15)),
            (45, Some(15)),
            // Last frame: no duration, no frame rate: its slot is the last interval (30),
            // a copy of it in the second half.
            (60, Some(15)),
            (75, Some(15)),
        ]
    );
    check_stream(&sim);
}

#[test]
fn ntsc_rates_round_evenly() {
    // 30000/1001 fps: 33_366_667 ns frames (rounded), factor 4.
    let d = 33_366_667u64;
    let mut sim = Sim::new(4, 3, Some(d));
    for i in 0..4 {
        sim.push(Some(i * 1_000_000_000 * 1001 / 30000), Some(d), false);
    }
    sim.drain();
    check_stream(&sim);
    for o in &sim.out {
        let dur = o.duration.unwrap();
        assert!((8_341_666..=8_341_667).contains(&dur), "{o:?}");
    }
}

#[test]
fn last_frame_duration_rules() {
    // Its own duration first.
    let mut sim = Sim::new(2, 1, Some(40));
    sim.push(Some(0), Some(20), false);
    sim.drain();
    assert_eq!(sim.out[0].duration, Some(10));
    // The rest of its slot: a copy of it.
    assert_eq!((sim.out[1].pts, sim.out[1].duration), (10, Some(10)));
    assert_eq!(sim.out[1].copy_of, Some(sim.out[0].key));
    assert_eq!(sim.out.len(), 2);
    // Then the caps frame duration.
    let mut sim = Sim::new(2, 1, Some(40));
    sim.push(Some(0), None, false);
    sim.drain();
    assert_eq!(sim.out[0].duration, Some(20));
    assert_eq!((sim.out[1].pts, sim.out[1].duration), (20, Some(20)));
    // Then the last interval (factor 4: three copies).
    let mut sim = Sim::new(4, 3, None);
    sim.push(Some(0), None, false);
    sim.push(Some(40), None, false);
    sim.drain();
    let tail: Vec<(u64, Option<u64>, Option<Key>)> = sim.out[4..]
        .iter()
        .map(|o| (o.pts, o.duration, o.copy_of))
        .collect();
    let last = Some(Key { run: 0, tick: 4 });
    assert_eq!(
        tail,
        [
            (40, Some(10), None),
            (50, Some(10), last),
            (60, Some(10), last),
            (70, Some(10), last)
        ]
    );
    check_stream(&sim);
    // Nothing known: none, and no copies.
    let mut sim = Sim::new(4, 3, None);
    sim.push(Some(0), None, false);
    sim.drain();
    assert_eq!(sim.out[0].duration, None);
    assert_eq!(sim.out.len(), 1);
}

#[test]
fn missing_timestamps_are_derived_or_refused() {
    let mut w = Window::new(Plan::new(2, 1).unwrap(), 6, None);
    assert_eq!(
        w.push(FrameIn::default()),
        Err(WindowError::NoTimestamp { frame: 0 })
    );
    let mut sim = Sim::new(2, 1, Some(40));
    sim.push(Some(100), None, false);
    let p = sim.push(None, None, false);
    assert_eq!(p.derived_pts, Some(140));
    let p = sim.push(None, Some(10), false);
    assert_eq!(p.derived_pts, Some(180));
    let p = sim.push(None, None, false);
    assert_eq!(p.derived_pts, Some(190));
    sim.drain();
    check_stream(&sim);
    // No frame rate and no duration: the last interval.
    let mut sim = Sim::new(2, 1, None);
    sim.push(Some(0), None, false);
    sim.push(Some(30), None, false);
    let p = sim.push(None, None, false);
    assert_eq!(p.derived_pts, Some(60));
}

#[test]
fn discont_starts_a_new_run() {
    for (f, n) in all_plans() {
        let mut sim = Sim::new(f, n, Some(40));
        for i in 0..4 {
            sim.push(Some(i * 40), Some(40), i == 0);
        }
        let p = sim.push(Some(1000), Some(40), true);
        assert_eq!(p.restart, Some(Restart::Discont));
        for i in 1..3 {
            sim.push(Some(1000 + i * 40), Some(40), false);
        }
        sim.drain();
        let f = u64::from(f);
        assert_eq!(sim.out.len() as u64, 4 * f + 3 * f);
        check_stream(&sim);
        // Between the runs: the last original of the first run, then copies of it to the end
        // of its slot (120..160), then the first frame of the second.
        let last = sim.out.iter().position(|o| o.input == Some(3)).unwrap();
        assert_eq!(sim.out[last].duration, Some(40 / f));
        let tail = &sim.out[last + 1..last + f as usize];
        for (k, o) in tail.iter().enumerate() {
            assert_eq!(o.copy_of, Some(sim.out[last].key));
            assert_eq!(o.pts, 120 + 40 * (k as u64 + 1) / f);
        }
        assert_eq!(tail.last().map(|o| o.pts + o.duration.unwrap()), Some(160));
        assert_eq!(sim.out[last + f as usize].input, Some(4));
    }
}

#[test]
fn timestamps_going_back_start_a_new_run() {
    let mut sim = Sim::new(2, 1, None);
    sim.push(Some(0), None, false);
    sim.push(Some(10), None, false);
    let p = sim.push(Some(10), None, false);
    assert_eq!(p.restart, Some(Restart::Backwards));
    sim.push(Some(20), None, false);
    sim.drain();
    assert_eq!(sim.originals(), vec![0, 1, 2, 3]);
    // No copy after input 1: its slot (10..20) starts after the next input's time (10). After
    // input 3 (EOS), one: its slot is the last interval.
    let times: Vec<(u64, bool)> = sim
        .out
        .iter()
        .map(|o| (o.pts, o.copy_of.is_some()))
        .collect();
    assert_eq!(
        times,
        [
            (0, false),
            (5, false),
            (10, false),
            (10, false),
            (15, false),
            (20, false),
            (25, true)
        ]
    );
}

#[test]
fn copies_after_the_last_original_stop_before_the_next_input() {
    // Factor 4, slots of 40: a DISCONT 25 after the last original leaves room for two copies
    // (at 10 and 20), not for the one at 30.
    let mut sim = Sim::new(4, 3, Some(40));
    sim.push(Some(0), None, false);
    sim.push(Some(25), None, true);
    let times: Vec<u64> = sim.out.iter().map(|o| o.pts).collect();
    assert_eq!(times, [0, 10, 20]);
    // A GAP event (drain_before) the same way.
    let steps = sim.w.drain_before(Some(45)).unwrap();
    sim.apply(&steps);
    let times: Vec<u64> = sim.out.iter().map(|o| o.pts).collect();
    assert_eq!(times, [0, 10, 20, 25, 35]);
    assert!(sim.held.is_empty());
}

#[test]
fn gap_buffers_pass_unchanged_and_split_runs() {
    let mut sim = Sim::new(2, 1, Some(40));
    sim.push(Some(0), Some(40), false);
    sim.push(Some(40), Some(40), false);
    let p = sim.w.push_gap(FrameIn {
        pts: Some(80),
        duration: Some(40),
        ..FrameIn::default()
    });
    let p = p.unwrap();
    assert_eq!(p.restart, Some(Restart::Gap));
    sim.store(&p);
    sim.push(Some(120), Some(40), false);
    sim.push(Some(160), Some(40), false);
    sim.drain();
    let times: Vec<(u64, Option<u64>, bool)> = sim
        .out
        .iter()
        .map(|o| (o.pts, o.duration, o.original))
        .collect();
    assert_eq!(
        times,
        vec![
            (0, Some(20), true),
            (20, Some(20), false),
            (40, Some(20), true),
            (60, Some(20), false),
            (80, Some(40), true),
            (120, Some(20), true),
            (140, Some(20), false),
            (160, Some(20), true),
            (180, Some(20), false),
        ]
    );
    // The gap frame is never read by a window.
    assert!(sim.windows.iter().all(|w| w.1.iter().all(|&p| p <= 1.0)));
}

#[test]
fn flush_forgets_everything() {
    let mut sim = Sim::new(2, 1, None);
    for i in 0..5 {
        sim.push(Some(i * 10), None, false);
    }
    let before = sim.out.len();
    sim.w.flush();
    sim.held.clear();
    assert_eq!(sim.w.held(), 0);
    assert!(sim.w.is_empty());
    for i in 0..3 {
        sim.push(Some(500 + i * 10), None, i == 0);
    }
    sim.drain();
    // Nothing of the old stream after the flush; the new one complete.
    let after: Vec<&Out> = sim.out[before..].iter().collect();
    assert_eq!(after.len(), 3 + 2 + 1);
    assert!(after.iter().all(|o| o.pts >= 500));
    assert!(sim.windows.iter().rev().take(2).all(|w| w.0 != 0));
}

/// Positions of the windows run, per shot: shot `s` holds originals `cuts[s - 1]..cuts[s]`.
fn shot_of(cuts: &[u64], pos: f64) -> usize {
    cuts.iter().filter(|&&c| c as f64 <= pos).count()
}

#[test]
fn cuts_copy_the_nearer_original_and_no_window_spans_them() {
    for (f, n) in all_plans() {
        let fu = u64::from(f);
        for cuts in [
            vec![5u64],
            vec![1],
            vec![9],
            vec![4, 5],
            vec![2, 3, 4],
            vec![1, 8, 9],
        ] {
            let mut sim = Sim::new(f, n, Some(40 * MS));
            for i in 0..10u64 {
                let p = sim.push_cut(i * 40 * MS, cuts.contains(&i));
                assert_eq!(p.cut, cuts.contains(&i));
            }
            sim.drain();
            // The same number of frames, at the same times, as without cuts.
            assert_eq!(sim.out.len() as u64, 10 * fu, "{f} {n} {cuts:?}");
            check_stream(&sim);
            for (m, o) in sim.out.iter().enumerate() {
                assert_eq!(o.pts, m as u64 * 40 * MS / fu);
                assert_eq!(o.duration, Some(40 * MS / fu));
                let (i, k) = (o.key.tick / fu, o.key.tick % fu);
                if k != 0 && (cuts.contains(&(i + 1)) || i == 9) {
                    // Across a cut, the nearer original; after the last, the last.
                    let want = if 2 * k <= fu || i == 9 { i } else { i + 1 };
                    assert_eq!(o.pos, want as f64, "{f} {n} {cuts:?}: {o:?}");
                    assert!(o.copy_of.is_some());
                } else {
                    assert!(o.copy_of.is_none(), "{f} {n} {cuts:?}: {o:?}");
                }
            }
            for (_, w) in &sim.windows {
                let s = shot_of(&cuts, w[0]);
                assert!(
                    w.iter().all(|&p| shot_of(&cuts, p) == s),
                    "{f} {n} {cuts:?}: window {w:?}"
                );
            }
            assert!(sim.max_held_inputs as u64 <= sim.w.plan().max_held_inputs());
        }
    }
}

#[test]
fn windows_at_a_cut_repeat_the_nearest_frame_of_the_shot() {
    let mut sim = Sim::new(2, 1, None);
    for i in 0..7 {
        sim.push_cut(i * 10, i == 3);
    }
    sim.drain();
    let w: Vec<[f64; 4]> = sim.windows.iter().map(|w| w.1).collect();
    assert_eq!(
        w,
        vec![
            [0.0, 0.0, 1.0, 2.0],
            [0.0, 1.0, 2.0, 2.0],
            // (2, 3) spans the cut: no window, a copy of 2.
            [3.0, 3.0, 4.0, 5.0],
            [3.0, 4.0, 5.0, 6.0],
            [4.0, 5.0, 6.0, 6.0],
        ]
    );
    let copies: Vec<(u64, Option<Key>)> = sim
        .out
        .iter()
        .filter(|o| o.copy_of.is_some())
        .map(|o| (o.pts, o.copy_of))
        .collect();
    // The copy across the cut, and the one after the last original (slot: the last interval).
    assert_eq!(
        copies,
        vec![
            (25, Some(Key { run: 0, tick: 4 })),
            (65, Some(Key { run: 0, tick: 12 }))
        ]
    );
    // Every original is loaded once, the first of the second shot included.
    assert_eq!(sim.loads.len(), 7);
    assert!(sim.loads.values().all(|&c| c == 1), "{:?}", sim.loads);
}

#[test]
fn a_cut_on_the_first_frame_of_a_run_is_ignored() {
    let mut sim = Sim::new(2, 1, None);
    assert!(!sim.push_cut(0, true).cut);
    assert!(sim.push_cut(10, true).cut);
    let p = sim
        .w
        .push(FrameIn {
            pts: Some(20),
            discont: true,
            cut: true,
            ..FrameIn::default()
        })
        .unwrap();
    assert!(!p.cut && p.restart == Some(Restart::Discont));
    sim.store(&p);
    sim.drain();
    check_stream(&sim);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Frame {
            gap_ms: u64,
            discont: bool,
            no_pts: bool,
            cut: bool,
        },
        Gap,
        Drain,
        Flush,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (
                1u64..100,
                proptest::bool::weighted(0.1),
                proptest::bool::weighted(0.05),
                proptest::bool::weighted(0.2),
            )
                .prop_map(|(gap_ms, discont, no_pts, cut)| Op::Frame { gap_ms, discont, no_pts, cut }),
            1 => Just(Op::Gap),
            1 => Just(Op::Drain),
            1 => Just(Op::Flush),
        ]
    }

    proptest! {
        #[test]
        fn any_stream_keeps_the_invariants(
            plan in 0usize..9,
            ops in proptest::collection::vec(op(), 0..60),
        ) {
            let (f, n) = all_plans()[plan];
            let mut sim = Sim::new(f, n, Some(40 * MS));
            let mut t = 0u64;
            let mut expected = 0u64;
            let mut run_len = 0u64;
            let mut flushed_out = 0usize;
            let mut cuts = HashSet::new();
            // The last original of each run (run, input index in the run) and its pts.
            let mut last_of: HashMap<u64, u64> = HashMap::new();
            let mut last_pts = 0u64;
            let f64_ = u64::from(f);
            // Copies after the last original fill its slot (the caps frame duration, 40 ms)
            // up to the next input's time.
            let close = |run_len: &mut u64, expected: &mut u64, last_pts: u64, until: Option<u64>| {
                if *run_len > 0 {
                    *expected += *run_len + (*run_len - 1) * (f64_ - 1);
                    *expected += (1..f64_)
                        .filter(|&k| until.is_none_or(|u| last_pts + 40 * MS * k / f64_ < u))
                        .count() as u64;
                }
                *run_len = 0;
            };
            for op in ops {
                match op {
                    Op::Frame { gap_ms, discont, no_pts, cut } => {
                        t += gap_ms * MS;
                        let pts = (!no_pts).then_some(t);
                        let p = sim.w.push(FrameIn { pts, duration: None, discont, cut });
                        let p = match p {
                            Ok(p) => p,
                            Err(WindowError::NoTimestamp { .. }) => continue,
                            Err(e) => panic!("{e}"),
                        };
                        // A cut is taken inside a run only.
                        prop_assert_eq!(p.cut, cut && run_len > 0 && p.restart.is_none());
                        if p.cut {
                            cuts.insert((p.key.run, p.key.tick / f64_));
                        }
                        let pts = p.derived_pts.or(pts).unwrap();
                        if p.restart.is_some() {
                            close(&mut run_len, &mut expected, last_pts, Some(pts));
                        }
                        if let Some(d) = p.derived_pts {
                            t = d;
                        }
                        last_pts = pts;
                        last_of.insert(p.key.run, p.key.tick / f64_);
                        run_len += 1;
                        sim.store(&p);
                    }
                    Op::Gap => {
                        t += 40 * MS;
                        let p = sim.w.push_gap(FrameIn { pts: Some(t), duration: Some(MS), ..FrameIn::default() }).unwrap();
                        close(&mut run_len, &mut expected, last_pts, Some(t));
                        expected += 1;
                        sim.store(&p);
                    }
                    Op::Drain => {
                        sim.drain();
                        close(&mut run_len, &mut expected, last_pts, None);
                    }
                    Op::Flush => {
                        sim.w.flush();
                        sim.held.clear();
                        run_len = 0;
                        // Frames pushed so far stay out; those of the open run never come.
                        flushed_out = sim.out.len();
                        expected = flushed_out as u64;
                    }
                }
                let held_inputs = sim.held.values().filter(|v| v.1.is_some()).count() as u64;
                prop_assert!(held_inputs <= sim.w.plan().max_held_inputs());
            }
            sim.drain();
            close(&mut run_len, &mut expected, last_pts, None);
            prop_assert_eq!(sim.out.len() as u64, expected);
            let f = sim.factor();
            for o in &sim.out {
                // New frames between two shots are copies of the nearer original; all others
                // carry their own position.
                let (i, k) = (o.key.tick / f, o.key.tick % f);
                let across = k != 0 && cuts.contains(&(o.key.run, i + 1));
                let after_last = k != 0 && last_of.get(&o.key.run) == Some(&i);
                let want = if after_last {
                    prop_assert_eq!(o.copy_of, Some(Key { run: o.key.run, tick: i * f }));
                    i as f64
                } else if across {
                    let source = if 2 * k <= f { i } else { i + 1 };
                    prop_assert_eq!(o.copy_of, Some(Key { run: o.key.run, tick: source * f }));
                    source as f64
                } else {
                    prop_assert_eq!(o.copy_of, None);
                    o.key.tick as f64 / f as f64
                };
                prop_assert!((o.pos - want).abs() < 1e-9);
            }
            // No window reads two shots.
            let shot = |run: u64, pos: f64| {
                cuts.iter().filter(|&&(r, c)| r == run && c as f64 <= pos).count()
            };
            for (run, w) in &sim.windows {
                let s0 = shot(*run, w[0]);
                prop_assert!(w.iter().all(|&p| shot(*run, p) == s0), "window {:?} of run {} spans a cut ({:?})", w, run, cuts);
            }
            for pair in sim.out[flushed_out..].windows(2) {
                prop_assert!(pair[1].key > pair[0].key);
            }
        }
    }
}

mod rate;
