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
use super::graph::Op;
use super::io::check_slot;
use super::launch::{self, CheckConv};
use super::memory::{self, DevView, DeviceBuf, Dtype};

/// One step of the network as the profiler timed it.
#[derive(Clone, Debug)]
pub struct StepTime {
    /// What the step is: a layer name (`layer1.0.conv1`), or the pass and the layer it
    /// follows (`epilogue after layer1.0.conv2`).
    pub label: String,
    /// Median milliseconds over the profiled runs (launches one by one, an event after each).
    pub ms: f32,
    /// Floating-point operations (convolutions: 2 x multiply-adds, padding taps included).
    pub flop: f64,
    /// The fewest bytes the step must move: its inputs read and its outputs written once.
    pub bytes: f64,
}

/// Layer names of the released architecture's convolutions, in the plan's order.
fn conv_names(n: usize) -> Vec<String> {
    let mut v = vec!["stem".to_string()];
    for b in 0..2 {
        for c in 1..=2 {
            v.push(format!("layer1.{b}.conv{c}"));
        }
    }
    for l in 2..=4 {
        for n in ["0.conv1", "0.conv2", "0.ds", "1.conv1", "1.conv2"] {
            v.push(format!("layer{l}.{n}"));
        }
    }
    for n in [
        "d0",
        "d1 (phases)",
        "d2 (phases)",
        "d3",
        "d4 (phases)",
        "fuse",
        "outconv",
    ] {
        v.push(n.to_string());
    }
    if v.len() == n {
        v
    } else {
        (0..n).map(|i| format!("conv {i}")).collect()
    }
}

/// Labels, FLOP and bytes of the plan's steps.
fn describe(plan: &Plan) -> Vec<(String, f64, f64)> {
    let names = conv_names(plan.conv_w.len());
    let esz = plan.act_bytes() as f64;
    let mut last = "input";
    plan.ops
        .iter()
        .map(|op| match *op {
            Op::Conv { i, .. } => {
                let (xd, yd) = plan.conv_dims[i];
                let s = plan.conv_w[i].shape;
                let (xn, yn) = (
                    xd.iter().product::<usize>() as f64,
                    yd.iter().product::<usize>() as f64,
                );
                let taps = (s.taps.iter().product::<usize>() * xd[1]) as f64;
                let flop = if s.transposed {
                    2.0 * xn * taps / xd[1] as f64 * s.c as f64
                } else {
                    2.0 * yn * taps
                };
                last = &names[i];
                let w = (s.k * s.c) as f64 * s.taps.iter().product::<usize>() as f64;
                (names[i].clone(), flop, (xn + yn + w) * esz)
            }
            Op::Gate { rows, c, .. } => (
                format!("SE pool after {last}"),
                0.0,
                (rows * c) as f64 * esz,
            ),
            Op::Epi(e) => {
                let n = (e.rows * e.c) as f64;
                let streams = 2 + usize::from(e.resid.is_some()) + usize::from(e.out2.is_some());
                (
                    format!("epilogue after {last}"),
                    0.0,
                    n * streams as f64 * esz,
                )
            }
            Op::GateWeights { n, .. } => (
                format!("SE gate of {last} into the next filter"),
                0.0,
                2.0 * n as f64 * esz,
            ),
            Op::Pad { h, w, c, .. } => (
                format!("pad after {last}"),
                0.0,
                ((h * w + (h + 6) * (w + 6)) * c) as f64 * esz,
            ),
        })
        .collect()
}

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
            self.enqueue_outputs(0)?;
            end.record(&self.stream).during("cuEventRecord")?;
            times.push(start.elapsed_ms(&end).during("cuEventElapsedTime")?);
        }
        Ok(times)
    }

    /// Times every step of the network on `window`, launch by launch with an event after
    /// each (no captured graph), `runs` times after the caller's warm-up: the median per step,
    /// the input assembly (window mean and input) first. Steps fused into the conv before
    /// them are left out.
    pub fn profile(&mut self, window: [usize; 4], runs: usize) -> Result<Vec<StepTime>> {
        for s in window {
            check_slot(s)?;
        }
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let n_ops = self.plan()?.ops.len();
        let ev = || {
            self.ctx
                .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .during("cuEventCreate")
        };
        let start = ev()?;
        // Index 0: after the input assembly; i + 1: after step i.
        let events = (0..=n_ops).map(|_| ev()).collect::<Result<Vec<_>>>()?;
        let mut times: Vec<Vec<f32>> = vec![Vec::new(); n_ops + 1];
        for _ in 0..runs.max(1) {
            let plan = self.plan.as_mut().ok_or_else(|| {
                super::error::CudaError::Layout("configure() must be called first".into())
            })?;
            plan.io.set_window(&self.stream, window)?;
            let plan = self.plan()?;
            let mut recorded = vec![false; n_ops + 1];
            start.record(&self.stream).during("cuEventRecord")?;
            self.enqueue_body(plan, window, &mut |i| {
                let at = i.map_or(0, |i| i + 1);
                recorded[at] = true;
                events[at].record(&self.stream).during("cuEventRecord")
            })?;
            self.stream.synchronize().during("cuStreamSynchronize")?;
            let mut prev = &start;
            for (at, e) in events.iter().enumerate() {
                if recorded[at] {
                    times[at].push(prev.elapsed_ms(e).during("cuEventElapsedTime")?);
                    prev = e;
                }
            }
        }
        let plan = self.plan()?;
        let mut steps = vec![StepTime {
            label: "input (window mean, assembly)".into(),
            ms: median(&mut times[0]),
            flop: 0.0,
            bytes: 0.0,
        }];
        for (i, (label, flop, bytes)) in describe(plan).into_iter().enumerate() {
            if plan.runs(i) {
                steps.push(StepTime {
                    label,
                    ms: median(&mut times[i + 1]),
                    flop,
                    bytes,
                });
            }
        }
        Ok(steps)
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

fn median(v: &mut [f32]) -> f32 {
    if v.is_empty() {
        return f32::NAN;
    }
    v.sort_by(f32::total_cmp);
    v[v.len() / 2]
}
