// SPDX-License-Identifier: MIT OR Apache-2.0
//! The window with an output rate ([`Window::with_rate`]) against the simulated element and
//! backend of `tests.rs`: counts, exact grid timestamps, the phase each frame's content comes
//! from, originals, cuts, and 100,000-frame runs without drift (planned, not computed).

use super::*;

const SEC: u128 = 1_000_000_000;

fn rate(n: i64, d: i64) -> Rate {
    Rate::new(n, d).unwrap()
}

/// `round(i * 1e9 * d / n)`: how sources stamp frame `i` at `n/d` fps.
fn stamp(i: u64, n: u64, d: u64) -> u64 {
    ((u128::from(i) * SEC * u128::from(d) * 2 + u128::from(n)) / (2 * u128::from(n))) as u64
}

fn sim_with_rate(n_outputs: usize, out: Rate, frame_duration: Option<u64>) -> Sim {
    let mut sim = Sim::new(8, n_outputs, frame_duration);
    sim.w = Window::with_rate(n_outputs, 6, frame_duration, out).unwrap();
    sim
}

/// Where time `t` falls in the inputs at `pts`, in input frames (`i + phase`).
fn position(pts: &[u64], t: u64) -> f64 {
    let i = pts.partition_point(|&p| p <= t) - 1;
    if i + 1 == pts.len() {
        return i as f64;
    }
    i as f64 + (t - pts[i]) as f64 / (pts[i + 1] - pts[i]) as f64
}

/// Checks a single-run stream made at `out` from inputs at `pts`, the last input's slot being
/// `slot` ns: the number of frames, exact grid times, content within 1/16 of an interval of its
/// time (after the last input: that input), originals where the grid meets an input.
fn check_rate_stream(sim: &Sim, pts: &[u64], out: Rate, slot: u64) {
    let span = pts[pts.len() - 1] - pts[0];
    // The grid from the first input to the end of the last one's slot, from the exact times.
    let count = (0..)
        .take_while(|&j| out.offset(j) <= span || out.offset(j) < span + slot)
        .count();
    assert_eq!(sim.out.len(), count, "{out}: {} inputs", pts.len());
    for (j, o) in sim.out.iter().enumerate() {
        let j = j as u64;
        assert_eq!(o.pts, pts[0] + out.offset(j), "{out} frame {j}");
        assert_eq!(o.duration, Some(out.offset(j + 1) - out.offset(j)));
        let want = position(pts, o.pts);
        assert!(
            (o.pos - want).abs() <= 1.0 / 16.0 + 1e-9,
            "{out} frame {j} at {}: content of {} (want {want})",
            o.pts,
            o.pos
        );
        // The content is the grid point of the key (or the original copied).
        let tick = o.copy_of.unwrap_or(o.key).tick;
        assert!((o.pos - tick as f64 / 8.0).abs() < 1e-9, "{o:?}");
        if want.fract() == 0.0 {
            assert_eq!(o.pos, want);
            assert!(o.input == Some(want as u64) || o.copy_of.is_some(), "{o:?}");
        }
    }
}

#[test]
fn counts_times_and_phases_for_common_rates() {
    for (inr, outr) in [
        ((24, 1), (60, 1)),
        ((25, 1), (50, 1)),
        ((30000, 1001), (60000, 1001)),
        ((50, 1), (60, 1)),
        ((24000, 1001), (60000, 1001)),
        ((25, 1), (25, 1)),
        ((24, 1), (200, 1)),
    ] {
        for n in [1usize, 3, 7] {
            let out = rate(outr.0, outr.1);
            let (a, b) = (inr.0 as u64, inr.1 as u64);
            let mut sim = sim_with_rate(n, out, Some(stamp(1, a, b)));
            let pts: Vec<u64> = (0..23).map(|i| 1_000 + stamp(i, a, b)).collect();
            for &p in &pts {
                sim.push(Some(p), None, false);
            }
            sim.drain();
            check_rate_stream(&sim, &pts, out, stamp(1, a, b));
            assert!(
                sim.max_held_inputs as u64 <= sim.w.max_held_inputs(),
                "held {} > {}",
                sim.max_held_inputs,
                sim.w.max_held_inputs()
            );
        }
    }
    // 24 -> 60: 2.5 frames per input, every other input on the grid.
    let mut sim = sim_with_rate(1, rate(60, 1), None);
    for i in 0..5 {
        sim.push(Some(stamp(i, 24, 1)), None, false);
    }
    sim.drain();
    let ticks: Vec<u64> = sim.out.iter().map(|o| o.key.tick).collect();
    // 0, 0.4, 0.8, 1.2, 1.6, 2, ... snapped to eighths; then 4.4 and 4.8, in the last input's
    // slot (the last interval): copies of it.
    assert_eq!(ticks, [0, 3, 6, 10, 13, 16, 19, 22, 26, 29, 32, 32, 32]);
    assert_eq!(sim.out[11].copy_of, Some(sim.out[10].key));
    assert_eq!(sim.out[12].copy_of, Some(sim.out[10].key));
    assert_eq!(sim.originals(), [0, 2, 4]);
}

