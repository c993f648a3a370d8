//! Test, benchmark and diagnostic entry points of the [`Engine`]: exact float frames in and out
//! (the parity tests), slot contents (the pixel tests), timing of the network alone (the
//! benchmark), reports of memory and algorithm choices, and the per-convolution self-check
//! (the `verify` option). None of this is on the element's path.

use std::sync::Arc;

use std::mem::size_of;

use cudarc::driver::{CudaContext, sys::CUevent_flags};

use super::cudnn::ConvChoice;
use super::engine::{Engine, MemoryReport, Plan};
use super::error::{DriverContext, Result};
use super::io::check_slot;
use super::launch::{self, CheckConv};
use super::memory::{self, DevView, DeviceBuf, Dtype};

impl Engine {
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// Bytes held on the GPU, by use (weights only before the first configure).
    pub fn memory(&self) -> MemoryReport {
        self.plan.as_ref().map(|p| p.mem).unwrap_or(MemoryReport {
            weights: self.wbuf.bytes(),
            ..Default::default()
        })
    }

    /// The algorithm chosen for each convolution of the configured plan.
    pub fn conv_choices(&self) -> Vec<ConvChoice> {
        self.plan
            .as_ref()
            .map(|p| p.choices.clone())
            .unwrap_or_default()
    }

    /// Padded size of the configured layout.
    pub fn padded_size(&self) -> Option<(usize, usize)> {
        self.plan.as_ref().map(|p| (p.hp, p.wp))
    }

    /// Loads a frame given as planar float32 `[3, height, width]` (tests and tools).
    pub fn load_frame_f32(&mut self, slot: usize, planar: &[f32]) -> Result<()> {
        check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let plan = self.plan()?;
        plan.io
            .load_frame_f32(&self.ctx, &self.copy, &self.k, &plan.geom, slot, planar)
    }

    /// A slot's contents, float32 `[ph, pw, 4]` (tests).
    pub fn read_slot(&mut self, slot: usize) -> Result<Vec<f32>> {
        check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let plan = self.plan()?;
        plan.io.read_slot(&self.copy, slot)
    }

    /// The interpolated frames as planar float32 `[n, 3, height, width]`, not clamped.
    pub fn interpolate_f32(&mut self, window: [usize; 4]) -> Result<Vec<f32>> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        self.enqueue_network(window)?;
        let plan = self.plan()?;
        let n = self.spec.n_out;
        let count = n * 3 * plan.layout.width * plan.layout.height;
        let dst = DeviceBuf::new(
            &self.ctx,
            count * size_of::<f32>(),
            "float output (cuMemAlloc)",
        )?;
        let net = self.net_out(plan)?;
        launch::out_f32(&self.stream, &self.k, &net, dst.view(Dtype::F32))?;
        let mut out = vec![0f32; count];
        // SAFETY: written on this stream; synchronised before `out` is read and `dst` dropped.
        unsafe { memory::copy_to_host(&mut out, dst.view(Dtype::F32), &self.stream) }?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        Ok(out)
    }

    /// Times the network alone (window mean, input assembly, all layers, output conversion of
    /// every frame into device memory) `runs` times with CUDA events, after the caller's
    /// warm-up. Milliseconds per run.
    pub fn time_network(&mut self, window: [usize; 4], runs: usize) -> Result<Vec<f32>> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let start = self
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .during("cuEventCreate")?;
        let end = self
            .ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .during("cuEventCreate")?;
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            start.record(&self.stream).during("cuEventRecord")?;
            self.enqueue_network(window)?;
            self.enqueue_outputs()?;
            end.record(&self.stream).during("cuEventRecord")?;
            times.push(start.elapsed_ms(&end).during("cuEventElapsedTime")?);
        }
        Ok(times)
    }

    /// The `verify` option: compares conv `i`'s output with a direct convolution and prints the
    /// largest difference (forward convolutions only).
    pub(super) fn verify_conv(
        &self,
        plan: &Plan,
        i: usize,
        x: DevView<'_>,
        y: DevView<'_>,
    ) -> Result<()> {
        let cw = &plan.conv_w[i];
        if cw.shape.transposed {
            return Ok(());
        }
        let (xd, yd) = plan.conv_dims[i];
        let n: usize = yd.iter().product();
        let refbuf = DeviceBuf::new(&self.ctx, n * size_of::<f32>(), "verify")?;
        let out = DeviceBuf::new(&self.ctx, 4 * size_of::<u32>(), "verify")?;
        let result = out.view(Dtype::U32).sub(0, 4)?;
        memory::memset(result, 0, &self.stream)?;
        let a = CheckConv {
            x,
            w: self.weights(cw.w)?,
            y,
            refbuf: refbuf.view(Dtype::F32),
            out: result,
            x_dims: xd,
            shape: &cw.shape,
            y_dims: yd,
        };
        launch::check_conv(&self.stream, &self.k, &a)?;
        let mut r = [0u32; 4];
        // SAFETY: synchronised below before `r` is read.
        unsafe { memory::copy_to_host(&mut r, result, &self.stream) }?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        let (d, m) = (f32::from_bits(r[0]), f32::from_bits(r[1]));
        let [_, k, to, ho, wo] = yd;
        let at = r[2] as usize;
        eprintln!(
            "verify conv {i} {xd:?} -> {yd:?} taps {:?} stride {:?} pad {:?}: max diff {d:.3e} (max |ref| {m:.3e}) at t {} y {} x {} k {}{}",
            cw.shape.taps,
            cw.shape.stride,
            cw.shape.pad,
            at / (k * wo * ho) % to.max(1),
            at / (k * wo) % ho,
            at / k % wo,
            at % k,
            if d > 1e-3 * m.max(1.0) {
                "  <-- MISMATCH"
            } else {
                ""
            }
        );
        Ok(())
    }
}
