// SPDX-License-Identifier: MIT OR Apache-2.0
//! Any output frame rate: the output grid, the snapping of each output time to the model's
//! time grid, and the schedule of a run in that mode.
//!
//! Output frame `j` of a run is at `origin + round(j * 1e9 * den / num)` ns, where `origin` is
//! the timestamp of the run's first input frame: computed from `j` each time, never
//! accumulated, so the timestamps do not drift however long the run. An output time `t` falls
//! between inputs `i` and `i + 1` (`pts_i <= t < pts_{i+1}`) at phase
//! `p = (t - pts_i) / (pts_{i+1} - pts_i)`; the frame made there is the one at `i + k / GRID`,
//! `k = round(p * GRID)`, so its time is off by at most `1 / (2 * GRID)` of that input interval.
//! `k = 0` or `k = GRID` is an input frame, pushed as it came (a second output on the same grid
//! point is a copy). Grid points are made with the factor-`GRID` [`Plan`], only those needed:
//! a 2x model recurses down to the level that makes the point and no further.
//!
//! Outputs cover the run from its first input to the end of its last one's slot
//! (`pts_0 <= t < pts_last + slot`, the slot being the last frame's duration, else the caps
//! frame duration, else the last interval; cut at the next input's time when that is known),
//! as the factor does: at a constant rate `r` in, a run of `n` frames gives `ceil(n * out / r)`
//! frames. The outputs after the last input are that frame again (copies).
//! At a scene cut between `i` and `i + 1` the outputs strictly between them are copies of the
//! nearer original (`2 k <= GRID`: frame `i`).

use std::fmt;

use super::{Key, Plan, PlanError, Run, RunSpec, Step, Window, WindowError};

/// Phases snap to `1/GRID` of an input frame interval.
pub const GRID: u64 = 8;

const NS: u128 = 1_000_000_000;

/// A frame rate `num/den` frames per second, positive and reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    num: u64,
    den: u64,
}

