//! The FLAVR network on one GPU: weights uploaded once at open; at configure, the whole
//! forward pass planned as a list of steps over arena buffers (allocated once, reused by
//! liveness; see [`super::graph`]), cuDNN algorithms chosen per convolution shape; per window,
//! a fixed sequence of launches on one stream, no allocation.
//!
//! The network input is made per window from the frame slots (one per loaded frame, converted
//! once; see [`super::io`]). Test and diagnostic entry points are in [`super::diag`].

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, result};

use super::arena::{self, align_up};
use super::cudnn::{self, AlgoCache, ConvChoice, Dnn, Search};
use super::error::{CudaError, DriverContext, Result};
use super::graph::{Op, build_graph, lifetimes};
use super::io::{Io, check_slot, frame_params};
use super::kernels::Kernels;
use super::launch::{self, EpiParams, FrameParams};
use super::memory::DeviceBuf;
use super::options::EngineOptions;
use super::weights::{ConvW, NetWeights, elem_bytes, vec_elems};
use crate::backend::{FrameLayout, Precision};
use crate::model::Flavr;

/// Bytes the engine holds on the GPU, by use.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryReport {
    pub weights: usize,
    /// Activations (one arena shared by liveness).
    pub arena: usize,
    /// cuDNN workspace.
    pub workspace: usize,
    /// Frame slots, transfer buffers, small scratch.
    pub io: usize,
    /// Sum of the activation buffers without reuse (what the arena saves against).
    pub unshared: usize,
}

impl MemoryReport {
    pub fn total(&self) -> usize {
        self.weights + self.arena + self.workspace + self.io
    }
}

/// Everything made for one frame layout at configure.
pub(super) struct Plan {
    pub layout: FrameLayout,
    pub hp: usize,
    pub wp: usize,
    pub params: FrameParams,
    pub ops: Vec<Op>,
    pub convs: Vec<cudnn::Conv>,
    pub conv_w: Vec<ConvW>,
    /// Input and output dims of each conv (for the `verify` option).
    pub conv_dims: Vec<([usize; 5], [usize; 5])>,
    pub buf_ptr: Vec<u64>,
    pub xin: u64,
    pub y: u64,
    pub ws: Option<DeviceBuf>,
    pub io: Io,
    pub mem: MemoryReport,
    pub choices: Vec<ConvChoice>,
    /// Last: freed after everything that points into it.
    _arena: DeviceBuf,
}

/// The CUDA engine for one device, precision and model.
///
/// Fields drop in declaration order: the plan (cuDNN descriptors, buffers, events) and the
/// cuDNN handle first, then the kernels and weights, then the streams the handle was bound to,
/// then the context.
pub struct Engine {
    pub(super) plan: Option<Plan>,
    pub(super) dnn: Dnn,
    pub(super) k: Kernels,
    pub(super) wbuf: DeviceBuf,
    pub(super) net: NetWeights,
    pub(super) spec: crate::model::ModelSpec,
    pub(super) precision: Precision,
    pub(super) device_id: u32,
    found: AlgoCache,
    opts: EngineOptions,
    pub(super) stream: Arc<CudaStream>,
    pub(super) copy: Arc<CudaStream>,
    pub(super) ctx: Arc<CudaContext>,
}

/// Opens a context on `device_id`, checking each library first so that a missing one is named.
fn context(device_id: u32) -> Result<Arc<CudaContext>> {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    result::init().map_err(|e| CudaError::Device {
        id: device_id,
        cause: format!("cuInit: {}", super::error::driver_text(&e)),
    })?;
    let count = CudaContext::device_count().map_err(|e| CudaError::Device {
        id: device_id,
        cause: super::error::driver_text(&e),
    })?;
    if device_id as i64 >= count as i64 {
        return Err(CudaError::NoSuchDevice {
            id: device_id,
            count,
        });
    }
    CudaContext::new(device_id as usize).map_err(|e| CudaError::Device {
        id: device_id,
        cause: super::error::driver_text(&e),
    })
}