#[test]
fn only_the_grid_points_needed_are_made() {
    // 25 -> 50 with a 2x model: one window per pair, as factor 2 (no deeper level).
    let mut sim = sim_with_rate(1, rate(50, 1), None);
    for i in 0..10 {
        sim.push(Some(i * 40 * MS), None, false);
    }
    sim.drain();
    assert_eq!(sim.windows.len(), 9);
    // Equal rates: originals only, no window at all.
    let mut sim = sim_with_rate(1, rate(25, 1), None);
    for i in 0..10 {
        sim.push(Some(i * 40 * MS), None, false);
    }
    sim.drain();
    assert!(sim.windows.is_empty());
    assert_eq!(sim.originals(), (0..10).collect::<Vec<_>>());
}

#[test]
fn variable_input_rates_land_on_the_output_grid() {
    let pts: Vec<u64> = [0u64, 30, 45, 100, 110, 180, 200, 260]
        .iter()
        .map(|m| m * MS)
        .collect();
    for n in [1usize, 3, 7] {
        let mut sim = sim_with_rate(n, rate(60, 1), None);
        for &p in &pts {
            sim.push(Some(p), None, false);
        }
        sim.drain();
        check_rate_stream(&sim, &pts, rate(60, 1), 60 * MS);
    }
}

#[test]
fn runs_restart_the_grid_and_single_frames_pass() {
    let out = rate(60, 1);
    let mut sim = sim_with_rate(1, out, None);
    for i in 0..3 {
        sim.push(Some(i * 40 * MS), None, false);
    }
    // A new run at 1 s + 7 ms, then a run of one frame.
    sim.push(Some(1_007 * MS), None, true);
    sim.push(Some(1_047 * MS), None, false);
    sim.push(Some(2_000 * MS), None, true);
    sim.drain();
    let pts: Vec<u64> = sim.out.iter().map(|o| o.pts).collect();
    // Each run to the end of its last frame's slot (the last interval, 40 ms), the grid before
    // the next run; the run of one frame has no slot.
    let mut want: Vec<u64> = (0..8).map(|j| out.offset(j)).collect();
    want.extend((0..5).map(|j| 1_007 * MS + out.offset(j)));
    want.push(2_000 * MS);
    assert_eq!(pts, want);
    // Inputs 2 and 4, the last of their runs, come out in their slots (at 83.3 and 1057 ms).
    assert_eq!(sim.originals(), [0, 2, 3, 4, 5]);
}

#[test]
fn the_last_slot_stops_before_the_next_input() {
    // 25 -> 60: slots of 40 ms. Inputs at 0 and 40 ms; the output at 33.3 ms is grid point
    // 7/8. A DISCONT at 60 ms keeps the output at 50 ms (the last input, in its slot), not the
    // one at 66.7 ms.
    let out = rate(60, 1);
    let mut sim = sim_with_rate(1, out, Some(40 * MS));
    sim.push(Some(0), None, false);
    sim.push(Some(40 * MS), None, false);
    sim.push(Some(60 * MS), None, true);
    let pts: Vec<u64> = sim.out.iter().map(|o| o.pts).collect();
    assert_eq!(pts, (0..4).map(|j| out.offset(j)).collect::<Vec<_>>());
    assert_eq!(sim.out[2].key.tick, 7);
    assert_eq!(sim.out[3].input, Some(1));
    // A GAP event 10 ms after the second run's only frame: no output in its slot after it.
    let steps = sim.w.drain_before(Some(70 * MS)).unwrap();
    sim.apply(&steps);
    assert_eq!(sim.out.len(), 5);
    assert_eq!(sim.out[4].pts, 60 * MS);
    assert!(sim.held.is_empty());
}

