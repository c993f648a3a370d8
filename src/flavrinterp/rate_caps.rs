// SPDX-License-Identifier: MIT OR Apache-2.0
//! Caps for any output rate: the `framerate` property, the rates offered beside the factor's,
//! and which mode a negotiated pair of caps runs in.
//!
//! - `framerate` set (not 0/1): the source pad offers exactly that rate, the sink pad any rate
//!   up to it (variable rate included).
//! - `framerate` 0/1: the factor's rates come first (as in `caps.rs`), then, for a downstream
//!   that fixes another rate, any rate above a fixed input rate (source pad) or below a fixed
//!   output rate (sink pad). Fixation prefers the factor's rate.
//! - Negotiated: the property's rate, else the factor when the output rate is the input's
//!   times the factor, else the output caps' rate.

use gst::glib;
use gst::prelude::*;

use super::caps;
use super::props::Settings;
use crate::backend;
use crate::window::{Plan, Rate, RateError, Window};

/// The factor and the target rate of `settings` (an invalid `framerate` counts as none here:
/// `start()` refuses it).
pub(super) fn settings(s: &Settings) -> (u32, Option<Rate>) {
    (s.factor, target(s.framerate).ok().flatten())
}

/// The window of a negotiated stream: the factor's `plan`, or `rate` on the grid of eighths.
pub(super) fn window(
    plan: &Plan,
    frame_duration: Option<u64>,
    rate: Option<Rate>,
) -> Result<Window, String> {
    match rate {
        None => Ok(Window::new(plan.clone(), backend::SLOTS, frame_duration)),
        Some(r) => Window::with_rate(plan.n_outputs(), backend::SLOTS, frame_duration, r)
            .map_err(|e| format!("output rate {r}: {e}")),
    }
}

/// The `framerate` property as a target rate: `None` for 0/1 (the factor decides).
pub(super) fn target(fr: gst::Fraction) -> Result<Option<Rate>, RateError> {
    if fr.numer() == 0 && fr.denom() > 0 {
        return Ok(None);
    }
    Rate::new(i64::from(fr.numer()), i64::from(fr.denom())).map(Some)
}

fn fraction(r: Rate) -> Option<gst::Fraction> {
    Some(gst::Fraction::new(
        i32::try_from(r.num()).ok()?,
        i32::try_from(r.den()).ok()?,
    ))
}

/// A fixed, non-zero caps rate.
fn rate_of(fr: gst::Fraction) -> Option<Rate> {
    Rate::new(i64::from(fr.numer()), i64::from(fr.denom())).ok()
}

fn max_rate() -> gst::Fraction {
    gst::Fraction::new(i32::MAX, 1)
}

/// The fraction a hair above (`up`) or below `fr` (one part in up to 1000): open ranges leave
/// the rate itself out. Were it in, the base class would put the other pad's own caps first
/// (equal rates in and out) ahead of the factor's.
fn beside(fr: gst::Fraction, up: bool) -> Option<gst::Fraction> {
    let (n, d) = (i64::from(fr.numer()), i64::from(fr.denom()));
    let max = i64::from(i32::MAX);
    let k = 1000.min((max - 1) / n.max(1)).min(max / d.max(1));
    if k == 0 || n <= 0 || d <= 0 {
        return None;
    }
    let n = if up { n * k + 1 } else { n * k - 1 };
    Some(gst::Fraction::new(
        i32::try_from(n).ok()?,
        i32::try_from(d * k).ok()?,
    ))
}

/// The rates a source pad can give for the fixed sink pad rate `v` (`up`), or the sink pad can
/// take for the fixed source pad rate `v`, when downstream fixes the rate: above the input's,
/// or below the output's (a variable rate in gives any fixed rate out). `None` for ranges and
/// lists (only the factor's rates then) and when nothing fits.
fn open_rate(v: &glib::Value, up: bool) -> Option<glib::SendValue> {
    let fr = v.get::<gst::Fraction>().ok()?;
    let (lo, hi) = match (up, fr.numer() == 0) {
        (true, true) => (gst::Fraction::new(1, i32::MAX), max_rate()),
        (true, false) => (beside(fr, true)?, max_rate()),
        (false, true) => return None,
        (false, false) => (gst::Fraction::new(0, 1), beside(fr, false)?),
    };
    (lo < hi).then(|| gst::FractionRange::new(lo, hi).to_send_value())
}

/// `caps` with every structure's rate set by `rate`, from its own rate (`None`: it has none);
/// structures it gives no rate for are left out.
fn with_rates(
    caps: &gst::Caps,
    rate: impl Fn(Option<&glib::Value>) -> Option<glib::SendValue>,
) -> gst::Caps {
    let mut out = gst::Caps::new_empty();
    if let Some(o) = out.get_mut() {
        for (s, features) in caps.iter_with_features() {
            let mut s = s.to_owned();
            match rate(s.value("framerate").ok().map(|v| &**v)) {
                Some(v) => s.set_value("framerate", v),
                None => continue,
            }
            o.append_structure_full(s, Some(features.to_owned()));
        }
    }
    out
}

/// The caps transform: the property's rate, or the factor's rates followed by the open ones.
pub(super) fn transform(
    caps: &gst::Caps,
    factor: u32,
    target: Option<Rate>,
    up: bool,
) -> Option<gst::Caps> {
    if let Some(t) = target {
        let t = fraction(t)?;
        return Some(with_rates(caps, |_| {
            Some(if up {
                t.to_send_value()
            } else {
                gst::FractionRange::new(gst::Fraction::new(0, 1), t).to_send_value()
            })
        }));
    }
    let mut out = caps::transform(caps, factor, up)?;
    let open = with_rates(caps, |v| match v {
        Some(v) => open_rate(v, up),
        // No rate: the factor's structure already takes any.
        None => None,
    });
    out.merge(open);
    Some(out)
}

