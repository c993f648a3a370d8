// SPDX-License-Identifier: MIT OR Apache-2.0
//! The `flavrinterp-stats` element message, posted at EOS.

use super::qos::Counts;

/// What the stream did, as the element counts it.
pub(super) struct Stats<'a> {
    pub frames_in: u64,
    /// Frames handed downstream (flushed ones are not counted).
    pub frames_out: u64,
    pub backend: &'a str,
    pub factor: u32,
    /// Time the network thread spent on windows that counted.
    pub compute_seconds: f64,
    /// Since the first input frame.
    pub wall_seconds: f64,
    /// Windows and new frames, with the cheap ones ([`super::qos`]).
    pub counts: Counts,
    /// The `qos` property's value at the end.
    pub qos: bool,
}

impl Stats<'_> {
    /// The summary line and the message; `src` is the element.
    pub fn message(&self, src: &impl gst::prelude::IsA<gst::Object>) -> (String, gst::Message) {
        let secs = self.compute_seconds;
        // With fewer than two frames in, no window ran: no rate to speak of.
        let fps = if self.frames_in >= 2 && secs > 0.0 {
            self.frames_out as f64 / secs
        } else {
            0.0
        };
        let c = &self.counts;
        let cheap = if c.frames_cheap > 0 {
            format!(
                ", {} of {} new frames blended to keep up ({:.1}%)",
                c.frames_cheap,
                c.frames_new,
                100.0 * c.cheap_share()
            )
        } else {
            String::new()
        };
        let summary = format!(
            "flavrinterp: {} frames in, {} out, backend {}, {:.2} fps out ({:.2} s computing, \
             {:.2} s since the first frame){}",
            self.frames_in, self.frames_out, self.backend, fps, secs, self.wall_seconds, cheap
        );
        let s = gst::Structure::builder("flavrinterp-stats")
            .field("frames-in", self.frames_in)
            .field("frames-out", self.frames_out)
            .field("backend", self.backend)
            .field("factor", self.factor)
            .field("compute-seconds", secs)
            .field("fps", fps)
            .field("qos", self.qos)
            .field("windows", c.windows)
            .field("windows-cheap", c.windows_cheap)
            .field("frames-new", c.frames_new)
            .field("frames-cheap", c.frames_cheap)
            .field("cheap-share", c.cheap_share())
            .field("summary", summary.as_str())
            .build();
        let msg = gst::message::Element::builder(s).src(src).build();
        (summary, msg)
    }
}
