//! Frames in and out of the engine: the frame slots (each loaded frame converted once to
//! float32), their colour sums, the small scratch vectors of a run, and the pinned and device
//! staging buffers with which frames are uploaded (double-buffered, on the copy stream) and the
//! interpolated frames downloaded (double-buffered, on the download stream, so that a window's
//! download and host copy overlap the next window's network).
//!
//! The order between the three streams (compute, copy, download), by events:
//! - a window's network waits for every frame load queued before it (`loaded`);
//! - a load into a slot waits for the windows queued before it that read the slot
//!   (`slot_read`), so a frame can be loaded while the window before it computes;
//! - a window's download waits for its output conversion (`out_ready`), and the output
//!   conversion into a staging pair waits for that pair's previous download (`dl_done`).

use std::collections::VecDeque;
use std::mem::{size_of, size_of_val};
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, sys::CUevent_flags};

use super::arena::align_up;
use super::error::{CudaError, DriverContext, Result};
use super::kernels::Kernels;
use super::launch::{self, POOL_BLOCKS, SLOT_BLOCKS, SlotSource};
use super::memory::{self, DevView, DeviceBuf, Dtype, PinnedBuf};
use super::params::{FrameGeom, SLOT_CHANNELS, SLOT_PIXEL_BYTES, SLOT_SUM_RECORD};
use super::weights::Span;
use crate::backend::SLOTS;
use crate::model::spec::WINDOW;

/// Windows the engine holds submitted and not collected (the output staging pairs).
pub(super) const DEPTH: usize = 2;

/// Floats of the window-mean vector (R, G, B and one unused, 16 bytes).
const MEAN_LEN: usize = 4;
/// Bytes of the window's slot numbers on the device (int32 each).
const WINDOW_BYTES: usize = WINDOW * size_of::<i32>();

/// Where each vector lives in the scratch buffer.
struct Scratch {
    /// SE pooling partials: four phases of [`POOL_BLOCKS`] rows of channels.
    partial: Span,
    se_mean: Span,
    gate: Span,
    mean: Span,
    win: Span,
    slot_partial: Span,
}

/// The transfer buffers, frame slots and scratch of one configured layout.
pub(super) struct Io {
    slots: DeviceBuf,
    sums: DeviceBuf,
    /// Small float32 vectors (and the window's int32 slot numbers), see [`Scratch`].
    scratch: DeviceBuf,
    at: Scratch,
    in_dev: [DeviceBuf; 2],
    in_host: [PinnedBuf; 2],
    in_done: [CudaEvent; 2],
    in_next: usize,
    loaded: CudaEvent,
    /// Recorded on the compute stream after each window that reads the slot.
    slot_read: Vec<CudaEvent>,
    /// Output staging pairs: converted on the compute stream into `out_dev[b]`, downloaded on
    /// the download stream into `out_host[b]`.
    out_dev: [DeviceBuf; DEPTH],
    out_host: [PinnedBuf; DEPTH],
    out_ready: [CudaEvent; DEPTH],
    dl_done: [CudaEvent; DEPTH],
    /// The pair the next window writes, and the pairs of the windows submitted and not
    /// collected, oldest first.
    out_next: usize,
    in_flight: VecDeque<usize>,
    win_host: [PinnedBuf; 2],
    win_done: [CudaEvent; 2],
    win_next: usize,
    /// Frames of device memory of another context, copied in or out (made when first needed,
    /// grown to the largest frame).
    dev_stage: Option<DeviceBuf>,
    /// Bytes of a frame, pixels of a (padded) slot, frames out per window.
    size: usize,
    npix: usize,
    n_out: usize,
}

/// An error unless `slot` is a frame slot.
pub(super) fn check_slot(slot: usize) -> Result<()> {
    if slot >= SLOTS {
        return Err(CudaError::Layout(format!(
            "slot {slot} out of range (0..{SLOTS})"
        )));
    }
    Ok(())
}

