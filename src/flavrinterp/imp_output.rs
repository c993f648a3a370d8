// SPDX-License-Identifier: MIT OR Apache-2.0
//! The frames on their way out: collecting what the network made, numbering it, draining a run
//! (at EOS, a gap, new caps or a segment) and flushing. A child of `imp.rs` (it reads the
//! element's fields).

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::super::net::{Net, WaitError};
use super::{CAT, FlavrInterp};
use crate::error::Error;

impl FlavrInterp {
    /// Posts an error for an element error and returns the flow error to give back.
    pub(super) fn fail(&self, e: &Error) -> gst::FlowError {
        gst::error!(CAT, imp = self, "{e}");
        self.obj().post_error_message(e.to_error_msg());
        gst::FlowError::Error
    }

    /// Waits until at most `max` windows are in flight and queues the frames made so far.
    pub(super) fn collect(
        &self,
        net: &Net,
        max: usize,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        match net.wait(max) {
            Ok(bufs) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.queue.extend(bufs);
                }
                Ok(gst::FlowSuccess::Ok)
            }
            Err(WaitError::Flushing) => Err(gst::FlowError::Flushing),
            Err(WaitError::Failed(e)) => Err(self.fail(&e)),
        }
    }

    /// Numbers a frame on its way downstream.
    pub(super) fn stamp(&self, mut buf: gst::Buffer) -> gst::Buffer {
        if let Some(state) = self.state.lock().unwrap().as_mut() {
            let b = buf.make_mut();
            b.set_offset(state.frames_out);
            b.set_offset_end(state.frames_out + 1);
            state.frames_out += 1;
        }
        buf
    }

    /// Ends the current run: makes every frame still missing, waits for the windows in flight
    /// and pushes everything queued. A push that fails for another reason than flushing or EOS
    /// is posted as an error. `until`: where the next data starts, when known (a GAP event);
    /// the copies that fill the last original's slot stop there.
    pub(super) fn drain(
        &self,
        why: &str,
        until: Option<u64>,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let (net, info, steps, queued) = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let queued: Vec<gst::Buffer> = state.queue.drain(..).collect();
            let Some(stream) = state.stream.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if !stream.window.is_empty() {
                gst::debug!(CAT, imp = self, "draining ({why})");
            }
            let steps = match stream.window.drain_before(until) {
                Ok(s) => s,
                Err(e) => {
                    drop(guard);
                    return Err(self.fail(&e.into()));
                }
            };
            let ticks = stream.window.plan().factor();
            (
                state.net.clone(),
                stream.info.clone(),
                (steps, ticks),
                queued,
            )
        };
        let (steps, ticks) = steps;
        if !steps.is_empty() {
            let qos = self.job_qos(ticks, &steps);
            net.submit(&info, Vec::new(), steps, Some(qos));
        }
        let made = match net.wait(0) {
            Ok(b) => b,
            Err(WaitError::Flushing) => return Err(gst::FlowError::Flushing),
            Err(WaitError::Failed(e)) => return Err(self.fail(&e)),
        };
        let srcpad = self.obj().src_pad().clone();
        for buf in queued.into_iter().chain(made) {
            let buf = self.stamp(buf);
            if let Err(e) = srcpad.push(buf) {
                if !matches!(e, gst::FlowError::Flushing | gst::FlowError::Eos) {
                    gst::element_imp_error!(
                        self,
                        gst::StreamError::Failed,
                        ("Could not push the frames drained at {}: {:?}", why, e),
                        ["downstream returned {:?}; the rest of the run is lost", e]
                    );
                }
                return Err(e);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    /// [`Self::drain`] for an event: false when frames were lost for another reason than a
    /// flush (the error is on the bus then).
    pub(super) fn drain_for_event(&self, why: &str, until: Option<u64>) -> bool {
        match self.drain(why, until) {
            Ok(_) => true,
            Err(e @ (gst::FlowError::Flushing | gst::FlowError::Eos)) => {
                gst::debug!(CAT, imp = self, "drain ({why}): {e:?}");
                true
            }
            Err(e) => {
                gst::warning!(CAT, imp = self, "drain ({why}) failed: {e:?}");
                false
            }
        }
    }

    pub(super) fn flush_stop(&self) {
        let mut guard = self.state.lock().unwrap();
        if let Some(state) = guard.as_mut() {
            if let Some(stream) = state.stream.as_mut() {
                stream.window.flush();
            }
            state.queue.clear();
            state.net.flush_stop();
        }
        drop(guard);
        if let Some(scene) = self.scene.lock().unwrap().as_mut() {
            scene.reset();
        }
        self.shared.lock().unwrap().last_pts = None;
        self.qos.flush();
    }
}
