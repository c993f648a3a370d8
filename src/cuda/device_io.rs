//! Frames in GStreamer's CUDA memory (`memory:CUDAMemory`), read and written on the GPU with
//! no copy through the host: the same conversion kernels as the host path
//! ([`Engine::load_frame`], [`Engine::interpolate`]), given the device frame's own pitched
//! plane layout instead of the caps', so the bytes made are the same.
//!
//! Where the memory was allocated decides how it is reached (the driver tells, per address):
//! - in the engine's own context (the element opened the engine in the pipeline's
//!   `GstCudaContext`): the kernels read and write it directly;
//! - in another context on the same GPU: one device-to-device copy (`cuMemcpyPeerAsync`)
//!   into or out of a staging buffer;
//! - on another GPU: refused with an error; the element copies through the host instead and
//!   never hands such an address to a kernel.

use cudarc::driver::{CudaContext, sys};

use super::engine::Engine;
use super::error::{CudaError, DriverContext, Result};
use super::io::check_slot;
use super::launch;
use super::memory::DevView;
use super::params::FrameGeom;
use crate::backend::{DeviceFrame, FrameLayout};

/// How the engine reaches a frame's device memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reach {
    /// Allocated in the engine's context: kernels use it as it is.
    Direct,
    /// Allocated in this other context on the engine's GPU: copied.
    Peer(sys::CUcontext),
}

/// The layout `base` (the caps') with `f`'s planes and size.
fn device_layout(base: &FrameLayout, f: &DeviceFrame) -> Result<FrameLayout> {
    let planes = base.format.planes();
    if f.offsets.len() < planes || f.strides.len() < planes {
        return Err(CudaError::Layout(format!(
            "device frame has {} plane(s), {:?} needs {planes}",
            f.offsets.len().min(f.strides.len()),
            base.format
        )));
    }
    Ok(FrameLayout {
        offsets: f.offsets[..planes].to_vec(),
        strides: f.strides[..planes].to_vec(),
        size: f.size,
        ..base.clone()
    })
}

/// A pointer attribute of device address `ptr`.
fn attribute<T: Default>(ptr: u64, attr: sys::CUpointer_attribute) -> Result<T> {
    let mut v = T::default();
    // SAFETY: `v` is a value of the attribute's type (CUcontext or int, chosen by the callers
    // below) that the driver writes; `ptr` is only looked up, not dereferenced.
    unsafe { sys::cuPointerGetAttribute(&mut v as *mut T as *mut _, attr, ptr) }
        .result()
        .during("cuPointerGetAttribute")?;
    Ok(v)
}

/// How an engine in `ctx` on GPU `device_id` reaches `f`: an error for memory of another GPU
/// or an address the driver does not know.
pub(super) fn reach(ctx: &CudaContext, device_id: u32, f: &DeviceFrame) -> Result<Reach> {
    if f.ptr == 0 || f.size == 0 {
        return Err(CudaError::Layout("empty device frame".into()));
    }
    let ordinal: i32 = attribute(
        f.ptr,
        sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
    )?;
    if ordinal != device_id as i32 {
        return Err(CudaError::Layout(format!(
            "the frame is in memory of GPU {ordinal}, the engine runs on GPU {device_id}"
        )));
    }
    let c: sys::CUcontext = attribute_ctx(f.ptr)?;
    Ok(if c == ctx.cu_ctx() {
        Reach::Direct
    } else {
        Reach::Peer(c)
    })
}

impl Engine {
    /// How this engine reaches `f` ([`reach`]).
    fn reach(&self, f: &DeviceFrame) -> Result<Reach> {
        reach(&self.ctx, self.device_id, f)
    }

    /// Converts a frame in device memory (the configured format and size, `frame`'s own plane
    /// layout) into `slot`; returns once `frame` may be unmapped.
    pub fn load_frame_device(&mut self, slot: usize, frame: &DeviceFrame) -> Result<()> {
        check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let reach = self.reach(frame)?;
        let plan = self.plan.as_mut().ok_or_else(not_configured)?;
        let geom = FrameGeom::new(&device_layout(&plan.layout, frame)?)?;
        match reach {
            Reach::Direct => {
                // SAFETY: the driver placed `frame.ptr` in this engine's context (reach); the
                // caller keeps it mapped until this returns, after load_device's
                // synchronisation.
                let src = unsafe { DevView::external(frame.ptr, frame.size, frame) };
                plan.io.load_device(&self.copy, &self.k, &geom, slot, src)
            }
            Reach::Peer(from) => {
                plan.io.ensure_stage(&self.ctx, frame.size)?;
                let stage = plan.io.stage(frame.size)?;
                // SAFETY: `frame.size` bytes at `frame.ptr` in context `from` (on our GPU,
                // checked by reach) into the staging buffer of at least that size; the copy
                // stream is synchronised in load_device before the caller unmaps the frame.
                unsafe {
                    sys::cuMemcpyPeerAsync(
                        stage.device_ptr(),
                        self.ctx.cu_ctx(),
                        frame.ptr,
                        from,
                        frame.size,
                        self.copy.cu_stream(),
                    )
                }
                .result()
                .during("cuMemcpyPeerAsync")?;
                plan.io.load_device(&self.copy, &self.k, &geom, slot, stage)
            }
        }
    }

