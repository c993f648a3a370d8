//! cuDNN's graph (backend) API for forward convolutions (through cudarc's raw `sys` bindings).
//!
//! The legacy API offers eight algorithms per convolution and maps each to one engine
//! configuration chosen by cuDNN's own heuristics. The graph API lists every engine
//! configuration that can run an operation graph (heuristics mode A, ranked), so the engine can
//! time several of them on the real buffers at configure time and keep the fastest. The same
//! graphs can carry a fused epilogue (bias, ReLU) where an engine supports it.
//!
//! Only configurations whose numerical notes promise float32 accumulation of un-converted
//! inputs are accepted (no reduced-precision reduction, no down-converted inputs, no FFT or
//! Winograd, deterministic), so a graph-API convolution computes the same sums as the legacy
//! GEMM-family algorithms.

use std::ffi::c_void;
use std::sync::Mutex;

use cudarc::cudnn::sys;
use cudarc::driver::{CudaStream, sys::CUevent_flags};

use super::Dnn;
use crate::cuda::error::{CudaError, DriverContext, Result, cudnn_check};
use crate::cuda::memory::{DevView, Dtype};

use sys::cudnnBackendAttributeName_t as A;
use sys::cudnnBackendAttributeType_t as T;
use sys::cudnnBackendDescriptorType_t as D;

/// One backend descriptor, destroyed on drop.
pub(super) struct Desc(pub(super) sys::cudnnBackendDescriptor_t);

// SAFETY: an opaque host-side object, owned; the engine uses it from one thread at a time.
unsafe impl Send for Desc {}

impl Drop for Desc {
    fn drop(&mut self) {
        // SAFETY: created by cudnnBackendCreateDescriptor, destroyed once.
        let _ = unsafe { sys::cudnnBackendDestroyDescriptor(self.0) };
    }
}

impl Desc {
    pub(super) fn new(ty: D) -> Result<Desc> {
        let mut d = std::ptr::null_mut();
        // SAFETY: out-pointer to a new descriptor.
        cudnn_check(
            unsafe { sys::cudnnBackendCreateDescriptor(ty, &mut d) },
            "cudnnBackendCreateDescriptor",
        )?;
        Ok(Desc(d))
    }

    /// Sets attribute `name` to the `v.len()` values of `v`.
    ///
    /// # Safety
    /// `V` must be the C type that `ty` names (int64_t for INT64, a descriptor for
    /// BACKEND_DESCRIPTOR, ...).
    pub(super) unsafe fn set_raw<V: Copy>(&self, name: A, ty: T, v: &[V]) -> Result<()> {
        // SAFETY: v holds v.len() values of the type `ty` names (the caller's contract).
        cudnn_check(
            unsafe {
                sys::cudnnBackendSetAttribute(
                    self.0,
                    name,
                    ty,
                    v.len() as i64,
                    v.as_ptr() as *const c_void,
                )
            },
            "cudnnBackendSetAttribute",
        )
    }

    pub(super) fn set_i64(&self, name: A, v: &[i64]) -> Result<()> {
        // SAFETY: int64_t values for an INT64 attribute.
        unsafe { self.set_raw(name, T::CUDNN_TYPE_INT64, v) }
    }

    pub(super) fn set_f32(&self, name: A, v: f32) -> Result<()> {
        // SAFETY: one float for a FLOAT attribute.
        unsafe { self.set_raw(name, T::CUDNN_TYPE_FLOAT, &[v]) }
    }

    fn set_f64(&self, name: A, v: f64) -> Result<()> {
        // SAFETY: one double for a DOUBLE attribute.
        unsafe { self.set_raw(name, T::CUDNN_TYPE_DOUBLE, &[v]) }
    }

    pub(super) fn set_dtype(&self, name: A, v: sys::cudnnDataType_t) -> Result<()> {
        // SAFETY: one cudnnDataType_t for a DATA_TYPE attribute.
        unsafe { self.set_raw(name, T::CUDNN_TYPE_DATA_TYPE, &[v]) }
    }

