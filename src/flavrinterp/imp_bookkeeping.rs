// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the element notes about the stream and tells about it: the caps it refuses, the segment
//! (reverse playback), timestamps and the latency they give, the QoS of a job, property changes
//! refused while running, and the statistics posted at the end. A child of `imp.rs` (it reads
//! the element's fields).

use gst::prelude::*;
use gst::subclass::prelude::*;

use super::super::stats::Stats;
use super::super::{caps, rate_caps};
use super::{CAT, FlavrInterp};

impl FlavrInterp {
    pub(super) fn post_stats(&self) {
        let (summary, msg) = {
            let guard = self.state.lock().unwrap();
            let Some(state) = guard.as_ref() else {
                return;
            };
            Stats {
                frames_in: state.frames_in,
                frames_out: state.frames_out,
                backend: &state.backend_name,
                factor: state.plan.factor() as u32,
                compute_seconds: state.net.busy().as_secs_f64(),
                wall_seconds: state.first_input.map_or(0.0, |t| t.elapsed().as_secs_f64()),
                counts: self.qos.counts(),
                qos: self.qos.enabled(),
            }
            .message(&*self.obj())
        };
        gst::info!(CAT, imp = self, "{summary}");
        let _ = self.obj().post_message(msg);
    }

    /// Latency the element adds: the input frames the window waits for and the windows in
    /// flight.
    pub(super) fn added_latency(&self) -> gst::ClockTime {
        let shared = *self.shared.lock().unwrap();
        let ns = shared
            .frame_duration
            .unwrap_or(0)
            .saturating_mul(shared.latency_frames);
        gst::ClockTime::from_nseconds(ns)
    }

    /// Called for every CAPS event before the pad checks it: a reason in words when the caps
    /// will be refused. A warning, not an error: upstream may still renegotiate; if it does not,
    /// its not-negotiated error follows this message. Posted once per refused caps.
    pub(super) fn check_pushed_caps(&self, caps: &gst::CapsRef) {
        let (factor, target) = rate_caps::settings(&self.settings.lock().unwrap());
        if let Some(e) = rate_caps::problem(caps, target) {
            // An error (the property asks for it), posted once per caps like the warnings.
            let text = caps.to_string();
            let mut warned = self.warned.lock().unwrap();
            if warned.refused_caps.as_deref() != Some(text.as_str()) {
                warned.refused_caps = Some(text);
                drop(warned);
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{}", e));
            }
            return;
        }
        let cuda = self.cuda.lock().unwrap().active;
        if let Some(reason) = caps::caps_problem(caps, factor, cuda) {
            gst::warning!(CAT, imp = self, "refusing {caps}: {reason}");
            let text = caps.to_string();
            let mut warned = self.warned.lock().unwrap();
            if warned.refused_caps.as_deref() == Some(text.as_str()) {
                return;
            }
            warned.refused_caps = Some(text);
            drop(warned);
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                ("Cannot take these caps: {}", reason),
                ["caps: {}", caps]
            );
        }
    }

    pub(super) fn refuse(&self, what: &str) {
        gst::element_imp_warning!(
            self,
            gst::CoreError::StateChange,
            (
                "Not changing {} while the element is running: set it in the NULL or READY state",
                what
            )
        );
    }

    /// A new segment: reverse playback passes frames through, with a warning once.
    pub(super) fn segment(&self, segment: &gst::Segment) {
        let reverse = segment.rate() < 0.0;
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            state.reverse = reverse;
        }
        if reverse && !std::mem::replace(&mut self.warned.lock().unwrap().reverse, true) {
            gst::element_imp_warning!(
                self,
                gst::StreamError::NotImplemented,
                (
                    "Reverse playback (rate {}): frames pass through without interpolation",
                    segment.rate()
                )
            );
        }
    }

    /// What a job of `steps` carries for the choice between the network and cheap frames.
    /// `ticks`: the window's factor, the keys' ticks per input frame (8 with a `framerate`,
    /// whatever the `factor` property says), which blends read the originals by.
    pub(super) fn job_qos(
        &self,
        ticks: u64,
        steps: &[crate::window::Step],
    ) -> super::super::qos::JobQos {
        self.qos.job(self.obj().upcast_ref(), ticks, steps)
    }

    /// Keeps the last timestamp, and the last interval as the frame duration when the caps
    /// have no fixed rate (for the latency).
    pub(super) fn note_pts(&self, pts: Option<u64>) {
        if let Some(pts) = pts {
            let mut shared = self.shared.lock().unwrap();
            if !shared.caps_frame_duration
                && let Some(last) = shared.last_pts
                && pts > last
            {
                shared.frame_duration = Some(pts - last);
            }
            shared.last_pts = Some(pts);
        }
    }
}