    /// Runs the network on `window` and writes the interpolated frames into `outputs` (device
    /// memory, each in its own plane layout); returns once they are written.
    ///
    /// One window at a time: unlike [`Engine::submit`] this does not use the double-buffered
    /// output staging of the host path (the frames are written straight into the caller's
    /// memory, which must stay mapped only until this returns), so it waits for its own window
    /// and is an error while host-path windows are submitted and not collected.
    pub fn interpolate_device(
        &mut self,
        window: [usize; 4],
        outputs: &[DeviceFrame],
    ) -> Result<()> {
        if self.in_flight() > 0 {
            return Err(CudaError::Layout(format!(
                "{} window(s) submitted and not collected: collect them before interpolating",
                self.in_flight()
            )));
        }
        self.next_window()?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let n = self.spec.n_out;
        if outputs.len() != n {
            return Err(CudaError::Layout(format!(
                "expected {n} output frames, got {}",
                outputs.len()
            )));
        }
        let reach = outputs
            .iter()
            .map(|f| self.reach(f))
            .collect::<Result<Vec<Reach>>>()?;
        let stage_bytes = outputs
            .iter()
            .zip(&reach)
            .filter(|(_, r)| **r != Reach::Direct)
            .map(|(f, _)| f.size)
            .max();
        if let Some(bytes) = stage_bytes {
            let ctx = self.ctx.clone();
            let plan = self.plan.as_mut().ok_or_else(not_configured)?;
            plan.io.ensure_stage(&ctx, bytes)?;
        }
        self.enqueue_network(window)?;
        let plan = self.plan.as_ref().ok_or_else(not_configured)?;
        for (i, (f, r)) in outputs.iter().zip(&reach).enumerate() {
            let geom = FrameGeom::new(&device_layout(&plan.layout, f)?)?;
            let mut net = self.net_out(plan)?;
            net.geom = &geom;
            match *r {
                Reach::Direct => {
                    // SAFETY: in this engine's context (reach), mapped for writing by the
                    // caller until this returns, after the synchronisation below.
                    let dst = unsafe { DevView::external(f.ptr, f.size, f) };
                    launch::out_frame(&self.stream, &self.k, &net, i, dst)?;
                }
                Reach::Peer(to) => {
                    let stage = plan.io.stage(f.size)?;
                    launch::out_frame(&self.stream, &self.k, &net, i, stage)?;
                    // SAFETY: `f.size` bytes of staging (at least that long) into the frame of
                    // that size in context `to` on our GPU, ordered after the kernel that wrote
                    // them on the same stream; the next frame's kernel reuses the staging only
                    // after this copy (same stream).
                    unsafe {
                        sys::cuMemcpyPeerAsync(
                            f.ptr,
                            to,
                            stage.device_ptr(),
                            self.ctx.cu_ctx(),
                            f.size,
                            self.stream.cu_stream(),
                        )
                    }
                    .result()
                    .during("cuMemcpyPeerAsync")?;
                }
            }
        }
        plan.io.mark_read(&self.stream, window)?;
        self.stream.synchronize().during("cuStreamSynchronize")
    }
}

/// The context a device address was allocated in.
fn attribute_ctx(ptr: u64) -> Result<sys::CUcontext> {
    let mut v: sys::CUcontext = std::ptr::null_mut();
    // SAFETY: `v` is a CUcontext the driver writes; `ptr` is only looked up.
    unsafe {
        sys::cuPointerGetAttribute(
            &mut v as *mut sys::CUcontext as *mut _,
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_CONTEXT,
            ptr,
        )
    }
    .result()
    .during("cuPointerGetAttribute")?;
    Ok(v)
}

fn not_configured() -> CudaError {
    CudaError::Layout("configure() must be called before frames are loaded".into())
}