    fn set_bool(&self, name: A, v: bool) -> Result<()> {
        // SAFETY: cudnn's BOOLEAN is a C bool (one byte).
        unsafe { self.set_raw(name, T::CUDNN_TYPE_BOOLEAN, &[v]) }
    }

    pub(super) fn set_descs(&self, name: A, ds: &[&Desc]) -> Result<()> {
        let raw: Vec<sys::cudnnBackendDescriptor_t> = ds.iter().map(|d| d.0).collect();
        // SAFETY: descriptors for a BACKEND_DESCRIPTOR attribute; they outlive this call.
        unsafe { self.set_raw(name, T::CUDNN_TYPE_BACKEND_DESCRIPTOR, &raw) }
    }

    pub(super) fn set_handle(&self, name: A, dnn: &Dnn) -> Result<()> {
        // SAFETY: one live cudnnHandle_t for a HANDLE attribute.
        unsafe { self.set_raw(name, T::CUDNN_TYPE_HANDLE, &[dnn.handle()]) }
    }

    pub(super) fn finalize(self) -> Result<Desc> {
        // SAFETY: a descriptor whose required attributes were set above.
        cudnn_check(
            unsafe { sys::cudnnBackendFinalize(self.0) },
            "cudnnBackendFinalize",
        )?;
        Ok(self)
    }

    /// Reads up to `out.len()` values of attribute `name` into `out` (none: a count query);
    /// returns how many values the attribute holds. `call` names the call in errors.
    ///
    /// # Safety
    /// `V` must be the C type that `ty` names, as for [`Desc::set_raw`].
    unsafe fn get_raw<V>(&self, name: A, ty: T, out: &mut [V], call: &'static str) -> Result<i64> {
        let mut n = 0i64;
        let ptr = if out.is_empty() {
            std::ptr::null_mut()
        } else {
            out.as_mut_ptr() as *mut c_void
        };
        // SAFETY: `ptr` is null for a count query, else room for out.len() values of the type
        // `ty` names (the caller's contract).
        cudnn_check(
            unsafe {
                sys::cudnnBackendGetAttribute(self.0, name, ty, out.len() as i64, &mut n, ptr)
            },
            call,
        )?;
        Ok(n)
    }

    fn get_i64(&self, name: A) -> Result<i64> {
        let mut v = [0i64];
        // SAFETY: int64_t values of an INT64 attribute.
        unsafe {
            self.get_raw(
                name,
                T::CUDNN_TYPE_INT64,
                &mut v,
                "cudnnBackendGetAttribute",
            )
        }?;
        Ok(v[0])
    }
}

/// Unique ids of the tensors in a convolution graph (x, w and y shared with the float8 probe's
/// graphs).
pub(super) const UID_X: i64 = 1;
pub(super) const UID_W: i64 = 2;
pub(super) const UID_Y: i64 = 3;
const UID_B: i64 = 4;
const UID_CONV: i64 = 10;
const UID_BIASED: i64 = 11;

/// A tensor `[n, c, d, h, w]` with explicit strides (elements).
pub(super) fn tensor(
    uid: i64,
    dt: sys::cudnnDataType_t,
    dims: [usize; 5],
    strides: [usize; 5],
    virt: bool,
) -> Result<Desc> {
    let t = Desc::new(D::CUDNN_BACKEND_TENSOR_DESCRIPTOR)?;
    t.set_dtype(A::CUDNN_ATTR_TENSOR_DATA_TYPE, dt)?;
    t.set_i64(A::CUDNN_ATTR_TENSOR_DIMENSIONS, &dims.map(|v| v as i64))?;
    t.set_i64(A::CUDNN_ATTR_TENSOR_STRIDES, &strides.map(|v| v as i64))?;
    t.set_i64(A::CUDNN_ATTR_TENSOR_UNIQUE_ID, &[uid])?;
    t.set_i64(A::CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, &[16])?;
    t.set_bool(A::CUDNN_ATTR_TENSOR_IS_VIRTUAL, virt)?;
    t.finalize()
}

