// SPDX-License-Identifier: MIT OR Apache-2.0
//! From `--factor` or `--fps` and the input's frame rate to what the pipeline does.
//!
//! `flavrinterp` multiplies the rate by 2, 4 or 8. A `--fps` target that is one of those
//! multiples is reached exactly; any other target takes the smallest factor that reaches or
//! passes it, and `videorate` after the element keeps, for each output tick, the upsampled
//! frame nearest in time: a frame is then shown at most half an interval of the upsampled
//! stream early or late. When the element takes a target rate of its own, `Plan::resample`
//! goes away and the target becomes the element's property.

use std::fmt;

/// What the command line asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Factor(u32),
    Fps(Rate),
}

/// A frame rate `num / den` (frames per second), both positive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rate {
    pub(crate) num: u32,
    pub(crate) den: u32,
}

impl Rate {
    /// `N` or `N/D`, positive integers.
    pub(crate) fn parse(s: &str) -> Result<Rate, String> {
        let (n, d) = s.split_once('/').unwrap_or((s, "1"));
        match (n.trim().parse::<u32>(), d.trim().parse::<u32>()) {
            (Ok(num), Ok(den)) if num > 0 && den > 0 => Ok(Rate { num, den }),
            _ => Err(format!(
                "--fps: `{s}` is not a frame rate N or N/D in whole numbers (e.g. 60 or 60000/1001)"
            )),
        }
    }

    pub(crate) fn fps(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }

    /// `self * k` compared with `other`, exactly.
    fn times_cmp(self, k: u32, other: Rate) -> std::cmp::Ordering {
        let a = u128::from(self.num) * u128::from(k) * u128::from(other.den);
        let b = u128::from(other.num) * u128::from(self.den);
        a.cmp(&b)
    }

    pub(crate) fn times(self, k: u32) -> Rate {
        let (n, d) = (u64::from(self.num) * u64::from(k), u64::from(self.den));
        let g = gcd(n, d);
        Rate {
            num: u32::try_from(n / g).unwrap_or(u32::MAX),
            den: u32::try_from(d / g).unwrap_or(u32::MAX),
        }
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.den == 1 {
            write!(f, "{}", self.num)
        } else {
            write!(f, "{}/{} ({:.3})", self.num, self.den, self.fps())
        }
    }
}

/// The factors the element takes.
pub(crate) const FACTORS: [u32; 3] = [2, 4, 8];

/// What the pipeline runs: `flavrinterp factor=F`, then `videorate` to `resample` if set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) factor: u32,
    pub(crate) resample: Option<Rate>,
}

impl Plan {
    /// The plan for `request` and the input's rate (`None`: variable or unknown).
    pub(crate) fn new(request: Request, input: Option<Rate>) -> Result<Plan, String> {
        let target = match request {
            Request::Factor(factor) => {
                return Ok(Plan {
                    factor,
                    resample: None,
                });
            }
            Request::Fps(t) => t,
        };
        let Some(input) = input else {
            return Err(format!(
                "--fps {target}: the input's frame rate is variable or unknown; use --factor"
            ));
        };
        if input.times_cmp(1, target).is_ge() {
            return Err(format!(
                "--fps {target} is not above the input's {input} fps: flavr-convert only raises the rate"
            ));
        }
        for factor in FACTORS {
            match input.times_cmp(factor, target) {
                std::cmp::Ordering::Equal => {
                    return Ok(Plan {
                        factor,
                        resample: None,
                    });
                }
                std::cmp::Ordering::Greater => {
                    return Ok(Plan {
                        factor,
                        resample: Some(target),
                    });
                }
                std::cmp::Ordering::Less => {}
            }
        }
        Err(format!(
            "--fps {target} is more than 8 times the input's {input} fps"
        ))
    }

    /// The largest timing error `videorate` adds, in seconds: half an interval of the
    /// upsampled stream (0 when the target is an exact multiple).
    pub(crate) fn max_timing_error(&self, input: Rate) -> f64 {
        match self.resample {
            Some(_) => 0.5 / input.times(self.factor).fps(),
            None => 0.0,
        }
    }

    /// The output rate for an input rate.
    pub(crate) fn output_rate(&self, input: Rate) -> Rate {
        self.resample.unwrap_or_else(|| input.times(self.factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(num: u32, den: u32) -> Rate {
        Rate { num, den }
    }

    #[test]
    fn rates_parse() {
        assert_eq!(Rate::parse("60").unwrap(), r(60, 1));
        assert_eq!(Rate::parse("60000/1001").unwrap(), r(60000, 1001));
        for bad in ["0", "60/0", "59.94", "-5", "x", ""] {
            assert!(Rate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_multiples_need_no_resampling() {
        let p = Plan::new(Request::Fps(r(60000, 1001)), Some(r(30000, 1001))).unwrap();
        assert_eq!((p.factor, p.resample), (2, None));
        let p = Plan::new(Request::Fps(r(200, 1)), Some(r(25, 1))).unwrap();
        assert_eq!((p.factor, p.resample), (8, None));
        assert_eq!(p.max_timing_error(r(25, 1)), 0.0);
    }

    #[test]
    fn other_targets_take_the_smallest_factor_that_reaches_them() {
        let p = Plan::new(Request::Fps(r(50, 1)), Some(r(24, 1))).unwrap();
        assert_eq!((p.factor, p.resample), (4, Some(r(50, 1))));
        // Half an interval of the 96 fps stream.
        assert!((p.max_timing_error(r(24, 1)) - 1.0 / 192.0).abs() < 1e-12);
        let p = Plan::new(Request::Fps(r(45, 1)), Some(r(30, 1))).unwrap();
        assert_eq!((p.factor, p.resample), (2, Some(r(45, 1))));
        assert_eq!(p.output_rate(r(30, 1)), r(45, 1));
    }

    #[test]
    fn impossible_targets_are_refused() {
        let below = Plan::new(Request::Fps(r(24, 1)), Some(r(30, 1))).unwrap_err();
        assert!(below.contains("not above"), "{below}");
        assert!(Plan::new(Request::Fps(r(30, 1)), Some(r(30, 1))).is_err());
        let far = Plan::new(Request::Fps(r(241, 1)), Some(r(30, 1))).unwrap_err();
        assert!(far.contains("more than 8"), "{far}");
        let vfr = Plan::new(Request::Fps(r(60, 1)), None).unwrap_err();
        assert!(vfr.contains("variable"), "{vfr}");
        let f = Plan::new(Request::Factor(4), None).unwrap();
        assert_eq!((f.factor, f.resample), (4, None));
    }
}