impl Io {
    /// Buffers for frames of `size` bytes padded to `npix` pixels, SE gates up to `cmax`
    /// channels and `n_out` output frames per window. The slot sums start at zero.
    pub fn new(
        ctx: &Arc<CudaContext>,
        copy: &CudaStream,
        size: usize,
        npix: usize,
        cmax: usize,
        n_out: usize,
    ) -> Result<Io> {
        let slots = DeviceBuf::new(
            ctx,
            SLOTS * npix * SLOT_PIXEL_BYTES,
            "frame slots (cuMemAlloc)",
        )?;
        let sums = DeviceBuf::new(
            ctx,
            SLOTS * SLOT_SUM_RECORD * size_of::<f64>(),
            "slot sums (cuMemAlloc)",
        )?;
        // Zero is a valid (empty) sum.
        memory::memset(sums.view(Dtype::U8), 0, copy)?;
        copy.synchronize().during("cuStreamSynchronize")?;
        let cm = cmax.max(4);
        let f32s = |n: usize| n * size_of::<f32>();
        let mut total = 0;
        let mut place = |bytes: usize| {
            let s = Span { off: total, bytes };
            total += align_up(bytes);
            s
        };
        let at = Scratch {
            partial: place(f32s(4 * POOL_BLOCKS * cm)),
            se_mean: place(f32s(cm)),
            gate: place(f32s(cm)),
            mean: place(f32s(MEAN_LEN)),
            win: place(WINDOW_BYTES),
            slot_partial: place(f32s(SLOT_BLOCKS * 3)),
        };
        let scratch = DeviceBuf::new(ctx, total, "scratch (cuMemAlloc)")?;
        // Output staging, zeroed once: the output kernels write only the frame's samples, and
        // the download copies whole frames, so the padding bytes of a layout (row padding, the
        // alignment gap between planes) come out as zeros, never as what the memory held before.
        let out_dev = [
            DeviceBuf::new(ctx, n_out * size, "output staging (cuMemAlloc)")?,
            DeviceBuf::new(ctx, n_out * size, "output staging (cuMemAlloc)")?,
        ];
        for b in &out_dev {
            memory::memset(b.view(Dtype::U8), 0, copy)?;
        }
        copy.synchronize().during("cuStreamSynchronize")?;
        let ev = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
                .during("cuEventCreate")
        };
        Ok(Io {
            slots,
            sums,
            scratch,
            at,
            in_dev: [
                DeviceBuf::new(ctx, size, "input staging (cuMemAlloc)")?,
                DeviceBuf::new(ctx, size, "input staging (cuMemAlloc)")?,
            ],
            in_host: [PinnedBuf::new(ctx, size)?, PinnedBuf::new(ctx, size)?],
            in_done: [ev()?, ev()?],
            in_next: 0,
            loaded: ev()?,
            slot_read: (0..SLOTS).map(|_| ev()).collect::<Result<_>>()?,
            out_dev,
            out_host: [
                PinnedBuf::new(ctx, n_out * size)?,
                PinnedBuf::new(ctx, n_out * size)?,
            ],
            out_ready: [ev()?, ev()?],
            dl_done: [ev()?, ev()?],
            out_next: 0,
            in_flight: VecDeque::with_capacity(DEPTH),
            win_host: [
                PinnedBuf::new(ctx, WINDOW_BYTES)?,
                PinnedBuf::new(ctx, WINDOW_BYTES)?,
            ],
            win_done: [ev()?, ev()?],
            win_next: 0,
            dev_stage: None,
            size,
            npix,
            n_out,
        })
    }

    /// Device bytes held (for the memory report).
    pub fn device_bytes(&self) -> usize {
        self.slots.bytes()
            + self.sums.bytes()
            + self.scratch.bytes()
            + self.in_dev.iter().map(|b| b.bytes()).sum::<usize>()
            + self.out_dev.iter().map(|b| b.bytes()).sum::<usize>()
            + self.dev_stage.as_ref().map_or(0, |b| b.bytes())
    }

    /// Pixels of a slot.
    pub fn slot_pixels(&self) -> usize {
        self.npix
    }

    /// Every slot, float32 `[SLOTS][npix][4]`.
    pub fn slots(&self) -> Result<DevView<'_>> {
        let n = self.npix * SLOT_CHANNELS;
        self.slots.view(Dtype::F32).sub(0, SLOTS * n)
    }

    /// Slot `slot`, float32 `[npix][4]`.
    fn slot(&self, slot: usize) -> Result<DevView<'_>> {
        let n = self.npix * SLOT_CHANNELS;
        self.slots()?.sub(slot * n, n)
    }

    /// The slot-sum table, `SLOT_SUM_RECORD` doubles per slot.
    pub fn sums(&self) -> Result<DevView<'_>> {
        self.sums.view(Dtype::F64).sub(0, SLOTS * SLOT_SUM_RECORD)
    }

    fn scratch(&self, s: Span, dtype: Dtype) -> Result<DevView<'_>> {
        self.scratch.slice(s.off, s.bytes, dtype)
    }

    /// SE pooling partial sums (float32).
    pub fn partial(&self) -> Result<DevView<'_>> {
        self.scratch(self.at.partial, Dtype::F32)
    }

    /// SE mean (float32 `[cmax]`).
    pub fn se_mean(&self) -> Result<DevView<'_>> {
        self.scratch(self.at.se_mean, Dtype::F32)
    }

    /// SE gate (float32 `[cmax]`).
    pub fn gate(&self) -> Result<DevView<'_>> {
        self.scratch(self.at.gate, Dtype::F32)
    }

    /// The window mean (float32, R, G, B).
    pub fn mean(&self) -> Result<DevView<'_>> {
        self.scratch(self.at.mean, Dtype::F32)
    }

    /// The window's slot numbers (int32 x 4).
    pub fn win(&self) -> Result<DevView<'_>> {
        self.scratch(self.at.win, Dtype::I32)
    }

    /// Output frame `f`'s bytes in output staging pair `b`.
    pub fn out_frame(&self, b: usize, f: usize) -> Result<DevView<'_>> {
        let buf = self.out_dev.get(b).ok_or_else(|| {
            CudaError::Layout(format!("output staging pair {b} out of range (0..{DEPTH})"))
        })?;
        buf.view(Dtype::U8).sub(f * self.size, self.size)
    }

    /// Converts `src` into `slot` and sums the slot's colours, on `copy`.
    fn fill_slot(
        &self,
        copy: &CudaStream,
        k: &Kernels,
        geom: &FrameGeom,
        src: SlotSource<'_>,
        slot: usize,
    ) -> Result<()> {
        let sv = self.slot(slot)?;
        launch::to_slot(copy, k, src, geom, sv)?;
        let sums = self.sums()?.sub(slot * SLOT_SUM_RECORD, SLOT_SUM_RECORD)?;
        let partial = self.scratch(self.at.slot_partial, Dtype::F32)?;
        launch::slot_sums(copy, k, sv, self.npix, partial, sums)
    }

    /// Uploads a frame (bytes as the layout says) into `slot` and converts it there, on the
    /// copy stream. Returns once the upload is queued.
    pub fn load_frame(
        &mut self,
        copy: &CudaStream,
        k: &Kernels,
        geom: &FrameGeom,
        slot: usize,
        frame: &[u8],
    ) -> Result<()> {
        let size = self.size;
        if frame.len() < size {
            return Err(CudaError::Layout(format!(
                "frame has {} bytes, the layout needs {size}",
                frame.len()
            )));
        }
        let i = self.in_next;
        self.in_next ^= 1;
        // The staging pair alternates; wait until this one's previous upload has finished.
        self.in_done[i].synchronize().during("cuEventSynchronize")?;
        par_copy(&mut self.in_host[i].as_mut_slice()[..size], &frame[..size]);
        let staged = self.in_dev[i].view(Dtype::U8);
        // SAFETY: the pinned source is not touched again before in_done[i], recorded below
        // after the copy, completes.
        unsafe { memory::copy_to_device(staged, &self.in_host[i].as_slice()[..size], copy) }?;
        // The windows queued before that read the slot have read it.
        copy.wait(&self.slot_read[slot])
            .during("cuStreamWaitEvent")?;
        self.fill_slot(copy, k, geom, SlotSource::Frame(staged), slot)?;
        self.in_done[i].record(copy).during("cuEventRecord")?;
        self.loaded.record(copy).during("cuEventRecord")?;
        Ok(())
    }

    /// Converts a frame already in device memory (`src`, laid out as `geom` says) into `slot`
    /// on the copy stream, and waits for it: `src` may be unmapped on return.
    pub fn load_device(
        &self,
        copy: &CudaStream,
        k: &Kernels,
        geom: &FrameGeom,
        slot: usize,
        src: DevView<'_>,
    ) -> Result<()> {
        // The windows queued before that read the slot have read it.
        copy.wait(&self.slot_read[slot])
            .during("cuStreamWaitEvent")?;
        self.fill_slot(copy, k, geom, SlotSource::Frame(src), slot)?;
        self.loaded.record(copy).during("cuEventRecord")?;
        copy.synchronize().during("cuStreamSynchronize")?;
        Ok(())
    }

    /// Marks the slots of `window` as read by the work queued on `stream` so far (a window
    /// run outside [`Io::finish_window`]: the device-memory path).
    pub fn mark_read(&self, stream: &CudaStream, window: [usize; 4]) -> Result<()> {
        for s in window {
            self.slot_read[s].record(stream).during("cuEventRecord")?;
        }
        Ok(())
    }

    /// Makes the staging for frames of another context's memory at least `bytes` long.
    pub fn ensure_stage(&mut self, ctx: &Arc<CudaContext>, bytes: usize) -> Result<()> {
        if self.dev_stage.as_ref().is_none_or(|b| b.bytes() < bytes) {
            self.dev_stage = None;
            self.dev_stage = Some(DeviceBuf::new(
                ctx,
                bytes,
                "device frame staging (cuMemAlloc)",
            )?);
        }
        Ok(())
    }

    /// The first `bytes` of the staging made by [`Io::ensure_stage`].
    pub fn stage(&self, bytes: usize) -> Result<DevView<'_>> {
        let b = self.dev_stage.as_ref().ok_or_else(|| {
            CudaError::Internal("device frame staging used before it was made".into())
        })?;
        b.view(Dtype::U8).sub(0, bytes)
    }

    /// Loads a frame given as planar float32 `[3, height, width]` into `slot` and waits for it.
    pub fn load_frame_f32(
        &self,
        ctx: &Arc<CudaContext>,
        copy: &CudaStream,
        k: &Kernels,
        geom: &FrameGeom,
        slot: usize,
        planar: &[f32],
    ) -> Result<()> {
        let (w, h) = (geom.width(), geom.height());
        if planar.len() != 3 * w * h {
            return Err(CudaError::Layout(format!(
                "planar frame has {} values, expected 3 x {h} x {w}",
                planar.len()
            )));
        }
        let src = DeviceBuf::new(ctx, size_of_val(planar), "float frame (cuMemAlloc)")?;
        // SAFETY: the stream is synchronised below before `planar` or `src` go away.
        unsafe { memory::copy_to_device(src.view(Dtype::F32), planar, copy) }?;
        copy.wait(&self.slot_read[slot])
            .during("cuStreamWaitEvent")?;
        self.fill_slot(
            copy,
            k,
            geom,
            SlotSource::Planar(src.view(Dtype::F32)),
            slot,
        )?;
        self.loaded.record(copy).during("cuEventRecord")?;
        copy.synchronize().during("cuStreamSynchronize")?;
        Ok(())
    }

    /// A slot's contents, float32 `[ph, pw, 4]`, after the copy stream's work.
    pub fn read_slot(&self, copy: &CudaStream, slot: usize) -> Result<Vec<f32>> {
        copy.synchronize().during("cuStreamSynchronize")?;
        let mut out = vec![0f32; self.npix * SLOT_CHANNELS];
        // SAFETY: ordered after the copy stream's writes, and synchronised before `out` is
        // read.
        unsafe { memory::copy_to_host(&mut out, self.slot(slot)?, copy) }?;
        copy.synchronize().during("cuStreamSynchronize")?;
        Ok(out)
    }

    /// Uploads the window's slot numbers (checked by the caller) on `stream`, and orders
    /// `stream` after every frame load queued so far.
    pub fn set_window(&mut self, stream: &CudaStream, window: [usize; 4]) -> Result<()> {
        let win: Vec<u8> = window
            .iter()
            .flat_map(|&s| (s as i32).to_le_bytes())
            .collect();
        let i = self.win_next;
        self.win_next ^= 1;
        // This pinned buffer's previous upload has finished.
        self.win_done[i]
            .synchronize()
            .during("cuEventSynchronize")?;
        self.win_host[i].as_mut_slice()[..WINDOW_BYTES].copy_from_slice(&win);
        // SAFETY: win_host[i] is rewritten only after win_done[i], recorded below after the
        // copy, completes.
        unsafe {
            memory::copy_to_device(
                self.win()?,
                &self.win_host[i].as_slice()[..WINDOW_BYTES],
                stream,
            )
        }?;
        self.win_done[i].record(stream).during("cuEventRecord")?;
        stream.wait(&self.loaded).during("cuStreamWaitEvent")?;
        Ok(())
    }

    /// Windows submitted and not collected.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// The output staging pair the next window converts into, after ordering `stream` after
    /// that pair's previous download. An error when [`DEPTH`] windows are in flight.
    pub fn next_out(&self, stream: &CudaStream) -> Result<usize> {
        if self.in_flight.len() >= DEPTH {
            return Err(CudaError::Layout(format!(
                "{DEPTH} windows are already submitted: collect one first"
            )));
        }
        let b = self.out_next;
        stream.wait(&self.dl_done[b]).during("cuStreamWaitEvent")?;
        Ok(b)
    }

    /// After a window's network and output conversion into pair `b` were queued on `stream`:
    /// marks the window's slots as read there and queues the download of pair `b` on `down`.
    pub fn finish_window(
        &mut self,
        stream: &CudaStream,
        down: &CudaStream,
        window: [usize; 4],
        b: usize,
    ) -> Result<()> {
        for s in window {
            self.slot_read[s].record(stream).during("cuEventRecord")?;
        }
        self.out_ready[b].record(stream).during("cuEventRecord")?;
        down.wait(&self.out_ready[b]).during("cuStreamWaitEvent")?;
        let bytes = self.n_out * self.size;
        let host = &mut self.out_host[b].as_mut_slice()[..bytes];
        // SAFETY: the host reads out_host[b] only in `collect`, after dl_done[b] (recorded
        // below) completes, and the next download into it is queued after that collect.
        unsafe { memory::copy_to_host(host, self.out_dev[b].view(Dtype::U8), down) }?;
        self.dl_done[b].record(down).during("cuEventRecord")?;
        self.in_flight.push_back(b);
        self.out_next = (b + 1) % DEPTH;
        Ok(())
    }

    /// Whether the oldest window in flight has been downloaded (true when none is).
    pub fn ready(&self) -> Result<bool> {
        match self.in_flight.front() {
            Some(&b) => self.dl_done[b].try_is_complete().during("cuEventQuery"),
            None => Ok(true),
        }
    }

    /// Waits for the oldest window in flight and copies its frames into `outputs` (checked by
    /// the caller: `n_out` buffers of at least a frame each).
    pub fn collect(&mut self, outputs: &mut [&mut [u8]]) -> Result<()> {
        let Some(&b) = self.in_flight.front() else {
            return Err(CudaError::Layout("no window submitted to collect".into()));
        };
        self.in_flight.pop_front();
        self.dl_done[b].synchronize().during("cuEventSynchronize")?;
        let size = self.size;
        let host = &self.out_host[b].as_slice()[..self.n_out * size];
        for (f, out) in outputs.iter_mut().enumerate() {
            par_copy(&mut out[..size], &host[f * size..(f + 1) * size]);
        }
        Ok(())
    }

    /// Forgets the windows in flight (their downloads still finish before the pairs are
    /// reused: the events order them).
    pub fn abandon(&mut self) {
        self.in_flight.clear();
    }
}

/// Copies a frame between host buffers on several threads (one thread copies at a fraction
/// of the memory bandwidth; this is on the per-frame path).
fn par_copy(dst: &mut [u8], src: &[u8]) {
    use rayon::prelude::*;
    const CHUNK: usize = 1 << 19;
    if src.len() < 4 * CHUNK {
        dst.copy_from_slice(src);
        return;
    }
    dst.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(d, s)| d.copy_from_slice(s));
}