/// Strides of a packed channels-last `[n, c, d, h, w]` (memory order n, d, h, w, c); the same
/// for a filter `[k, c, t, r, s]` stored `[k, t, r, s, c]`.
pub(super) fn ndhwc(dims: [usize; 5]) -> [usize; 5] {
    let [_, c, d, h, w] = dims;
    [d * h * w * c, 1, h * w * c, w * c, c]
}

pub(super) fn pointwise(mode: sys::cudnnPointwiseMode_t, relu_slope: Option<f64>) -> Result<Desc> {
    let p = Desc::new(D::CUDNN_BACKEND_POINTWISE_DESCRIPTOR)?;
    // SAFETY: one cudnnPointwiseMode_t for a POINTWISE_MODE attribute.
    unsafe {
        p.set_raw(
            A::CUDNN_ATTR_POINTWISE_MODE,
            T::CUDNN_TYPE_POINTWISE_MODE,
            &[mode],
        )
    }?;
    p.set_dtype(
        A::CUDNN_ATTR_POINTWISE_MATH_PREC,
        sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    )?;
    if let Some(s) = relu_slope {
        p.set_f64(A::CUDNN_ATTR_POINTWISE_RELU_LOWER_CLIP_SLOPE, s)?;
    }
    p.finalize()
}

pub(super) fn pointwise_op(pw: &Desc, x: &Desc, b: Option<&Desc>, y: &Desc) -> Result<Desc> {
    let op = Desc::new(D::CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR)?;
    op.set_descs(A::CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, &[pw])?;
    op.set_descs(A::CUDNN_ATTR_OPERATION_POINTWISE_XDESC, &[x])?;
    if let Some(b) = b {
        op.set_descs(A::CUDNN_ATTR_OPERATION_POINTWISE_BDESC, &[b])?;
    }
    op.set_descs(A::CUDNN_ATTR_OPERATION_POINTWISE_YDESC, &[y])?;
    op.finalize()
}

/// What a fused graph does after the convolution, before writing y.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ConvEpilogue {
    /// Add a float32 bias `[cout]` (its device address is bound with the buffers).
    pub bias: bool,
    /// Then max(v, slope * v): Some(0.0) for ReLU, Some(0.2) for LeakyReLU(0.2).
    pub relu_slope: Option<f64>,
}

/// The shapes of one forward convolution.
#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    /// The activation and weight type (cuDNN's name and ours).
    pub dt: sys::cudnnDataType_t,
    pub dtype: Dtype,
    pub x_dims: [usize; 5],
    /// `[k, c, t, r, s]`, stored channels-last `[k, t, r, s, c]`.
    pub w_dims: [usize; 5],
    pub y_dims: [usize; 5],
    pub pad: [usize; 3],
    pub stride: [usize; 3],
}

/// The operation graph of `y = epilogue(conv(x, w))`; its tensors stay alive with it.
pub(super) struct OpGraph {
    pub(super) graph: Desc,
    pub(super) _parts: Vec<Desc>,
}

fn op_graph(dnn: &Dnn, g: &ConvGeom, epi: ConvEpilogue) -> Result<OpGraph> {
    let f32t = sys::cudnnDataType_t::CUDNN_DATA_FLOAT;
    let fused = epi.bias || epi.relu_slope.is_some();
    let x = tensor(UID_X, g.dt, g.x_dims, ndhwc(g.x_dims), false)?;
    let w = tensor(UID_W, g.dt, g.w_dims, ndhwc(g.w_dims), false)?;
    let y = tensor(UID_Y, g.dt, g.y_dims, ndhwc(g.y_dims), false)?;
    // The convolution's own output: y itself, or a virtual float32 tensor the epilogue reads.
    let virt = if fused {
        Some(tensor(UID_CONV, f32t, g.y_dims, ndhwc(g.y_dims), true)?)
    } else {
        None
    };
    let conv_out = virt.as_ref().unwrap_or(&y);
    let cd = conv_desc(g.pad, g.stride)?;
    let conv = conv_forward_op(&x, &w, conv_out, &cd)?;
    let mut ops = vec![conv];
    let mut parts = vec![x, w, cd];
    if let Some(mut cur) = virt {
        let k = g.y_dims[1];
        if epi.bias {
            let b = tensor(UID_B, f32t, [1, k, 1, 1, 1], [k, 1, 1, 1, 1], false)?;
            let pw = pointwise(sys::cudnnPointwiseMode_t::CUDNN_POINTWISE_ADD, None)?;
            if epi.relu_slope.is_some() {
                let out = tensor(UID_BIASED, f32t, g.y_dims, ndhwc(g.y_dims), true)?;
                ops.push(pointwise_op(&pw, &cur, Some(&b), &out)?);
                parts.extend([cur, b, pw]);
                cur = out;
            } else {
                ops.push(pointwise_op(&pw, &cur, Some(&b), &y)?);
                parts.extend([b, pw]);
            }
        }
        if let Some(slope) = epi.relu_slope {
            let pw = pointwise(
                sys::cudnnPointwiseMode_t::CUDNN_POINTWISE_RELU_FWD,
                Some(slope),
            )?;
            ops.push(pointwise_op(&pw, &cur, None, &y)?);
            parts.push(pw);
        }
        parts.push(cur);
    }
    parts.push(y);
    OpGraph::new(dnn, ops, parts)
}