#[test]
fn cuts_copy_the_nearer_original_at_any_rate() {
    let out = rate(60, 1);
    for n in [1usize, 3, 7] {
        for cuts in [vec![5u64], vec![1], vec![4, 5], vec![9]] {
            let mut sim = sim_with_rate(n, out, None);
            let pts: Vec<u64> = (0..10).map(|i| stamp(i, 24, 1)).collect();
            for (i, &p) in pts.iter().enumerate() {
                sim.push_cut(p, cuts.contains(&(i as u64)));
            }
            sim.drain();
            for o in &sim.out {
                let (i, k) = (o.key.tick / 8, o.key.tick % 8);
                if k != 0 && cuts.contains(&(i + 1)) {
                    let want = if 2 * k <= 8 { i } else { i + 1 };
                    assert_eq!(o.pos, want as f64, "{n} {cuts:?}: {o:?}");
                    assert!(o.copy_of.is_some());
                } else {
                    assert!((o.pos - position(&pts, o.pts)).abs() <= 1.0 / 16.0 + 1e-9);
                }
            }
            for (_, w) in &sim.windows {
                let s = shot_of(&cuts, w[0]);
                assert!(
                    w.iter().all(|&p| shot_of(&cuts, p) == s),
                    "{n} {cuts:?}: window {w:?}"
                );
            }
        }
    }
}

/// 100,000 input frames through the schedule (no network): the count, every timestamp exact
/// to the output rate, inputs on the grid at their own timestamps at the end as at the start,
/// every frame within 1/16 of an interval.
#[test]
fn no_drift_after_100000_frames() {
    const N: u64 = 100_000;
    for ((a, b), (c, d)) in [
        ((24, 1), (60, 1)),
        ((25, 1), (50, 1)),
        ((30000, 1001), (60000, 1001)),
        ((50, 1), (60, 1)),
    ] {
        let out = rate(c, d);
        let (a, b, c, d) = (a as u64, b as u64, c as u64, d as u64);
        let mut w = Window::with_rate(1, 6, Some(stamp(1, a, b)), out).unwrap();
        let mut outs: Vec<(u64, u64, bool)> = Vec::new();
        let mut take = |steps: Vec<Step>| {
            for s in steps {
                match s {
                    Step::Emit {
                        key, pts, original, ..
                    } => outs.push((pts, key.tick, original)),
                    Step::EmitCopy { key, pts, .. } => outs.push((pts, key.tick, false)),
                    _ => {}
                }
            }
        };
        for i in 0..N {
            let p = w
                .push(FrameIn {
                    pts: Some(stamp(i, a, b)),
                    ..FrameIn::default()
                })
                .unwrap();
            take(p.steps);
            assert!(w.held() <= 2 * w.max_held_inputs() as usize + 16);
        }
        take(w.drain().unwrap());
        // N input frames of 1/(a/b) s each, at c/d: ceil(N * (c / d) / (a / b)) frames.
        let want = (u128::from(N) * u128::from(c) * u128::from(b))
            .div_ceil(u128::from(d) * u128::from(a)) as usize;
        assert_eq!(outs.len(), want, "{a}/{b} -> {c}/{d}");
        let last_in = stamp(N - 1, a, b);
        for (j, &(pts, tick, original)) in outs.iter().enumerate() {
            let j = j as u64;
            assert_eq!(pts, stamp(j, c, d), "{a}/{b} -> {c}/{d}: frame {j}");
            if pts > last_in {
                // In the last input's slot: that input again.
                assert_eq!(tick, (N - 1) * 8, "{a}/{b} -> {c}/{d}: frame {j}");
                continue;
            }
            // Its grid point is within 1/16 of an input interval of its time.
            let pos = pts as f64 * a as f64 / (b as f64 * 1e9);
            assert!(
                (tick as f64 / 8.0 - pos).abs() <= 1.0 / 16.0 + 1e-6,
                "{a}/{b} -> {c}/{d}: frame {j} at tick {tick}, time {pos}"
            );
            // Where the output grid meets an input, that input passes.
            if (u128::from(j) * u128::from(d) * u128::from(a))
                .is_multiple_of(u128::from(c) * u128::from(b))
            {
                let i = (u128::from(j) * u128::from(d) * u128::from(a)
                    / (u128::from(c) * u128::from(b))) as u64;
                assert!(original && tick == i * 8, "{a}/{b} -> {c}/{d}: frame {j}");
                assert_eq!(pts, stamp(i, a, b));
            }
        }
        assert!(outs.last().unwrap().0 < last_in + stamp(1, a, b));
    }
}
