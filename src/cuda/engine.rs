//! The FLAVR network on one GPU: weights uploaded once at open; at configure, the whole
//! forward pass planned as a list of steps over arena buffers (allocated once, reused by
//! liveness), cuDNN algorithms chosen per convolution shape; per window, a fixed sequence of
//! launches on one stream, no allocation.
//!
//! Layout: every activation is channels-last `[t, h, w, c]` (batch 1). The network input is
//! made per window from the frame slots (one per loaded frame, converted once).

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaEvent, CudaStream, result, sys::CUevent_flags};

use super::cudnn::{self, Candidate, Dnn};
use super::cudnn_graph::{ConvBufs, ConvGeom, Epilogue, GraphChoice, GraphConv};
use super::error::{CudaError, DriverContext, Result};
use super::kernels::Kernels;
use super::launch::{self, ACT_LRELU, ACT_RELU, EpiParams, FrameParams};
use super::memory::{self, DeviceBuf, Lifetime, PinnedBuf, align_up};
use super::plan_cache::{Choice, PlanCache};
use super::weights::{ConvW, GateW, NetWeights, elem_bytes, vec_elems};
use crate::backend::{FrameLayout, PixelFormat, Precision, SLOTS};
use crate::model::Flavr;
use crate::model::spec::SIZE_MULTIPLE;

/// Largest cuDNN workspace an algorithm may use (bytes). Faster algorithms that need more are
/// passed over, so that peak memory stays low.
pub const DEFAULT_WORKSPACE_CAP: usize = 512 << 20;

/// Graph-API engine configurations timed per convolution shape (best ranked first).
const GRAPH_TRIES: usize = 12;

/// One step of the forward pass. Buffers are indices into the plan's buffer table.
#[derive(Clone, Debug)]
enum Op {
    /// y = conv_i(x) (cuDNN), written `y_off` bytes into y.
    Conv {
        i: usize,
        x: usize,
        y: usize,
        y_off: usize,
    },
    /// SE gate of x (+ conv bias) into the gate scratch vector. `phases`: x holds the four
    /// sub-pixel phases of a transposed conv's output of `rows` rows, `(t, h, w)` their grid,
    /// as `[t][h + 1][w + 1][4][c]`.
    Gate {
        x: usize,
        rows: usize,
        c: usize,
        bias: Option<usize>,
        gate: GateW,
        phases: Option<(usize, usize, usize)>,
    },
    /// out = act((x + bias) * gate + resid), optionally twice (see `EpiParams`).
    Epi {
        x: usize,
        rows: usize,
        c: usize,
        bias: Option<usize>,
        gate: bool,
        resid: Option<usize>,
        act: i32,
        out: Dst,
        out2: Option<Dst>,
        /// x is `[p, t, c]` (time folded into channels): (t, p).
        fold: Option<(usize, usize)>,
        /// x is the four sub-pixel phases of grid `(t, h, w)`, gathered into output order.
        phases: Option<(usize, usize, usize)>,
        /// Period of the bias and gate channels, when it is not `c` (the in-place pass over
        /// all four phases at once).
        gc: Option<usize>,
    },
    /// Reflection pad 3 with LeakyReLU of x [h, w, c] (`phased`: in sub-pixel phase layout)
    /// into y, in 2x2 space-to-depth form.
    Pad {
        x: usize,
        y: usize,
        h: usize,
        w: usize,
        c: usize,
        phased: bool,
    },
}

/// Where an epilogue writes: buffer, row stride and channel offset (elements).
#[derive(Clone, Copy, Debug)]
struct Dst {
    buf: usize,
    stride: usize,
    off: usize,
}

impl Op {
    fn buffers(&self) -> Vec<usize> {
        match self {
            Op::Conv { x, y, .. } => vec![*x, *y],
            Op::Gate { x, .. } => vec![*x],
            Op::Epi {
                x,
                resid,
                out,
                out2,
                ..
            } => {
                let mut v = vec![*x, out.buf];
                v.extend(resid);
                v.extend(out2.map(|d| d.buf));
                v
            }
            Op::Pad { x, y, .. } => vec![*x, *y],
        }
    }
}

/// A convolution of the plan: its weights and the cuDNN shapes.
struct ConvStep {
    w: ConvW,
    x_dims: [usize; 5],
    y_dims: [usize; 5],
}

/// The forward pass as data, before any allocation.
struct Graph {
    bufs: Vec<usize>,
    ops: Vec<Op>,
    convs: Vec<ConvStep>,
    /// Network input (space-to-depth with time in channels, `[hp/2 + 3, wp/2 + 3, 48]`) and
    /// outconv output `[hp/2, wp/2, kout]` (2x2 blocks of pixels).
    xin: usize,
    y: usize,
    /// Widest SE gate.
    cmax: usize,
}

struct Builder<'a> {
    net: &'a NetWeights,
    esz: usize,
    g: Graph,
}