/// A 3-D cross-correlation (float32 compute, dilation 1) with `pad` before and after and
/// `stride`.
pub(super) fn conv_desc(pad: [usize; 3], stride: [usize; 3]) -> Result<Desc> {
    let cd = Desc::new(D::CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR)?;
    cd.set_dtype(
        A::CUDNN_ATTR_CONVOLUTION_COMP_TYPE,
        sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
    )?;
    // SAFETY: one cudnnConvolutionMode_t for a CONVOLUTION_MODE attribute.
    unsafe {
        cd.set_raw(
            A::CUDNN_ATTR_CONVOLUTION_CONV_MODE,
            T::CUDNN_TYPE_CONVOLUTION_MODE,
            &[sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION],
        )
    }?;
    let pad = pad.map(|v| v as i64);
    cd.set_i64(A::CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, &[3])?;
    cd.set_i64(A::CUDNN_ATTR_CONVOLUTION_DILATIONS, &[1, 1, 1])?;
    cd.set_i64(
        A::CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES,
        &stride.map(|v| v as i64),
    )?;
    cd.set_i64(A::CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, &pad)?;
    cd.set_i64(A::CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, &pad)?;
    cd.finalize()
}

/// The operation `y = conv(x, w)` (alpha 1, beta 0) for the convolution `cd`.
pub(super) fn conv_forward_op(x: &Desc, w: &Desc, y: &Desc, cd: &Desc) -> Result<Desc> {
    let conv = Desc::new(D::CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR)?;
    conv.set_descs(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, &[x])?;
    conv.set_descs(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, &[w])?;
    conv.set_descs(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, &[y])?;
    conv.set_descs(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, &[cd])?;
    conv.set_f32(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, 1.0)?;
    conv.set_f32(A::CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, 0.0)?;
    conv.finalize()
}

impl OpGraph {
    /// The operation graph of `ops` on `dnn`'s handle; the ops and `parts` (the tensors and
    /// descriptors they refer to) stay alive with it.
    pub(super) fn new(dnn: &Dnn, ops: Vec<Desc>, mut parts: Vec<Desc>) -> Result<OpGraph> {
        let graph = Desc::new(D::CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR)?;
        graph.set_handle(A::CUDNN_ATTR_OPERATIONGRAPH_HANDLE, dnn)?;
        let refs: Vec<&Desc> = ops.iter().collect();
        graph.set_descs(A::CUDNN_ATTR_OPERATIONGRAPH_OPS, &refs)?;
        let graph = graph.finalize()?;
        parts.extend(ops);
        Ok(OpGraph {
            graph,
            _parts: parts,
        })
    }
}

