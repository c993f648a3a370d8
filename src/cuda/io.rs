//! Frames in and out of the engine: the frame slots (each loaded frame converted once to
//! float32), their colour sums, the small scratch vectors of a run, and the pinned and device
//! staging buffers with which frames are uploaded (double-buffered, on the copy stream) and the
//! interpolated frames downloaded.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, result, sys::CUevent_flags};

use super::arena::align_up;
use super::error::{CudaError, DriverContext, Result};
use super::kernels::Kernels;
use super::launch::{self, FrameParams};
use super::memory::{DeviceBuf, PinnedBuf};
use crate::backend::{FrameLayout, PixelFormat, SLOTS};
use crate::model::spec::SIZE_MULTIPLE;

/// The transfer buffers, frame slots and scratch of one configured layout.
pub(super) struct Io {
    pub slots: DeviceBuf,
    pub sums: DeviceBuf,
    /// f32 scratch: pool partials | SE mean | gate | window mean | window (i32 x 4) | slot
    /// partials.
    scratch: DeviceBuf,
    pub partial: u64,
    pub se_mean: u64,
    pub gate: u64,
    pub mean: u64,
    pub win: u64,
    pub slot_partial: u64,
    in_dev: [DeviceBuf; 2],
    in_host: [PinnedBuf; 2],
    in_done: [CudaEvent; 2],
    in_next: usize,
    loaded: CudaEvent,
    pub out_dev: DeviceBuf,
    out_host: PinnedBuf,
    win_host: PinnedBuf,
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
        let slots = DeviceBuf::new(ctx, SLOTS * npix * 16, "frame slots (cuMemAlloc)")?;
        let sums = DeviceBuf::new(ctx, SLOTS * 4 * 8, "slot sums (cuMemAlloc)")?;
        // SAFETY: sums holds SLOTS * 4 doubles; zero is a valid (empty) sum.
        unsafe { result::memset_d8_async(sums.ptr(), 0, sums.bytes(), copy.cu_stream()) }
            .during("cuMemsetD8Async")?;
        copy.synchronize().during("cuStreamSynchronize")?;
        let cm = cmax.max(4);
        let sizes = [
            4 * launch::POOL_BLOCKS * cm * 4,
            cm * 4,
            cm * 4,
            16,
            16,
            launch::SLOT_BLOCKS * 3 * 4,
        ];
        let mut offs = Vec::new();
        let mut total = 0;
        for s in sizes {
            offs.push(total);
            total += align_up(s);
        }
        let scratch = DeviceBuf::new(ctx, total, "scratch (cuMemAlloc)")?;
        let at = |i: usize| scratch.ptr() + offs[i] as u64;
        let ev = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
                .during("cuEventCreate")
        };
        Ok(Io {
            partial: at(0),
            se_mean: at(1),
            gate: at(2),
            mean: at(3),
            win: at(4),
            slot_partial: at(5),
            slots,
            sums,
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
            win_host: PinnedBuf::new(ctx, 16)?,
            scratch,
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

    fn slot_ptr(&self, slot: usize) -> u64 {
        self.slots.ptr() + (slot * self.npix * 16) as u64
    }

    fn sums_ptr(&self, slot: usize) -> u64 {
        self.sums.ptr() + (slot * 32) as u64
    }

    /// Queues the colour sums of `slot` (after its conversion) on `copy`.
    fn sum_slot(&self, copy: &CudaStream, k: &Kernels, slot: usize) -> Result<()> {
        launch::slot_sums(
            copy,
            k,
            self.slot_ptr(slot),
            self.npix,
            self.slot_partial,
            self.sums_ptr(slot),
        )
    }

    /// Uploads a frame (bytes as the layout says) into `slot` and converts it there, on the
    /// copy stream. Returns once the upload is queued.
    pub fn load_frame(
        &mut self,
        copy: &CudaStream,
        k: &Kernels,
        params: &FrameParams,
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
        // SAFETY: pinned source of `size` bytes, device staging of at least `size` bytes; the
        // pinned buffer is not touched again before in_done[i] completes.
        unsafe {
            result::memcpy_htod_async(
                self.in_dev[i].ptr(),
                &self.in_host[i].as_slice()[..size],
                copy.cu_stream(),
            )
        }
        .during("cuMemcpyHtoDAsync")?;
        launch::frame_to_slot(copy, k, self.in_dev[i].ptr(), params, self.slot_ptr(slot))?;
        self.sum_slot(copy, k, slot)?;
        self.in_done[i].record(copy).during("cuEventRecord")?;
        self.loaded.record(copy).during("cuEventRecord")?;
        Ok(())
    }

    /// Loads a frame given as planar float32 `[3, height, width]` into `slot` and waits for it.
    pub fn load_frame_f32(
        &self,
        ctx: &Arc<CudaContext>,
        copy: &CudaStream,
        k: &Kernels,
        params: &FrameParams,
        slot: usize,
        planar: &[f32],
    ) -> Result<()> {
        let (w, h) = (params.width as usize, params.height as usize);
        if planar.len() != 3 * w * h {
            return Err(CudaError::Layout(format!(
                "planar frame has {} values, expected 3 x {h} x {w}",
                planar.len()
            )));
        }
        let src = DeviceBuf::new(ctx, planar.len() * 4, "float frame (cuMemAlloc)")?;
        // SAFETY: src holds planar.len() floats; ordered before the kernel that reads it, and
        // the stream is synchronised below before `planar` or `src` go away.
        unsafe { result::memcpy_htod_async(src.ptr(), planar, copy.cu_stream()) }
            .during("cuMemcpyHtoDAsync")?;
        launch::f32_to_slot(copy, k, src.ptr(), params, self.slot_ptr(slot))?;
        self.sum_slot(copy, k, slot)?;
        self.loaded.record(copy).during("cuEventRecord")?;
        copy.synchronize().during("cuStreamSynchronize")?;
        Ok(())
    }

    /// A slot's contents, float32 `[ph, pw, 4]`, after the copy stream's work.
    pub fn read_slot(&self, copy: &CudaStream, slot: usize) -> Result<Vec<f32>> {
        copy.synchronize().during("cuStreamSynchronize")?;
        let n = self.npix * 4;
        let mut out = vec![0f32; n];
        // SAFETY: slot `slot` holds n floats; ordered after the copy stream's writes, and
        // synchronised before `out` is read.
        unsafe { result::memcpy_dtoh_async(&mut out, self.slot_ptr(slot), copy.cu_stream()) }
            .during("cuMemcpyDtoHAsync")?;
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
        self.win_host.as_mut_slice()[..16].copy_from_slice(&win);
        // SAFETY: 16 pinned bytes to the 16-byte window buffer.
        unsafe {
            result::memcpy_htod_async(
                self.win,
                &self.win_host.as_slice()[..16],
                stream.cu_stream(),
            )
        }
        .during("cuMemcpyHtoDAsync")?;
        stream.wait(&self.loaded).during("cuStreamWaitEvent")?;
        Ok(())
    }

    /// Device address of output frame `f`'s bytes in the output staging buffer.
    pub fn out_frame_ptr(&self, f: usize) -> u64 {
        self.out_dev.ptr() + (f * self.size) as u64
    }

    /// Downloads the output frames written on `stream` into `outputs` (checked by the caller:
    /// `n_out` buffers of at least a frame each) and waits for them.
    pub fn download(&mut self, stream: &CudaStream, outputs: &mut [&mut [u8]]) -> Result<()> {
        let (n, size) = (self.n_out, self.size);
        let host = &mut self.out_host.as_mut_slice()[..n * size];
        // SAFETY: pinned destination of n*size bytes; the stream is synchronised below before
        // the host reads it.
        unsafe { result::memcpy_dtoh_async(host, self.out_dev.ptr(), stream.cu_stream()) }
            .during("cuMemcpyDtoHAsync")?;
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

/// Kernel parameters of a frame layout, checked against its size (by the CPU reference's
/// check, so both backends accept the same layouts).
pub(super) fn frame_params(l: &FrameLayout) -> Result<FrameParams> {
    crate::backend::pixels::check_layout(l).map_err(|e| CudaError::Layout(e.to_string()))?;
    let (w, h) = (l.width, l.height);
    if w > 16384 || h > 16384 || l.strides.iter().any(|&s| s > i32::MAX as usize) {
        return Err(CudaError::Layout(format!(
            "frame {w}x{h} too large (at most 16384 per side)"
        )));
    }
    let format = match l.format {
        PixelFormat::Rgb => 0,
        PixelFormat::Rgba => 1,
        PixelFormat::Bgra => 2,
        PixelFormat::Rgbx => 3,
        PixelFormat::Bgrx => 4,
        PixelFormat::I420 => 5,
        PixelFormat::Nv12 => 6,
    };
    let m = SIZE_MULTIPLE;
    let mut off = [0i64; 3];
    let mut stride = [0i32; 3];
    for i in 0..l.format.planes() {
        off[i] = l.offsets[i] as i64;
        stride[i] = l.strides[i] as i32;
    }
    Ok(FrameParams {
        off,
        stride,
        format,
        width: w as i32,
        height: h as i32,
        pw: (w.div_ceil(m) * m) as i32,
        ph: (h.div_ceil(m) * m) as i32,
        yuv: l.yuv.coeffs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_checked() {
        let mut l = FrameLayout {
            format: PixelFormat::I420,
            width: 5,
            height: 3,
            offsets: vec![0, 15, 21],
            strides: vec![5, 3, 3],
            size: 27,
            yuv: crate::backend::YuvMatrix::BT709,
        };
        let p = frame_params(&l).expect("valid I420");
        assert_eq!((p.pw, p.ph), (8, 8));
        l.size = 26;
        assert!(frame_params(&l).is_err());
        l.size = 27;
        l.strides[1] = 2;
        assert!(frame_params(&l).is_err());
    }
}
