// SPDX-License-Identifier: MIT OR Apache-2.0
//! The frame window and the output schedule, free of GStreamer types.
//!
//! The element feeds input frames in ([`Window::push`]) and gets back [`Step`]s to carry out in
//! order: load a frame into a backend slot, run the network on four slots, push a frame
//! downstream with its timestamps, let go of a frame. Times are plain nanoseconds.
//!
//! Rules (documented in the README too):
//! - Input is cut into *runs* of consecutive frames. A run ends at a DISCONT buffer, a GAP
//!   (buffer flag or event), a timestamp that does not move forward, a caps change, a new
//!   segment, EOS ([`Window::drain`]) or a flush ([`Window::flush`]). Nothing is interpolated
//!   across the end of a run.
//! - For frames `i`, `i + 1` of a run the window is `(i - 1, i, i + 1, i + 2)`; a missing
//!   neighbour at either end of the run is the nearest real frame (`(0, 0, 1, 2)` at the start,
//!   `(n - 3, n - 2, n - 1, n - 1)` at the end). A run of `n` frames gives
//!   `n + (n - 1) * (factor - 1)` frames: every original once, in order, and `factor - 1` new
//!   ones between each pair.
//! - New frame `k` (1..factor) between originals `i` and `i + 1` gets
//!   `pts_i + round((pts_{i+1} - pts_i) * k / factor)`; every frame lasts until the next one.
//!   So variable frame rates follow the buffer timestamps. The last original of a run has no
//!   next frame: its *slot* is its own duration, else the caps frame duration, else the run's
//!   last interval (else unknown). It lasts `1/factor` of the slot, and the `factor - 1` places
//!   after it in the slot are copies of it ([`Step::EmitCopy`]), at the times new frames would
//!   have there, so the output rate stays constant across the end of a run. When the next
//!   input's time is known (the DISCONT, GAP or backwards frame that ends the run, a GAP
//!   event), copies stop before it. A run of `n` frames gives `n * factor` frames (fewer where
//!   the next input comes earlier, or the slot is unknown).
//! - An input frame without a timestamp gets the end of the previous frame (its timestamp plus
//!   its duration, else the caps frame duration, else the last interval); without an earlier
//!   frame to derive it from, [`Window::push`] fails with [`WindowError::NoTimestamp`].
//! - GAP buffers are pushed unchanged (timestamp and duration) and never used as input.
//! - A run is cut into *shots* at scene cuts ([`FrameIn::cut`]: frame `i + 1` starts a new shot).
//!   No window reads frames of two shots: a missing neighbour is the nearest frame of the same
//!   shot, as at the ends of a run. The `factor - 1` new frames between the last frame `i` of a
//!   shot and the first frame `i + 1` of the next are copies ([`Step::EmitCopy`]): new frame `k`
//!   copies `i` when `2 k <= factor`, else `i + 1`. Their timestamps are those of new frames, so
//!   the output rate stays constant.

mod plan;
mod rate;
mod slots;

use std::collections::{BTreeSet, HashSet, VecDeque};

pub use plan::{Level, Plan, PlanError, scale};
pub use rate::{GRID, Rate, RateError, snap};
pub use slots::Slots;

/// Names a frame the element holds: an original input frame or a new one.
///
/// `run` numbers the runs (see the module docs); `tick` is the frame's place in its run in
/// units of `1/factor` input frame intervals, so original frame `i` is at `i * factor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub run: u64,
    pub tick: u64,
}

/// What the element knows about an input frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameIn {
    /// Presentation timestamp (ns).
    pub pts: Option<u64>,
    /// Duration (ns).
    pub duration: Option<u64>,
    /// The buffer is flagged DISCONT: start a new run.
    pub discont: bool,
    /// The frame starts a new shot (a scene cut between the previous frame and this one).
    /// Ignored on the first frame of a run.
    pub cut: bool,
}

