// SPDX-License-Identifier: MIT OR Apache-2.0
//! Live pipelines that never fall behind: the `qos` property and the choice, window by window,
//! between the network and cheap frames.
//!
//! A window whose frames would reach the sink late is made cheaply instead: each new frame is a
//! per-pixel blend of the two originals around it ([`super::cheap`]), with the same timestamps,
//! so the frame count and the stream's timing are those of the normal path and every original
//! is still pushed. The choice is made on the network thread when it starts a job (the frames
//! of one input frame), from what is known then:
//! - downstream QoS events: the job's first frame is before the earliest running time
//!   downstream still shows on time (timestamp + jitter of the last QoS event);
//! - the element's own timing: the clock now, plus the network time a window takes (measured
//!   on earlier windows), is past the time the job's first frame is due at the sink (base time
//!   + running time + the pipeline latency of the last LATENCY event).
//!
//! The queue stays bounded (the streaming thread still waits for all but `max-in-flight`
//! jobs), and a cheap job takes milliseconds, so a backend slower than real time makes cheap
//! frames instead of lag. The network is tried again (a probe) when the last network window is
//! more than [`probe_interval`] ago, so that a backend that was slow once (a first window that
//! plans its memory, a busy machine) gets its place back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst_base::prelude::*;

use crate::window::Step;

/// What the stats message reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Counts {
    /// Network windows run and replaced by blends.
    pub windows: u64,
    pub windows_cheap: u64,
    /// New frames pushed, and those of them that are blends.
    pub frames_new: u64,
    pub frames_cheap: u64,
}

impl Counts {
    /// Share of new frames that are blends (0 when none was made).
    pub fn cheap_share(&self) -> f64 {
        if self.frames_new == 0 {
            0.0
        } else {
            self.frames_cheap as f64 / self.frames_new as f64
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    /// `qos` as set by the application; `None`: on when upstream is live.
    set: Option<bool>,
    /// Upstream answered the LATENCY query as live.
    live: bool,
    /// The pipeline latency (LATENCY event), ns.
    latency: u64,
    /// Running time before which downstream shows frames late (QoS events), ns.
    earliest: Option<u64>,
    /// Network time per window (running mean of measured windows).
    estimate: Option<Duration>,
    /// A network window of this stream has run (the first is not measured: it plans memory).
    warm: bool,
    last_network: Option<Instant>,
    counts: Counts,
}

impl Inner {
    fn enabled(&self) -> bool {
        self.set.unwrap_or(self.live)
    }
}

/// The element's QoS state, shared by the streaming thread, the network thread and the
/// threads that carry events and queries.
#[derive(Debug, Default)]
pub(super) struct Gate {
    inner: Mutex<Inner>,
}

/// The `qos` property: `GstBaseTransform`'s own, overridden so that the base class never drops
/// an input buffer; the element reads it instead.
pub(super) fn spec() -> glib::ParamSpec {
    glib::ParamSpecOverride::for_class::<gst_base::BaseTransform>("qos")
}

/// A window's interval is run on the network again after this long without one, however slow
/// the estimate says the backend is: the larger of 1 s and 8 windows' network time.
pub(super) fn probe_interval(estimate: Duration) -> Duration {
    (estimate * 8).max(Duration::from_secs(1))
}

/// How a job is made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Decision {
    Network,
    /// Blends instead of the network; `jitter`: how late (ns) the network would have been.
    Cheap {
        jitter: i64,
    },
}

/// When a job's frames are due, taken on the streaming thread at submit time.
#[derive(Debug, Clone)]
pub(super) struct Timing {
    element: glib::WeakRef<gst::Element>,
    clock: Option<(gst::Clock, gst::ClockTime)>,
    /// The job's first frame: running time, stream time, timestamp; and the span of its frames.
    running_time: gst::ClockTime,
    stream_time: Option<gst::ClockTime>,
    pts: gst::ClockTime,
    duration: Option<gst::ClockTime>,
}

/// What a job carries to the network thread.
#[derive(Debug, Clone)]
pub(super) struct JobQos {
    gate: Arc<Gate>,
    /// `None`: the job runs no window, or QoS is off, or its times are unknown.
    timing: Option<Timing>,
    /// The stream's `factor` (units of a [`crate::window::Key`]'s tick).
    pub factor: u64,
}

impl Gate {
    /// Forgets the counts and the pipeline's state (start).
    pub fn reset(&self) {
        let mut g = self.inner.lock().unwrap();
        let set = g.set;
        *g = Inner {
            set,
            ..Inner::default()
        };
    }

    /// A new stream (caps): its first window is not measured.
    pub fn new_stream(&self) {
        let mut g = self.inner.lock().unwrap();
        g.warm = false;
        g.estimate = None;
        g.last_network = None;
    }

    /// Forgets what downstream said (flush).
    pub fn flush(&self) {
        self.inner.lock().unwrap().earliest = None;
    }

    pub fn set(&self, on: bool) {
        self.inner.lock().unwrap().set = Some(on);
    }

    /// The value of the `qos` property: as set, else whether upstream is live.
    pub fn enabled(&self) -> bool {
        self.inner.lock().unwrap().enabled()
    }

    pub fn set_live(&self, live: bool) {
        self.inner.lock().unwrap().live = live;
    }

    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap().counts
    }

