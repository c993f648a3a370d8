// SPDX-License-Identifier: MIT OR Apache-2.0
//! One negotiated stream (the window, on the streaming thread) and the executor of the
//! window's [`Step`]s (`Exec`, on the network thread).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cuda_path::{self, DeviceIo};
use super::qos::Counts;
use crate::backend::Backend;
use crate::error::Error;
use crate::window::{Key, Step, Window, WindowError};

/// One negotiated stream, as the streaming thread sees it: the input format and the schedule.
pub(super) struct Stream {
    pub incaps: gst::Caps,
    pub info: gst_video::VideoInfo,
    pub window: Window,
    /// Input frame duration from the caps, if fixed.
    pub frame_duration: Option<u64>,
}

/// Checks that an input buffer holds a whole frame of `info`, whether or not it is ever
/// loaded into the backend (a 1-frame stream, a GAP of one frame).
pub(super) fn check_size(info: &gst_video::VideoInfo, buf: &gst::BufferRef) -> Result<(), Error> {
    if buf.meta::<gst_video::VideoMeta>().is_some() {
        // Its own strides and offsets: mapping it as a frame checks them against the size.
        gst_video::VideoFrameRef::from_buffer_ref_readable(buf, info)
            .map(|_| ())
            .map_err(|e| Error::Buffer(format!("cannot map input frame: {e}")))
    } else if buf.size() < info.size() {
        Err(too_small(info, buf.size()))
    } else {
        Ok(())
    }
}

/// The error for an input buffer of `size` bytes, less than a whole frame of `info`.
pub(super) fn too_small(info: &gst_video::VideoInfo, size: usize) -> Error {
    Error::Buffer(format!(
        "input buffer of {size} bytes is smaller than a {}x{} {} frame ({} bytes)",
        info.width(),
        info.height(),
        info.format().to_str(),
        info.size()
    ))
}

/// Hands an input frame's bytes to the backend, copied to the caps layout first when the
/// buffer carries a VideoMeta with other strides or offsets.
pub(super) fn load_frame(
    backend: &mut dyn Backend,
    info: &gst_video::VideoInfo,
    buf: &gst::Buffer,
    slot: usize,
) -> Result<(), Error> {
    let other_layout = buf
        .meta::<gst_video::VideoMeta>()
        .is_some_and(|m| m.offset() != info.offset() || m.stride() != info.stride());
    if other_layout {
        let src = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), info)
            .map_err(|e| Error::Buffer(format!("cannot map input frame: {e}")))?;
        let mut out = gst::Buffer::with_size(info.size())
            .map_err(|e| Error::Buffer(format!("cannot allocate a frame: {e}")))?;
        {
            let out = out
                .get_mut()
                .ok_or_else(|| Error::Buffer("new buffer is shared".into()))?;
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(out, info)
                .map_err(|e| Error::Buffer(format!("cannot map a frame for writing: {e}")))?;
            src.copy(&mut dst)
                .map_err(|e| Error::Buffer(format!("cannot copy input frame: {e}")))?;
        }
        let map = out
            .map_readable()
            .map_err(|e| Error::Buffer(format!("cannot map frame: {e}")))?;
        backend.load_frame(slot, &map)?;
        return Ok(());
    }
    check_size(info, buf)?;
    let map = buf
        .map_readable()
        .map_err(|e| Error::Buffer(format!("cannot map input buffer: {e}")))?;
    backend.load_frame(slot, &map)?;
    Ok(())
}

/// `buf` with the times of its output slot.
pub(super) fn retimed(mut buf: gst::Buffer, pts: u64, duration: Option<u64>) -> gst::Buffer {
    let b = buf.make_mut();
    b.set_pts(gst::ClockTime::from_nseconds(pts));
    b.set_duration(duration.map(gst::ClockTime::from_nseconds));
    buf
}