/// One thing for the element to do. Carry them out in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Convert frame `key` into backend slot `slot`.
    Load { key: Key, slot: usize },
    /// Run the network on slots `window` (frames i-1, i, i+1, i+2 of some level); model
    /// output `index` becomes frame `key`, for each pair of `outputs`. Model outputs not listed
    /// are not kept.
    Run {
        window: [usize; 4],
        outputs: Vec<(usize, Key)>,
    },
    /// Push frame `key` downstream with these times. `original`: an input buffer.
    Emit {
        key: Key,
        pts: u64,
        duration: Option<u64>,
        original: bool,
    },
    /// Push a copy of original `source` downstream as new frame `key`, with these times (the
    /// new frames between two shots). The copy shares the original's memory; flags that mark
    /// a stream position (DISCONT, RESYNC) are cleared on it.
    EmitCopy {
        key: Key,
        source: Key,
        pts: u64,
        duration: Option<u64>,
    },
    /// The element may drop frame `key`.
    Release { key: Key },
}

/// Why a run ended before a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Restart {
    /// The frame is flagged DISCONT.
    Discont,
    /// The frame's timestamp is not after the previous one.
    Backwards,
    /// The frame is a GAP buffer.
    Gap,
}

/// What [`Window::push`] gives back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pushed {
    /// The name of the pushed frame in later steps; store its buffer under it.
    pub key: Key,
    pub steps: Vec<Step>,
    /// Set when the frame ended the previous run.
    pub restart: Option<Restart>,
    /// The timestamp the frame got when it had none.
    pub derived_pts: Option<u64>,
    /// The frame starts a new shot of the run (its `cut` was taken: it is not the first frame
    /// of a run).
    pub cut: bool,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum WindowError {
    #[error(
        "input frame {frame} has no timestamp, and none can be derived (no earlier frame with \
         a timestamp and a duration or frame rate)"
    )]
    NoTimestamp { frame: u64 },
    #[error("internal scheduling error: {0}")]
    Internal(String),
}

#[derive(Clone, Copy, Debug)]
struct Times {
    pts: u64,
    duration: Option<u64>,
}

#[derive(Debug)]
struct Run {
    id: u64,
    /// Times of originals `base..len`; older ones are dropped when no longer read.
    times: VecDeque<Times>,
    base: u64,
    len: u64,
    /// The next pair (i, i + 1) to make.
    next_pair: u64,
    first_emitted: bool,
    ended: bool,
    /// New frames already made (and still held).
    computed: HashSet<u64>,
    /// Originals that start a new shot (never 0); those before the current shot are dropped.
    cuts: BTreeSet<u64>,
    /// With an output rate: the first frame's timestamp, the next output's index, the grid
    /// tick of the last output.
    origin: u64,
    next_out: u64,
    last_out_tick: Option<u64>,
}

impl Run {
    fn time(&self, i: u64) -> Result<Times, WindowError> {
        i.checked_sub(self.base)
            .and_then(|n| self.times.get(n as usize))
            .copied()
            .ok_or_else(|| {
                WindowError::Internal(format!(
                    "times of frame {i} of run {} are not kept (kept {}..{})",
                    self.id, self.base, self.len
                ))
            })
    }

    /// Drops what no later pair reads: the times of originals before the next pair's first,
    /// and the cuts before the current shot.
    fn forget_read(&mut self) {
        while self.base + 1 < self.next_pair && !self.times.is_empty() {
            self.times.pop_front();
            self.base += 1;
        }
        if let Some(&start) = self.cuts.range(..=self.next_pair).next_back() {
            self.cuts = self.cuts.split_off(&start);
        }
    }

    /// Whether original `i + 1` starts a new shot (the pair `(i, i + 1)` spans a cut).
    fn cut_after(&self, i: u64) -> bool {
        self.cuts.contains(&(i + 1))
    }

