//! Scene-cut detection's box sums on the GPU ([`crate::backend::SceneSums`]): the first plane
//! of a frame, in device memory (GStreamer's CUDA memory) or uploaded from the host, reduced by
//! kernels/scene.cu to the exact integer sums of [`crate::scene::Plane::box_sums`].
//!
//! A [`SceneReducer`] shares its engine's context and compiled kernels but has a stream and
//! buffers of its own, so the element's streaming thread uses it while the engine runs windows
//! on the network thread. It keeps the context's owner (a shared context) alive itself.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, sys};

use super::device_io::{Reach, reach};
use super::engine::{Engine, Keep};
use super::error::{CudaError, DriverContext, Result};
use super::kernels::Kernels;
use super::launch;
use super::memory::{self, DevView, DeviceBuf, Dtype};
use super::params::{SCENE_GRID_H, SCENE_GRID_W, SceneParams};
use crate::backend::{BackendError, DeviceFrame, SceneSums};
use crate::scene::Plane;

/// Box sums on one GPU, from any thread (one call at a time).
pub struct SceneReducer {
    /// Host bytes uploaded, or a frame of another context copied, grown as needed.
    stage: Option<DeviceBuf>,
    /// One `u64` per box of the largest grid.
    sums: DeviceBuf,
    stream: Arc<CudaStream>,
    k: Arc<Kernels>,
    ctx: Arc<CudaContext>,
    device_id: u32,
    /// Dropped last: the owner of a shared context.
    _keep: Option<Keep>,
}

impl Engine {
    /// A reducer in this engine's context, with its own stream.
    pub fn scene_reducer(&self) -> Result<SceneReducer> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let stream = self.ctx.new_stream().during("cuStreamCreate")?;
        let sums = DeviceBuf::new(
            &self.ctx,
            SCENE_GRID_W * SCENE_GRID_H * Dtype::U64.bytes(),
            "scene box sums (cuMemAlloc)",
        )?;
        Ok(SceneReducer {
            stage: None,
            sums,
            stream,
            k: self.k.clone(),
            ctx: self.ctx.clone(),
            device_id: self.device_id,
            _keep: self.keep.clone(),
        })
    }
}

/// The calling thread's current CUDA context, made current again on drop: the reducer runs on
/// the element's streaming thread, where nvcodec's elements may run too, and leaves it as it
/// found it.
struct KeepCurrent(sys::CUcontext);

impl KeepCurrent {
    fn save() -> Result<KeepCurrent> {
        let mut c: sys::CUcontext = std::ptr::null_mut();
        // SAFETY: the driver writes the current context (or null) into `c`.
        unsafe { sys::cuCtxGetCurrent(&mut c) }
            .result()
            .during("cuCtxGetCurrent")?;
        Ok(KeepCurrent(c))
    }
}

impl Drop for KeepCurrent {
    fn drop(&mut self) {
        // SAFETY: a context that was current on this thread (or null, none), still alive: the
        // caller's; an error leaves ours current, which nothing relies on.
        let _ = unsafe { sys::cuCtxSetCurrent(self.0) };
    }
}