/// A frame of its own at a scene cut: the nearer original's memory with new times, never
/// marked as a discontinuity.
pub(super) fn copy_of(buf: &gst::Buffer, pts: u64, duration: Option<u64>) -> gst::Buffer {
    let mut buf = retimed(buf.copy(), pts, duration);
    buf.make_mut()
        .unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::RESYNC);
    buf
}

/// Carries out steps: holds the frames the window refers to (input buffers and new frames).
#[derive(Default)]
pub(super) struct Exec {
    frames: HashMap<Key, gst::Buffer>,
    /// Where model outputs that the plan does not keep are written.
    scratch: Vec<u8>,
    /// The last original pushed: a cheap window blends it even when the window has let it go.
    last_original: Option<(Key, gst::Buffer)>,
    /// New frames made by blending (cheap windows), while held.
    blended: HashSet<Key>,
    /// New frames pushed and how many were blends, since the last [`Exec::take_counts`].
    counts: Counts,
    /// Frames in CUDA memory: how they are read and where new ones come from (set per job).
    pub dev: Option<DeviceIo>,
}

impl Exec {
    /// Drops every frame (a flush).
    pub fn clear(&mut self) {
        self.frames.clear();
        self.blended.clear();
        self.last_original = None;
    }

    /// New frames pushed (and blended) since the last call.
    pub fn take_counts(&mut self) -> Counts {
        std::mem::take(&mut self.counts)
    }

    /// Stores `inputs`, then carries out `steps` in order; pushed frames, with their times,
    /// land in `out`. Stops early, with `Ok`, once `cancel` is raised. `cheap`: the stream's
    /// factor, to blend originals instead of running the network ([`super::cheap`]).
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        backend: &mut dyn Backend,
        info: &gst_video::VideoInfo,
        inputs: Vec<(Key, gst::Buffer)>,
        steps: Vec<Step>,
        cancel: &AtomicBool,
        cheap: Option<u64>,
        out: &mut Vec<gst::Buffer>,
    ) -> Result<(), Error> {
        self.frames.extend(inputs);
        let missing =
            |key: &Key| Error::Window(WindowError::Internal(format!("frame {key:?} is not held")));
        for step in steps {
            if cancel.load(Ordering::Relaxed) {
                return Ok(());
            }
            match step {
                Step::Load { key, slot } => {
                    let buf = self.frames.get(&key).ok_or_else(|| missing(&key))?;
                    let on_gpu = match &self.dev {
                        Some(dev) => cuda_path::load(backend, buf, slot, dev)?,
                        None => false,
                    };
                    if !on_gpu {
                        load_frame(backend, info, buf, slot)?;
                    }
                }
                Step::Run { window, outputs } => match cheap {
                    Some(factor) => self.blend_outputs(info, factor, &outputs)?,
                    None => {
                        let made = match self.pooled() {
                            Some((dev, pool)) => cuda_path::network(
                                backend,
                                info,
                                window,
                                outputs,
                                &dev,
                                &pool,
                                &mut self.scratch,
                            )?,
                            None => {
                                network(backend, info.size(), window, outputs, &mut self.scratch)?
                            }
                        };
                        self.frames.extend(made);
                    }
                },
                Step::Emit {
                    key,
                    pts,
                    duration,
                    original,
                } => {
                    // The buffer is shared (the window holds it too), so retiming copies the
                    // buffer's metadata, never its memory.
                    let buf = self
                        .frames
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| missing(&key))?;
                    if original {
                        self.last_original = Some((key, buf.clone()));
                    } else {
                        self.counts.frames_new += 1;
                        self.counts.frames_cheap += u64::from(self.blended.contains(&key));
                    }
                    if !original && self.pooled().is_some() {
                        // A frame of the CUDA pool is retimed in place (a copy sharing its
                        // memory would keep the pool from taking it back), and the held
                        // reference is the pushed buffer itself.
                        drop(buf);
                        let own = self.frames.remove(&key).ok_or_else(|| missing(&key))?;
                        let pushed = retimed(own, pts, duration);
                        self.frames.insert(key, pushed.clone());
                        out.push(pushed);
                    } else {
                        out.push(retimed(buf, pts, duration));
                    }
                }
                Step::EmitCopy {
                    key: _,
                    source,
                    pts,
                    duration,
                } => {
                    let buf = self.frames.get(&source).ok_or_else(|| missing(&source))?;
                    self.counts.frames_new += 1;
                    out.push(copy_of(buf, pts, duration));
                }
                Step::Release { key } => {
                    self.frames.remove(&key);
                    self.blended.remove(&key);
                }
            }
        }
        Ok(())
    }

    /// A cheap window: each output is the blend of the originals around it.
    fn blend_outputs(
        &mut self,
        info: &gst_video::VideoInfo,
        factor: u64,
        outputs: &[(usize, Key)],
    ) -> Result<(), Error> {
        for &(_, key) in outputs {
            let (j, k) = (key.tick / factor, key.tick % factor);
            let a = self.original(key.run, j * factor)?;
            let b = self.original(key.run, (j + 1) * factor)?;
            let mut buf = super::cheap::blend(info, a, b, k, factor)?;
            if let Some((_, pool)) = self.pooled() {
                buf = cuda_path::into_pool(&pool, info, &buf)?;
            }
            self.frames.insert(key, buf);
            self.blended.insert(key);
        }
        Ok(())
    }

    /// The CUDA pool new frames come from, if the output is in CUDA memory.
    fn pooled(&self) -> Option<(DeviceIo, gst::BufferPool)> {
        let dev = self.dev.as_ref()?;
        Some((dev.clone(), dev.pool.clone()?))
    }

    /// The original at `tick` of `run`: held, or the last one pushed.
    fn original(&self, run: u64, tick: u64) -> Result<&gst::Buffer, Error> {
        let key = Key { run, tick };
        self.frames
            .get(&key)
            .or_else(|| {
                self.last_original
                    .as_ref()
                    .filter(|(k, _)| *k == key)
                    .map(|(_, b)| b)
            })
            .ok_or_else(|| {
                Error::Window(WindowError::Internal(format!(
                    "original {key:?} to blend is not held"
                )))
            })
    }
}