impl Builder<'_> {
    fn buf(&mut self, elems: usize) -> usize {
        self.g.bufs.push(elems * self.esz);
        self.g.bufs.len() - 1
    }

    fn conv(&mut self, w: ConvW, x: usize, x_dims: [usize; 5]) -> (usize, [usize; 5]) {
        let s = w.shape;
        let [_, _, d, h, wd] = x_dims;
        let y_dims = if s.transposed {
            [1, s.cout(), d, h * 2, wd * 2]
        } else {
            let o = |n: usize, i: usize| (n + 2 * s.pad[i] - s.taps[i]) / s.stride[i] + 1;
            [1, s.cout(), o(d, 0), o(h, 1), o(wd, 2)]
        };
        let y = self.buf(y_dims.iter().product());
        self.g.convs.push(ConvStep { w, x_dims, y_dims });
        self.g.ops.push(Op::Conv {
            i: self.g.convs.len() - 1,
            x,
            y,
            y_off: 0,
        });
        (y, y_dims)
    }

    /// A transposed conv as its four sub-pixel phases in one conv (weights::convt_phases) into
    /// one buffer `[t][h + 1][w + 1][4][c]`. Returns it and the phase grid (t, h, w).
    fn convt_phases(
        &mut self,
        phases: ConvW,
        x: usize,
        x_dims: [usize; 5],
    ) -> (usize, (usize, usize, usize)) {
        let [_, _, t, h, w] = x_dims;
        let (y, _) = self.conv(phases, x, x_dims);
        (y, (t, h, w))
    }

    fn gate(&mut self, x: usize, dims: [usize; 5], bias: Option<usize>, gate: GateW) {
        self.g.cmax = self.g.cmax.max(gate.c);
        self.g.ops.push(Op::Gate {
            x,
            rows: rows(&dims),
            c: dims[1],
            bias,
            gate,
            phases: None,
        });
    }

    fn epi(
        &mut self,
        x: usize,
        dims: [usize; 5],
        bias: Option<usize>,
        gate: bool,
        resid: Option<usize>,
        act: i32,
        out: Dst,
        out2: Option<Dst>,
    ) {
        self.g.ops.push(Op::Epi {
            x,
            rows: rows(&dims),
            c: dims[1],
            bias,
            gate,
            resid,
            act,
            out,
            out2,
            fold: None,
            phases: None,
            gc: None,
        });
    }
}

fn rows(dims: &[usize; 5]) -> usize {
    dims[0] * dims[2] * dims[3] * dims[4]
}

fn inplace(buf: usize, c: usize) -> Dst {
    Dst {
        buf,
        stride: c,
        off: 0,
    }
}

