// SPDX-License-Identifier: MIT OR Apache-2.0
//! One negotiated stream (the window, on the streaming thread) and the executor of the
//! window's [`Step`]s (`Exec`, on the network thread).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};

use super::cuda_path::{self, DeviceIo};
use super::inflight::InFlight;
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

/// What became of a job's steps ([`Exec::run`], [`Exec::finish_tail`]).
pub(super) struct Done {
    /// The `id` the job was run with.
    pub id: u64,
    pub result: Result<(), Error>,
    /// Pushed frames, with their times, in order.
    pub out: Vec<gst::Buffer>,
    /// New frames pushed, and how many were blends.
    pub counts: Counts,
}

/// The last steps of a job (pushes and releases only) left to run once its windows are
/// collected, while the next job loads its frame and submits its window.
struct Tail {
    id: u64,
    steps: VecDeque<Step>,
    out: Vec<gst::Buffer>,
    counts: Counts,
}

/// Carries out steps: holds the frames the window refers to (input buffers and new frames)
/// and the windows in flight.
#[derive(Default)]
pub(super) struct Exec {
    frames: HashMap<Key, gst::Buffer>,
    /// The last original pushed: a cheap window blends it even when the window has let it go.
    last_original: Option<(Key, gst::Buffer)>,
    /// New frames made by blending (cheap windows), while held.
    blended: HashSet<Key>,
    inflight: InFlight,
    tail: Option<Tail>,
    /// Frames in CUDA memory: how they are read and where new ones come from (set per job).
    pub dev: Option<DeviceIo>,
    /// Where model outputs that the plan does not keep are written, on the CUDA-memory path.
    dev_scratch: Vec<u8>,
}

/// Steps that may run before the tail of the job before (they neither push nor release).
fn ahead(step: &Step) -> bool {
    matches!(step, Step::Load { .. } | Step::Run { .. })
}

impl Exec {
    /// Drops every frame, the windows in flight and a job's tail (a flush).
    pub fn clear(&mut self, backend: &mut dyn Backend) {
        self.inflight.abandon(backend);
        self.tail = None;
        self.frames.clear();
        self.blended.clear();
        self.last_original = None;
    }

    /// The job whose tail waits for its windows, if any.
    pub fn paused(&self) -> Option<u64> {
        self.tail.as_ref().map(|t| t.id)
    }

    /// Whether the oldest window in flight is done (collecting it would not wait).
    pub fn ready(&self, backend: &mut dyn Backend) -> Result<bool, Error> {
        self.inflight.ready(backend)
    }

    /// Runs the tail of the paused job, if any (collecting the windows it needs).
    pub fn finish_tail(
        &mut self,
        backend: &mut dyn Backend,
        info: &gst_video::VideoInfo,
    ) -> Option<Done> {
        let mut t = self.tail.take()?;
        let mut result = Ok(());
        while let Some(step) = t.steps.pop_front() {
            if let Err(e) = self.step(backend, info, step, None, &mut t.out, &mut t.counts) {
                result = Err(e);
                break;
            }
        }
        Some(Done {
            id: t.id,
            result,
            out: t.out,
            counts: t.counts,
        })
    }

