// SPDX-License-Identifier: MIT OR Apache-2.0
//! The plan: how a factor is made from a model.
//!
//! Positions in a run are counted in *ticks*: `1/factor` of an input frame interval, so original
//! frame `i` sits at tick `i * factor` and the new frames between `i` and `i + 1` at the ticks in
//! between.
//!
//! A [`Plan`] turns (factor, model outputs) into *levels*. Each level runs the network on windows
//! of the sequence built so far, with a stride of `input_spacing` ticks, and keeps some of its
//! outputs:
//! - `factor - 1 == n`: one level, every output.
//! - `(n + 1) % factor == 0`: one level, the outputs at multiples of `1/factor`
//!   (an 8x model at factor 4 keeps outputs 1, 3 and 5, at 2/8, 4/8 and 6/8).
//! - `factor % (n + 1) == 0` and `factor / (n + 1)` a power of two: the first level keeps every
//!   output, then each further level halves the spacing with the model's middle output (time
//!   1/2), run on the sequence the previous levels made. A 2x model at factor 4: the frame at
//!   `i + 1/4` comes from the window `(i - 1/2, i, i + 1/2, i + 1)` of the doubled sequence.
//! - anything else is refused.

use std::fmt;

/// One level of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Level {
    /// Stride, in ticks, of the four frames a window of this level reads.
    pub input_spacing: u64,
    /// Spacing, in ticks, of the sequence once this level is done.
    pub output_spacing: u64,
    /// The outputs kept: (model output index, offset in ticks from the window's second frame).
    pub outputs: Vec<(usize, u64)>,
}

/// Why a factor cannot be made from a model.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum PlanError {
    #[error("factor {0} is not supported: use 2, 4 or 8")]
    Factor(u32),
    #[error("the model makes no frames (0 outputs per window)")]
    NoOutputs,
    #[error(
        "factor {factor} cannot be made from a model with {n} output(s) per window: it needs \
         factor - 1 == n, (n + 1) a multiple of factor, or factor / (n + 1) a power of two \
         with n odd"
    )]
    Unsupported { factor: u32, n: usize },
}

/// How the element makes `factor` from a model with `n_outputs` outputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    factor: u64,
    n_outputs: usize,
    levels: Vec<Level>,
    lookahead: u64,
}

impl Plan {
    pub fn new(factor: u32, n_outputs: usize) -> Result<Plan, PlanError> {
        if !matches!(factor, 2 | 4 | 8) {
            return Err(PlanError::Factor(factor));
        }
        if n_outputs == 0 {
            return Err(PlanError::NoOutputs);
        }
        let f = u64::from(factor);
        let m = n_outputs as u64 + 1;
        let mut levels = Vec::new();
        if m.is_multiple_of(f) {
            let step = m / f;
            levels.push(Level {
                input_spacing: f,
                output_spacing: 1,
                outputs: (1..f).map(|j| ((j * step - 1) as usize, j)).collect(),
            });
        } else if f % m == 0 && (f / m).is_power_of_two() && m.is_multiple_of(2) {
            let spacing = f / m;
            levels.push(Level {
                input_spacing: f,
                output_spacing: spacing,
                outputs: (0..n_outputs)
                    .map(|k| (k, (k as u64 + 1) * spacing))
                    .collect(),
            });
            let middle = (m / 2 - 1) as usize;
            let mut s = spacing;
            while s > 1 {
                levels.push(Level {
                    input_spacing: s,
                    output_spacing: s / 2,
                    outputs: vec![(middle, s / 2)],
                });
                s /= 2;
            }
        } else {
            return Err(PlanError::Unsupported {
                factor,
                n: n_outputs,
            });
        }
        let mut plan = Plan {
            factor: f,
            n_outputs,
            levels,
            lookahead: 0,
        };
        plan.lookahead = plan.compute_lookahead();
        Ok(plan)
    }

    pub fn factor(&self) -> u64 {
        self.factor
    }

    /// Outputs the model writes per run (all of them, kept or not).
    pub fn n_outputs(&self) -> usize {
        self.n_outputs
    }

    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Input frames after `i + 1` that must have arrived before the frames between `i` and
    /// `i + 1` can be made: 1 for a single level (frame `i + 2`), 2 with recursion.
    pub fn lookahead(&self) -> u64 {
        self.lookahead
    }

    /// Input frame intervals between a frame arriving and the last output it completes leaving:
    /// the new frames after frame `i` wait for frame `i + 1 + lookahead`.
    pub fn latency_frames(&self) -> u64 {
        1 + self.lookahead
    }

    /// Most input frames the element holds at once (counting the one being pushed), for the
    /// allocation query. A single level holds only frames not yet pushed (at the start of a run,
    /// frames 0 to `lookahead + 1`); with recursion the originals stay until no later window can
    /// read them again.
    pub fn max_held_inputs(&self) -> u64 {
        if self.levels.len() == 1 {
            self.lookahead + 2
        } else {
            self.lookahead + 3
        }
    }