/// Plans the forward pass for a padded frame size.
fn build_graph(
    net: &NetWeights,
    spec: &crate::model::ModelSpec,
    hp: usize,
    wp: usize,
    convt_cudnn: bool,
) -> Graph {
    let mut b = Builder {
        net,
        esz: elem_bytes(net.precision),
        g: Graph {
            bufs: Vec::new(),
            ops: Vec::new(),
            convs: Vec::new(),
            xin: 0,
            y: 0,
            cmax: 0,
        },
    };
    // Stem: a 2-D conv on the space-to-depth input with time in channels (weights::stem_fold),
    // then bias + ReLU while unfolding time into x0 [4, h/2, w/2, c] and its copy in cat3.
    let xin_dims = [1, b.net.cin, 1, hp / 2 + 3, wp / 2 + 3];
    let xin = b.buf(xin_dims.iter().product());
    b.g.xin = xin;
    // Concatenation buffers [decoder output d_k, skip]: the skips are written into them by the
    // encoder, the decoder outputs later; nothing is copied.
    let cat_c = [
        spec.decoder[0] + spec.widths[2],
        spec.decoder[1] + spec.widths[1],
        spec.decoder[2] + spec.widths[0],
        spec.decoder[3] + spec.stem,
    ];
    let px = |s: usize| 4 * (hp / s) * (wp / s);
    let (s0, _) = b.conv(net.stem, xin, xin_dims);
    let x0_dims = [1, spec.stem, 4, hp / 2, wp / 2];
    let x0 = b.buf(x0_dims.iter().product());
    let cat3 = b.buf(px(2) * cat_c[3]);
    b.g.ops.push(Op::Epi {
        x: s0,
        rows: rows(&x0_dims),
        c: spec.stem,
        bias: net.stem_bias,
        gate: false,
        resid: None,
        act: ACT_RELU,
        out: inplace(x0, spec.stem),
        out2: Some(Dst {
            buf: cat3,
            stride: cat_c[3],
            off: spec.decoder[3],
        }),
        fold: Some((4, (hp / 2) * (wp / 2))),
        phases: None,
        gc: None,
    });
    let cat2 = b.buf(px(2) * cat_c[2]);
    let cat1 = b.buf(px(4) * cat_c[1]);
    let cat0 = b.buf(px(8) * cat_c[0]);
    let skips = [
        (cat2, cat_c[2], spec.decoder[2]),
        (cat1, cat_c[1], spec.decoder[1]),
        (cat0, cat_c[0], spec.decoder[0]),
    ];
    let (mut cur, mut cur_dims) = (x0, x0_dims);
    for (l, pair) in net.blocks.iter().enumerate() {
        for (bi, blk) in pair.iter().enumerate() {
            let (t1, t1_dims) = b.conv(blk.conv1, cur, cur_dims);
            let c = t1_dims[1];
            b.epi(
                t1,
                t1_dims,
                blk.conv1.bias,
                false,
                None,
                ACT_RELU,
                inplace(t1, c),
                None,
            );
            let (t2, t2_dims) = b.conv(blk.conv2, t1, t1_dims);
            let resid = match blk.ds {
                Some(ds) => b.conv(ds, cur, cur_dims).0,
                None => cur,
            };
            b.gate(t2, t2_dims, blk.conv2.bias, blk.gate);
            let skip = (bi == 1 && l < 3).then(|| {
                let (buf, stride, off) = skips[l];
                Dst { buf, stride, off }
            });
            b.epi(
                t2,
                t2_dims,
                blk.conv2.bias,
                true,
                Some(resid),
                ACT_RELU,
                inplace(t2, c),
                skip,
            );
            (cur, cur_dims) = (t2, t2_dims);
        }
    }
    // Decoder: stage k reads cat_{k-1} (x4 for d0) and writes its output into cat_k[.., :d_k].
    // Transposed stages run as four sub-pixel phase convs unless `convt_cudnn`.
    let mut input = (cur, cur_dims);
    let mut phased_out = false;
    let cats = [cat0, cat1, cat2, cat3];
    for (d, stage) in net.dec.iter().enumerate() {
        let bias = stage.conv.bias;
        let (raw, raw_dims, phases) = match stage.phases {
            Some(ph) if !convt_cudnn => {
                let (y, (t, h, w)) = b.convt_phases(ph, input.0, input.1);
                let c = ph.shape.cout() / 4;
                b.g.cmax = b.g.cmax.max(stage.gate.c);
                b.g.ops.push(Op::Gate {
                    x: y,
                    rows: t * 4 * h * w,
                    c,
                    bias,
                    gate: stage.gate,
                    phases: Some((t, h, w)),
                });
                (y, [1, c, t, 2 * h, 2 * w], Some((t, h, w)))
            }
            _ => {
                let (raw, raw_dims) = b.conv(stage.conv, input.0, input.1);
                b.gate(raw, raw_dims, bias, stage.gate);
                (raw, raw_dims, None)
            }
        };
        let c = raw_dims[1];
        if d < 4 {
            let out = Dst {
                buf: cats[d],
                stride: cat_c[d],
                off: 0,
            };
            b.g.ops.push(Op::Epi {
                x: raw,
                rows: rows(&raw_dims),
                c,
                bias,
                gate: true,
                resid: None,
                act: ACT_LRELU,
                out,
                out2: None,
                fold: None,
                phases,
                gc: None,
            });
            let mut dims = raw_dims;
            dims[1] = cat_c[d];
            input = (cats[d], dims);
        } else {
            // In place; over phases, all four at once (4c channels sharing c gates) and their
            // spare row and column too (nothing reads them).
            let (dims, gc) = match phases {
                Some((t, h, w)) => ([1, 4 * c, t, h + 1, w + 1], Some(c)),
                None => (raw_dims, None),
            };
            b.g.ops.push(Op::Epi {
                x: raw,
                rows: rows(&dims),
                c: dims[1],
                bias,
                gate: true,
                resid: None,
                act: ACT_LRELU,
                out: inplace(raw, dims[1]),
                out2: None,
                fold: None,
                phases: None,
                gc,
            });
            input = (raw, dims);
            phased_out = phases.is_some();
        }
    }
    // Time fold + feature_fuse as one (4, 1, 1) conv, then pad (with the LeakyReLU), outconv.
    // On phases [4 t, h/2 + 1, w/2 + 1, 4 phases x c] the fuse is block-diagonal over phases
    // (weights::fuse_phases), its output [h/2 + 1, w/2 + 1, 4 phases x f], which the pad
    // gathers.
    let fuse = if phased_out {
        net.fuse_phases
    } else {
        net.fuse
    };
    let (f, f_dims) = b.conv(fuse, input.0, input.1);
    let fc = net.fuse.shape.cout();
    debug_assert_eq!(f_dims[1], if phased_out { 4 * fc } else { fc });
    // The padded map in space-to-depth form for the per-2x2-block outconv (weights::outconv_s2d).
    let pad_dims = [1, 4 * fc, 1, hp / 2 + 3, wp / 2 + 3];
    let padded = b.buf(pad_dims.iter().product());
    b.g.ops.push(Op::Pad {
        x: f,
        y: padded,
        h: hp,
        w: wp,
        c: fc,
        phased: phased_out,
    });
    let (y, _) = b.conv(net.out, padded, pad_dims);
    b.g.y = y;
    b.g
}

/// Lifetimes of the graph's buffers: from the first step that touches each to the last; the
/// input is live from the start, the output until the end (the output kernels read it).
fn lifetimes(g: &Graph) -> Vec<Lifetime> {
    let mut lt: Vec<Option<(usize, usize)>> = vec![None; g.bufs.len()];
    for (i, op) in g.ops.iter().enumerate() {
        for b in op.buffers() {
            lt[b] = Some(match lt[b] {
                Some((f, l)) => (f.min(i), l.max(i)),
                None => (i, i),
            });
        }
    }
    let end = g.ops.len();
    g.bufs
        .iter()
        .enumerate()
        .map(|(i, &bytes)| {
            let (mut first, mut last) = lt[i].unwrap_or((0, 0));
            if i == g.xin {
                first = 0;
            }
            if i == g.y {
                last = end;
            }
            Lifetime { bytes, first, last }
        })
        .collect()
}

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

/// Per-layer record of the configure-time algorithm search (for logs and notes).
#[derive(Clone, Debug)]
pub struct ConvChoice {
    pub what: String,
    pub chosen: Candidate,
    /// The graph-API configuration used instead, when it was faster.
    pub graph: Option<GraphChoice>,
}

struct Io {
    slots: DeviceBuf,
    sums: DeviceBuf,
    /// f32 scratch: pool partials | SE mean | gate | window mean | window (i32 x 4) | slot
    /// partials.
    scratch: DeviceBuf,
    partial: u64,
    se_mean: u64,
    gate: u64,
    mean: u64,
    win: u64,
    slot_partial: u64,
    in_dev: [DeviceBuf; 2],
    in_host: [PinnedBuf; 2],
    in_done: [CudaEvent; 2],
    in_next: usize,
    loaded: CudaEvent,
    out_dev: DeviceBuf,
    out_host: PinnedBuf,
    win_host: PinnedBuf,
}