    /// First and last original of the shot holding originals `i` and `i + 1`; the last is
    /// `None` while no cut after `i + 1` has arrived.
    fn shot_of(&self, i: u64) -> (u64, Option<u64>) {
        let start = self.cuts.range(..=i).next_back().copied().unwrap_or(0);
        let end = self.cuts.range(i + 2..).next().map(|&c| c - 1);
        (start, end)
    }
}

/// A network run found while planning a pair: four frames in, some frames out.
struct RunSpec {
    window: [Key; 4],
    outputs: Vec<(usize, Key)>,
}

/// The stream of input frames, cut into runs, and the schedule of model runs and outputs.
#[derive(Debug)]
pub struct Window {
    plan: Plan,
    slots: Slots,
    frame_duration: Option<u64>,
    run: Option<Run>,
    next_run: u64,
    frames_in: u64,
    last_end: Option<u64>,
    /// Frames the element holds (it stores a buffer for each).
    held: BTreeSet<Key>,
    /// An output rate instead of the factor (`rate.rs`).
    rate: Option<Rate>,
}

impl Window {
    /// `slots`: backend slots (at least 4); `frame_duration`: from the caps frame rate, if
    /// fixed and non-zero.
    pub fn new(plan: Plan, slots: usize, frame_duration: Option<u64>) -> Window {
        Window {
            plan,
            slots: Slots::new(slots),
            frame_duration: frame_duration.filter(|d| *d > 0),
            run: None,
            next_run: 0,
            frames_in: 0,
            last_end: None,
            held: BTreeSet::new(),
            rate: None,
        }
    }

    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Frames the element holds now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Whether any frame is waiting to be made or pushed.
    pub fn is_empty(&self) -> bool {
        self.run.is_none()
    }

    /// A new input frame.
    pub fn push(&mut self, frame: FrameIn) -> Result<Pushed, WindowError> {
        let (pts, derived_pts) = match frame.pts {
            Some(p) => (p, None),
            None => match self.last_end {
                Some(p) => (p, Some(p)),
                None => {
                    return Err(WindowError::NoTimestamp {
                        frame: self.frames_in,
                    });
                }
            },
        };
        let mut steps = Vec::new();
        let mut restart = None;
        if let Some(run) = &self.run {
            let last = run.time(run.len - 1)?;
            if frame.discont {
                restart = Some(Restart::Discont);
            } else if pts <= last.pts {
                restart = Some(Restart::Backwards);
            }
        }
        if restart.is_some() {
            self.drain_into(&mut steps, Some(pts))?;
        }
        let f = self.plan.factor();
        let prev = self.run.as_ref().and_then(|r| r.times.back().copied());
        let run = self.start_run();
        let idx = run.len;
        run.len += 1;
        run.times.push_back(Times {
            pts,
            duration: frame.duration,
        });
        if idx == 0 {
            run.origin = pts;
        }
        let cut = frame.cut && idx > 0;
        if cut {
            run.cuts.insert(idx);
        }
        let key = Key {
            run: run.id,
            tick: idx * f,
        };
        self.held.insert(key);
        self.frames_in += 1;
        let interval = prev.map(|p| pts.saturating_sub(p.pts)).filter(|d| *d > 0);
        self.last_end = frame
            .duration
            .or(self.frame_duration)
            .or(interval)
            .map(|d| pts.saturating_add(d));
        self.process(&mut steps)?;
        Ok(Pushed {
            key,
            steps,
            restart,
            derived_pts,
            cut,
        })
    }