/// Why an output rate cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum RateError {
    #[error("framerate {num}/{den} is not a positive fraction")]
    NotPositive { num: i64, den: i64 },
    #[error(
        "output framerate {out} is below the input's {input}: flavrinterp only raises the rate"
    )]
    Below { out: Rate, input: Rate },
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl Rate {
    pub fn new(num: i64, den: i64) -> Result<Rate, RateError> {
        let bad = RateError::NotPositive { num, den };
        let (Ok(n), Ok(d)) = (u64::try_from(num), u64::try_from(den)) else {
            return Err(bad);
        };
        if n == 0 || d == 0 {
            return Err(bad);
        }
        let g = gcd(n, d);
        Ok(Rate {
            num: n / g,
            den: d / g,
        })
    }

    pub fn num(&self) -> u64 {
        self.num
    }

    pub fn den(&self) -> u64 {
        self.den
    }

    /// Nanoseconds from the grid origin to output frame `j`: `round(j * 1e9 * den / num)`.
    pub fn offset(&self, j: u64) -> u64 {
        let n = u128::from(self.num);
        let v = (u128::from(j) * NS * u128::from(self.den) * 2 + n) / (2 * n);
        u64::try_from(v).unwrap_or(u64::MAX)
    }

    /// An error when this (output) rate is below `input`.
    pub fn check_not_below(self, input: Rate) -> Result<(), RateError> {
        if u128::from(self.num) * u128::from(input.den)
            < u128::from(input.num) * u128::from(self.den)
        {
            return Err(RateError::Below { out: self, input });
        }
        Ok(())
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// `round(GRID * dt / span)`, halves up: the grid step nearest to `dt` ns into an input
/// interval of `span` ns (`0..=GRID` for `dt <= span`).
pub fn snap(dt: u64, span: u64) -> u64 {
    if span == 0 {
        return 0;
    }
    let (dt, span) = (u128::from(dt), u128::from(span));
    let v = (2 * dt * u128::from(GRID) + span) / (2 * span);
    u64::try_from(v).unwrap_or(u64::MAX)
}

impl Window {
    /// A window that makes `rate` out of any input rate, with a model of `n_outputs` outputs
    /// per window (it must make factor [`GRID`]). `slots` and `frame_duration` as in
    /// [`Window::new`].
    pub fn with_rate(
        n_outputs: usize,
        slots: usize,
        frame_duration: Option<u64>,
        rate: Rate,
    ) -> Result<Window, PlanError> {
        let plan = Plan::new(GRID as u32, n_outputs)?;
        let mut w = Window::new(plan, slots, frame_duration);
        w.rate = Some(rate);
        Ok(w)
    }

    /// The output rate, when the window makes one ([`Window::with_rate`]).
    pub fn rate(&self) -> Option<Rate> {
        self.rate
    }

    /// Most input frames the element holds at once: [`Plan::max_held_inputs`], or with an
    /// output rate the frames from `i - 1` (later grid points may still read them) to the last
    /// one pushed.
    pub fn max_held_inputs(&self) -> u64 {
        match self.rate {
            Some(_) => self.plan.lookahead() + 4,
            None => self.plan.max_held_inputs(),
        }
    }

    /// The rate-mode [`Window::make_pair_in`]: the outputs between originals `i` (included)
    /// and `i + 1` (excluded unless the snap lands on it).
    pub(super) fn make_pair_rate(
        &mut self,
        run: &mut Run,
        i: u64,
        rate: Rate,
        steps: &mut Vec<Step>,
    ) -> Result<(), WindowError> {
        let a = run.time(i)?.pts;
        let b = run.time(i + 1)?.pts;
        // (output index, grid tick)
        let mut outs = Vec::new();
        loop {
            let t = run.origin.saturating_add(rate.offset(run.next_out));
            if t >= b {
                break;
            }
            // Earlier pairs took every output before `a`.
            let k = snap(t.saturating_sub(a), b - a);
            outs.push((run.next_out, i * GRID + k));
            run.next_out += 1;
        }
        let cut = run.cut_after(i);
        if !cut {
            let last_tick = (run.len - 1) * GRID;
            let mut specs = Vec::new();
            for &(_, tick) in &outs {
                self.resolve(run, tick, last_tick, &mut specs)?;
            }
            self.run_specs(&specs, steps)?;
        }
        for (j, tick) in outs {
            let k = tick % GRID;
            // Across a cut: the nearer original (k = GRID is original i + 1 itself).
            let source = match (cut && k != 0, 2 * k <= GRID) {
                (false, _) => tick,
                (true, true) => i * GRID,
                (true, false) => (i + 1) * GRID,
            };
            emit(run, j, tick, source, rate, steps);
        }
        run.next_pair = i + 1;
        // Later pairs may still make grid points of pair `i`, which read original `i - 1`:
        // keep everything from there on.
        let lo = Key {
            run: run.id,
            tick: 0,
        };
        let hi = Key {
            run: run.id,
            tick: i.saturating_sub(1) * GRID,
        };
        let release: Vec<Key> = self.held.range(lo..hi).copied().collect();
        for key in release {
            self.held.remove(&key);
            run.computed.remove(&key.tick);
            steps.push(Step::Release { key });
        }
        run.forget_read();
        Ok(())
    }

    /// At the end of a rate-mode run (every pair made): the output on the last original, if
    /// the grid lands exactly on it (always for a run of one frame), then the outputs in the
    /// rest of its slot (its duration, else the caps frame duration, else the last interval),
    /// before `until` (the next input's time, when known): the last original, or copies of it.
    pub(super) fn finish_rate(
        &self,
        run: &mut Run,
        rate: Rate,
        until: Option<u64>,
        steps: &mut Vec<Step>,
    ) -> Result<(), WindowError> {
        let last = run.len - 1;
        let b = run.time(last)?.pts;
        let mut end = self
            .last_slot(run, last)?
            .map_or(b, |d| b.saturating_add(d));
        if let Some(u) = until {
            end = end.min(u);
        }
        loop {
            let j = run.next_out;
            let t = run.origin.saturating_add(rate.offset(j));
            if t > b && t >= end {
                return Ok(());
            }
            emit(run, j, last * GRID, last * GRID, rate, steps);
            run.next_out += 1;
        }
    }

    /// Loads the windows of `specs` into slots and runs them, in order.
    pub(super) fn run_specs(
        &mut self,
        specs: &[RunSpec],
        steps: &mut Vec<Step>,
    ) -> Result<(), WindowError> {
        let windows: Vec<[Key; 4]> = specs.iter().map(|s| s.window).collect();
        for (n, spec) in specs.iter().enumerate() {
            let held = &self.held;
            let slots =
                self.slots
                    .assign(spec.window, &windows[n + 1..], |k| held.contains(k), steps)?;
            for &(_, key) in &spec.outputs {
                self.held.insert(key);
            }
            steps.push(Step::Run {
                window: slots,
                outputs: spec.outputs.clone(),
            });
        }
        Ok(())
    }
}

/// Pushes output `j` of `run`: the frame at `tick`, or a copy of `source` (a copy too when the
/// previous output was the same original).
fn emit(run: &mut Run, j: u64, tick: u64, source: u64, rate: Rate, steps: &mut Vec<Step>) {
    let pts = run.origin.saturating_add(rate.offset(j));
    let duration = rate.offset(j + 1) - rate.offset(j);
    let key = |tick| Key { run: run.id, tick };
    let again = run.last_out_tick == Some(tick);
    run.last_out_tick = Some(tick);
    let original = tick.is_multiple_of(GRID);
    steps.push(if source != tick || (again && original) {
        Step::EmitCopy {
            key: key(tick),
            source: key(source),
            pts,
            duration: Some(duration),
        }
    } else {
        Step::Emit {
            key: key(tick),
            pts,
            duration: Some(duration),
            original: original && !again,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_must_be_positive_fractions() {
        assert_eq!(Rate::new(60, 1).unwrap(), Rate { num: 60, den: 1 });
        assert_eq!(Rate::new(120, 2).unwrap(), Rate { num: 60, den: 1 });
        for (n, d) in [(0, 1), (-60, 1), (60, 0), (60, -1)] {
            assert_eq!(
                Rate::new(n, d),
                Err(RateError::NotPositive { num: n, den: d })
            );
        }
        let r = |n, d| Rate::new(n, d).unwrap();
        assert!(r(60, 1).check_not_below(r(24, 1)).is_ok());
        assert!(r(25, 1).check_not_below(r(25, 1)).is_ok());
        assert!(
            r(24000, 1001)
                .check_not_below(r(24, 1))
                .unwrap_err()
                .to_string()
                .contains("24000/1001 is below the input's 24/1")
        );
    }

    #[test]
    fn offsets_are_exact_and_rounded() {
        let r = Rate::new(60000, 1001).unwrap();
        assert_eq!(r.offset(0), 0);
        assert_eq!(r.offset(1), 16_683_333);
        assert_eq!(r.offset(2), 33_366_667);
        assert_eq!(r.offset(60_000), 1_001_000_000_000);
        // Far out: the exact value, not a sum of rounded steps.
        assert_eq!(r.offset(100_000_000), 1_668_333_333_333_333);
        let r = Rate::new(60, 1).unwrap();
        assert_eq!(r.offset(3), 50_000_000);
    }

    #[test]
    fn snap_rounds_to_the_nearest_grid_step() {
        assert_eq!(snap(0, 40), 0);
        assert_eq!(snap(40, 40), 8);
        assert_eq!(snap(20, 40), 4);
        // 0.4 -> 3.2/8 -> 3; 0.8 -> 6.4/8 -> 6; 5/6 -> 6.67/8 -> 7
        assert_eq!(snap(4, 10), 3);
        assert_eq!(snap(8, 10), 6);
        assert_eq!(snap(5, 6), 7);
        // Half a step rounds up.
        assert_eq!(snap(1, 16), 1);
        assert_eq!(snap(0, 0), 0);
    }
}