struct Plan {
    layout: FrameLayout,
    hp: usize,
    wp: usize,
    params: FrameParams,
    ops: Vec<Op>,
    /// Ops fused into the graph-API plan before them (not run on their own).
    skip: Vec<bool>,
    convs: Vec<cudnn::Conv>,
    /// Graph-API plans that replace `convs[i]` where they were faster.
    graphs: Vec<Option<GraphConv>>,
    conv_w: Vec<ConvW>,
    /// Input and output dims of each conv (for FLAVR_CUDA_VERIFY).
    conv_dims: Vec<([usize; 5], [usize; 5])>,
    buf_ptr: Vec<u64>,
    xin: u64,
    y: u64,
    _arena: DeviceBuf,
    ws: Option<DeviceBuf>,
    io: Io,
    mem: MemoryReport,
    choices: Vec<ConvChoice>,
}

/// The CUDA engine for one device, precision and model.
pub struct Engine {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    k: Kernels,
    dnn: Dnn,
    precision: Precision,
    spec: crate::model::ModelSpec,
    net: NetWeights,
    wbuf: DeviceBuf,
    device_id: u32,
    plan: Option<Plan>,
    found: HashMap<String, Candidate>,
    /// Graph-API choices per shape, kept between runs (see plan_cache).
    plans: PlanCache,
    /// Time the graph API's engine configurations too (on unless FLAVR_CUDA_GRAPH=0).
    graph_api: bool,
    ws_cap: usize,
    /// Transposed convs through cuDNN's backward-data instead of sub-pixel phases
    /// (FLAVR_CUDA_CONVT=cudnn; for comparison).
    convt_cudnn: bool,
    /// Check every forward convolution against a direct one (FLAVR_CUDA_VERIFY; slow).
    verify: bool,
}