    /// A GAP buffer: ends the run, is pushed unchanged and is never interpolated.
    pub fn push_gap(&mut self, frame: FrameIn) -> Result<Pushed, WindowError> {
        let (pts, derived_pts) = match frame.pts.or(self.last_end) {
            Some(p) => (p, frame.pts.is_none().then_some(p)),
            None => {
                return Err(WindowError::NoTimestamp {
                    frame: self.frames_in,
                });
            }
        };
        let mut steps = Vec::new();
        self.drain_into(&mut steps, Some(pts))?;
        let key = Key {
            run: self.next_run,
            tick: 0,
        };
        self.next_run += 1;
        self.frames_in += 1;
        self.last_end = frame
            .duration
            .or(self.frame_duration)
            .map(|d| pts.saturating_add(d));
        steps.push(Step::Emit {
            key,
            pts,
            duration: frame.duration,
            original: true,
        });
        steps.push(Step::Release { key });
        Ok(Pushed {
            key,
            steps,
            restart: Some(Restart::Gap),
            derived_pts,
            cut: false,
        })
    }

    /// Ends the run (EOS, a caps or segment change): makes and pushes every frame still
    /// missing, the copies that fill the last original's slot included, then releases the run.
    pub fn drain(&mut self) -> Result<Vec<Step>, WindowError> {
        self.drain_before(None)
    }

    /// [`Window::drain`] when the next input's time is known (a GAP event at `until`): the
    /// copies after the last original stop before `until`.
    pub fn drain_before(&mut self, until: Option<u64>) -> Result<Vec<Step>, WindowError> {
        let mut steps = Vec::new();
        self.drain_into(&mut steps, until)?;
        Ok(steps)
    }

    /// Forgets everything (flush, seek): no frame of the old stream is pushed or read again.
    /// The element drops every frame it holds.
    pub fn flush(&mut self) {
        self.run = None;
        self.held.clear();
        self.slots.clear();
        self.last_end = None;
    }

    fn start_run(&mut self) -> &mut Run {
        if self.run.is_none() {
            self.run = Some(Run {
                id: self.next_run,
                times: VecDeque::new(),
                base: 0,
                len: 0,
                next_pair: 0,
                first_emitted: false,
                ended: false,
                computed: HashSet::new(),
                cuts: BTreeSet::new(),
                origin: 0,
                next_out: 0,
                last_out_tick: None,
            });
            self.next_run += 1;
        }
        match &mut self.run {
            Some(r) => r,
            None => unreachable!("run was just set"),
        }
    }

    fn drain_into(&mut self, steps: &mut Vec<Step>, until: Option<u64>) -> Result<(), WindowError> {
        let Some(run) = &mut self.run else {
            return Ok(());
        };
        run.ended = true;
        self.process(steps)?;
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        if let Some(rate) = self.rate {
            self.finish_rate(&mut run, rate, until, steps)?;
        } else {
            if !run.first_emitted {
                // A run of one frame: nothing to pair it with.
                let (pts, duration) = self.times_of(&run, 0)?;
                steps.push(Step::Emit {
                    key: Key {
                        run: run.id,
                        tick: 0,
                    },
                    pts,
                    duration,
                    original: true,
                });
            }
            self.fill_slot(&run, until, steps)?;
        }
        let lo = Key {
            run: run.id,
            tick: 0,
        };
        let hi = Key {
            run: run.id,
            tick: u64::MAX,
        };
        let keys: Vec<Key> = self.held.range(lo..=hi).copied().collect();
        for key in keys {
            self.held.remove(&key);
            steps.push(Step::Release { key });
        }
        Ok(())
    }

    /// Makes every pair that is ready.
    fn process(&mut self, steps: &mut Vec<Step>) -> Result<(), WindowError> {
        loop {
            let Some(run) = &self.run else {
                return Ok(());
            };
            let i = run.next_pair;
            if i + 1 >= run.len {
                return Ok(());
            }
            if !run.ended && run.len - 1 < i + 1 + self.plan.lookahead() {
                return Ok(());
            }
            self.make_pair(i, steps)?;
        }
    }

    /// Plans, runs and pushes the frames between originals `i` and `i + 1`, and original
    /// `i + 1` (and original 0 before the first pair).
    fn make_pair(&mut self, i: u64, steps: &mut Vec<Step>) -> Result<(), WindowError> {
        let f = self.plan.factor();
        let Some(mut run) = self.run.take() else {
            return Ok(());
        };
        let result = self.make_pair_in(&mut run, i, f, steps);
        self.run = Some(run);
        result
    }

