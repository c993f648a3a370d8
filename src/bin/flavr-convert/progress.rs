// SPDX-License-Identifier: MIT OR Apache-2.0
//! Progress: an indicatif bar on a terminal; on anything else (a log, a pipe) a plain line at
//! every tenth of the way (or every minute when the total is unknown); nothing with --quiet.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

pub(crate) enum Progress {
    Bar(ProgressBar),
    Lines(Lines),
    Quiet,
}

pub(crate) struct Lines {
    start: Instant,
    last: Instant,
    /// Tenths printed so far.
    tenths: u64,
    total: Option<u64>,
    backend: String,
    frames: u64,
}

impl Progress {
    /// `total`: the expected number of output frames, if the duration is known.
    pub(crate) fn new(quiet: bool, total: Option<u64>, backend: &str) -> Progress {
        if quiet {
            return Progress::Quiet;
        }
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Progress::Lines(Lines {
                start: now,
                last: now,
                tenths: 0,
                total,
                backend: backend.to_string(),
                frames: 0,
            });
        }
        let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
        let template = if total.is_some() {
            "{spinner:.green} [{bar:30.cyan/blue}] {pos}/{len} frames  {fps}  \
             {elapsed_precise} elapsed, {eta_precise} left  backend {msg}"
        } else {
            "{spinner:.green} {pos} frames  {fps}  {elapsed_precise} elapsed  backend {msg}"
        };
        let style = ProgressStyle::with_template(template)
            .expect("valid template")
            .progress_chars("=> ")
            .with_key("fps", |s: &ProgressState, w: &mut dyn std::fmt::Write| {
                let _ = write!(w, "{:.1} fps", s.per_sec());
            });
        bar.set_style(style);
        bar.set_message(backend.to_string());
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress::Bar(bar)
    }

    /// The backend as the element names it, once known.
    pub(crate) fn set_backend(&mut self, backend: &str) {
        match self {
            Progress::Bar(b) => b.set_message(backend.to_string()),
            Progress::Lines(l) => l.backend = backend.to_string(),
            Progress::Quiet => {}
        }
    }

    /// `frames` output frames written so far.
    pub(crate) fn update(&mut self, frames: u64) {
        match self {
            Progress::Bar(b) => {
                if b.length().is_some_and(|len| frames > len) {
                    b.set_length(frames);
                }
                b.set_position(frames);
            }
            Progress::Lines(l) => l.update(frames),
            Progress::Quiet => {}
        }
    }

    /// A line for the user, above the bar (nothing with --quiet).
    pub(crate) fn note(&self, text: &str) {
        match self {
            Progress::Bar(b) => b.suspend(|| eprintln!("flavr-convert: {text}")),
            Progress::Lines(_) => eprintln!("flavr-convert: {text}"),
            Progress::Quiet => {}
        }
    }

    pub(crate) fn finish(&mut self) {
        if let Progress::Bar(b) = self {
            b.finish_and_clear();
        }
    }
}

impl Lines {
    fn update(&mut self, frames: u64) {
        self.frames = frames;
        let now = Instant::now();
        let due = match self.total {
            Some(total) if total > 0 => {
                let tenths = (frames.min(total) * 10 / total).min(10);
                if tenths > self.tenths {
                    self.tenths = tenths;
                    true
                } else {
                    false
                }
            }
            _ => false,
        } || now.duration_since(self.last) >= Duration::from_secs(60);
        if due && frames > 0 {
            self.last = now;
            eprintln!("flavr-convert: {}", self.line(now));
        }
    }

    fn line(&self, now: Instant) -> String {
        let elapsed = now.duration_since(self.start).as_secs_f64();
        let fps = if elapsed > 0.0 {
            self.frames as f64 / elapsed
        } else {
            0.0
        };
        let done = match self.total {
            Some(total) => {
                let left = if fps > 0.0 {
                    total.saturating_sub(self.frames) as f64 / fps
                } else {
                    0.0
                };
                format!(
                    "{}/{} frames ({}%), {fps:.1} fps, {} elapsed, {} left",
                    self.frames,
                    total,
                    self.frames * 100 / total.max(1),
                    clock(elapsed),
                    clock(left)
                )
            }
            None => format!(
                "{} frames, {fps:.1} fps, {} elapsed",
                self.frames,
                clock(elapsed)
            ),
        };
        format!("{done}, backend {}", self.backend)
    }
}

/// `h:mm:ss` or `m:ss`.
pub(crate) fn clock(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks() {
        assert_eq!(clock(0.4), "0:00");
        assert_eq!(clock(61.0), "1:01");
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn lines_come_at_each_tenth() {
        let now = Instant::now();
        let mut l = Lines {
            start: now,
            last: now,
            tenths: 0,
            total: Some(99),
            backend: "cpu".into(),
            frames: 0,
        };
        let mut printed = 0;
        for f in 1..=99 {
            let before = l.tenths;
            l.update(f);
            printed += u64::from(l.tenths != before);
        }
        assert_eq!(printed, 10);
        assert!(l.line(Instant::now()).contains("99/99 frames (100%)"));
    }
}