/// Engine configurations heuristics mode A offers for `graph`, best ranked first.
pub(super) fn engine_configs(graph: &OpGraph) -> Result<Vec<Desc>> {
    let heur = Desc::new(D::CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR)?;
    heur.set_descs(A::CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, &[&graph.graph])?;
    // SAFETY: one cudnnBackendHeurMode_t for a HEUR_MODE attribute.
    unsafe {
        heur.set_raw(
            A::CUDNN_ATTR_ENGINEHEUR_MODE,
            T::CUDNN_TYPE_HEUR_MODE,
            &[sys::cudnnBackendHeurMode_t::CUDNN_HEUR_MODE_A],
        )
    }?;
    let heur = heur.finalize()?;
    const RESULTS: &str = "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)";
    let (results, ty) = (
        A::CUDNN_ATTR_ENGINEHEUR_RESULTS,
        T::CUDNN_TYPE_BACKEND_DESCRIPTOR,
    );
    let none: &mut [sys::cudnnBackendDescriptor_t] = &mut [];
    // SAFETY: a count query (no output array).
    let count = unsafe { heur.get_raw(results, ty, none, RESULTS) }?;
    let cfgs = (0..count.max(0))
        .map(|_| Desc::new(D::CUDNN_BACKEND_ENGINECFG_DESCRIPTOR))
        .collect::<Result<Vec<_>>>()?;
    let mut raw: Vec<sys::cudnnBackendDescriptor_t> = cfgs.iter().map(|d| d.0).collect();
    // SAFETY: `count` engine-config descriptors created above receive the results.
    let got = unsafe { heur.get_raw(results, ty, &mut raw, RESULTS) }?;
    let mut cfgs = cfgs;
    cfgs.truncate(got.clamp(0, count) as usize);
    Ok(cfgs)
}

/// The engine behind a configuration: its global index and whether its numerical notes allow
/// it (see the module documentation).
pub(super) fn engine_info(cfg: &Desc) -> Result<(i64, bool)> {
    let engine = Desc::new(D::CUDNN_BACKEND_ENGINE_DESCRIPTOR)?;
    let mut raw = [engine.0];
    // SAFETY: one engine descriptor receives the configuration's engine.
    unsafe {
        cfg.get_raw(
            A::CUDNN_ATTR_ENGINECFG_ENGINE,
            T::CUDNN_TYPE_BACKEND_DESCRIPTOR,
            &mut raw,
            "cudnnBackendGetAttribute(ENGINECFG_ENGINE)",
        )
    }?;
    let index = engine.get_i64(A::CUDNN_ATTR_ENGINE_GLOBAL_INDEX)?;
    let mut notes = [sys::cudnnBackendNumericalNote_t::CUDNN_NUMERICAL_NOTE_TENSOR_CORE; 16];
    // SAFETY: cudnnBackendNumericalNote_t values of a NUMERICAL_NOTE attribute.
    let count = unsafe {
        engine.get_raw(
            A::CUDNN_ATTR_ENGINE_NUMERICAL_NOTE,
            T::CUDNN_TYPE_NUMERICAL_NOTE,
            &mut notes,
            "cudnnBackendGetAttribute(ENGINE_NUMERICAL_NOTE)",
        )
    }?;
    use sys::cudnnBackendNumericalNote_t as N;
    let ok = notes[..count.clamp(0, 16) as usize].iter().all(|n| {
        !matches!(
            n,
            N::CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS
                | N::CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION
                | N::CUDNN_NUMERICAL_NOTE_FFT
                | N::CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC
                | N::CUDNN_NUMERICAL_NOTE_WINOGRAD
                | N::CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_4x4
                | N::CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_6x6
                | N::CUDNN_NUMERICAL_NOTE_WINOGRAD_TILE_13x13
        )
    });
    Ok((index, ok))
}

pub(super) fn plan(dnn: &Dnn, cfg: &Desc) -> Result<(Desc, usize)> {
    let p = Desc::new(D::CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR)?;
    p.set_handle(A::CUDNN_ATTR_EXECUTION_PLAN_HANDLE, dnn)?;
    p.set_descs(A::CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, &[cfg])?;
    let p = p.finalize()?;
    let ws = p.get_i64(A::CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE)?;
    Ok((p, ws.max(0) as usize))
}

