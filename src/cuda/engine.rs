//! The FLAVR network on one GPU: weights uploaded once at open; at configure, the whole
//! forward pass planned as a list of steps over arena buffers (allocated once, reused by
//! liveness; see [`super::graph`]), cuDNN algorithms chosen per convolution shape (the plan is
//! made in [`super::configure`]); per window, a fixed sequence of launches on one stream, no
//! allocation.
//!
//! The network input is made per window from the frame slots (one per loaded frame, converted
//! once; see [`super::io`]). Test and diagnostic entry points are in [`super::diag`].

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaGraph, CudaStream, result, sys};

use super::cudnn::{self, AlgoCache, ConvBufs, ConvChoice, Dnn, GraphConv, PlanCache};
use super::error::{CudaError, DriverContext, Result};
use super::graph::{Dst, Epi, OUTCONV_PAD, Op};
use super::io::{DEPTH, Io, check_slot};
use super::kernels::Kernels;
use super::launch::{
    self, Assemble, EpiOut, Epilogue, GateWeights, NetOut, OutConv, PhaseGrid, Pool, ReflectPad,
    SeFinish,
};
use super::memory::{self, DevView, DeviceBuf, Dtype};
use super::options::{EngineOptions, Fault};
use super::params::FrameGeom;
use super::weights::{ConvW, NetWeights, Span};
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
    /// The network of a window (after its upload, up to the outconv) as a captured CUDA graph
    /// ([`EngineOptions::capture`]), made at the first window. First: dropped before the
    /// buffers its launches use.
    pub(super) captured: Option<Captured>,
    /// Why capture was not used for this plan, once it was tried and failed.
    pub(super) capture_failed: Option<String>,
    pub layout: FrameLayout,
    pub geom: FrameGeom,
    pub hp: usize,
    pub wp: usize,
    pub ops: Vec<Op>,
    /// Ops fused into the graph-API plan of the conv before them (not run on their own).
    pub(super) skip: Vec<bool>,
    pub convs: Vec<cudnn::Conv>,
    /// Graph-API plans that replace `convs[i]` where they were faster (see cudnn::backend).
    pub(super) graphs: Vec<Option<GraphConv>>,
    pub conv_w: Vec<ConvW>,
    /// Input and output dims of each conv (for the `verify` option and the outconv kernel).
    pub conv_dims: Vec<([usize; 5], [usize; 5])>,
    /// The conv that runs on our outconv kernel instead of cuDNN
    /// ([`EngineOptions::own_outconv`], where [`launch::outconv_applies`]).
    pub(super) own_out: Option<usize>,
    /// Each graph buffer's bytes in the arena.
    pub(super) bufs: Vec<Span>,
    /// The graph buffers of the network input and the outconv output.
    pub(super) xin: usize,
    pub(super) y: usize,
    pub(super) ws: Option<DeviceBuf>,
    pub io: Io,
    pub mem: MemoryReport,
    pub choices: Vec<ConvChoice>,
    /// The activation type.
    pub(super) act: Dtype,
    /// Last: freed after everything that points into it.
    pub(super) arena: DeviceBuf,
}

impl Plan {
    /// Graph buffer `i` in the arena.
    pub fn buf(&self, i: usize) -> Result<DevView<'_>> {
        let s = self.bufs[i];
        self.arena.slice(s.off, s.bytes, self.act)
    }

    /// The outconv result `[hp/2, wp/2, kout]`.
    pub fn output(&self) -> Result<DevView<'_>> {
        self.buf(self.y)
    }

    /// Whether step `i` runs (false: fused into the graph-API plan of the conv before it).
    pub fn runs(&self, i: usize) -> bool {
        !self.skip[i]
    }

    /// Bytes of an activation element.
    pub fn act_bytes(&self) -> usize {
        self.act.bytes()
    }

    fn workspace(&self) -> Option<DevView<'_>> {
        self.ws.as_ref().map(|b| b.view(Dtype::U8))
    }
}