/// Runs the network on slots `window`; model output `index` becomes a new buffer named `key`
/// for each pair of `outputs` (the others are written to `scratch` and dropped).
pub(super) fn network(
    backend: &mut dyn Backend,
    size: usize,
    window: [usize; 4],
    outputs: Vec<(usize, Key)>,
    scratch: &mut Vec<u8>,
) -> Result<Vec<(Key, gst::Buffer)>, Error> {
    let n = backend.n_outputs();
    let mut mapped: Vec<Option<gst::MappedBuffer<gst::buffer::Writable>>> =
        (0..n).map(|_| None).collect();
    for &(idx, _) in &outputs {
        let slot = mapped
            .get_mut(idx)
            .ok_or_else(|| Error::Buffer(format!("model output {idx} of {n} requested")))?;
        // Zeroed, so row padding the backend does not write is not garbage.
        let buf = gst::Buffer::from_mut_slice(vec![0u8; size]);
        *slot = Some(
            buf.into_mapped_buffer_writable()
                .map_err(|_| Error::Buffer("cannot map a new frame for writing".into()))?,
        );
    }
    let unused = mapped.iter().filter(|m| m.is_none()).count();
    scratch.resize(unused * size, 0);
    {
        let mut chunks = scratch.chunks_mut(size.max(1));
        let mut slices: Vec<&mut [u8]> = Vec::with_capacity(n);
        for m in mapped.iter_mut() {
            match m {
                Some(m) => slices.push(m.as_mut_slice()),
                None => slices.push(
                    chunks
                        .next()
                        .ok_or_else(|| Error::Buffer("scratch space too small".into()))?,
                ),
            }
        }
        backend.interpolate(window, &mut slices)?;
    }
    let mut made = Vec::with_capacity(outputs.len());
    for (idx, key) in outputs {
        if let Some(m) = mapped.get_mut(idx).and_then(Option::take) {
            made.push((key, m.into_buffer()));
        }
    }
    Ok(made)
}