/// The output rate a negotiated stream is made at, `None` for the factor; an error when the
/// output rate is below the input's.
pub(super) fn mode(
    incaps: &gst::Caps,
    outcaps: &gst::Caps,
    factor: u32,
    target: Option<Rate>,
) -> Result<Option<Rate>, RateError> {
    let fr = |c: &gst::Caps| {
        c.structure(0)
            .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
            .and_then(rate_of)
    };
    let (input, output) = (fr(incaps), fr(outcaps));
    let out = match (target, output) {
        (Some(t), _) => t,
        (None, None) => return Ok(None),
        (None, Some(o)) => {
            let times_factor = input.is_some_and(|i| {
                u128::from(o.num()) * u128::from(i.den())
                    == u128::from(i.num()) * u128::from(factor) * u128::from(o.den())
            });
            if times_factor {
                return Ok(None);
            }
            o
        }
    };
    if let Some(i) = input {
        out.check_not_below(i)?;
    }
    Ok(Some(out))
}

/// Why caps pushed to the sink pad cannot give the property's rate, if they cannot.
pub(super) fn problem(caps: &gst::CapsRef, target: Option<Rate>) -> Option<RateError> {
    let input = caps
        .structure(0)?
        .get::<gst::Fraction>("framerate")
        .ok()
        .and_then(rate_of)?;
    target?.check_not_below(input).err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn caps(s: &str) -> gst::Caps {
        gst::init().unwrap();
        gst::Caps::from_str(s).unwrap()
    }

    fn rate(n: i64, d: i64) -> Rate {
        Rate::new(n, d).unwrap()
    }

    #[test]
    fn property_values() {
        gst::init().unwrap();
        assert_eq!(target(gst::Fraction::new(0, 1)), Ok(None));
        assert_eq!(
            target(gst::Fraction::new(60000, 1001)),
            Ok(Some(rate(60000, 1001)))
        );
        let e = target(gst::Fraction::new(-60, 1)).unwrap_err();
        assert_eq!(e.to_string(), "framerate -60/1 is not a positive fraction");
    }

    #[test]
    fn transforms_offer_the_factor_first_then_any_higher_rate() {
        let c = caps("video/x-raw,format=RGB,width=8,height=8,framerate=24/1");
        let out = transform(&c, 2, None, true).unwrap();
        assert_eq!(out.size(), 2);
        let s = out.structure(0).unwrap();
        assert_eq!(
            s.get::<gst::Fraction>("framerate").unwrap(),
            gst::Fraction::new(48, 1)
        );
        let r = out
            .structure(1)
            .unwrap()
            .get::<gst::FractionRange>("framerate")
            .unwrap();
        assert_eq!(
            (r.min(), r.max()),
            (gst::Fraction::new(24001, 1000), max_rate())
        );
        // Downstream 60: upstream offered 30 first, then anything up to 60.
        let c = caps("video/x-raw,format=RGB,width=8,height=8,framerate=60/1");
        let back = transform(&c, 2, None, false).unwrap();
        assert_eq!(
            back.structure(0)
                .unwrap()
                .get::<gst::Fraction>("framerate")
                .unwrap(),
            gst::Fraction::new(30, 1)
        );
        let r = back
            .structure(1)
            .unwrap()
            .get::<gst::FractionRange>("framerate")
            .unwrap();
        assert_eq!(r.max(), gst::Fraction::new(59999, 1000));
        // A range: the factor's only.
        let c = caps("video/x-raw,format=RGB,width=8,height=8,framerate=[40/1,80/1]");
        assert_eq!(transform(&c, 2, None, false).unwrap().size(), 1);
        // The property: exactly its rate out, up to it in.
        let t = Some(rate(60000, 1001));
        let c = caps("video/x-raw,format=RGB,width=8,height=8,framerate=24000/1001");
        let out = transform(&c, 2, t, true).unwrap();
        assert_eq!(out.size(), 1);
        assert_eq!(
            out.structure(0)
                .unwrap()
                .get::<gst::Fraction>("framerate")
                .unwrap(),
            gst::Fraction::new(60000, 1001)
        );
        let back = transform(&out, 2, t, false).unwrap();
        let r = back
            .structure(0)
            .unwrap()
            .get::<gst::FractionRange>("framerate")
            .unwrap();
        assert_eq!(r.max(), gst::Fraction::new(60000, 1001));
    }

    #[test]
    fn modes_follow_the_negotiated_rates() {
        let c = |fr: &str| caps(&format!("video/x-raw,width=8,height=8,framerate={fr}"));
        assert_eq!(mode(&c("25/1"), &c("50/1"), 2, None), Ok(None));
        assert_eq!(mode(&c("25/1"), &c("60/1"), 2, None), Ok(Some(rate(60, 1))));
        assert_eq!(mode(&c("0/1"), &c("0/1"), 2, None), Ok(None));
        assert_eq!(mode(&c("0/1"), &c("60/1"), 2, None), Ok(Some(rate(60, 1))));
        // The property wins, even at the factor's rate.
        assert_eq!(
            mode(&c("25/1"), &c("50/1"), 2, Some(rate(50, 1))),
            Ok(Some(rate(50, 1)))
        );
        assert_eq!(
            mode(&c("30/1"), &c("24/1"), 2, Some(rate(24, 1))),
            Err(RateError::Below {
                out: rate(24, 1),
                input: rate(30, 1)
            })
        );
        assert!(problem(&c("30/1"), Some(rate(24, 1))).is_some());
        assert!(problem(&c("24/1"), Some(rate(24, 1))).is_none());
        assert!(problem(&c("30/1"), None).is_none());
    }
}