impl Engine {
    /// Opens the engine on GPU `device_id`: checks the libraries and the device, compiles the
    /// kernels and uploads the weights.
    pub fn open(
        model: &Flavr,
        device_id: u32,
        precision: Precision,
        options: EngineOptions,
    ) -> Result<Engine> {
        let ctx = context(device_id)?;
        cudnn::version()?;
        let (major, minor) = ctx.compute_capability().during("cuDeviceGetAttribute")?;
        if major < 7 {
            return Err(CudaError::Device {
                id: device_id,
                cause: format!("compute capability {major}.{minor}; at least 7.0 is needed"),
            });
        }
        if precision == Precision::Bf16 && major < 8 {
            return Err(CudaError::Device {
                id: device_id,
                cause: format!(
                    "bfloat16 needs compute capability 8.0, this GPU has {major}.{minor}"
                ),
            });
        }
        // We synchronise our own buffers; cudarc's per-allocation events are not needed.
        // SAFETY: no cudarc CudaSlice is shared between streams by this engine.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().during("cuStreamCreate")?;
        let copy = ctx.new_stream().during("cuStreamCreate")?;
        let k = Kernels::load(&ctx, precision)?;
        let dnn = Dnn::new(&stream)?;
        let mut net = NetWeights::pack(model, precision);
        let wbuf = DeviceBuf::new(&ctx, net.bytes.len(), "weights (cuMemAlloc)")?;
        // Our streams do not synchronise with the legacy default stream, and a copy from
        // pageable memory may return before its DMA is done: every copy and memset is ordered
        // on one of our streams, then waited for.
        // SAFETY: wbuf holds net.bytes.len() bytes; the stream is synchronised before the host
        // buffer is dropped.
        unsafe { result::memcpy_htod_async(wbuf.ptr(), &net.bytes, stream.cu_stream()) }
            .during("cuMemcpyHtoDAsync")?;
        stream.synchronize().during("cuStreamSynchronize")?;
        net.bytes = Vec::new();
        Ok(Engine {
            plan: None,
            dnn,
            k,
            wbuf,
            net,
            spec: model.spec.clone(),
            precision,
            device_id,
            found: AlgoCache::default(),
            opts: options,
            stream,
            copy,
            ctx,
        })
    }

    pub fn name(&self) -> String {
        let p = match self.precision {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
            Precision::Bf16 => "bf16",
        };
        format!("cuda:{} {p}", self.device_id)
    }