    /// Takes what it needs from an event travelling upstream (QoS, LATENCY).
    pub fn observe(&self, event: &gst::Event) {
        match event.view() {
            gst::EventView::Qos(q) => {
                let (_, _, diff, ts) = q.get();
                if let Some(ts) = ts {
                    let earliest = ts.nseconds().saturating_add_signed(diff);
                    self.inner.lock().unwrap().earliest = Some(earliest);
                }
            }
            gst::EventView::Latency(l) => {
                self.inner.lock().unwrap().latency = l.latency().nseconds();
            }
            _ => {}
        }
    }

    /// What a job made of `steps` carries: its timing when QoS is on and it runs a window.
    pub fn job(
        self: &Arc<Self>,
        obj: &gst_base::BaseTransform,
        factor: u64,
        steps: &[Step],
    ) -> JobQos {
        let timing = if self.enabled() && steps.iter().any(|s| matches!(s, Step::Run { .. })) {
            timing(obj, steps)
        } else {
            None
        };
        JobQos {
            gate: self.clone(),
            timing,
            factor,
        }
    }
}

/// The times of the first frame `steps` push, in `obj`'s segment; `None` when unknown.
fn timing(obj: &gst_base::BaseTransform, steps: &[Step]) -> Option<Timing> {
    let times = steps.iter().filter_map(|s| match s {
        Step::Emit { pts, duration, .. } | Step::EmitCopy { pts, duration, .. } => {
            Some((*pts, *duration))
        }
        _ => None,
    });
    let (mut first, mut end) = (None, None);
    for (pts, duration) in times {
        first = first.or(Some(pts));
        end = Some(pts.saturating_add(duration.unwrap_or(0)));
    }
    let pts = gst::ClockTime::from_nseconds(first?);
    let segment = obj.segment();
    let segment = segment.downcast_ref::<gst::ClockTime>()?;
    let running_time = segment.to_running_time(pts)?;
    let playing = obj.current_state() == gst::State::Playing;
    let clock = obj.clock().filter(|_| playing).zip(obj.base_time());
    Some(Timing {
        element: obj.upcast_ref::<gst::Element>().downgrade(),
        clock,
        running_time,
        stream_time: segment.to_stream_time(pts),
        pts,
        duration: end.map(|e| gst::ClockTime::from_nseconds(e.saturating_sub(pts.nseconds()))),
    })
}

impl JobQos {
    /// On the network thread, as the job starts: the network, or blends.
    pub fn decide(&self) -> Decision {
        let Some(t) = &self.timing else {
            return Decision::Network;
        };
        let g = self.gate.inner.lock().unwrap();
        if !g.enabled() {
            return Decision::Network;
        }
        let rt = t.running_time.nseconds();
        if let Some(earliest) = g.earliest
            && rt < earliest
        {
            return Decision::Cheap {
                jitter: (earliest - rt) as i64,
            };
        }
        let (Some((clock, base)), Some(estimate)) = (&t.clock, g.estimate) else {
            return Decision::Network;
        };
        let now = clock.time();
        let due = base.nseconds() + rt + g.latency;
        let done = now.nseconds() + estimate.as_nanos() as u64;
        if done <= due {
            return Decision::Network;
        }
        let probe = g
            .last_network
            .is_none_or(|last| last.elapsed() > probe_interval(estimate));
        if probe {
            Decision::Network
        } else {
            Decision::Cheap {
                jitter: (done - due) as i64,
            }
        }
    }

    /// On the network thread, after the job: records its time and counts; posts a QoS message
    /// for a cheap job.
    pub fn finish(&self, decision: Decision, windows: u64, elapsed: Duration, made: Counts) {
        let (live, counts, estimate) = {
            let mut g = self.gate.inner.lock().unwrap();
            let c = &mut g.counts;
            c.windows += windows;
            c.frames_new += made.frames_new;
            c.frames_cheap += made.frames_cheap;
            if windows > 0 && decision == Decision::Network {
                if g.warm {
                    g.estimate = Some(match g.estimate {
                        Some(e) => (e + elapsed) / 2,
                        None => elapsed,
                    });
                }
                g.warm = true;
                g.last_network = Some(Instant::now());
            }
            if let Decision::Cheap { .. } = decision {
                g.counts.windows_cheap += windows;
            }
            (g.enabled() && g.live, g.counts, g.estimate)
        };
        let (Decision::Cheap { jitter }, Some(t)) = (decision, &self.timing) else {
            return;
        };
        let Some(element) = t.element.upgrade() else {
            return;
        };
        // Proportion: the network's time over the time the window's frames span.
        let proportion = match (estimate, t.duration) {
            (Some(e), Some(d)) if d.nseconds() > 0 => e.as_nanos() as f64 / d.nseconds() as f64,
            _ => 1.0,
        };
        let quality = (1_000_000 * (counts.windows - counts.windows_cheap))
            .checked_div(counts.windows)
            .map_or(1_000_000, |q| q as i32);
        let msg = gst::message::Qos::builder(live)
            .running_time(t.running_time)
            .stream_time(t.stream_time)
            .timestamp(t.pts)
            .duration(t.duration)
            .values(jitter, proportion, quality)
            .stats(
                gst::format::Buffers::from_u64(counts.frames_new - counts.frames_cheap),
                gst::format::Buffers::from_u64(counts.frames_cheap),
            )
            .src(&element)
            .build();
        let _ = element.post_message(msg);
    }
}