/// The buffers a graph convolution runs on.
#[derive(Clone, Copy, Debug)]
pub struct ConvBufs<'a> {
    pub x: DevView<'a>,
    pub w: DevView<'a>,
    pub y: DevView<'a>,
    /// float32 `[cout]`, for an epilogue with a bias.
    pub bias: Option<DevView<'a>>,
    pub ws: Option<DevView<'a>>,
}

impl ConvBufs<'_> {
    /// An error unless the views hold the convolution's tensors (and the bias an epilogue with
    /// one needs) in their types, and the workspace at least `ws` bytes.
    fn check(&self, g: &ConvGeom, epi: ConvEpilogue, ws: usize) -> Result<()> {
        let n = |d: [usize; 5]| d.iter().product::<usize>();
        self.x.check(g.dtype, n(g.x_dims), "graph conv input")?;
        self.w.check(g.dtype, n(g.w_dims), "graph conv weights")?;
        self.y.check(g.dtype, n(g.y_dims), "graph conv output")?;
        if epi.bias {
            match self.bias {
                Some(b) => b.check(Dtype::F32, g.y_dims[1], "graph conv bias")?,
                None => return Err(CudaError::Internal("graph conv bias missing".into())),
            }
        }
        let have = self.ws.map_or(0, |v| v.bytes());
        if have < ws {
            return Err(CudaError::Internal(format!(
                "graph conv needs {ws} bytes of workspace, has {have}"
            )));
        }
        Ok(())
    }

    fn ptrs(&self) -> [u64; 5] {
        [
            self.x.device_ptr(),
            self.w.device_ptr(),
            self.y.device_ptr(),
            self.bias.map_or(0, |v| v.device_ptr()),
            self.ws.map_or(0, |v| v.device_ptr()),
        ]
    }
}

/// The variant pack of `ptrs` (ConvBufs::ptrs: x, w, y, bias, workspace).
fn variant_pack(epi: ConvEpilogue, p: [u64; 5]) -> Result<Desc> {
    let mut uids = vec![UID_X, UID_W, UID_Y];
    let mut ptrs = vec![p[0], p[1], p[2]];
    if epi.bias {
        uids.push(UID_B);
        ptrs.push(p[3]);
    }
    variant_pack_of(&uids, &ptrs, p[4])
}

/// A variant pack: the tensors `uids` at the device addresses `ptrs`, and the workspace `ws`.
pub(super) fn variant_pack_of(uids: &[i64], ptrs: &[u64], ws: u64) -> Result<Desc> {
    let ptrs: Vec<*mut c_void> = ptrs.iter().map(|&p| p as *mut c_void).collect();
    let vp = Desc::new(D::CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)?;
    vp.set_i64(A::CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, uids)?;
    // SAFETY: void pointers for VOID_PTR attributes.
    unsafe {
        vp.set_raw(
            A::CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS,
            T::CUDNN_TYPE_VOID_PTR,
            &ptrs,
        )?;
        vp.set_raw(
            A::CUDNN_ATTR_VARIANT_PACK_WORKSPACE,
            T::CUDNN_TYPE_VOID_PTR,
            &[ws as *mut c_void],
        )?;
    }
    vp.finalize()
}

/// What the tuning chose, for logs.
#[derive(Clone, Copy, Debug)]
pub struct GraphChoice {
    /// Position in heuristics mode A's ranking.
    pub rank: usize,
    /// cuDNN's global engine index.
    pub engine: i64,
    pub ms: f32,
    pub workspace: usize,
    /// Configurations tried (finalized and timed) / offered.
    pub tried: usize,
    pub offered: usize,
    pub epilogue: ConvEpilogue,
}

/// A forward convolution (with its epilogue) as a graph-API execution plan.
pub struct GraphConv {
    epi: ConvEpilogue,
    geom: ConvGeom,
    plan: Desc,
    /// The variant pack of the last run and the addresses it holds (rebuilt when they change).
    pack: Mutex<Option<([u64; 5], Desc)>>,
    _graph: OpGraph,
    pub choice: GraphChoice,
}

