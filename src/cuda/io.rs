//! Frames in and out of the engine: the frame slots (each loaded frame converted once to
//! float32), their colour sums, the small scratch vectors of a run, and the pinned and device
//! staging buffers with which frames are uploaded (double-buffered, on the copy stream) and the
//! interpolated frames downloaded.

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
    out_dev: DeviceBuf,
    out_host: PinnedBuf,
    win_host: PinnedBuf,
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
            out_dev: DeviceBuf::new(ctx, n_out * size, "output staging (cuMemAlloc)")?,
            out_host: PinnedBuf::new(ctx, n_out * size)?,
            win_host: PinnedBuf::new(ctx, WINDOW_BYTES)?,
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
            + self.out_dev.bytes()
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

    /// Output frame `f`'s bytes in the output staging buffer.
    pub fn out_frame(&self, f: usize) -> Result<DevView<'_>> {
        self.out_dev.view(Dtype::U8).sub(f * self.size, self.size)
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
        self.fill_slot(copy, k, geom, SlotSource::Frame(src), slot)?;
        self.loaded.record(copy).during("cuEventRecord")?;
        copy.synchronize().during("cuStreamSynchronize")?;
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
        // The previous use of win_host has finished: every call synchronises before returning.
        self.win_host.as_mut_slice()[..WINDOW_BYTES].copy_from_slice(&win);
        // SAFETY: win_host is rewritten only by the next call, after this one's stream work
        // was waited for.
        unsafe {
            memory::copy_to_device(
                self.win()?,
                &self.win_host.as_slice()[..WINDOW_BYTES],
                stream,
            )
        }?;
        stream.wait(&self.loaded).during("cuStreamWaitEvent")?;
        Ok(())
    }

    /// Downloads the output frames written on `stream` into `outputs` (checked by the caller:
    /// `n_out` buffers of at least a frame each) and waits for them.
    pub fn download(&mut self, stream: &CudaStream, outputs: &mut [&mut [u8]]) -> Result<()> {
        let (n, size) = (self.n_out, self.size);
        let host = &mut self.out_host.as_mut_slice()[..n * size];
        // SAFETY: the stream is synchronised below before the host reads the pinned buffer.
        unsafe { memory::copy_to_host(host, self.out_dev.view(Dtype::U8), stream) }?;
        stream.synchronize().during("cuStreamSynchronize")?;
        let host = &self.out_host.as_slice()[..n * size];
        for (f, out) in outputs.iter_mut().enumerate() {
            par_copy(&mut out[..size], &host[f * size..(f + 1) * size]);
        }
        Ok(())
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