    /// Stores `inputs`, then carries out `steps` in order; stops early, with `Ok`, once
    /// `cancel` is raised. `cheap`: the stream's factor, to blend originals instead of running
    /// the network ([`super::cheap`]). Returns the jobs finished, in order: first the paused
    /// job before (its tail runs before this job's first push or release), then this one,
    /// unless `pause` allows it to wait for its windows (its last steps only push and release,
    /// and the backend pipelines): then [`Exec::paused`] is true and [`Exec::finish_tail`]
    /// (or the next run) finishes it.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &mut self,
        backend: &mut dyn Backend,
        info: &gst_video::VideoInfo,
        id: u64,
        inputs: Vec<(Key, gst::Buffer)>,
        steps: Vec<Step>,
        cancel: &AtomicBool,
        cheap: Option<u64>,
        pause: bool,
    ) -> Vec<Done> {
        let mut done = Vec::new();
        self.frames.extend(inputs);
        if cheap.is_some() {
            // Blends read the last original, which the tail may push.
            done.extend(self.finish_tail(backend, info));
        }
        let mut steps: VecDeque<Step> = steps.into();
        let (mut out, mut counts) = (Vec::new(), Counts::default());
        let mut result = Ok(());
        while let Some(step) = steps.front() {
            if cancel.load(Ordering::Relaxed) {
                break;
            }
            if !ahead(step) {
                done.extend(self.finish_tail(backend, info));
                if pause
                    && backend.depth() > 1
                    && !steps.iter().any(ahead)
                    && steps.iter().any(|s| self.waits(s))
                {
                    self.tail = Some(Tail {
                        id,
                        steps,
                        out,
                        counts,
                    });
                    return done;
                }
            }
            let Some(step) = steps.pop_front() else {
                break;
            };
            if let Err(e) = self.step(backend, info, step, cheap, &mut out, &mut counts) {
                result = Err(e);
                break;
            }
        }
        if result.is_ok() && self.tail.is_none() && !cancel.load(Ordering::Relaxed) {
            result = self.settle(backend, info.size());
        }
        done.push(Done {
            id,
            result,
            out,
            counts,
        });
        done
    }

    /// Collects every window in flight (frames no step asked for yet), so that no window
    /// outlives the job that submitted it unless the job is paused.
    pub fn settle(&mut self, backend: &mut dyn Backend, size: usize) -> Result<(), Error> {
        while self.inflight.len() > 0 {
            let made = self.inflight.collect(backend, size)?;
            self.frames.extend(made);
        }
        Ok(())
    }

    /// Whether `step` needs a frame of a window in flight.
    fn waits(&self, step: &Step) -> bool {
        match step {
            Step::Load { key, .. } | Step::Emit { key, .. } | Step::Release { key } => {
                self.inflight.makes(key)
            }
            Step::EmitCopy { source, .. } => self.inflight.makes(source),
            Step::Run { .. } => false,
        }
    }

    /// Collects the windows in flight up to the one that makes `key`, if any.
    fn collect_through(
        &mut self,
        backend: &mut dyn Backend,
        size: usize,
        key: &Key,
    ) -> Result<(), Error> {
        while self.inflight.makes(key) {
            let made = self.inflight.collect(backend, size)?;
            self.frames.extend(made);
        }
        Ok(())
    }

    /// Carries out one step.
    fn step(
        &mut self,
        backend: &mut dyn Backend,
        info: &gst_video::VideoInfo,
        step: Step,
        cheap: Option<u64>,
        out: &mut Vec<gst::Buffer>,
        counts: &mut Counts,
    ) -> Result<(), Error> {
        let missing =
            |key: &Key| Error::Window(WindowError::Internal(format!("frame {key:?} is not held")));
        let size = info.size();
        match step {
            Step::Load { key, slot } => {
                self.collect_through(backend, size, &key)?;
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
                    if let Some((dev, pool)) = self.pooled() {
                        // New frames in CUDA memory: one window at a time, written straight into
                        // frames of the pool (the double-buffered staging of the system-memory
                        // path below is for downloads to the host). Windows still in flight from
                        // before (system memory) are collected first.
                        self.settle(backend, size)?;
                        let made = cuda_path::network(
                            backend,
                            info,
                            window,
                            outputs,
                            &dev,
                            &pool,
                            &mut self.dev_scratch,
                        )?;
                        self.frames.extend(made);
                    } else {
                        let mut made = Vec::new();
                        let r = self
                            .inflight
                            .submit(backend, size, window, outputs, &mut made);
                        self.frames.extend(made);
                        r?;
                    }
                }
            },
            Step::Emit {
                key,
                pts,
                duration,
                original,
            } => {
                self.collect_through(backend, size, &key)?;
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
                    counts.frames_new += 1;
                    counts.frames_cheap += u64::from(self.blended.contains(&key));
                }
                if !original && self.pooled().is_some() {
                    // A frame of the CUDA pool is retimed in place (a copy sharing its memory
                    // would keep the pool from taking it back), and the held reference is the
                    // pushed buffer itself.
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
                self.collect_through(backend, size, &source)?;
                let buf = self.frames.get(&source).ok_or_else(|| missing(&source))?;
                counts.frames_new += 1;
                out.push(copy_of(buf, pts, duration));
            }
            Step::Release { key } => {
                self.collect_through(backend, size, &key)?;
                self.frames.remove(&key);
                self.blended.remove(&key);
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
    super::inflight::fill(n, size, outputs, scratch, |slices| {
        backend.interpolate(window, slices)
    })
}