    fn make_pair_in(
        &mut self,
        run: &mut Run,
        i: u64,
        f: u64,
        steps: &mut Vec<Step>,
    ) -> Result<(), WindowError> {
        if let Some(rate) = self.rate {
            return self.make_pair_rate(run, i, rate, steps);
        }
        let last_tick = (run.len - 1) * f;
        // Across a scene cut nothing is interpolated: the new frames are copies.
        let cut = run.cut_after(i);
        let mut specs = Vec::new();
        if !cut {
            for p in i * f + 1..=(i + 1) * f {
                self.resolve(run, p, last_tick, &mut specs)?;
            }
        }
        self.run_specs(&specs, steps)?;
        let mut emitted = Vec::new();
        if i == 0 && !run.first_emitted {
            emitted.push(0);
            run.first_emitted = true;
        }
        emitted.extend(i * f + 1..=(i + 1) * f);
        for &p in &emitted {
            let (pts, duration) = self.times_of(run, p)?;
            let key = Key {
                run: run.id,
                tick: p,
            };
            let k = p % f;
            steps.push(if cut && k != 0 {
                let source = if 2 * k <= f { i } else { i + 1 };
                Step::EmitCopy {
                    key,
                    source: Key {
                        run: run.id,
                        tick: source * f,
                    },
                    pts,
                    duration,
                }
            } else {
                Step::Emit {
                    key,
                    pts,
                    duration,
                    original: k == 0,
                }
            });
        }
        run.next_pair = i + 1;
        // Release what no later window or copy reads. One level: new frames are never read,
        // and an original, once loaded, is in a backend slot for as long as windows read it
        // (windows move one frame at a time, so the slot is never taken while needed). So
        // every pushed frame goes, except an original that the copies of the next pair need
        // (the last of a shot) or that a later window still has to load (the first of a
        // shot, pushed before any window read it) or the last of an ended run, which the copies
        // that fill its slot read. Several levels: windows of later pairs read nothing before
        // tick i * f, and copies nothing before original i + 1.
        let release: Vec<Key> = if self.plan.levels().len() == 1 {
            let lo = Key {
                run: run.id,
                tick: 0,
            };
            let hi = Key {
                run: run.id,
                tick: (i + 1) * f,
            };
            self.held
                .range(lo..=hi)
                .copied()
                .filter(|key| {
                    let j = key.tick / f;
                    let original = key.tick % f == 0;
                    // The copies at a shot's end, or at the run's end (drained).
                    let copy_source =
                        j == i + 1 && (run.cut_after(i + 1) || (run.ended && j + 1 == run.len));
                    let to_load = j > i && !self.slots.contains(key);
                    !(original && (copy_source || to_load))
                })
                .collect()
        } else {
            let lo = Key {
                run: run.id,
                tick: 0,
            };
            let hi = Key {
                run: run.id,
                tick: i * f,
            };
            self.held.range(lo..hi).copied().collect()
        };
        for key in release {
            if self.held.remove(&key) {
                run.computed.remove(&key.tick);
                steps.push(Step::Release { key });
            }
        }
        run.forget_read();
        Ok(())
    }