/// Output frames of a window, one byte vector each.
pub type Frames = Vec<Vec<u8>>;

/// The rows of each plane of `l` (a caps layout: planes one after another).
fn plane_rows(l: &FrameLayout) -> Vec<usize> {
    let n = l.format.planes();
    (0..n)
        .map(|i| {
            let end = if i + 1 < n { l.offsets[i + 1] } else { l.size };
            (end - l.offsets[i]) / l.strides[i].max(1)
        })
        .collect()
}

impl Engine {
    /// Test entry point: the window `frames` (bytes in the configured layout) run on this one
    /// engine twice, through host memory ([`Engine::load_frame`], [`Engine::interpolate`]) and
    /// through device frames whose rows are `pad` bytes longer than the layout's
    /// ([`Engine::load_frame_device`], [`Engine::interpolate_device`]); returns the output
    /// frames of both, the device ones in the configured layout.
    pub fn device_parity(&mut self, frames: [&[u8]; 4], pad: usize) -> Result<(Frames, Frames)> {
        use super::memory::{self, DeviceBuf, Dtype};
        let l = self
            .plan
            .as_ref()
            .ok_or_else(not_configured)?
            .layout
            .clone();
        let rows = plane_rows(&l);
        let strides: Vec<usize> = l.strides.iter().map(|s| s + pad).collect();
        let mut offsets = Vec::with_capacity(rows.len());
        let mut size = 0;
        for (r, s) in rows.iter().zip(&strides) {
            offsets.push(size);
            size += r * s;
        }
        // Caps layout <-> pitched layout, on the host.
        let pitch = |src: &[u8]| {
            let mut out = vec![0u8; size];
            for p in 0..rows.len() {
                for r in 0..rows[p] {
                    let (a, b) = (l.offsets[p] + r * l.strides[p], offsets[p] + r * strides[p]);
                    out[b..b + l.strides[p]].copy_from_slice(&src[a..a + l.strides[p]]);
                }
            }
            out
        };
        let unpitch = |src: &[u8]| {
            let mut out = vec![0u8; l.size];
            for p in 0..rows.len() {
                for r in 0..rows[p] {
                    let (a, b) = (l.offsets[p] + r * l.strides[p], offsets[p] + r * strides[p]);
                    out[a..a + l.strides[p]].copy_from_slice(&src[b..b + l.strides[p]]);
                }
            }
            out
        };
        let context = self.ctx.cu_ctx() as usize;
        let frame_of = |b: &DeviceBuf| DeviceFrame {
            context,
            ptr: b.view(Dtype::U8).device_ptr(),
            size,
            offsets: offsets.clone(),
            strides: strides.clone(),
        };
        let n = self.spec.n_out;
        let mut ins = Vec::with_capacity(4);
        for f in frames {
            let b = DeviceBuf::new(&self.ctx, size, "test frame (cuMemAlloc)")?;
            let host = pitch(f);
            // SAFETY: synchronised below, before `host` goes away.
            unsafe { memory::copy_to_device(b.view(Dtype::U8), &host, &self.stream) }?;
            self.stream.synchronize().during("cuStreamSynchronize")?;
            ins.push(b);
        }
        let outs = (0..n)
            .map(|_| {
                let b = DeviceBuf::new(&self.ctx, size, "test frame (cuMemAlloc)")?;
                memory::memset(b.view(Dtype::U8), 0, &self.stream)?;
                Ok(b)
            })
            .collect::<Result<Vec<_>>>()?;
        for (s, b) in ins.iter().enumerate() {
            self.load_frame_device(s, &frame_of(b))?;
        }
        let targets: Vec<DeviceFrame> = outs.iter().map(frame_of).collect();
        self.interpolate_device([0, 1, 2, 3], &targets)?;
        let mut dev = Vec::with_capacity(n);
        for b in &outs {
            let mut host = vec![0u8; size];
            // SAFETY: synchronised below before `host` is read.
            unsafe { memory::copy_to_host(&mut host, b.view(Dtype::U8), &self.stream) }?;
            self.stream.synchronize().during("cuStreamSynchronize")?;
            dev.push(unpitch(&host));
        }
        for (s, f) in frames.iter().enumerate() {
            self.load_frame(s, f)?;
        }
        let mut host = vec![vec![0u8; l.size]; n];
        let mut slices: Vec<&mut [u8]> = host.iter_mut().map(|v| v.as_mut_slice()).collect();
        self.interpolate([0, 1, 2, 3], &mut slices)?;
        Ok((host, dev))
    }
}