    pub fn n_outputs(&self) -> usize {
        self.spec.n_out
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    pub(super) fn w(&self, off: usize) -> u64 {
        self.wbuf.ptr() + off as u64
    }

    /// Plans buffers and algorithms for frames of `layout`.
    pub fn configure(&mut self, layout: &FrameLayout) -> Result<()> {
        let params = frame_params(layout)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        self.copy.synchronize().during("cuStreamSynchronize")?;
        // Release the old plan before allocating the new one.
        self.plan = None;
        let (hp, wp) = (params.ph as usize, params.pw as usize);
        let g = build_graph(&self.net, &self.spec, hp, wp, self.opts.convt_cudnn);
        let lts = lifetimes(&g);
        let mut arena_plan = arena::plan_arena(&lts);
        if !self.opts.arena_reuse {
            // Diagnosis: every buffer its own bytes.
            let mut at = 0;
            for (o, l) in arena_plan.offsets.iter_mut().zip(&lts) {
                *o = at;
                at += align_up(l.bytes);
            }
            arena_plan.size = at;
        }
        let arena = DeviceBuf::new(&self.ctx, arena_plan.size, "activation arena (cuMemAlloc)")?;
        // Defined, finite contents for the algorithm search (0x3C3C: about 1.06 in f16).
        // SAFETY: the arena holds arena.bytes() bytes.
        unsafe {
            result::memset_d8_async(arena.ptr(), 0x3c, arena.bytes(), self.stream.cu_stream())
        }
        .during("cuMemsetD8Async")?;
        let buf_ptr: Vec<u64> = arena_plan
            .offsets
            .iter()
            .map(|&o| arena.ptr() + o as u64)
            .collect();
        let dt = cudnn::data_type(self.precision);
        let mut convs = Vec::with_capacity(g.convs.len());
        for c in &g.convs {
            let s = c.w.shape;
            convs.push(cudnn::Conv::new(
                dt,
                s.transposed,
                c.x_dims,
                s.filter_dims(),
                c.y_dims,
                s.pad,
                s.stride,
            )?);
        }
        // Algorithm search, once per distinct shape (cached across configures).
        let mut search = Search::new(
            &self.ctx,
            &self.dnn,
            self.precision,
            &mut self.found,
            self.opts.workspace_cap,
            self.opts.all_algos,
        );
        let mut choices = Vec::new();
        for op in &g.ops {
            let Op::Conv { i, x, y, y_off } = *op else {
                continue;
            };
            let step = &g.convs[i];
            let key = cudnn::shape_key(self.precision, step.x_dims, step.y_dims, &step.w.shape);
            let (xp, wp_, yp) = (
                buf_ptr[x],
                self.wbuf.ptr() + step.w.w as u64,
                buf_ptr[y] + y_off as u64,
            );
            choices.push(search.choose(key, &mut convs[i], xp, wp_, yp)?);
        }
        drop(search);
        let ws_bytes = choices
            .iter()
            .map(|c| c.chosen.workspace)
            .max()
            .unwrap_or(0);
        let ws = if ws_bytes > 0 {
            Some(DeviceBuf::new(
                &self.ctx,
                ws_bytes,
                "cuDNN workspace (cuMemAlloc)",
            )?)
        } else {
            None
        };
        let io = Io::new(
            &self.ctx,
            &self.copy,
            layout.size,
            hp * wp,
            g.cmax,
            self.spec.n_out,
        )?;
        let mem = MemoryReport {
            weights: self.wbuf.bytes(),
            arena: arena.bytes(),
            workspace: ws.as_ref().map_or(0, |b| b.bytes()),
            io: io.device_bytes(),
            unshared: g.bufs.iter().map(|&b| align_up(b)).sum(),
        };
        self.plan = Some(Plan {
            layout: layout.clone(),
            hp,
            wp,
            params,
            conv_w: g.convs.iter().map(|c| c.w).collect(),
            conv_dims: g.convs.iter().map(|c| (c.x_dims, c.y_dims)).collect(),
            xin: buf_ptr[g.xin],
            y: buf_ptr[g.y],
            ops: g.ops,
            convs,
            buf_ptr,
            ws,
            io,
            mem,
            choices,
            _arena: arena,
        });
        Ok(())
    }

    pub(super) fn plan(&self) -> Result<&Plan> {
        self.plan.as_ref().ok_or_else(|| {
            CudaError::Layout("configure() must be called before frames are loaded".into())
        })
    }

    /// Uploads a frame (bytes as the layout says) into `slot` and converts it there. Returns
    /// once the upload is queued; the transfer and conversion run on the copy stream.
    pub fn load_frame(&mut self, slot: usize, frame: &[u8]) -> Result<()> {
        check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let Some(plan) = self.plan.as_mut() else {
            return Err(CudaError::Layout(
                "configure() must be called before frames are loaded".into(),
            ));
        };
        plan.io
            .load_frame(&self.copy, &self.k, &plan.params, slot, frame)
    }

    /// Queues the network on `window` up to the outconv result (window mean, input assembly,
    /// every layer). The caller synchronises.
    pub(super) fn enqueue_network(&mut self, window: [usize; 4]) -> Result<()> {
        for s in window {
            check_slot(s)?;
        }
        let Some(plan) = self.plan.as_mut() else {
            return Err(CudaError::Layout(
                "configure() must be called before interpolating".into(),
            ));
        };
        plan.io.set_window(&self.stream, window)?;
        let plan = self.plan()?;
        let io = &plan.io;
        let npix = plan.hp * plan.wp;
        launch::window_mean(&self.stream, &self.k, io.sums.ptr(), io.win, npix, io.mean)?;
        launch::assemble(
            &self.stream,
            &self.k,
            io.slots.ptr(),
            npix,
            io.win,
            io.mean,
            plan.wp,
            plan.hp,
            plan.xin,
        )?;
        self.run_ops(plan)
    }

    fn run_ops(&self, plan: &Plan) -> Result<()> {
        let v = vec_elems(self.precision);
        let bp = &plan.buf_ptr;
        let (ws, ws_bytes) = plan.ws.as_ref().map_or((0, 0), |b| (b.ptr(), b.bytes()));
        for op in &plan.ops {
            match *op {
                Op::Conv { i, x, y, y_off } => {
                    // SAFETY: buffers planned for this conv's shapes; workspace >= chosen need.
                    unsafe {
                        plan.convs[i].run(
                            &self.dnn,
                            bp[x],
                            self.w(plan.conv_w[i].w),
                            bp[y] + y_off as u64,
                            ws,
                            ws_bytes,
                        )
                    }?;
                    if self.opts.verify {
                        self.verify_conv(plan, i, bp[x], bp[y] + y_off as u64)?;
                    }
                }
                Op::Gate {
                    x,
                    rows,
                    c,
                    bias,
                    gate,
                    phases,
                } => {
                    let io = &plan.io;
                    let esz = elem_bytes(self.precision) as u64;
                    let nblk = match phases {
                        None => launch::pool(
                            &self.stream,
                            &self.k,
                            v,
                            bp[x],
                            rows,
                            c,
                            io.partial,
                            None,
                        )?,
                        Some((t, h, w)) => {
                            // Each phase's own grid, partial sums one after another.
                            let pe = (t * (h + 1) * (w + 1) * c) as u64 * esz;
                            let mut n = 0;
                            for ab in 0..4 {
                                let geo = launch::PhaseGeo {
                                    h,
                                    w,
                                    a: ab / 2,
                                    b: ab % 2,
                                };
                                let part = io.partial + (n * c * 4) as u64;
                                n += launch::pool(
                                    &self.stream,
                                    &self.k,
                                    v,
                                    bp[x] + ab as u64 * pe,
                                    t * h * w,
                                    c,
                                    part,
                                    Some(geo),
                                )?;
                            }
                            n
                        }
                    };
                    launch::se_finish(
                        &self.stream,
                        &self.k,
                        io.partial,
                        nblk,
                        rows,
                        c,
                        bias.map_or(0, |o| self.w(o)),
                        self.w(gate.w),
                        self.w(gate.b),
                        io.se_mean,
                        io.gate,
                    )?;
                }
                Op::Epi {
                    x,
                    rows,
                    c,
                    bias,
                    gate,
                    resid,
                    act,
                    out,
                    out2,
                    fold,
                    phases,
                } => {
                    let (ph_t, ph_h, ph_w) = phases.unwrap_or((0, 0, 0));
                    let p = EpiParams {
                        fold_t: fold.map_or(0, |f| f.0 as i32),
                        fold_p: fold.map_or(0, |f| f.1 as i32),
                        ph_t: ph_t as i32,
                        ph_h: ph_h as i32,
                        ph_w: ph_w as i32,
                        pad_: 0,
                        x: bp[x],
                        resid: resid.map_or(0, |r| bp[r]),
                        bias: bias.map_or(0, |o| self.w(o)),
                        gate: if gate { plan.io.gate } else { 0 },
                        out: bp[out.buf],
                        out2: out2.map_or(0, |d| bp[d.buf]),
                        rows: rows as i64,
                        c: c as i32,
                        act,
                        out_stride: out.stride as i32,
                        out_off: out.off as i32,
                        out2_stride: out2.map_or(0, |d| d.stride as i32),
                        out2_off: out2.map_or(0, |d| d.off as i32),
                    };
                    launch::epilogue(&self.stream, &self.k, &p, v)?;
                }
                Op::Pad {
                    x,
                    y,
                    h,
                    w,
                    c,
                    phased,
                } => {
                    launch::reflect_pad(
                        &self.stream,
                        &self.k,
                        bp[x],
                        bp[y],
                        h,
                        w,
                        c,
                        3,
                        v,
                        phased,
                    )?;
                }
            }
        }
        Ok(())
    }

    pub(super) fn out_bias(&self) -> Result<u64> {
        self.net
            .out
            .bias
            .map(|o| self.w(o))
            .ok_or_else(|| CudaError::Unsupported("outconv has no bias".into()))
    }

    /// Queues the conversion of every output frame of the network's result into the output
    /// staging buffer, in the configured layout.
    pub(super) fn enqueue_outputs(&self) -> Result<()> {
        let plan = self.plan()?;
        let bias = self.out_bias()?;
        for f in 0..self.spec.n_out {
            launch::out_frame(
                &self.stream,
                &self.k,
                plan.y,
                self.net.kout,
                self.spec.n_out,
                bias,
                plan.io.mean,
                f,
                &plan.params,
                plan.io.out_frame_ptr(f),
            )?;
        }
        Ok(())
    }

    /// Runs the network on `window` and writes the interpolated frames into `outputs` in the
    /// configured layout.
    pub fn interpolate(&mut self, window: [usize; 4], outputs: &mut [&mut [u8]]) -> Result<()> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let n = self.spec.n_out;
        let plan = self.plan()?;
        let size = plan.layout.size;
        if outputs.len() != n || outputs.iter().any(|o| o.len() < size) {
            return Err(CudaError::Layout(format!(
                "expected {n} output buffers of {size} bytes"
            )));
        }
        self.enqueue_network(window)?;
        self.enqueue_outputs()?;
        let plan = self
            .plan
            .as_mut()
            .ok_or_else(|| CudaError::Layout("not configured".into()))?;
        plan.io.download(&self.stream, outputs)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Let queued work finish before buffers are freed.
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        let _ = self.copy.synchronize();
        self.plan = None;
    }
}