impl SceneReducer {
    /// A staging buffer of at least `bytes`.
    fn stage(&mut self, bytes: usize) -> Result<DevView<'_>> {
        if self.stage.as_ref().is_none_or(|s| s.bytes() < bytes) {
            // The old one is no longer used: every call synchronises before it returns.
            self.stage = None;
            self.stage = Some(DeviceBuf::new(
                &self.ctx,
                bytes,
                "scene staging (cuMemAlloc)",
            )?);
        }
        let stage = self.stage.as_ref().ok_or_else(|| {
            CudaError::Internal("scene staging buffer missing after allocation".into())
        })?;
        stage.slice(0, bytes, Dtype::U8)
    }

    /// Runs the kernel on `src` (`size` bytes, the plane at `off`) and downloads the sums.
    fn run(&self, src: DevView<'_>, size: usize, plane: &Plane, off: usize) -> Result<Vec<u64>> {
        let p = SceneParams::new(plane, off, size)?;
        let (gw, gh) = p.grid();
        let sums = self
            .sums
            .slice(0, gw * gh * Dtype::U64.bytes(), Dtype::U64)?;
        launch::scene_sums(&self.stream, &self.k, src, size, &p, sums)?;
        let mut host = vec![0u64; gw * gh];
        // SAFETY: synchronised below, before `host` is read or dropped.
        unsafe { memory::copy_to_host(&mut host, sums, &self.stream) }?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        Ok(host)
    }

    /// The box sums of `plane` whose first row starts `bytes` (host memory).
    pub fn host_sums(&mut self, plane: &Plane, bytes: &[u8]) -> Result<Vec<u64>> {
        plane
            .check(bytes.len())
            .map_err(|e| CudaError::Layout(e.to_string()))?;
        let span = plane
            .span()
            .ok_or_else(|| CudaError::Layout("plane size overflows".into()))?;
        let _current = KeepCurrent::save()?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let stream = self.stream.clone();
        let stage = self.stage(span)?;
        // SAFETY: `bytes` is borrowed for this whole call, and the stream is synchronised (in
        // run, or below on an error) before it returns.
        let copied = unsafe { memory::copy_to_device(stage, &bytes[..span], &stream) };
        if let Err(e) = copied {
            let _ = stream.synchronize();
            return Err(e);
        }
        let stage = self.stage.as_ref().ok_or_else(|| {
            CudaError::Internal("scene staging buffer missing after the upload".into())
        })?;
        let result = self.run(stage.view(Dtype::U8), span, plane, 0);
        if result.is_err() {
            let _ = stream.synchronize();
        }
        result
    }

    /// The box sums of the first plane of `frame` (device memory of this GPU), `plane` its
    /// format, size and first stride. Returns once `frame` may be unmapped.
    pub fn device_sums(&mut self, plane: &Plane, frame: &DeviceFrame) -> Result<Vec<u64>> {
        let (Some(&off), Some(&stride)) = (frame.offsets.first(), frame.strides.first()) else {
            return Err(CudaError::Layout("device frame without planes".into()));
        };
        if stride != plane.stride {
            return Err(CudaError::Layout(format!(
                "device frame stride {stride}, the plane says {}",
                plane.stride
            )));
        }
        let _current = KeepCurrent::save()?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let result = match reach(&self.ctx, self.device_id, frame)? {
            Reach::Direct => {
                // SAFETY: the driver placed `frame.ptr` in this context (reach); the caller
                // keeps it mapped until this returns, after run's synchronisation.
                let src = unsafe { DevView::external(frame.ptr, frame.size, frame) };
                self.run(src, frame.size, plane, off)
            }
            Reach::Peer(from) => {
                // Only the plane's bytes: checked against the frame before copying.
                SceneParams::new(plane, off, frame.size)?;
                let span = plane
                    .span()
                    .ok_or_else(|| CudaError::Layout("plane size overflows".into()))?;
                let (ctx, stream) = (self.ctx.cu_ctx(), self.stream.cu_stream());
                let stage = self.stage(span)?.device_ptr();
                // SAFETY: `span` bytes from `off` lie in the frame (checked above), in context
                // `from` on our GPU (reach), into the staging buffer of at least `span` bytes;
                // the stream is synchronised (in run, or below) before the caller unmaps.
                unsafe {
                    sys::cuMemcpyPeerAsync(stage, ctx, frame.ptr + off as u64, from, span, stream)
                }
                .result()
                .during("cuMemcpyPeerAsync")?;
                let stage = self.stage.as_ref().ok_or_else(|| {
                    CudaError::Internal("scene staging buffer missing after the copy".into())
                })?;
                self.run(stage.view(Dtype::U8), span, plane, 0)
            }
        };
        if result.is_err() {
            let _ = self.stream.synchronize();
        }
        result
    }
}

impl SceneReducer {
    /// Test entry point: `bytes` copied into a device allocation of this context at byte
    /// `off` (a frame in device memory whose first plane starts there), then
    /// [`SceneReducer::device_sums`] on it `repeat` times (at least once): the last sums, and
    /// the mean seconds per call (the upload not counted).
    pub fn device_sums_at(
        &mut self,
        plane: &Plane,
        bytes: &[u8],
        off: usize,
        repeat: usize,
    ) -> Result<(Vec<u64>, f64)> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let size = off + bytes.len();
        let buf = DeviceBuf::new(&self.ctx, size, "test frame (cuMemAlloc)")?;
        let mut host = vec![0u8; off];
        host.extend_from_slice(bytes);
        // SAFETY: synchronised below, before `host` goes away.
        unsafe { memory::copy_to_device(buf.view(Dtype::U8), &host, &self.stream) }?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        let frame = DeviceFrame {
            context: self.ctx.cu_ctx() as usize,
            ptr: buf.view(Dtype::U8).device_ptr(),
            size,
            offsets: vec![off],
            strides: vec![plane.stride],
        };
        let n = repeat.max(1);
        let t = std::time::Instant::now();
        let mut sums = Vec::new();
        for _ in 0..n {
            sums = self.device_sums(plane, &frame)?;
        }
        Ok((sums, t.elapsed().as_secs_f64() / n as f64))
    }
}

impl SceneSums for SceneReducer {
    fn name(&self) -> String {
        format!("cuda:{}", self.device_id)
    }

    fn host(&mut self, plane: &Plane, bytes: &[u8]) -> std::result::Result<Vec<u64>, BackendError> {
        Ok(self.host_sums(plane, bytes)?)
    }

    fn device(
        &mut self,
        plane: &Plane,
        frame: &DeviceFrame,
    ) -> std::result::Result<Vec<u64>, BackendError> {
        Ok(self.device_sums(plane, frame)?)
    }
}

impl Drop for SceneReducer {
    fn drop(&mut self) {
        // Nothing is queued between calls; wait anyway before the buffers are freed.
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
    }
}
