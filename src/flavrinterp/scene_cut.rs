// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element's side of scene-cut detection ([`crate::scene`]): the detector of the negotiated
//! stream, fed from the input buffers, and the `flavrinterp-scene-cut` element message.
//!
//! Kept apart from `imp.rs` so that the element's glue is a few lines: built in `set_caps`,
//! called in `submit_input_buffer` before the window, reset on flush.
//!
//! Where frames are reduced: with a backend that has [`SceneSums`] (the one CUDA engine) the
//! box sums are computed on its GPU, from the frame in CUDA memory or from the host frame's
//! first plane uploaded for it, and downloaded (one `u64` per box) before the decision; else
//! on the CPU ([`crate::scene::Plane::box_sums`]). The sums are exact integers either way, so
//! the decision does not depend on where they came from. After a failure on the GPU the CPU
//! takes over for the rest of the stream (a warning says so); frames in CUDA memory are then
//! not measured (reading them on the host would copy every frame back).

use gst::prelude::*;
use gst_video::prelude::*;

use super::cuda_mem;
use super::imp::CAT;
use crate::backend::{PixelFormat, SceneSums};
use crate::error::Error;
use crate::scene::{Detector, Measure, Plane, Reduced};

/// Name of the element message posted at each cut.
pub(super) const MESSAGE: &str = "flavrinterp-scene-cut";

/// The detector of one negotiated stream.
pub(super) struct SceneCut {
    detector: Detector,
    info: gst_video::VideoInfo,
    format: PixelFormat,
    /// The backend's box sums (on its GPU), until they fail once.
    sums: Option<Box<dyn SceneSums>>,
}

impl SceneCut {
    /// `sums`: box sums on the backend's device, or `None` to reduce on the CPU.
    pub(super) fn new(
        info: &gst_video::VideoInfo,
        format: PixelFormat,
        sums: Option<Box<dyn SceneSums>>,
    ) -> SceneCut {
        SceneCut {
            detector: Detector::new(0.0),
            info: info.clone(),
            format,
            sums,
        }
    }

    /// Whether frames in CUDA memory are measured (on the GPU).
    pub(super) fn reads_device(&self) -> bool {
        self.sums.is_some()
    }

    /// Forgets the previous frame (flush, seek).
    pub(super) fn reset(&mut self) {
        self.detector.reset();
    }

    /// Measures input frame `buf` against the previous one. `restart`: the frame starts a new
    /// run (DISCONT, GAP), so it is not compared. With `threshold` 0 nothing is measured (and the
    /// previous frame is forgotten, so turning detection on later starts afresh). `in_cuda`:
    /// `buf` is in CUDA memory the element reads on the GPU (the caller passes threshold 0 for
    /// such frames unless [`SceneCut::reads_device`]).
    pub(super) fn measure(
        &mut self,
        buf: &gst::Buffer,
        threshold: f64,
        restart: bool,
        in_cuda: bool,
    ) -> Result<Option<Measure>, Error> {
        if threshold <= 0.0 || restart {
            self.detector.reset();
            // GAP buffers may carry no picture (or no bytes) and are never network input.
            if threshold <= 0.0 || buf.flags().contains(gst::BufferFlags::GAP) {
                return Ok(None);
            }
        }
        self.detector.set_threshold(threshold);
        let reduced = if in_cuda {
            match self.reduce_device(buf) {
                Some(r) => r?,
                // The GPU failed: not measured, and the next frame starts afresh.
                None => {
                    self.detector.reset();
                    return Ok(None);
                }
            }
        } else {
            self.reduce(buf)?
        };
        Ok(self.detector.push(reduced))
    }

    /// The plane of a frame with first-plane stride `stride`.
    fn plane(&self, stride: usize) -> Plane {
        Plane {
            format: self.format,
            width: self.info.width() as usize,
            height: self.info.height() as usize,
            stride,
        }
    }

    /// Gives up the GPU after its first failure (said once, as a warning).
    fn gpu_failed(&mut self, e: &dyn std::fmt::Display) {
        if let Some(s) = self.sums.take() {
            gst::warning!(
                CAT,
                "scene-cut detection on {} failed ({e}): frames are reduced on the CPU from now \
                 on, and frames in CUDA memory are no longer measured",
                s.name()
            );
        }
    }

    /// A frame in CUDA memory reduced on the GPU; `None` when that fails (or no GPU is there).
    fn reduce_device(&mut self, buf: &gst::Buffer) -> Option<Result<Reduced, Error>> {
        self.sums.as_ref()?;
        let Some(mapped) = cuda_mem::map(buf, false) else {
            self.gpu_failed(&"cannot map an input frame in CUDA memory");
            return None;
        };
        let plane = self.plane(mapped.frame.strides.first().copied().unwrap_or(0));
        let sums = self.sums.as_mut()?.device(&plane, &mapped.frame);
        drop(mapped);
        match sums {
            Ok(sums) => Some(reduced(&plane, &sums)),
            Err(e) => {
                self.gpu_failed(&e);
                None
            }
        }
    }