/// A graph-API plan for one convolution: the cached configuration rebuilt (when it still is
/// the same engine), else the fastest of those timed.
///
/// # Safety
/// As [`GraphConv::tune`].
#[allow(clippy::too_many_arguments)]
unsafe fn tune_cached(
    dnn: &Dnn,
    stream: &Arc<CudaStream>,
    geom: &ConvGeom,
    epi: Epilogue,
    bufs: ConvBufs,
    cap: usize,
    cached: Choice,
) -> Result<Option<GraphConv>> {
    if let Some((rank, engine)) = cached {
        // SAFETY: the caller's contract.
        let g = unsafe { GraphConv::tune(dnn, stream, geom, epi, bufs, cap, 1, Some(rank)) }?;
        if let Some(g) = g.filter(|g| g.choice.engine == engine) {
            return Ok(Some(g));
        }
    }
    // SAFETY: the caller's contract.
    unsafe { GraphConv::tune(dnn, stream, geom, epi, bufs, cap, GRAPH_TRIES, None) }
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
    pub fn open(model: &Flavr, device_id: u32, precision: Precision) -> Result<Engine> {
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
        let gpu = ctx.name().unwrap_or_else(|_| format!("GPU {device_id}"));
        let plans = PlanCache::open(PlanCache::default_path(), &gpu, cudnn::version()?);
        Ok(Engine {
            ctx,
            stream,
            copy,
            k,
            dnn,
            precision,
            spec: model.spec.clone(),
            net,
            wbuf,
            device_id,
            plan: None,
            found: HashMap::new(),
            plans,
            graph_api: std::env::var("FLAVR_CUDA_GRAPH").map_or(true, |v| v != "0"),
            convt_cudnn: std::env::var("FLAVR_CUDA_CONVT").is_ok_and(|v| v == "cudnn"),
            verify: std::env::var_os("FLAVR_CUDA_VERIFY").is_some(),
            ws_cap: std::env::var("FLAVR_CUDA_WORKSPACE_MB")
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .map_or(DEFAULT_WORKSPACE_CAP, |mb| mb << 20),
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

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn memory(&self) -> MemoryReport {
        self.plan.as_ref().map(|p| p.mem).unwrap_or(MemoryReport {
            weights: self.wbuf.bytes(),
            ..Default::default()
        })
    }

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

    fn w(&self, off: usize) -> u64 {
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
        let g = build_graph(&self.net, &self.spec, hp, wp, self.convt_cudnn);
        let lts = lifetimes(&g);
        let mut arena_plan = memory::plan_arena(&lts);
        if std::env::var_os("FLAVR_CUDA_NO_REUSE").is_some() {
            // Diagnosis: every buffer its own bytes.
            let mut at = 0;
            for (o, l) in arena_plan.offsets.iter_mut().zip(&lts) {
                *o = at;
                at += memory::align_up(l.bytes);
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
        let mut choices = Vec::new();
        let mut graphs: Vec<Option<GraphConv>> = (0..g.convs.len()).map(|_| None).collect();
        let mut search_ws: Option<DeviceBuf> = None;
        let mut cap = self.ws_cap;
        let mut skip = vec![false; g.ops.len()];
        for (oi, op) in g.ops.iter().enumerate() {
            let Op::Conv { i, x, y, y_off } = *op else {
                continue;
            };
            // A ReLU pass in place right after this conv (the encoder blocks' conv1) can be
            // fused into a graph-API plan: bias + ReLU in the conv's epilogue.
            let relu_next = match g.ops.get(oi + 1) {
                Some(&Op::Epi {
                    x: ex,
                    bias,
                    gate: false,
                    resid: None,
                    act: ACT_RELU,
                    out,
                    out2: None,
                    fold: None,
                    phases: None,
                    gc: None,
                    ..
                }) if ex == y && out.buf == y && out.off == 0 && y_off == 0 => Some(bias),
                _ => None,
            };
            let step = &g.convs[i];
            let key = format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {}",
                self.precision,
                step.x_dims,
                step.y_dims,
                step.w.shape.taps,
                step.w.shape.stride,
                step.w.shape.pad,
                step.w.shape.transposed
            );
            let cand = if let Some(c) = self.found.get(&key) {
                convs[i].use_candidate(self.precision, *c)?;
                *c
            } else {
                if search_ws.is_none() {
                    // Take what the GPU can give, up to the cap.
                    loop {
                        match DeviceBuf::new(&self.ctx, cap.max(1), "cuDNN search workspace") {
                            Ok(b) => {
                                search_ws = Some(b);
                                break;
                            }
                            Err(CudaError::OutOfMemory(_)) if cap > (1 << 20) => cap /= 4,
                            Err(e) => return Err(e),
                        }
                    }
                }
                let ws = search_ws.as_ref().map_or(0, |b| b.ptr());
                let (xp, wp_, yp) = (buf_ptr[x], self.w(step.w.w), buf_ptr[y] + y_off as u64);
                let found = convs[i].find(&self.dnn, self.precision, xp, wp_, yp, ws, cap)?;
                let c = match cudnn::choose(self.precision, &found, cap) {
                    Some(c) => c,
                    None => {
                        // Nothing fits the cap (float32 NDHWC may need an explicit-GEMM
                        // workspace): search again with what the GPU has to spare.
                        let (free, _) = self.ctx.mem_get_info().during("cuMemGetInfo")?;
                        let big = (free / 2).min(8 << 30);
                        let buf = DeviceBuf::new(&self.ctx, big, "cuDNN search workspace")?;
                        let again = convs[i].find(
                            &self.dnn,
                            self.precision,
                            xp,
                            wp_,
                            yp,
                            buf.ptr(),
                            big,
                        )?;
                        cudnn::choose(self.precision, &again, big).ok_or_else(|| {
                            CudaError::Unsupported(format!(
                                "cuDNN has no usable algorithm for convolution {key}: {again:?}"
                            ))
                        })?
                    }
                };
                convs[i].use_candidate(self.precision, c)?;
                self.found.insert(key.clone(), c);
                c
            };
            if self.graph_api && search_ws.is_none() {
                search_ws = Some(DeviceBuf::new(
                    &self.ctx,
                    cap.max(1),
                    "cuDNN search workspace",
                )?);
            }
            // The graph API's engine configurations, where one beats the legacy choice.
            let gc = if self.graph_api
                && self.precision != Precision::Fp32
                && !step.w.shape.transposed
                && self.plans.get(&key) != Some(None)
            {
                let s = step.w.shape;
                let geom = ConvGeom {
                    dt,
                    x_dims: step.x_dims,
                    w_dims: s.filter_dims(),
                    y_dims: step.y_dims,
                    pad: s.pad,
                    stride: s.stride,
                };
                let bufs = ConvBufs {
                    x: buf_ptr[x],
                    w: self.w(step.w.w),
                    y: buf_ptr[y] + y_off as u64,
                    bias: 0,
                    ws: search_ws.as_ref().map_or(0, |b| b.ptr()),
                };
                let cached = self.plans.get(&key).flatten();
                // SAFETY: the arena buffers and weights are planned for these shapes, the
                // search workspace holds `cap` bytes, and the handle runs on self.stream.
                let g = unsafe {
                    tune_cached(
                        &self.dnn,
                        &self.stream,
                        &geom,
                        Epilogue::default(),
                        bufs,
                        cap,
                        cached,
                    )
                }?
                .filter(|g| cached.is_some() || g.choice.ms < cand.ms);
                self.plans
                    .insert(&key, g.as_ref().map(|g| (g.choice.rank, g.choice.engine)));
                g
            } else {
                None
            };
            // The fused conv + bias + ReLU, where it is at most 2% slower than the conv alone
            // (it saves the whole ReLU pass over the output).
            let fused = match relu_next {
                Some(bias) if self.graph_api && self.precision != Precision::Fp32 => {
                    let s = step.w.shape;
                    let geom = ConvGeom {
                        dt,
                        x_dims: step.x_dims,
                        w_dims: s.filter_dims(),
                        y_dims: step.y_dims,
                        pad: s.pad,
                        stride: s.stride,
                    };
                    let epi = Epilogue {
                        bias: bias.is_some(),
                        relu_slope: Some(0.0),
                    };
                    let fkey = format!("{key} relu {}", epi.bias);
                    if self.plans.get(&fkey) == Some(None) {
                        None
                    } else {
                        let bufs = ConvBufs {
                            x: buf_ptr[x],
                            w: self.w(step.w.w),
                            y: buf_ptr[y],
                            bias: bias.map_or(0, |o| self.w(o)),
                            ws: search_ws.as_ref().map_or(0, |b| b.ptr()),
                        };
                        let cached = self.plans.get(&fkey).flatten();
                        let alone = gc.as_ref().map_or(cand.ms, |g| g.choice.ms);
                        // SAFETY: as for the plain graph conv above; the bias is [cout] f32.
                        let f = unsafe {
                            tune_cached(&self.dnn, &self.stream, &geom, epi, bufs, cap, cached)
                        }?
                        .filter(|f| cached.is_some() || f.choice.ms <= alone * 1.02);
                        self.plans
                            .insert(&fkey, f.as_ref().map(|f| (f.choice.rank, f.choice.engine)));
                        f
                    }
                }
                _ => None,
            };
            let gc = match fused {
                Some(f) => {
                    skip[oi + 1] = true;
                    Some(f)
                }
                None => gc,
            };
            choices.push(ConvChoice {
                what: key,
                chosen: cand,
                graph: gc.as_ref().map(|g| g.choice),
            });
            graphs[i] = gc;
        }
        drop(search_ws);
        self.plans.save();
        let ws_bytes = choices
            .iter()
            .map(|c| c.graph.map_or(c.chosen.workspace, |g| g.workspace))
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
        for op in &g.ops {
            if let Op::Conv { i, x, y, y_off } = *op
                && let Some(gc) = graphs[i].as_mut()
            {
                gc.bind(ConvBufs {
                    x: buf_ptr[x],
                    w: self.wbuf.ptr() + g.convs[i].w.w as u64,
                    y: buf_ptr[y] + y_off as u64,
                    bias: g.convs[i].w.bias.map_or(0, |o| self.wbuf.ptr() + o as u64),
                    ws: ws.as_ref().map_or(0, |b| b.ptr()),
                })?;
            }
        }
        let io = self.make_io(layout, hp, wp, g.cmax)?;
        let io_bytes = io.slots.bytes()
            + io.sums.bytes()
            + io.scratch.bytes()
            + io.in_dev.iter().map(|b| b.bytes()).sum::<usize>()
            + io.out_dev.bytes();
        let mem = MemoryReport {
            weights: self.wbuf.bytes(),
            arena: arena.bytes(),
            workspace: ws.as_ref().map_or(0, |b| b.bytes()),
            io: io_bytes,
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
            skip,
            convs,
            graphs,
            buf_ptr,
            _arena: arena,
            ws,
            io,
            mem,
            choices,
        });
        Ok(())
    }

    fn make_io(&self, layout: &FrameLayout, hp: usize, wp: usize, cmax: usize) -> Result<Io> {
        let npix = hp * wp;
        let slots = DeviceBuf::new(&self.ctx, SLOTS * npix * 16, "frame slots (cuMemAlloc)")?;
        let sums = DeviceBuf::new(&self.ctx, SLOTS * 4 * 8, "slot sums (cuMemAlloc)")?;
        // SAFETY: sums holds SLOTS * 4 doubles; zero is a valid (empty) sum.
        unsafe { result::memset_d8_async(sums.ptr(), 0, sums.bytes(), self.copy.cu_stream()) }
            .during("cuMemsetD8Async")?;
        self.copy.synchronize().during("cuStreamSynchronize")?;
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
        let scratch = DeviceBuf::new(&self.ctx, total, "scratch (cuMemAlloc)")?;
        let at = |i: usize| scratch.ptr() + offs[i] as u64;
        let size = layout.size;
        let n = self.spec.n_out;
        let ev = || {
            self.ctx
                .new_event(Some(CUevent_flags::CU_EVENT_DISABLE_TIMING))
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
                DeviceBuf::new(&self.ctx, size, "input staging (cuMemAlloc)")?,
                DeviceBuf::new(&self.ctx, size, "input staging (cuMemAlloc)")?,
            ],
            in_host: [
                PinnedBuf::new(&self.ctx, size)?,
                PinnedBuf::new(&self.ctx, size)?,
            ],
            in_done: [ev()?, ev()?],
            in_next: 0,
            loaded: ev()?,
            out_dev: DeviceBuf::new(&self.ctx, n * size, "output staging (cuMemAlloc)")?,
            out_host: PinnedBuf::new(&self.ctx, n * size)?,
            win_host: PinnedBuf::new(&self.ctx, 16)?,
            scratch,
        })
    }

    fn plan(&self) -> Result<&Plan> {
        self.plan.as_ref().ok_or_else(|| {
            CudaError::Layout("configure() must be called before frames are loaded".into())
        })
    }

    fn check_slot(slot: usize) -> Result<()> {
        if slot >= SLOTS {
            return Err(CudaError::Layout(format!(
                "slot {slot} out of range (0..{SLOTS})"
            )));
        }
        Ok(())
    }

    /// Uploads a frame (bytes as the layout says) into `slot` and converts it there. Returns
    /// once the upload is queued; the transfer and conversion run on the copy stream.
    pub fn load_frame(&mut self, slot: usize, frame: &[u8]) -> Result<()> {
        Self::check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let Some(plan) = self.plan.as_mut() else {
            return Err(CudaError::Layout(
                "configure() must be called before frames are loaded".into(),
            ));
        };
        let size = plan.layout.size;
        if frame.len() < size {
            return Err(CudaError::Layout(format!(
                "frame has {} bytes, the layout needs {size}",
                frame.len()
            )));
        }
        let io = &mut plan.io;
        let i = io.in_next;
        io.in_next ^= 1;
        // The staging pair alternates; wait until this one's previous upload has finished.
        io.in_done[i].synchronize().during("cuEventSynchronize")?;
        par_copy(&mut io.in_host[i].as_mut_slice()[..size], &frame[..size]);
        // SAFETY: pinned source of `size` bytes, device staging of at least `size` bytes; the
        // pinned buffer is not touched again before in_done[i] completes.
        unsafe {
            result::memcpy_htod_async(
                io.in_dev[i].ptr(),
                &io.in_host[i].as_slice()[..size],
                self.copy.cu_stream(),
            )
        }
        .during("cuMemcpyHtoDAsync")?;
        let npix = plan.hp * plan.wp;
        let slot_ptr = io.slots.ptr() + (slot * npix * 16) as u64;
        launch::frame_to_slot(
            &self.copy,
            &self.k,
            io.in_dev[i].ptr(),
            &plan.params,
            slot_ptr,
        )?;
        launch::slot_sums(
            &self.copy,
            &self.k,
            slot_ptr,
            npix,
            io.slot_partial,
            io.sums.ptr() + (slot * 32) as u64,
        )?;
        io.in_done[i].record(&self.copy).during("cuEventRecord")?;
        io.loaded.record(&self.copy).during("cuEventRecord")?;
        Ok(())
    }

    /// Loads a frame given as planar float32 `[3, height, width]` (tests and tools).
    pub fn load_frame_f32(&mut self, slot: usize, planar: &[f32]) -> Result<()> {
        Self::check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let plan = self.plan()?;
        let (w, h) = (plan.layout.width, plan.layout.height);
        if planar.len() != 3 * w * h {
            return Err(CudaError::Layout(format!(
                "planar frame has {} values, expected 3 x {h} x {w}",
                planar.len()
            )));
        }
        let src = DeviceBuf::new(&self.ctx, planar.len() * 4, "float frame (cuMemAlloc)")?;
        // SAFETY: src holds planar.len() floats; ordered before the kernel that reads it, and
        // the stream is synchronised below before `planar` or `src` go away.
        unsafe { result::memcpy_htod_async(src.ptr(), planar, self.copy.cu_stream()) }
            .during("cuMemcpyHtoDAsync")?;
        let npix = plan.hp * plan.wp;
        let slot_ptr = plan.io.slots.ptr() + (slot * npix * 16) as u64;
        launch::f32_to_slot(&self.copy, &self.k, src.ptr(), &plan.params, slot_ptr)?;
        launch::slot_sums(
            &self.copy,
            &self.k,
            slot_ptr,
            npix,
            plan.io.slot_partial,
            plan.io.sums.ptr() + (slot * 32) as u64,
        )?;
        plan.io.loaded.record(&self.copy).during("cuEventRecord")?;
        self.copy.synchronize().during("cuStreamSynchronize")?;
        Ok(())
    }

    /// A slot's contents, float32 `[ph, pw, 4]` (tests).
    pub fn read_slot(&mut self, slot: usize) -> Result<Vec<f32>> {
        Self::check_slot(slot)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        self.copy.synchronize().during("cuStreamSynchronize")?;
        let plan = self.plan()?;
        let n = plan.hp * plan.wp * 4;
        let mut out = vec![0f32; n];
        // SAFETY: slot `slot` holds n floats; ordered after the copy stream's writes, and
        // synchronised before `out` is read.
        unsafe {
            result::memcpy_dtoh_async(
                &mut out,
                plan.io.slots.ptr() + (slot * n * 4) as u64,
                self.copy.cu_stream(),
            )
        }
        .during("cuMemcpyDtoHAsync")?;
        self.copy.synchronize().during("cuStreamSynchronize")?;
        Ok(out)
    }

    /// Queues the network on `window` up to the outconv result (window mean, input assembly,
    /// every layer). The caller synchronises.
    fn enqueue_network(&mut self, window: [usize; 4]) -> Result<()> {
        for s in window {
            Self::check_slot(s)?;
        }
        let Some(plan) = self.plan.as_mut() else {
            return Err(CudaError::Layout(
                "configure() must be called before interpolating".into(),
            ));
        };
        let win: Vec<u8> = window
            .iter()
            .flat_map(|&s| (s as i32).to_le_bytes())
            .collect();
        // The previous use of win_host has finished: every call synchronises before returning.
        plan.io.win_host.as_mut_slice()[..16].copy_from_slice(&win);
        let plan = self.plan()?;
        let io = &plan.io;
        // SAFETY: 16 pinned bytes to the 16-byte window buffer.
        unsafe {
            result::memcpy_htod_async(
                io.win,
                &io.win_host.as_slice()[..16],
                self.stream.cu_stream(),
            )
        }
        .during("cuMemcpyHtoDAsync")?;
        self.stream.wait(&io.loaded).during("cuStreamWaitEvent")?;
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
        for (op, _) in plan.ops.iter().zip(&plan.skip).filter(|(_, skip)| !**skip) {
            match *op {
                Op::Conv { i, .. } if plan.graphs[i].is_some() => {
                    if let Some(g) = &plan.graphs[i] {
                        // SAFETY: bound at configure to the plan's buffers, which live as long
                        // as the plan; the workspace holds at least the plan's need.
                        unsafe { g.run(&self.dnn) }?;
                    }
                }
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
                    if self.verify {
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
                            c,
                            io.partial,
                            None,
                        )?,
                        Some((t, h, w)) => {
                            // Each phase's own grid and channels, partial sums one after
                            // another.
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
                                    bp[x] + (ab * c) as u64 * esz,
                                    t * h * w,
                                    c,
                                    4 * c,
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
                    gc,
                } => {
                    let (ph_t, ph_h, ph_w) = phases.unwrap_or((0, 0, 0));
                    let p = EpiParams {
                        fold_t: fold.map_or(0, |f| f.0 as i32),
                        fold_p: fold.map_or(0, |f| f.1 as i32),
                        ph_t: ph_t as i32,
                        ph_h: ph_h as i32,
                        ph_w: ph_w as i32,
                        gc: gc.map_or(0, |g| g as i32),
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

    /// FLAVR_CUDA_VERIFY: compares conv `i`'s output with a direct convolution and prints the
    /// largest difference (forward convolutions only).
    fn verify_conv(&self, plan: &Plan, i: usize, x: u64, y: u64) -> Result<()> {
        let cw = &plan.conv_w[i];
        if cw.shape.transposed {
            return Ok(());
        }
        let (xd, yd) = plan.conv_dims[i];
        let n: usize = yd.iter().product();
        let refbuf = DeviceBuf::new(&self.ctx, n * 4, "verify")?;
        let out = DeviceBuf::new(&self.ctx, 16, "verify")?;
        // SAFETY: 16 bytes; stream-ordered before the kernels.
        unsafe { result::memset_d8_async(out.ptr(), 0, 16, self.stream.cu_stream()) }
            .during("cuMemsetD8Async")?;
        launch::check_conv(
            &self.stream,
            &self.k,
            x,
            self.w(cw.w),
            y,
            refbuf.ptr(),
            out.ptr(),
            xd,
            &cw.shape,
            yd,
        )?;
        let mut r = [0u32; 4];
        // SAFETY: 16 bytes into r, synchronised below.
        unsafe { result::memcpy_dtoh_async(&mut r, out.ptr(), self.stream.cu_stream()) }
            .during("cuMemcpyDtoHAsync")?;
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

    fn out_bias(&self) -> Result<u64> {
        self.net
            .out
            .bias
            .map(|o| self.w(o))
            .ok_or_else(|| CudaError::Unsupported("outconv has no bias".into()))
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
        let plan = self.plan()?;
        let bias = self.out_bias()?;
        for f in 0..n {
            let dst = plan.io.out_dev.ptr() + (f * size) as u64;
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
                dst,
            )?;
        }
        let plan = self
            .plan
            .as_mut()
            .ok_or_else(|| CudaError::Layout("not configured".into()))?;
        let host = &mut plan.io.out_host.as_mut_slice()[..n * size];
        // SAFETY: pinned destination of n*size bytes; the stream is synchronised below before
        // the host reads it.
        unsafe { result::memcpy_dtoh_async(host, plan.io.out_dev.ptr(), self.stream.cu_stream()) }
            .during("cuMemcpyDtoHAsync")?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        let host = &plan.io.out_host.as_slice()[..n * size];
        for (f, out) in outputs.iter_mut().enumerate() {
            par_copy(&mut out[..size], &host[f * size..(f + 1) * size]);
        }
        Ok(())
    }

    /// The interpolated frames as planar float32 `[n, 3, height, width]`, not clamped.
    pub fn interpolate_f32(&mut self, window: [usize; 4]) -> Result<Vec<f32>> {
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        self.enqueue_network(window)?;
        let plan = self.plan()?;
        let n = self.spec.n_out;
        let count = n * 3 * plan.layout.width * plan.layout.height;
        let dst = DeviceBuf::new(&self.ctx, count * 4, "float output (cuMemAlloc)")?;
        launch::out_f32(
            &self.stream,
            &self.k,
            plan.y,
            self.net.kout,
            self.out_bias()?,
            plan.io.mean,
            n,
            &plan.params,
            dst.ptr(),
        )?;
        let mut out = vec![0f32; count];
        // SAFETY: dst holds `count` floats, written on this stream; synchronised before `out`
        // is read and `dst` dropped.
        unsafe { result::memcpy_dtoh_async(&mut out, dst.ptr(), self.stream.cu_stream()) }
            .during("cuMemcpyDtoHAsync")?;
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
            let plan = self.plan()?;
            let size = plan.layout.size;
            let bias = self.out_bias()?;
            for f in 0..self.spec.n_out {
                let dst = plan.io.out_dev.ptr() + (f * size) as u64;
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
                    dst,
                )?;
            }
            end.record(&self.stream).during("cuEventRecord")?;
            times.push(start.elapsed_ms(&end).during("cuEventElapsedTime")?);
        }
        Ok(times)
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
pub fn frame_params(l: &FrameLayout) -> Result<FrameParams> {
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
    use crate::model::ModelSpec;

    fn fake_net(spec: &ModelSpec, p: Precision) -> NetWeights {
        let model = crate::cuda::synth::synthetic_model(spec, 1).expect("synthetic model");
        NetWeights::pack(&model, p)
    }

    #[test]
    fn plan_of_full_width_1080p_fits_far_below_pytorch() {
        let spec = ModelSpec::released(1);
        let net = fake_net(&spec, Precision::Fp16);
        for convt_cudnn in [false, true] {
            let g = build_graph(&net, &spec, 1080, 1920, convt_cudnn);
            let lts = lifetimes(&g);
            let plan = memory::plan_arena(&lts);
            let unshared: usize = g.bufs.iter().sum();
            // The d4 output alone is 1.06 GB in fp16 (as four sub-pixel phases with a spare row
            // and column each, slightly more).
            let d4 = if convt_cudnn {
                64 * 4 * 1080 * 1920 * 2
            } else {
                4 * 64 * 4 * 541 * 961 * 2
            };
            assert!(g.bufs.contains(&d4));
            assert!(plan.size < 2_300_000_000, "arena {} bytes", plan.size);
            assert!(
                plan.size < unshared / 2,
                "arena {} vs unshared {unshared}",
                plan.size
            );
            // The last conv (outconv per 2x2 block) makes the half-resolution block grid.
            assert_eq!(
                g.convs.last().map(|c| c.y_dims),
                Some([1, net.kout, 1, 540, 960])
            );
        }
    }

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