    /// Adds the network runs needed to make frame `p` (if it is new and not made yet).
    fn resolve(
        &self,
        run: &mut Run,
        p: u64,
        last_tick: u64,
        specs: &mut Vec<RunSpec>,
    ) -> Result<(), WindowError> {
        let f = self.plan.factor();
        if p > last_tick {
            return Err(WindowError::Internal(format!(
                "frame at tick {p} is beyond the last frame (tick {last_tick})"
            )));
        }
        if p.is_multiple_of(f) || run.computed.contains(&p) {
            return Ok(());
        }
        let level = self
            .plan
            .level_of(p)
            .ok_or_else(|| WindowError::Internal(format!("no level makes tick {p}")))?;
        let lv = &self.plan.levels()[level];
        let d = lv.input_spacing;
        let a = p - p % d;
        // A window reads frames of its own shot only, like a run's.
        let (shot_start, shot_end) = run.shot_of(a / f);
        let clamp = |t: u64| -> Result<u64, WindowError> {
            if let Some(end) = shot_end
                && t > end * f
            {
                Ok(end * f)
            } else if t <= last_tick {
                Ok(t)
            } else if run.ended {
                Ok(last_tick)
            } else {
                Err(WindowError::Internal(format!(
                    "window reads tick {t} before it arrived (last {last_tick})"
                )))
            }
        };
        let ticks = [
            a.saturating_sub(d).max(shot_start * f),
            a,
            clamp(a + d)?,
            clamp(a + 2 * d)?,
        ];
        for &t in &ticks {
            self.resolve(run, t, last_tick, specs)?;
        }
        let key = |tick| Key { run: run.id, tick };
        let outputs: Vec<(usize, Key)> = lv
            .outputs
            .iter()
            .map(|&(idx, off)| (idx, key(a + off)))
            .collect();
        for &(_, k) in &outputs {
            run.computed.insert(k.tick);
        }
        specs.push(RunSpec {
            window: ticks.map(key),
            outputs,
        });
        Ok(())
    }

    /// The slot of original `i`, the last of `run`: its own duration, else the caps frame
    /// duration, else the run's last interval.
    fn last_slot(&self, run: &Run, i: u64) -> Result<Option<u64>, WindowError> {
        let cur = run.time(i)?;
        let interval = if i > 0 {
            run.time(i - 1)
                .ok()
                .map(|prev| cur.pts.saturating_sub(prev.pts))
                .filter(|d| *d > 0)
        } else {
            None
        };
        Ok(cur.duration.or(self.frame_duration).or(interval))
    }

    /// After the last original of an ended `run` (pushed, still held): copies of it at the
    /// `factor - 1` places of its slot, up to `until` (excluded).
    fn fill_slot(
        &self,
        run: &Run,
        until: Option<u64>,
        steps: &mut Vec<Step>,
    ) -> Result<(), WindowError> {
        let f = self.plan.factor();
        let last = run.len - 1;
        let Some(d) = self.last_slot(run, last)? else {
            return Ok(());
        };
        let pts = run.time(last)?.pts;
        let source = Key {
            run: run.id,
            tick: last * f,
        };
        let mut prev = pts;
        for k in 1..f {
            let at = pts.saturating_add(scale(d, k, f));
            if at <= prev || until.is_some_and(|u| at >= u) {
                break;
            }
            let end = pts.saturating_add(scale(d, k + 1, f));
            steps.push(Step::EmitCopy {
                key: Key {
                    run: run.id,
                    tick: last * f + k,
                },
                source,
                pts: at,
                duration: Some(end - at),
            });
            prev = at;
        }
        Ok(())
    }

    /// Timestamp and duration of the frame at tick `p` of `run`.
    fn times_of(&self, run: &Run, p: u64) -> Result<(u64, Option<u64>), WindowError> {
        let f = self.plan.factor();
        let i = p / f;
        let k = p % f;
        let cur = run.time(i)?;
        if i + 1 >= run.len {
            // The last original of the run: there is no next frame; copies fill the rest of
            // its slot.
            let d = self.last_slot(run, i)?;
            return Ok((cur.pts, d.map(|d| scale(d, 1, f))));
        }
        let next = run.time(i + 1)?;
        let span = next.pts.saturating_sub(cur.pts);
        let pts = cur.pts + scale(span, k, f);
        let end = cur.pts + scale(span, k + 1, f);
        Ok((pts, Some(end - pts)))
    }
}

#[cfg(test)]
mod tests;