/// The CUDA engine for one device, precision and model.
///
/// Fields drop in declaration order: the plan (cuDNN descriptors, buffers, events) and the
/// cuDNN handle first, then the kernels and weights, then the streams the handle was bound to,
/// then the context.
pub struct Engine {
    pub(super) plan: Option<Plan>,
    pub(super) dnn: Dnn,
    /// Shared with the scene-cut reducers ([`super::scene`]).
    pub(super) k: Arc<Kernels>,
    pub(super) wbuf: DeviceBuf,
    pub(super) net: NetWeights,
    pub(super) spec: crate::model::ModelSpec,
    pub(super) precision: Precision,
    pub(super) device_id: u32,
    pub(super) found: AlgoCache,
    /// Graph-API choices per shape, kept between runs (cudnn::PlanCache).
    pub(super) plans: PlanCache,
    pub(super) opts: EngineOptions,
    /// Windows interpolated since open (for [`EngineOptions::fault`]).
    windows: u64,
    pub(super) stream: Arc<CudaStream>,
    pub(super) copy: Arc<CudaStream>,
    /// Downloads of the interpolated frames (see [`super::io`]).
    pub(super) down: Arc<CudaStream>,
    pub(super) ctx: Arc<CudaContext>,
    /// The owner of a shared context ([`super::SharedContext`]), dropped after everything
    /// that used the context.
    pub(super) keep: Option<Keep>,
}

/// The owner of a shared context, held by the engine and by its scene-cut reducers.
pub(super) type Keep = Arc<std::sync::Mutex<Box<dyn std::any::Any + Send>>>;

/// The launch of epilogue step `e`, its buffers from `buf`, its bias from the weights `wbuf`
/// and the gate vector `gate` (for a gated step).
pub(super) fn epilogue_args<'a>(
    wbuf: &'a DeviceBuf,
    e: &Epi,
    buf: &dyn Fn(usize) -> Result<DevView<'a>>,
    gate: Option<DevView<'a>>,
) -> Result<Epilogue<'a>> {
    let dst = |d: Dst| -> Result<EpiOut<'a>> {
        Ok(EpiOut {
            view: buf(d.buf)?,
            stride: d.stride,
            off: d.off,
        })
    };
    Ok(Epilogue {
        x: buf(e.x)?,
        rows: e.rows,
        c: e.c,
        bias: e
            .bias
            .map(|b| wbuf.slice(b.off, b.bytes, Dtype::F32))
            .transpose()?,
        gate,
        resid: e.resid.map(buf).transpose()?,
        act: e.act,
        out: dst(e.out)?,
        out2: e.out2.map(dst).transpose()?,
        fold: e.fold,
        phases: e.phases,
        gc: e.gc,
    })
}

/// A captured CUDA graph of the engine's network.
pub(super) struct Captured(CudaGraph);

// SAFETY: a graph and its executable are driver handles that any thread may launch with the
// context current (the engine binds it before every call); the engine is used by one thread
// at a time (`&mut self`), and the graph is dropped with its plan, before the streams.
unsafe impl Send for Captured {}

fn not_configured() -> CudaError {
    CudaError::Layout("configure() must be called before interpolating".into())
}

