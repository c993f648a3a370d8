// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element's side of scene-cut detection ([`crate::scene`]): the detector of the negotiated
//! stream, fed from the input buffers, and the `flavrinterp-scene-cut` element message.
//!
//! Kept apart from `imp.rs` so that the element's glue is a few lines: built in `set_caps`,
//! called in `submit_input_buffer` before the window, reset on flush.

use gst::prelude::*;
use gst_video::prelude::*;

use crate::backend::PixelFormat;
use crate::error::Error;
use crate::scene::{Detector, Measure, Reduced};

/// Name of the element message posted at each cut.
pub(super) const MESSAGE: &str = "flavrinterp-scene-cut";

/// The detector of one negotiated stream.
pub(super) struct SceneCut {
    detector: Detector,
    info: gst_video::VideoInfo,
    format: PixelFormat,
}

impl SceneCut {
    pub(super) fn new(info: &gst_video::VideoInfo, format: PixelFormat) -> SceneCut {
        SceneCut {
            detector: Detector::new(0.0),
            info: info.clone(),
            format,
        }
    }

    /// Forgets the previous frame (flush, seek).
    pub(super) fn reset(&mut self) {
        self.detector.reset();
    }

    /// Measures input frame `buf` against the previous one. `restart`: the frame starts a new
    /// run (DISCONT, GAP), so it is not compared. With `threshold` 0 nothing is measured (and the
    /// previous frame is forgotten, so turning detection on later starts afresh).
    pub(super) fn measure(
        &mut self,
        buf: &gst::Buffer,
        threshold: f64,
        restart: bool,
    ) -> Result<Option<Measure>, Error> {
        if threshold <= 0.0 || restart {
            self.detector.reset();
            // GAP buffers may carry no picture (or no bytes) and are never network input.
            if threshold <= 0.0 || buf.flags().contains(gst::BufferFlags::GAP) {
                return Ok(None);
            }
        }
        self.detector.set_threshold(threshold);
        let reduced = self.reduce(buf)?;
        Ok(self.detector.push(reduced))
    }

    fn reduce(&self, buf: &gst::Buffer) -> Result<Reduced, Error> {
        let info = &self.info;
        if buf.meta::<gst_video::VideoMeta>().is_none() && buf.size() < info.size() {
            return Err(super::stream::too_small(info, buf.size()));
        }
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), info)
            .map_err(|e| Error::Buffer(format!("cannot map input frame: {e}")))?;
        let plane = frame
            .plane_data(0)
            .map_err(|e| Error::Buffer(format!("cannot read the first plane: {e}")))?;
        let stride = usize::try_from(frame.plane_stride()[0])
            .map_err(|_| Error::Buffer(format!("negative stride {}", frame.plane_stride()[0])))?;
        Reduced::from_plane(
            self.format,
            plane,
            stride,
            info.width() as usize,
            info.height() as usize,
        )
        .map_err(|e| Error::Buffer(format!("scene-cut detection: {e}")))
    }
}

/// The message for a cut before the frame at `pts` (input frame number `frame`).
pub(super) fn message(
    src: &impl IsA<gst::Object>,
    pts: Option<gst::ClockTime>,
    frame: u64,
    m: &Measure,
) -> gst::Message {
    let s = gst::Structure::builder(MESSAGE)
        .field("timestamp", pts)
        .field("frame", frame)
        .field("score", m.score)
        .field("difference", m.diff)
        .field("histogram-distance", m.hist)
        .build();
    gst::message::Element::builder(s).src(src).build()
}