impl GraphConv {
    /// Times up to `max_tries` of the allowed configurations heuristics offer for this
    /// convolution on the buffers `b` (y is overwritten; the workspace view bounds what a
    /// configuration may use) and keeps the fastest; `rank` = Some(r) builds only the
    /// configuration ranked r (a choice made earlier for the same shapes). None when no
    /// configuration can run it. `stream` must be the stream `dnn` runs on.
    pub fn tune(
        dnn: &Dnn,
        stream: &CudaStream,
        g: &ConvGeom,
        epi: ConvEpilogue,
        b: &ConvBufs<'_>,
        max_tries: usize,
        rank: Option<usize>,
    ) -> Result<Option<GraphConv>> {
        b.check(g, epi, 0)?;
        let ws_cap = b.ws.map_or(0, |v| v.bytes());
        let graph = match op_graph(dnn, g, epi) {
            Ok(graph) => graph,
            // An engine-less graph (unsupported fusion) is not an error: the caller falls back.
            Err(CudaError::Cudnn { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let cfgs = match engine_configs(&graph) {
            Ok(c) => c,
            Err(CudaError::Cudnn { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let offered = cfgs.len();
        let ctx = stream.context();
        let ev = || {
            ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
                .during("cuEventCreate")
        };
        let (start, end) = (ev()?, ev()?);
        let mut best: Option<(Desc, GraphChoice)> = None;
        let mut tried = 0;
        for (r, cfg) in cfgs.iter().enumerate() {
            if rank.is_some_and(|want| want != r) {
                continue;
            }
            if tried >= max_tries {
                break;
            }
            let Ok((engine, true)) = engine_info(cfg) else {
                continue;
            };
            let Ok((p, ws)) = plan(dnn, cfg) else {
                continue;
            };
            if ws > ws_cap {
                continue;
            }
            let Ok(vp) = variant_pack(epi, b.ptrs()) else {
                continue;
            };
            tried += 1;
            // One warm-up, then the mean of three runs.
            let run = || {
                // SAFETY: the views hold the graph's tensors (checked above) and the workspace
                // is at least this plan's need.
                cudnn_check(
                    unsafe { sys::cudnnBackendExecute(dnn.handle(), p.0, vp.0) },
                    "cudnnBackendExecute",
                )
            };
            if run().is_err() {
                continue;
            }
            start.record(stream).during("cuEventRecord")?;
            let mut failed = false;
            for _ in 0..3 {
                failed |= run().is_err();
            }
            end.record(stream).during("cuEventRecord")?;
            let ms = start.elapsed_ms(&end).during("cuEventElapsedTime")? / 3.0;
            if failed {
                continue;
            }
            let c = GraphChoice {
                rank: r,
                engine,
                ms,
                workspace: ws,
                tried: 0,
                offered,
                epilogue: epi,
            };
            if best.as_ref().is_none_or(|(_, b)| ms < b.ms) {
                best = Some((p, c));
            }
        }
        Ok(best.map(|(plan, mut choice)| {
            choice.tried = tried;
            GraphConv {
                epi,
                geom: *g,
                plan,
                pack: Mutex::new(None),
                _graph: graph,
                choice,
            }
        }))
    }

    /// Runs the plan on the handle's stream, on buffers of the tuned shapes.
    pub fn run(&self, dnn: &Dnn, b: &ConvBufs<'_>) -> Result<()> {
        b.check(&self.geom, self.epi, self.choice.workspace)?;
        let ptrs = b.ptrs();
        let mut pack = self
            .pack
            .lock()
            .map_err(|_| CudaError::Internal("graph conv variant pack poisoned".into()))?;
        if pack.as_ref().is_none_or(|(p, _)| *p != ptrs) {
            *pack = Some((ptrs, variant_pack(self.epi, ptrs)?));
        }
        let Some((_, vp)) = pack.as_ref() else {
            return Err(CudaError::Internal(
                "graph conv without a variant pack".into(),
            ));
        };
        // SAFETY: the views hold the graph's tensors in their types and the workspace holds at
        // least the plan's need (checked above); the pack holds exactly these addresses.
        cudnn_check(
            unsafe { sys::cudnnBackendExecute(dnn.handle(), self.plan.0, vp.0) },
            "cudnnBackendExecute",
        )
    }
}