/// Opens a context on `device_id` (its primary context, or `shared`), checking each library
/// first so that a missing one is named.
fn context(device_id: u32, shared: Option<usize>) -> Result<Arc<CudaContext>> {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver);
    }
    let fail = |e: &cudarc::driver::DriverError| CudaError::Device {
        id: device_id,
        cause: super::error::driver_text(e),
    };
    result::init().map_err(|e| CudaError::Device {
        id: device_id,
        cause: format!("cuInit: {}", super::error::driver_text(&e)),
    })?;
    let count = CudaContext::device_count().map_err(|e| fail(&e))?;
    if device_id as i64 >= count as i64 {
        return Err(CudaError::NoSuchDevice {
            id: device_id,
            count,
        });
    }
    let Some(handle) = shared.filter(|&h| h != 0) else {
        return CudaContext::new(device_id as usize).map_err(|e| fail(&e));
    };
    let dev = result::device::get(device_id as i32).map_err(|e| fail(&e))?;
    // SAFETY: `handle` is a live CUcontext kept alive by the SharedContext's owner, which the
    // engine holds until after its last use of the context (Engine::keep).
    let ctx =
        unsafe { CudaContext::from_raw_context(device_id as usize, dev, handle as sys::CUcontext) }
            .map_err(|e| fail(&e))?;
    // cudarc destroys a wrapped context when its last reference goes, but this one belongs to
    // its owner: one reference is never dropped.
    std::mem::forget(ctx.clone());
    let mut on: sys::CUdevice = 0;
    // SAFETY: from_raw_context made the context current on this thread; `on` is written.
    unsafe { sys::cuCtxGetDevice(&mut on) }
        .result()
        .map_err(|e| fail(&e))?;
    if on != dev {
        return Err(CudaError::Device {
            id: device_id,
            cause: format!("the shared CUDA context is on device {on}, not {device_id}"),
        });
    }
    Ok(ctx)
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
        Engine::open_in(model, device_id, precision, options, None)
    }

    /// [`Engine::open`] in a context someone else made (`shared`), or the device's primary one.
    pub fn open_in(
        model: &Flavr,
        device_id: u32,
        precision: Precision,
        options: EngineOptions,
        shared: Option<super::SharedContext>,
    ) -> Result<Engine> {
        if let Some(f @ Fault::Start) = options.fault {
            return Err(CudaError::Device {
                id: device_id,
                cause: format!("fault injected by {f} (the GPU unusable at start)"),
            });
        }
        let handle = shared.as_ref().map(|s| s.handle);
        let ctx = context(device_id, handle)?;
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
        let down = ctx.new_stream().during("cuStreamCreate")?;
        let k = Arc::new(Kernels::load(&ctx, precision)?);
        let dnn = Dnn::new(&stream)?;
        let mut net = NetWeights::pack(model, precision);
        let wbuf = DeviceBuf::new(&ctx, net.bytes.len(), "weights (cuMemAlloc)")?;
        // Our streams do not synchronise with the legacy default stream, and a copy from
        // pageable memory may return before its DMA is done: every copy and memset is ordered
        // on one of our streams, then waited for.
        // SAFETY: the stream is synchronised before the host buffer is dropped.
        unsafe { memory::copy_to_device(wbuf.view(Dtype::U8), &net.bytes, &stream) }?;
        stream.synchronize().during("cuStreamSynchronize")?;
        net.bytes = Vec::new();
        let gpu = ctx.name().unwrap_or_else(|_| format!("GPU {device_id}"));
        let plans = PlanCache::open(options.plan_cache.clone(), &gpu, cudnn::version()?);
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
            plans,
            opts: options,
            windows: 0,
            stream,
            copy,
            down,
            ctx,
            keep: shared.map(|s| Arc::new(std::sync::Mutex::new(s.keep))),
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

    /// Weights in the activation type.
    pub(super) fn weights(&self, s: Span) -> Result<DevView<'_>> {
        self.wbuf.slice(s.off, s.bytes, self.k.act)
    }

    /// Float32 weights (biases, SE gates).
    fn weights_f32(&self, s: Span) -> Result<DevView<'_>> {
        self.wbuf.slice(s.off, s.bytes, Dtype::F32)
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
            .load_frame(&self.copy, &self.k, &plan.geom, slot, frame)
    }

    /// Queues the network on `window` up to the outconv result (window mean, input assembly,
    /// every layer): the plan's captured graph where capture is on and works, else launch by
    /// launch. The caller synchronises.
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
        let untried = plan.captured.is_none() && plan.capture_failed.is_none();
        if self.opts.capture && !self.opts.verify && untried {
            let captured = self.capture(window)?;
            let plan = self.plan.as_mut().ok_or_else(not_configured)?;
            match captured {
                Ok(g) => plan.captured = Some(Captured(g)),
                Err(why) => plan.capture_failed = Some(why),
            }
        }
        let plan = self.plan()?;
        match &plan.captured {
            Some(g) => g.0.launch().during("cuGraphLaunch"),
            None => self.enqueue_body(plan, window, &mut |_| Ok(())),
        }
    }

    /// Captures the network of a window as a CUDA graph: the launches read the window's slot
    /// numbers from device memory, so one graph serves every window of the plan. `Err(why)`
    /// where capture fails (the stream is left as it was, and the caller issues the launches
    /// one by one).
    fn capture(&self, window: [usize; 4]) -> Result<std::result::Result<CudaGraph, String>> {
        let plan = self.plan()?;
        let mode = sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL;
        self.stream
            .begin_capture(mode)
            .during("cuStreamBeginCapture")?;
        let body = self.enqueue_body(plan, window, &mut |_| Ok(()));
        let ended = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .during("cuStreamEndCapture");
        Ok(match (body, ended) {
            (Ok(()), Ok(Some(g))) => match g.upload().during("cuGraphUpload") {
                Ok(()) => Ok(g),
                Err(e) => Err(e.to_string()),
            },
            (Ok(()), Ok(None)) => Err("capture made an empty graph".into()),
            (Err(e), _) | (Ok(()), Err(e)) => Err(e.to_string()),
        })
    }

    /// Queues the window mean, the input assembly and every step of the plan on the compute
    /// stream; `after(Some(i))` runs after step i is queued and `after(None)` after the input
    /// assembly (the profiler records events there).
    pub(super) fn enqueue_body(
        &self,
        plan: &Plan,
        window: [usize; 4],
        after: &mut dyn FnMut(Option<usize>) -> Result<()>,
    ) -> Result<()> {
        let (s, k, io) = (&*self.stream, &self.k, &plan.io);
        let npix = plan.hp * plan.wp;
        launch::window_mean(s, k, io.sums()?, io.win()?, &window, npix, io.mean()?)?;
        launch::assemble(
            s,
            k,
            &Assemble {
                slots: io.slots()?,
                slot_pixels: io.slot_pixels(),
                win: io.win()?,
                window,
                mean: io.mean()?,
                pw: plan.wp,
                ph: plan.hp,
                out: plan.buf(plan.xin)?,
            },
        )?;
        after(None)?;
        self.run_ops(plan, after)
    }

    /// Whether the configured plan runs its outconv on our kernel (kernels/outconv.cu) rather
    /// than cuDNN ([`EngineOptions::own_outconv`]).
    pub fn own_outconv_active(&self) -> bool {
        self.plan.as_ref().is_some_and(|p| p.own_out.is_some())
    }

    /// Whether the configured plan folds the last stage's SE gate into the fuse's filter
    /// ([`EngineOptions::gate_fold`]), and whether that stage's bias + LeakyReLU then runs
    /// inside its conv's graph-API plan (not as a pass of its own).
    pub fn gate_fold_active(&self) -> (bool, bool) {
        let Some(p) = self.plan.as_ref() else {
            return (false, false);
        };
        let Some(at) = p
            .ops
            .iter()
            .position(|op| matches!(op, Op::GateWeights { .. }))
        else {
            return (false, false);
        };
        // The stage's epilogue is two steps before the gate folding (epilogue, gate, fold).
        (true, at >= 2 && p.skip[at - 2])
    }

    /// Why the network of the configured plan runs launch by launch although capture is on
    /// (None: it replays a captured graph, or has not run yet, or capture is off).
    pub fn capture_failure(&self) -> Option<String> {
        self.plan.as_ref().and_then(|p| p.capture_failed.clone())
    }

    /// Queues every step of the plan on the compute stream, calling `after(i)` after step i.
    fn run_ops(
        &self,
        plan: &Plan,
        after: &mut dyn FnMut(Option<usize>) -> Result<()>,
    ) -> Result<()> {
        let (s, k, io) = (&*self.stream, &self.k, &plan.io);
        let bias = |b: Option<Span>| b.map(|b| self.weights_f32(b)).transpose();
        let run = plan.ops.iter().enumerate().zip(&plan.skip);
        for ((oi, op), _) in run.filter(|(_, skip)| !**skip) {
            match *op {
                Op::Conv { i, x, y, y_off } => {
                    let (xv, yv) = (plan.buf(x)?, plan.buf(y)?.from(y_off)?);
                    let wv = self.weights(plan.conv_w[i].w)?;
                    match &plan.graphs[i] {
                        _ if plan.own_out == Some(i) => {
                            let (xd, yd) = plan.conv_dims[i];
                            let oc = OutConv {
                                x: xv,
                                w: wv,
                                y: yv,
                                h2: yd[3],
                                w2: yd[4],
                                c: xd[1],
                            };
                            launch::outconv(s, k, &oc)?;
                        }
                        Some(g) => {
                            let bufs = ConvBufs {
                                x: xv,
                                w: wv,
                                y: yv,
                                bias: bias(plan.conv_w[i].bias)?,
                                ws: plan.workspace(),
                            };
                            g.run(&self.dnn, &bufs)?;
                        }
                        None => plan.convs[i].run(&self.dnn, xv, wv, yv, plan.workspace())?,
                    }
                    if self.opts.verify {
                        self.verify_conv(plan, i, xv, yv)?;
                    }
                }
                Op::Gate {
                    x,
                    rows,
                    c,
                    bias: b,
                    gate,
                    phases,
                    post_lrelu,
                } => {
                    let (xv, partial) = (plan.buf(x)?, io.partial()?);
                    let nblk = match phases {
                        None => launch::pool(
                            s,
                            k,
                            &Pool {
                                x: xv,
                                rows,
                                c,
                                partial,
                                phases: None,
                                post_lrelu,
                            },
                        )?,
                        // The four phases in one pass ([t][h+1][w+1][4][c]).
                        Some((t, h, w)) => launch::pool(
                            s,
                            k,
                            &Pool {
                                x: xv,
                                rows: t * (h + 1) * (w + 1),
                                c,
                                partial,
                                phases: Some(PhaseGrid { h, w }),
                                post_lrelu,
                            },
                        )?,
                    };
                    let finish = SeFinish {
                        partial,
                        nblk,
                        rows,
                        c,
                        bias: bias(b)?,
                        w: self.weights_f32(gate.w)?,
                        b: self.weights_f32(gate.b)?,
                        mean: io.se_mean()?,
                        gate: io.gate()?,
                    };
                    launch::se_finish(s, k, &finish)?;
                }
                Op::GateWeights { w, out, n, c } => {
                    let gw = GateWeights {
                        w: self.weights(w)?,
                        out: self.weights(out)?,
                        n,
                        gate: io.gate()?,
                        c,
                    };
                    launch::gate_weights(s, k, &gw)?;
                }
                Op::Epi(ref e) => {
                    let gate = if e.gate { Some(io.gate()?) } else { None };
                    let epi = epilogue_args(&self.wbuf, e, &|i| plan.buf(i), gate)?;
                    launch::epilogue(s, k, &epi)?;
                }
                Op::Pad {
                    x,
                    y,
                    h,
                    w,
                    c,
                    phased,
                } => {
                    let pad = ReflectPad {
                        x: plan.buf(x)?,
                        y: plan.buf(y)?,
                        h,
                        w,
                        c,
                        pad: OUTCONV_PAD,
                        phased,
                    };
                    launch::reflect_pad(s, k, &pad)?;
                }
            }
            after(Some(oi))?;
        }
        Ok(())
    }

    /// The network's result in `plan`, as the output kernels read it.
    pub(super) fn net_out<'a>(&'a self, plan: &'a Plan) -> Result<NetOut<'a>> {
        let b = self.net.out.bias;
        let b = b.ok_or_else(|| CudaError::Unsupported("outconv has no bias".into()))?;
        Ok(NetOut {
            y: plan.output()?,
            kpad: self.net.kout,
            n_out: self.spec.n_out,
            bias: self.weights_f32(b)?,
            mean: plan.io.mean()?,
            geom: &plan.geom,
        })
    }

    /// Queues the conversion of every output frame of the network's result into output
    /// staging pair `b`, in the configured layout.
    pub(super) fn enqueue_outputs(&self, b: usize) -> Result<()> {
        let plan = self.plan()?;
        let net = self.net_out(plan)?;
        for f in 0..self.spec.n_out {
            launch::out_frame(&self.stream, &self.k, &net, f, plan.io.out_frame(b, f)?)?;
        }
        Ok(())
    }

    /// Windows the engine holds submitted and not collected.
    pub fn depth(&self) -> usize {
        DEPTH
    }

    /// Windows submitted and not collected.
    pub fn in_flight(&self) -> usize {
        self.plan.as_ref().map_or(0, |p| p.io.in_flight())
    }

    /// Queues the network on `window`, the conversion of its frames and their download, and
    /// returns at once; [`Engine::collect`] hands the frames over, in submit order. At most
    /// [`Engine::depth`] windows may be submitted and not collected.
    pub fn submit(&mut self, window: [usize; 4]) -> Result<()> {
        for s in window {
            check_slot(s)?;
        }
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let b = self.plan()?.io.next_out(&self.stream)?;
        self.next_window()?;
        self.enqueue_network(window)?;
        self.enqueue_outputs(b)?;
        let plan = self.plan.as_mut().ok_or_else(not_configured)?;
        plan.io.finish_window(&self.stream, &self.down, window, b)
    }

    /// Whether [`Engine::collect`] would return without waiting (true with nothing in
    /// flight).
    pub fn ready(&self) -> Result<bool> {
        self.plan.as_ref().map_or(Ok(true), |p| p.io.ready())
    }

    /// Waits for the oldest window submitted and writes its frames into `outputs` in the
    /// configured layout.
    pub fn collect(&mut self, outputs: &mut [&mut [u8]]) -> Result<()> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        self.check_outputs(outputs)?;
        let plan = self.plan.as_mut().ok_or_else(not_configured)?;
        plan.io.collect(outputs)
    }

    /// Forgets the windows submitted and not collected (a flush): their frames never come
    /// out, and the next window is the next one collected.
    pub fn abandon(&mut self) {
        if let Some(p) = self.plan.as_mut() {
            p.io.abandon();
        }
    }

    fn check_outputs(&self, outputs: &[&mut [u8]]) -> Result<()> {
        let n = self.spec.n_out;
        let size = self.plan()?.layout.size;
        if outputs.len() != n || outputs.iter().any(|o| o.len() < size) {
            return Err(CudaError::Layout(format!(
                "expected {n} output buffers of {size} bytes"
            )));
        }
        Ok(())
    }

    /// Runs the network on `window` and writes the interpolated frames into `outputs` in the
    /// configured layout (submit and collect at once; an error while windows are in flight).
    pub fn interpolate(&mut self, window: [usize; 4], outputs: &mut [&mut [u8]]) -> Result<()> {
        self.check_outputs(outputs)?;
        if self.in_flight() > 0 {
            return Err(CudaError::Layout(format!(
                "{} window(s) submitted and not collected: collect them before interpolating",
                self.in_flight()
            )));
        }
        self.submit(window)?;
        self.collect(outputs)
    }
}

impl Engine {
    /// Counts a window, failing it where [`EngineOptions::fault`] says the GPU is lost.
    pub(super) fn next_window(&mut self) -> Result<()> {
        self.windows += 1;
        if let Some(f @ Fault::After(n)) = self.opts.fault
            && self.windows > n
        {
            return Err(CudaError::Device {
                id: self.device_id,
                cause: format!(
                    "fault injected by {f} (the GPU lost at window {})",
                    self.windows
                ),
            });
        }
        Ok(())
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // Let queued work finish before buffers are freed.
        let _ = self.ctx.bind_to_thread();
        let _ = self.stream.synchronize();
        let _ = self.copy.synchronize();
        let _ = self.down.synchronize();
        self.plan = None;
    }
}