    /// The level that makes the frame at tick `tick` (not a multiple of the factor).
    pub(super) fn level_of(&self, tick: u64) -> Option<usize> {
        self.levels
            .iter()
            .position(|l| tick.is_multiple_of(l.output_spacing))
    }

    /// Furthest original frame (as a tick) that making frame `tick` reads, far from any edge.
    fn max_tick(&self, tick: u64) -> u64 {
        if tick.is_multiple_of(self.factor) {
            return tick;
        }
        let Some(level) = self.level_of(tick) else {
            return tick;
        };
        let d = self.levels[level].input_spacing;
        let a = tick - tick % d;
        [a - d, a, a + d, a + 2 * d]
            .into_iter()
            .map(|t| self.max_tick(t))
            .max()
            .unwrap_or(tick)
    }

    fn compute_lookahead(&self) -> u64 {
        // Far from the start, so no window is clamped; windows are the same for every pair.
        let i = 16;
        let f = self.factor;
        let furthest = (i * f + 1..=(i + 1) * f)
            .map(|t| self.max_tick(t))
            .max()
            .unwrap_or((i + 1) * f);
        (furthest / f).saturating_sub(i + 1)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.n_outputs;
        match self.levels.len() {
            1 if n as u64 + 1 == self.factor => {
                write!(f, "{}x with a {}-output model", self.factor, n)
            }
            1 => write!(
                f,
                "{}x with outputs {:?} of a {}-output model",
                self.factor,
                self.levels[0]
                    .outputs
                    .iter()
                    .map(|o| o.0)
                    .collect::<Vec<_>>(),
                n
            ),
            l => write!(
                f,
                "{}x with a {}-output model applied in {} levels",
                self.factor, n, l
            ),
        }
    }
}

/// Rounds `d * k / f` to the nearest integer (halves up), without overflow.
pub fn scale(d: u64, k: u64, f: u64) -> u64 {
    if f == 0 {
        return 0;
    }
    let v = (u128::from(d) * u128::from(k) + u128::from(f) / 2) / u128::from(f);
    u64::try_from(v).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_for_every_released_model_and_factor() {
        // Direct: factor - 1 == n.
        for (f, n) in [(2u32, 1usize), (4, 3), (8, 7)] {
            let p = Plan::new(f, n).unwrap();
            assert_eq!(p.levels().len(), 1);
            let outs: Vec<_> = p.levels()[0].outputs.clone();
            let want: Vec<_> = (0..n).map(|k| (k, k as u64 + 1)).collect();
            assert_eq!(outs, want);
            assert_eq!(p.lookahead(), 1);
            assert_eq!(p.latency_frames(), 2);
        }
        // Subsets of a bigger model.
        let p = Plan::new(4, 7).unwrap();
        assert_eq!(p.levels()[0].outputs, vec![(1, 1), (3, 2), (5, 3)]);
        assert_eq!(p.lookahead(), 1);
        let p = Plan::new(2, 7).unwrap();
        assert_eq!(p.levels()[0].outputs, vec![(3, 1)]);
        let p = Plan::new(2, 3).unwrap();
        assert_eq!(p.levels()[0].outputs, vec![(1, 1)]);
        // Recursion with the 2x model.
        let p = Plan::new(4, 1).unwrap();
        assert_eq!(
            p.levels(),
            &[
                Level {
                    input_spacing: 4,
                    output_spacing: 2,
                    outputs: vec![(0, 2)]
                },
                Level {
                    input_spacing: 2,
                    output_spacing: 1,
                    outputs: vec![(0, 1)]
                }
            ]
        );
        assert_eq!(p.lookahead(), 2);
        assert_eq!(p.latency_frames(), 3);
        let p = Plan::new(8, 1).unwrap();
        assert_eq!(p.levels().len(), 3);
        assert_eq!(p.lookahead(), 2);
        // A 4x model at 8x: every output, then its middle output on the quartered sequence.
        let p = Plan::new(8, 3).unwrap();
        assert_eq!(p.levels().len(), 2);
        assert_eq!(p.levels()[0].outputs, vec![(0, 2), (1, 4), (2, 6)]);
        assert_eq!(p.levels()[1].outputs, vec![(1, 1)]);
    }

    #[test]
    fn refuses_what_it_cannot_make() {
        assert_eq!(Plan::new(3, 1), Err(PlanError::Factor(3)));
        assert_eq!(Plan::new(1, 1), Err(PlanError::Factor(1)));
        assert_eq!(Plan::new(2, 0), Err(PlanError::NoOutputs));
        // 2 outputs (thirds): no factor of 2, 4 or 8 is made of thirds.
        assert_eq!(
            Plan::new(2, 2),
            Err(PlanError::Unsupported { factor: 2, n: 2 })
        );
        assert_eq!(
            Plan::new(8, 5),
            Err(PlanError::Unsupported { factor: 8, n: 5 })
        );
    }

    #[test]
    fn scale_rounds() {
        assert_eq!(scale(100, 1, 3), 33);
        assert_eq!(scale(100, 2, 3), 67);
        assert_eq!(scale(33_333_333, 1, 2), 16_666_667);
        assert_eq!(scale(u64::MAX, 1, 1), u64::MAX);
    }
}