    fn reduce(&mut self, buf: &gst::Buffer) -> Result<Reduced, Error> {
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
        let plane_of = self.plane(stride);
        if let Some(gpu) = self.sums.as_mut() {
            match gpu.host(&plane_of, plane) {
                Ok(sums) => return reduced(&plane_of, &sums),
                Err(e) => self.gpu_failed(&e),
            }
        }
        let sums = plane_of.box_sums(plane).map_err(scene_error)?;
        reduced(&plane_of, &sums)
    }
}

fn scene_error(e: crate::scene::SceneError) -> Error {
    Error::Buffer(format!("scene-cut detection: {e}"))
}

fn reduced(plane: &Plane, sums: &[u64]) -> Result<Reduced, Error> {
    Reduced::from_box_sums(plane, sums).map_err(scene_error)
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::backend::{BackendError, DeviceFrame};

    const W: usize = 48;
    const H: usize = 32;

    /// Box sums of a stand-in device: the CPU's, or all zero (`zero`), counting the calls and
    /// failing from call `fail_at` on.
    struct Fake {
        calls: Arc<Mutex<usize>>,
        fail_at: usize,
        zero: bool,
    }

    impl SceneSums for Fake {
        fn name(&self) -> String {
            "fake".into()
        }

        fn host(&mut self, plane: &Plane, bytes: &[u8]) -> Result<Vec<u64>, BackendError> {
            let mut n = self.calls.lock().unwrap();
            *n += 1;
            if *n >= self.fail_at {
                return Err(BackendError::Failed("fake failure".into()));
            }
            let sums = plane.box_sums(bytes).unwrap();
            Ok(if self.zero { vec![0; sums.len()] } else { sums })
        }

        fn device(&mut self, _: &Plane, _: &DeviceFrame) -> Result<Vec<u64>, BackendError> {
            Err(BackendError::Failed("no device".into()))
        }
    }

    /// RGB frames: a ramp twice, then blocks twice (a cut before frame 2).
    fn frames() -> Vec<gst::Buffer> {
        let ramp = |x: usize, _: usize| (x * 255 / (W - 1)) as u8;
        let blocks = |x: usize, y: usize| {
            if (x / 8 + y / 8).is_multiple_of(2) {
                20
            } else {
                220
            }
        };
        let pic = |f: &dyn Fn(usize, usize) -> u8| {
            let v: Vec<u8> = (0..W * H).flat_map(|i| [f(i % W, i / W); 3]).collect();
            gst::Buffer::from_mut_slice(v)
        };
        vec![pic(&ramp), pic(&ramp), pic(&blocks), pic(&blocks)]
    }

    fn measures(sums: Option<Box<dyn SceneSums>>) -> (Vec<Option<Measure>>, bool) {
        gst::init().unwrap();
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, W as u32, H as u32)
            .build()
            .unwrap();
        let mut s = SceneCut::new(&info, PixelFormat::Rgb, sums);
        let m = frames()
            .iter()
            .map(|b| s.measure(b, 0.3, false, false).unwrap())
            .collect();
        (m, s.reads_device())
    }

    #[test]
    fn host_frames_are_reduced_by_the_backend_until_it_fails() {
        let (cpu, device) = measures(None);
        assert!(!device);
        let cuts: Vec<bool> = cpu.iter().map(|m| m.is_some_and(|m| m.cut)).collect();
        assert_eq!(cuts, [false, false, true, false], "{cpu:?}");
        // The backend's sums are used: all zero, no picture, no cut.
        let calls = Arc::new(Mutex::new(0));
        let zero = Fake {
            calls: calls.clone(),
            fail_at: usize::MAX,
            zero: true,
        };
        let (m, device) = measures(Some(Box::new(zero)));
        assert!(device);
        assert_eq!(*calls.lock().unwrap(), 4);
        assert!(
            m.iter().flatten().all(|m| !m.cut && m.score == 0.0),
            "{m:?}"
        );
        // The same sums as the CPU's: the same measures; after the failure at the third frame
        // the CPU reduces it and the next one, with the same result.
        let calls = Arc::new(Mutex::new(0));
        let failing = Fake {
            calls: calls.clone(),
            fail_at: 3,
            zero: false,
        };
        let (m, device) = measures(Some(Box::new(failing)));
        assert!(!device, "the failed backend is given up");
        assert_eq!(*calls.lock().unwrap(), 3);
        assert_eq!(m, cpu);
    }
}
