// SPDX-License-Identifier: MIT OR Apache-2.0
//! From `--factor` or `--fps` and the input's frame rate to what the pipeline does.
//!
//! A `--fps` target that is 2, 4 or 8 times the input's rate is the element's `factor`. Any
//! other target is the element's `framerate` property: it makes each output frame at the
//! nearest eighth of the input interval it falls in, so a frame's content is at most 1/16 of
//! an input interval from its time, and the timestamps are exact to the target rate.

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

/// What the pipeline runs: `flavrinterp factor=F`, or `flavrinterp framerate=target`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    pub(crate) factor: u32,
    /// The element's `framerate`: a target that is no multiple of the input's rate.
    pub(crate) target: Option<Rate>,
}

impl Plan {
    /// The plan for `request` and the input's rate (`None`: variable or unknown).
    pub(crate) fn new(request: Request, input: Option<Rate>) -> Result<Plan, String> {
        let target = match request {
            Request::Factor(factor) => {
                return Ok(Plan {
                    factor,
                    target: None,
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
                        target: None,
                    });
                }
                std::cmp::Ordering::Greater => {
                    // The element's factor stays its default; `framerate` decides.
                    return Ok(Plan {
                        factor: FACTORS[0],
                        target: Some(target),
                    });
                }
                std::cmp::Ordering::Less => {}
            }
        }
        Err(format!(
            "--fps {target} is more than 8 times the input's {input} fps"
        ))
    }

    /// The largest timing error of a frame's content, in seconds: 1/16 of an input interval
    /// with `framerate` (0 when the target is an exact multiple).
    pub(crate) fn max_timing_error(&self, input: Rate) -> f64 {
        match self.target {
            Some(_) => 1.0 / (16.0 * input.fps()),
            None => 0.0,
        }
    }

    /// The output rate for an input rate.
    pub(crate) fn output_rate(&self, input: Rate) -> Rate {
        self.target.unwrap_or_else(|| input.times(self.factor))
    }

    /// The factor, when the element runs one (not for a `framerate` target).
    pub(crate) fn factor(&self) -> Option<u32> {
        self.target.is_none().then_some(self.factor)
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
        assert_eq!((p.factor, p.target), (2, None));
        let p = Plan::new(Request::Fps(r(200, 1)), Some(r(25, 1))).unwrap();
        assert_eq!((p.factor(), p.target), (Some(8), None));
        assert_eq!(p.max_timing_error(r(25, 1)), 0.0);
    }

    #[test]
    fn other_targets_are_the_elements_framerate() {
        let p = Plan::new(Request::Fps(r(50, 1)), Some(r(24, 1))).unwrap();
        assert_eq!((p.factor(), p.target), (None, Some(r(50, 1))));
        // 1/16 of a 24 fps interval.
        assert!((p.max_timing_error(r(24, 1)) - 1.0 / 384.0).abs() < 1e-12);
        let p = Plan::new(Request::Fps(r(45, 1)), Some(r(30, 1))).unwrap();
        assert_eq!(p.target, Some(r(45, 1)));
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
        assert_eq!((f.factor(), f.target), (Some(4), None));
    }
}
