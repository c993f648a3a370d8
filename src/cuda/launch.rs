//! Typed launches of our kernels. Each takes device views (memory.rs: address, length and
//! element type, made only from live allocations) and the shapes, checks that every buffer the
//! kernel addresses holds what it addresses, in the right type (and alignment, for vector
//! loads), then pushes the arguments in the kernel's order and launches on the given stream.
//! Each launch states its own safety contract; the raw parameter structs passed by value are
//! in params.rs, mirrors of kernels/params.cuh.

use cudarc::driver::{CudaStream, DeviceRepr, LaunchArgs, LaunchConfig, PushKernelArg};

use super::error::{CudaError, DriverContext, Result};
use super::kernels::{KernelId, Kernels};
use super::memory::{DevView, Dtype};
use super::params::{
    EpiParams, Fold, FrameGeom, FrameParams, NET_IN_CHANNELS, SLOT_CHANNELS, SLOT_SUM_RECORD,
    SceneParams, THREADS, VECTOR_BYTES,
};
use super::weights::ConvShape;

// SAFETY: plain old data with the layout of the header's struct (fields, offsets and size
// checked against kernels/params.cuh by params.rs).
unsafe impl DeviceRepr for EpiParams {}
// SAFETY: as for EpiParams.
unsafe impl DeviceRepr for FrameParams {}
// SAFETY: as for EpiParams.
unsafe impl DeviceRepr for SceneParams {}

/// Most blocks of a grid-stride kernel.
const MAX_BLOCKS: usize = 8192;
/// Blocks of an SE pooling pass (its partial-sum buffer holds this many rows of channels).
pub const POOL_BLOCKS: usize = 1024;
/// Blocks of a slot sum (partial buffer of 3 floats each).
pub const SLOT_BLOCKS: usize = 256;
/// Outputs of `se_gate` per block (one warp each).
const GATE_WARPS: usize = THREADS as usize / 32;

fn grid(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (
            n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32,
            1,
            1,
        ),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn blocks(n: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (n.max(1) as u32, 1, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// A launch of `f` on `s` with the arguments in order; launched by the caller's own `unsafe`.
macro_rules! args {
    ($s:expr, $f:expr, $($arg:expr),+ $(,)?) => {{
        let mut b: LaunchArgs<'_> = $s.launch_builder($f);
        $( b.arg($arg); )+
        b
    }};
}

/// Runs a launch built by `args!`.
///
/// # Safety
/// The arguments must be the kernel's parameters in order and type, and every address in them
/// must lie in live device memory large enough for what the kernel addresses.
unsafe fn go(mut b: LaunchArgs<'_>, cfg: LaunchConfig) -> Result<()> {
    // SAFETY: the caller's contract.
    unsafe { b.launch(cfg) }
        .during("cuLaunchKernel")
        .map(|_| ())
}

/// The address of an optional view, null for none.
fn ptr_or_null(v: Option<DevView<'_>>) -> u64 {
    v.map_or(0, |v| v.device_ptr())
}

/// Elements of the activation type `dt` in one vector load (`S::V` of common.cuh).
fn vec_elems(dt: Dtype) -> usize {
    VECTOR_BYTES / dt.bytes()
}

/// An error for launch arguments that do not fit together.
fn bad(what: String) -> CudaError {
    CudaError::Internal(what)
}

/// Where an epilogue writes: `rows` rows of `stride` elements, the result at channel `off`.
#[derive(Clone, Copy, Debug)]
pub struct EpiOut<'a> {
    pub view: DevView<'a>,
    pub stride: usize,
    pub off: usize,
}

/// out = act((x + bias) * gate + resid) over `rows` x `c` channels-last (kernels/
/// elementwise.cu), optionally written a second time into `out2`.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// `[rows, c]` of the activation type (or as `fold` / `phases` say).
    pub x: DevView<'a>,
    pub rows: usize,
    pub c: usize,
    /// float32 `[c]`.
    pub bias: Option<DevView<'a>>,
    /// float32 `[c]`.
    pub gate: Option<DevView<'a>>,
    /// `[rows, c]`.
    pub resid: Option<DevView<'a>>,
    /// One of the `ACT_*` codes.
    pub act: i32,
    pub out: EpiOut<'a>,
    pub out2: Option<EpiOut<'a>>,
    /// Which of x, the residual and the outputs are `[p, t, c]` with time folded into
    /// channels (t * p = rows).
    pub fold: Option<Fold>,
    /// x is the four sub-pixel phases `[t][h + 1][w + 1][4][c]` of grid (t, h, w),
    /// 4 t h w = rows.
    pub phases: Option<(usize, usize, usize)>,
    /// Bias and gate hold `gc` channels, repeated across the row's `c` (gc divides c): the
    /// in-place pass over all four phases at once.
    pub gc: Option<usize>,
}

/// Whether the epilogue runs vectorised (`epilogue`, 16-byte vectors) or per element
/// (`epilogue1`): every channel count, stride and offset a multiple of the vector.
fn epilogue_vectorised(p: &EpiParams, v: usize) -> bool {
    let v = v as i32;
    p.c % v == 0
        && p.out_stride % v == 0
        && p.out_off % v == 0
        && (p.out2 == 0 || (p.out2_stride % v == 0 && p.out2_off % v == 0))
        && p.gc % v == 0
}

pub fn epilogue(s: &CudaStream, k: &Kernels, a: &Epilogue<'_>) -> Result<()> {
    let dt = k.act;
    let (rows, c) = (a.rows, a.c);
    let fold_ok = a
        .fold
        .is_none_or(|f| f.t * f.p == rows && f.t > 0 && f.p > 0);
    let x_rows = match (a.fold.is_some_and(|f| f.x), a.phases) {
        (_, None) if fold_ok => rows,
        (false, Some((t, h, w))) if fold_ok && 4 * t * h * w == rows && h > 0 => {
            4 * t * (h + 1) * (w + 1)
        }
        _ => {
            return Err(bad(format!(
                "epilogue over {rows} rows with fold {:?} and phases {:?}",
                a.fold, a.phases
            )));
        }
    };
    a.x.check(dt, x_rows * c, "epilogue input")?;
    if let Some(r) = a.resid {
        r.check(dt, rows * c, "epilogue residual")?;
    }
    let gc = match a.gc {
        Some(g) if g > 0 && c.is_multiple_of(g) => g,
        None => c,
        Some(g) => {
            return Err(bad(format!(
                "epilogue bias/gate period {g} for {c} channels"
            )));
        }
    };
    if let Some(b) = a.bias {
        b.check(Dtype::F32, gc, "epilogue bias")?;
    }
    if let Some(g) = a.gate {
        g.check(Dtype::F32, gc, "epilogue gate")?;
    }
    for (o, what) in std::iter::once((a.out, "epilogue output"))
        .chain(a.out2.map(|o| (o, "epilogue second output")))
    {
        if o.off + c > o.stride {
            return Err(bad(format!(
                "{what}: channels {}..+{c} in rows of {}",
                o.off, o.stride
            )));
        }
        o.view.check(dt, rows * o.stride, what)?;
    }
    let (ph_t, ph_h, ph_w) = a.phases.unwrap_or((0, 0, 0));
    let p = EpiParams {
        x: a.x.device_ptr(),
        resid: ptr_or_null(a.resid),
        bias: ptr_or_null(a.bias),
        gate: ptr_or_null(a.gate),
        out: a.out.view.device_ptr(),
        out2: ptr_or_null(a.out2.map(|o| o.view)),
        rows: rows as i64,
        c: c as i32,
        act: a.act,
        out_stride: a.out.stride as i32,
        out_off: a.out.off as i32,
        out2_stride: a.out2.map_or(0, |d| d.stride as i32),
        out2_off: a.out2.map_or(0, |d| d.off as i32),
        fold_t: a.fold.map_or(0, |f| f.t as i32),
        fold_p: a.fold.map_or(0, |f| f.p as i32),
        fold_keep: a.fold.map_or(0, |f| f.keep_bits()),
        ph_t: ph_t as i32,
        ph_h: ph_h as i32,
        ph_w: ph_w as i32,
        gc: a.gc.map_or(0, |g| g as i32),
    };
    let v = vec_elems(dt);
    let vec = epilogue_vectorised(&p, v);
    if vec {
        let views = [Some(a.x), a.resid, Some(a.out.view), a.out2.map(|o| o.view)];
        for view in views.into_iter().flatten() {
            view.check_aligned(VECTOR_BYTES, "vectorised epilogue")?;
        }
    }
    let per = if vec { v } else { 1 };
    let n = rows * c / per;
    let f = k.get(if vec {
        KernelId::Epilogue
    } else {
        KernelId::Epilogue1
    });
    let b = args!(s, f, &p);
    // SAFETY: `epilogue{,1}_<type>(EpiParams)` takes one EpiParams (mirrored from the header).
    // Checked above, in the activation type: x holds the rows the kernel reads (with the fold
    // or phase gather), resid rows x c, out and out2 rows x stride with the channels inside a
    // row; bias and gate c floats; the vectorised kernel gets 16-byte aligned views and
    // vector-multiple channels, strides, offsets and bias/gate period (which divides c, and
    // bias and gate hold that many floats).
    unsafe { go(b, grid(n)) }
}

/// Reflection pad `pad` with LeakyReLU of x `[h, w, c]` (or, `phased`, its four sub-pixel
/// phases `[h/2 + 1][w/2 + 1][4][c]`) into y `[(h + 2 pad)/2, (w + 2 pad)/2, 4c]`, the padded
/// map in 2x2 space-to-depth form.
#[derive(Clone, Copy, Debug)]
pub struct ReflectPad<'a> {
    pub x: DevView<'a>,
    pub y: DevView<'a>,
    pub h: usize,
    pub w: usize,
    pub c: usize,
    pub pad: usize,
    pub phased: bool,
}

pub fn reflect_pad(s: &CudaStream, k: &Kernels, a: &ReflectPad<'_>) -> Result<()> {
    let (h, w, c, pad) = (a.h, a.w, a.c, a.pad);
    let dt = k.act;
    if pad >= h || pad >= w || h % 2 != 0 || w % 2 != 0 {
        return Err(bad(format!("reflection pad {pad} of a {h}x{w} map")));
    }
    let x_rows = if a.phased {
        4 * (h / 2 + 1) * (w / 2 + 1)
    } else {
        h * w
    };
    a.x.check(dt, x_rows * c, "pad input")?;
    a.y.check(
        dt,
        (h + 2 * pad) / 2 * ((w + 2 * pad) / 2) * 4 * c,
        "pad output",
    )?;
    let v = vec_elems(dt);
    let vec = c.is_multiple_of(v);
    if vec {
        a.x.check_aligned(VECTOR_BYTES, "vectorised pad")?;
        a.y.check_aligned(VECTOR_BYTES, "vectorised pad")?;
    }
    let n = (h + 2 * pad) * (w + 2 * pad) * c / if vec { v } else { 1 };
    let (xp, yp) = (a.x.device_ptr(), a.y.device_ptr());
    let (h, w, c, pad, vec) = (h as i32, w as i32, c as i32, pad as i32, vec as i32);
    let phased = a.phased as i32;
    let f = k.get(KernelId::ReflectPad);
    let b = args!(s, f, &xp, &yp, &h, &w, &c, &pad, &vec, &phased);
    // SAFETY: `reflect_pad_<type>(const void *in, void *out, int h, int w, int c, int pad,
    // int vec, int phased)`, in that order. Checked above: pad < h, w (reflected indices stay
    // inside the map), h and w even, x holds the map (or its phases) and y the padded blocks,
    // in the activation type; vectors only on aligned views with c a multiple of the vector.
    unsafe { go(b, grid(n)) }
}

/// The four sub-pixel phases of a transposed conv's output for [`pool`]: each phase a logical
/// grid `[t, h, w]`, all four in a physical `[t, h + 1, w + 1, 4, c]` (phase `2 a + b` of pixel
/// `(y, x)` at cell `(y + a, x + b)`; see `weights::convt_phases`).
#[derive(Clone, Copy, Debug)]
pub struct PhaseGrid {
    pub h: usize,
    pub w: usize,
}

/// Partial channel sums of x `[rows, c]`, or of the four phases of [`PhaseGrid`] (rows then
/// counts its cells, `t (h + 1) (w + 1)`, and the phases' sums are added), into `partial`.
#[derive(Clone, Copy, Debug)]
pub struct Pool<'a> {
    pub x: DevView<'a>,
    pub rows: usize,
    pub c: usize,
    /// float32, at least [`POOL_BLOCKS`] x c.
    pub partial: DevView<'a>,
    pub phases: Option<PhaseGrid>,
    /// x is LeakyReLU(0.2) of what is to be pooled: sum its inverse (negative values times 5).
    pub post_lrelu: bool,
}

/// Launches a pooling pass; returns the number of partial rows written.
pub fn pool(s: &CudaStream, k: &Kernels, a: &Pool<'_>) -> Result<usize> {
    let (rows, c) = (a.rows, a.c);
    let dt = k.act;
    let (np, g) = match a.phases {
        None => (1, [0i32; 2]),
        Some(g) if g.h > 0 && g.w > 0 && rows.is_multiple_of((g.h + 1) * (g.w + 1)) => {
            let (h, w) = (i32::try_from(g.h), i32::try_from(g.w));
            match (h, w) {
                (Ok(h), Ok(w)) => (4, [h, w]),
                _ => return Err(bad(format!("pool over phases {g:?}"))),
            }
        }
        Some(g) => return Err(bad(format!("pool of {rows} cells over phases {g:?}"))),
    };
    // A row of `cw` elements; the kernel's shared memory holds 8 THREADS sums.
    let cw = np * c;
    if c == 0 || cw > 8 * THREADS as usize {
        return Err(bad(format!("pool rows of {cw} elements")));
    }
    a.x.check(dt, rows * cw, "pool input")?;
    let v = vec_elems(dt);
    let lanes = cw / v;
    let vec = c.is_multiple_of(v) && (THREADS as usize).is_multiple_of(lanes);
    if vec {
        a.x.check_aligned(VECTOR_BYTES, "vectorised pool")?;
    }
    let rpb = rows.div_ceil(POOL_BLOCKS).max(1);
    let nblk = rows.div_ceil(rpb);
    a.partial.check(Dtype::F32, nblk * c, "pool partial sums")?;
    let (xp, pp) = (a.x.device_ptr(), a.partial.device_ptr());
    let (rows_i, c_i, rpb_i, vec_i) = (rows as i64, c as i32, rpb as i32, vec as i32);
    let neg: f32 = if a.post_lrelu { 1.0 / 0.2 } else { 1.0 };
    let f = k.get(KernelId::Pool);
    let b = args!(
        s, f, &xp, &rows_i, &c_i, &rpb_i, &pp, &vec_i, &g[0], &g[1], &neg
    );
    // SAFETY: `pool_<type>(const void *x, i64 rows, int c, int rows_per_block, float *partial,
    // int vec, int gh, int gw, float neg)`, in that order. Checked above: x holds rows x cw elements of
    // the activation type (cw = c, or 4c for the phases, at most 8 THREADS: the kernel's shared
    // sums), partial nblk x c floats (one row per block launched); the vector path gets an
    // aligned x, c a multiple of the vector and lanes dividing THREADS.
    unsafe { go(b, blocks(nblk)) }?;
    Ok(nblk)
}

/// The SE gate folded into a conv's filter: `out[i] = w[i] * gate[i % c]` over the `n`
/// elements of a channels-last filter whose input channel `j` reads gated channel `j % c`.
#[derive(Clone, Copy, Debug)]
pub struct GateWeights<'a> {
    /// The filter as loaded, and the one the conv reads, each `n` elements of the activation
    /// type.
    pub w: DevView<'a>,
    pub out: DevView<'a>,
    pub n: usize,
    /// float32 `[c]`, from [`se_finish`].
    pub gate: DevView<'a>,
    pub c: usize,
}

pub fn gate_weights(s: &CudaStream, k: &Kernels, a: &GateWeights<'_>) -> Result<()> {
    let (n, c) = (a.n, a.c);
    if c == 0 || !n.is_multiple_of(c) {
        return Err(bad(format!(
            "gate of {c} channels over a filter of {n} elements"
        )));
    }
    a.w.check(k.act, n, "filter to gate")?;
    a.out.check(k.act, n, "gated filter")?;
    a.gate.check(Dtype::F32, c, "SE gate")?;
    let (wp, op, gp) = (a.w.device_ptr(), a.out.device_ptr(), a.gate.device_ptr());
    let (n_i, c_i) = (n as i64, c as i32);
    let b = args!(s, k.get(KernelId::GateWeights), &wp, &op, &gp, &n_i, &c_i);
    // SAFETY: `gate_weights_<type>(const void *w, void *out, const float *g, i64 n, int c)`,
    // in that order. Checked above: w and out hold n elements of the activation type, g holds
    // c floats and c > 0 (the kernel reads g[i % c]); the grid-stride loop stays below n.
    unsafe { go(b, grid(n)) }
}

/// The SE gate from `nblk` partial rows over `rows` rows: mean (+ `bias`) into `mean`, then
/// matrix-vector product and sigmoid into `gate`.
#[derive(Clone, Copy, Debug)]
pub struct SeFinish<'a> {
    pub partial: DevView<'a>,
    pub nblk: usize,
    pub rows: usize,
    pub c: usize,
    /// float32 `[c]`, the conv bias not yet added.
    pub bias: Option<DevView<'a>>,
    /// float32 `[c, c]` (out x in) and `[c]`.
    pub w: DevView<'a>,
    pub b: DevView<'a>,
    /// float32 `[c]` scratch and the gate `[c]`.
    pub mean: DevView<'a>,
    pub gate: DevView<'a>,
}

pub fn se_finish(s: &CudaStream, k: &Kernels, a: &SeFinish<'_>) -> Result<()> {
    let (nblk, c) = (a.nblk, a.c);
    a.partial.check(Dtype::F32, nblk * c, "SE partial sums")?;
    if let Some(b) = a.bias {
        b.check(Dtype::F32, c, "SE bias")?;
    }
    a.w.check(Dtype::F32, c * c, "SE weight")?;
    a.b.check(Dtype::F32, c, "SE gate bias")?;
    a.mean.check(Dtype::F32, c, "SE mean")?;
    a.gate.check(Dtype::F32, c, "SE gate")?;
    let (nblk_i, c_i) = (nblk as i32, c as i32);
    let inv = 1.0f32 / a.rows as f32;
    let (pp, bias, mp) = (
        a.partial.device_ptr(),
        ptr_or_null(a.bias),
        a.mean.device_ptr(),
    );
    let (wp, bp, gp) = (a.w.device_ptr(), a.b.device_ptr(), a.gate.device_ptr());
    let f = k.get(KernelId::SeMean);
    let b = args!(s, f, &pp, &nblk_i, &c_i, &bias, &inv, &mp);
    // SAFETY: `se_mean(const float *partial, int nblk, int c, const float *bias, float
    // inv_rows, float *mean)`, in that order; partial holds nblk x c floats, bias (or null)
    // and mean c floats (checked above); 32 channels per block of THREADS (8 warps), lanes
    // past c add nothing and write nothing.
    unsafe { go(b, blocks(c.div_ceil(32))) }?;
    let b = args!(s, k.get(KernelId::SeGate), &mp, &wp, &bp, &c_i, &gp);
    // SAFETY: `se_gate(const float *mean, const float *w, const float *b, int c, float *g)`,
    // in that order; mean, b and g hold c floats and w c x c (checked above); warps past c
    // return.
    unsafe { go(b, blocks(c.div_ceil(GATE_WARPS))) }
}

/// A frame to convert into a slot: its bytes as the layout says (`u8`), or planar float32
/// `[3, height, width]`.
#[derive(Clone, Copy, Debug)]
pub enum SlotSource<'a> {
    Frame(DevView<'a>),
    Planar(DevView<'a>),
}

/// Converts a frame into a slot, float32 `[ph, pw, 4]`, replicate-padded.
pub fn to_slot(
    s: &CudaStream,
    k: &Kernels,
    src: SlotSource<'_>,
    geom: &FrameGeom,
    slot: DevView<'_>,
) -> Result<()> {
    let (pw, ph) = geom.padded();
    slot.check(Dtype::F32, pw * ph * SLOT_CHANNELS, "frame slot")?;
    slot.check_aligned(VECTOR_BYTES, "frame slot")?;
    let (f, src) = match src {
        SlotSource::Frame(v) => {
            v.check(Dtype::U8, geom.size(), "frame bytes")?;
            (k.get(KernelId::FrameToSlot), v)
        }
        SlotSource::Planar(v) => {
            v.check(Dtype::F32, 3 * geom.width() * geom.height(), "planar frame")?;
            (k.get(KernelId::F32ToSlot), v)
        }
    };
    let (sp, dp) = (src.device_ptr(), slot.device_ptr());
    let b = args!(s, f, &sp, geom.params(), &dp);
    // SAFETY: `frame_to_slot(const u8 *src, FrameParams p, float4 *slot)` and
    // `f32_to_slot(const float *src, FrameParams p, float4 *slot)`, in that order (FrameParams
    // mirrored from the header). Checked above: the slot holds pw x ph aligned float4s; the
    // bytes hold the layout's size, inside which FrameGeom::new checked every plane, or the
    // planar frame 3 x w x h floats.
    unsafe { go(b, grid(pw * ph)) }
}

/// The box sums of scene-cut detection (kernels/scene.cu) of the plane `p` describes in
/// `src` (bytes; `p` was checked against `size` of them) into `sums` (one `u64` per box).
pub fn scene_sums(
    s: &CudaStream,
    k: &Kernels,
    src: DevView<'_>,
    size: usize,
    p: &SceneParams,
    sums: DevView<'_>,
) -> Result<()> {
    src.check(Dtype::U8, size, "frame bytes")?;
    let (gw, gh) = p.grid();
    if gw == 0 || gh == 0 {
        return Err(bad(format!("scene grid {gw}x{gh} is empty")));
    }
    sums.check(Dtype::U64, gw * gh, "scene box sums")?;
    let (sp, up) = (src.device_ptr(), sums.device_ptr());
    let b = args!(s, k.get(KernelId::SceneSums), &sp, p, &up);
    let cfg = LaunchConfig {
        grid_dim: (gw as u32, gh as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: `scene_sums(const u8 *src, SceneParams p, unsigned long long *sums)`, in that
    // order (SceneParams mirrored from the header), THREADS threads per block (its shared
    // memory) and one block per box. SceneParams::new checked that every pixel of the plane
    // lies inside `size` bytes, which `src` holds; `sums` holds gw x gh u64s (checked above).
    unsafe { go(b, cfg) }
}

/// Sums of a slot's channels (over its `npix` padded pixels) into `sums` (3 doubles), through
/// `partial` ([`SLOT_BLOCKS`] x 3 floats).
pub fn slot_sums(
    s: &CudaStream,
    k: &Kernels,
    slot: DevView<'_>,
    npix: usize,
    partial: DevView<'_>,
    sums: DevView<'_>,
) -> Result<()> {
    slot.check(Dtype::F32, npix * SLOT_CHANNELS, "frame slot")?;
    slot.check_aligned(VECTOR_BYTES, "frame slot")?;
    partial.check(Dtype::F32, SLOT_BLOCKS * 3, "slot partial sums")?;
    sums.check(Dtype::F64, 3, "slot sums")?;
    let npix_i = npix as i32;
    let nblk = SLOT_BLOCKS as i32;
    let (sp, pp, up) = (slot.device_ptr(), partial.device_ptr(), sums.device_ptr());
    let b = args!(s, k.get(KernelId::SlotSum), &sp, &npix_i, &pp);
    // SAFETY: `slot_sum(const float4 *slot, int npix, float *partial)`, in that order, with
    // THREADS threads per block (its shared memory) and SLOT_BLOCKS blocks, each writing its 3
    // partial floats; the slot holds npix aligned float4s (checked above).
    unsafe { go(b, blocks(SLOT_BLOCKS)) }?;
    let b = args!(s, k.get(KernelId::SlotSumFinal), &pp, &nblk, &up);
    // SAFETY: `slot_sum_final(const float *partial, int nblk, double *sums)`, in that order;
    // partial holds nblk x 3 floats and sums 3 doubles (checked above).
    unsafe { go(b, blocks(1)) }
}

/// The mean colour of the window's four slots into `mean` (3 floats).
pub fn window_mean(
    s: &CudaStream,
    k: &Kernels,
    sums: DevView<'_>,
    win: DevView<'_>,
    window: &[usize; 4],
    npix: usize,
    mean: DevView<'_>,
) -> Result<()> {
    check_window(win, window, sums.len() / SLOT_SUM_RECORD)?;
    sums.check(Dtype::F64, SLOT_SUM_RECORD, "slot sums")?;
    mean.check(Dtype::F32, 3, "window mean")?;
    let npix_i = npix as i32;
    let (sp, wp, mp) = (sums.device_ptr(), win.device_ptr(), mean.device_ptr());
    let b = args!(s, k.get(KernelId::WindowMean), &sp, &wp, &npix_i, &mp);
    // SAFETY: `window_mean(const double *sums, const int *win, int npix, float *mean)`, in
    // that order. win holds the 4 slot numbers of `window` (uploaded by the caller on this
    // stream), each below the number of sum records in sums (checked above); mean holds 3
    // floats.
    unsafe { go(b, blocks(1)) }
}

/// An error unless `win` holds 4 ints and the `window` it was uploaded from names slots below
/// `slots`.
fn check_window(win: DevView<'_>, window: &[usize; 4], slots: usize) -> Result<()> {
    win.check(Dtype::I32, window.len(), "window")?;
    if let Some(s) = window.iter().find(|&&s| s >= slots) {
        return Err(bad(format!("window slot {s} of {slots}")));
    }
    Ok(())
}

/// The network input of a window (kernels/pixels.cu `assemble`), space-to-depth with time in
/// channels: `[ph/2 + 3, pw/2 + 3, 48]` of the activation type.
#[derive(Clone, Copy, Debug)]
pub struct Assemble<'a> {
    /// float32 slots of `slot_pixels` pixels each.
    pub slots: DevView<'a>,
    pub slot_pixels: usize,
    /// The window's slot numbers on the device, and as uploaded.
    pub win: DevView<'a>,
    pub window: [usize; 4],
    /// float32 window mean (3).
    pub mean: DevView<'a>,
    pub pw: usize,
    pub ph: usize,
    pub out: DevView<'a>,
}

pub fn assemble(s: &CudaStream, k: &Kernels, a: &Assemble<'_>) -> Result<()> {
    let (pw, ph) = (a.pw, a.ph);
    if a.slot_pixels < pw * ph {
        return Err(bad(format!(
            "slots of {} pixels for {pw}x{ph}",
            a.slot_pixels
        )));
    }
    let per_slot = a.slot_pixels * SLOT_CHANNELS;
    check_window(a.win, &a.window, a.slots.len() / per_slot)?;
    a.slots.check(Dtype::F32, per_slot, "frame slots")?;
    a.slots.check_aligned(VECTOR_BYTES, "frame slots")?;
    a.mean.check(Dtype::F32, 3, "window mean")?;
    let n = (ph / 2 + 3) * (pw / 2 + 3);
    a.out.check(k.act, n * NET_IN_CHANNELS, "network input")?;
    a.out.check_aligned(VECTOR_BYTES, "network input")?;
    let (se, pw_i, ph_i) = (a.slot_pixels as i64, pw as i32, ph as i32);
    let (sp, wp, mp, op) = (
        a.slots.device_ptr(),
        a.win.device_ptr(),
        a.mean.device_ptr(),
        a.out.device_ptr(),
    );
    let f = k.get(KernelId::Assemble);
    let b = args!(s, f, &sp, &se, &wp, &mp, &pw_i, &ph_i, &op);
    // SAFETY: `assemble_<type>(const float4 *slots, i64 slot_elems, const int *win, const
    // float *mean, int pw, int ph, void *out)`, in that order. Checked above: each slot named
    // by the window (uploaded into win on this stream) lies in slots with pw x ph pixels, mean
    // holds 3 floats, out the input blocks x 48 channels, aligned for the vector stores.
    unsafe { go(b, grid(n)) }
}

/// The network's result as the output kernels read it: the outconv result `y`
/// `[ph/2, pw/2, kpad]` (2x2 blocks of pixels, channel `((y%2)*2 + x%2)*3n + 3f + c`), the
/// outconv bias (float32 `[3 n_out]`) and the window mean (float32 `[3]`).
#[derive(Clone, Copy, Debug)]
pub struct NetOut<'a> {
    pub y: DevView<'a>,
    pub kpad: usize,
    pub n_out: usize,
    pub bias: DevView<'a>,
    pub mean: DevView<'a>,
    pub geom: &'a FrameGeom,
}

impl NetOut<'_> {
    /// An error unless `y` holds the result of `n_out` frames at the padded size, in `kpad`
    /// channels, with `bias` and `mean` beside it.
    fn check(&self, k: &Kernels) -> Result<()> {
        if 4 * 3 * self.n_out > self.kpad {
            return Err(bad(format!(
                "{} frames in {} channels",
                self.n_out, self.kpad
            )));
        }
        let (pw, ph) = self.geom.padded();
        self.y
            .check(k.act, ph / 2 * (pw / 2) * self.kpad, "network output")?;
        self.bias
            .check(Dtype::F32, 3 * self.n_out, "outconv bias")?;
        self.mean.check(Dtype::F32, 3, "window mean")
    }
}

/// Output frame `frame` of the network's result, converted into `dst` (a frame's bytes) in
/// the frame's layout.
pub fn out_frame(
    s: &CudaStream,
    k: &Kernels,
    net: &NetOut<'_>,
    frame: usize,
    dst: DevView<'_>,
) -> Result<()> {
    net.check(k)?;
    if frame >= net.n_out {
        return Err(bad(format!("output frame {frame} of {}", net.n_out)));
    }
    dst.check(Dtype::U8, net.geom.size(), "output frame")?;
    let (w, h) = (net.geom.width(), net.geom.height());
    // One thread per pixel, or per chroma sample (a block of pixels) of Y'CbCr.
    let (bx, by) = net.geom.chroma_block().unwrap_or((1, 1));
    let n = w.div_ceil(bx) * h.div_ceil(by);
    let (kp, n3, fr) = (net.kpad as i32, 3 * net.n_out as i32, frame as i32);
    let (yp, bp, mp) = (
        net.y.device_ptr(),
        net.bias.device_ptr(),
        net.mean.device_ptr(),
    );
    let dp = dst.device_ptr();
    let f = k.get(KernelId::OutFrame);
    let b = args!(s, f, &yp, &kp, &n3, &bp, &mp, &fr, net.geom.params(), &dp);
    // SAFETY: `out_frame_<type>(const void *y, int kpad, int n3, const float *bias, const
    // float *mean, int k, FrameParams p, u8 *dst)`, in that order. Checked above: y holds the
    // padded block grid with the frame's 3 x 4 channels inside kpad, bias 3 n_out and mean 3
    // floats, dst the layout's size, inside which FrameGeom::new checked every plane.
    unsafe { go(b, grid(n)) }
}

/// All output frames of the network's result as planar float32 `[n_out, 3, height, width]`,
/// not clamped, into `dst`.
pub fn out_f32(s: &CudaStream, k: &Kernels, net: &NetOut<'_>, dst: DevView<'_>) -> Result<()> {
    net.check(k)?;
    let npix = net.geom.width() * net.geom.height();
    dst.check(Dtype::F32, net.n_out * 3 * npix, "float output")?;
    let (kp, n) = (net.kpad as i32, net.n_out as i32);
    let (yp, bp, mp) = (
        net.y.device_ptr(),
        net.bias.device_ptr(),
        net.mean.device_ptr(),
    );
    let dp = dst.device_ptr();
    let f = k.get(KernelId::OutF32);
    let b = args!(s, f, &yp, &kp, &bp, &mp, &n, net.geom.params(), &dp);
    // SAFETY: `out_f32_<type>(const void *y, int kpad, const float *bias, const float *mean,
    // int nout, FrameParams p, float *dst)`, in that order. Checked above: y, bias and mean as
    // for out_frame, dst n_out x 3 x w x h floats.
    unsafe { go(b, grid(npix)) }
}

/// Self-check of one convolution (the `verify` option): the direct convolution of `x` with
/// `w` into `refbuf` (float32), then max |y - ref|, max |ref| and the index of the largest
/// difference into `out` (3 x u32, zeroed by the caller).
#[derive(Clone, Copy, Debug)]
pub struct CheckConv<'a> {
    pub x: DevView<'a>,
    pub w: DevView<'a>,
    pub y: DevView<'a>,
    pub refbuf: DevView<'a>,
    pub out: DevView<'a>,
    pub x_dims: [usize; 5],
    pub shape: &'a ConvShape,
    pub y_dims: [usize; 5],
}

pub fn check_conv(s: &CudaStream, k: &Kernels, a: &CheckConv<'_>) -> Result<()> {
    let sh = a.shape;
    if sh.transposed || a.x_dims[1] != sh.c || a.y_dims[1] != sh.k {
        return Err(bad(format!(
            "direct check of {sh:?} from {:?} to {:?}",
            a.x_dims, a.y_dims
        )));
    }
    let dt = k.act;
    let n: usize = a.y_dims.iter().product();
    a.x.check(dt, a.x_dims.iter().product(), "checked conv input")?;
    a.w.check(dt, sh.filter_dims().iter().product(), "checked conv filter")?;
    a.y.check(dt, n, "checked conv output")?;
    a.refbuf.check(Dtype::F32, n, "direct conv output")?;
    a.out.check(Dtype::U32, 3, "conv check result")?;
    let [_, c, t, h, wd] = a.x_dims.map(|v| v as i32);
    let [_, ko, to, ho, wo] = a.y_dims.map(|v| v as i32);
    let [kt, kh, kw] = sh.taps.map(|v| v as i32);
    let [st, sth, stw] = sh.stride.map(|v| v as i32);
    let [pt, ph, pw] = sh.pad.map(|v| v as i32);
    let (xp, wp, yp, rp, op) = (
        a.x.device_ptr(),
        a.w.device_ptr(),
        a.y.device_ptr(),
        a.refbuf.device_ptr(),
        a.out.device_ptr(),
    );
    let f = k.get(KernelId::RefConv);
    let b = args!(
        s, f, &xp, &wp, &rp, &c, &t, &h, &wd, &ko, &kt, &kh, &kw, &st, &sth, &stw, &pt, &ph, &pw,
        &to, &ho, &wo
    );
    // SAFETY: `ref_conv_<type>(const void *x, const void *w, float *y, int c, int t, int h,
    // int w, int k, int kt, int kh, int kw, int st, int sh, int sw, int pt, int ph, int pw,
    // int to, int ho, int wo)`, in that order. Checked above: x holds [t, h, w, c] and w
    // [k, kt, kh, kw, c] in the activation type (the kernel skips taps outside x), refbuf the
    // n = to x ho x wo x k outputs.
    unsafe { go(b, grid(n)) }?;
    let n64 = n as i64;
    let b = args!(s, k.get(KernelId::MaxDiff), &yp, &rp, &n64, &op);
    // SAFETY: `max_diff_<type>(const void *a, const float *ref, i64 n, unsigned *out)`, in
    // that order; y and refbuf hold n values, out 3 u32 (checked above).
    unsafe { go(b, grid(n)) }
}

/// Output channels and tile edge of our outconv kernel (kernels/outconv.cu: `OC_KOUT`, `OC_T`;
/// `OC_CK` is [`OUTCONV_CHUNK`]).
pub const OUTCONV_KOUT: usize = 16;
const OUTCONV_TILE: usize = 16;
/// Input channels of one chunk of the outconv kernel: the channels must be a multiple.
pub const OUTCONV_CHUNK: usize = 16;

/// The outconv of a model with one output frame on our tensor-core kernel: the 4x4 conv of
/// `x` `[h2 + 3, w2 + 3, c]` (the padded map in space-to-depth form) with `w`
/// `[16, 4, 4, c]` into `y` `[h2, w2, 16]`, all in the activation type (float16 or bfloat16),
/// no bias.
#[derive(Clone, Copy, Debug)]
pub struct OutConv<'a> {
    pub x: DevView<'a>,
    pub w: DevView<'a>,
    pub y: DevView<'a>,
    pub h2: usize,
    pub w2: usize,
    pub c: usize,
}

/// Whether [`outconv`] takes this case: a half-precision type, 16 output channels and a
/// multiple of [`OUTCONV_CHUNK`] input channels (the engine uses cuDNN otherwise).
pub fn outconv_applies(act: Dtype, kout: usize, c: usize) -> bool {
    matches!(act, Dtype::F16 | Dtype::Bf16)
        && kout == OUTCONV_KOUT
        && c > 0
        && c.is_multiple_of(OUTCONV_CHUNK)
}

pub fn outconv(s: &CudaStream, k: &Kernels, a: &OutConv<'_>) -> Result<()> {
    let dt = k.act;
    let (h2, w2, c) = (a.h2, a.w2, a.c);
    if !outconv_applies(dt, OUTCONV_KOUT, c) || h2 == 0 || w2 == 0 {
        return Err(bad(format!("outconv kernel on {dt:?} [{h2}, {w2}, {c}]")));
    }
    let too_big = |v: usize| i32::try_from(v + 3).is_err();
    if too_big(h2) || too_big(w2) || i32::try_from(c).is_err() {
        return Err(bad(format!("outconv of [{h2}, {w2}, {c}]")));
    }
    a.x.check(dt, (h2 + 3) * (w2 + 3) * c, "outconv input")?;
    a.w.check(dt, OUTCONV_KOUT * 16 * c, "outconv weights")?;
    a.y.check(dt, h2 * w2 * OUTCONV_KOUT, "outconv output")?;
    a.x.check_aligned(VECTOR_BYTES, "outconv input")?;
    a.w.check_aligned(VECTOR_BYTES, "outconv weights")?;
    a.y.check_aligned(4, "outconv output")?;
    let (xp, wp, yp) = (a.x.device_ptr(), a.w.device_ptr(), a.y.device_ptr());
    let (h2_i, w2_i, c_i) = (h2 as i32, w2 as i32, c as i32);
    let b = args!(
        s,
        k.get(KernelId::OutConv),
        &xp,
        &wp,
        &yp,
        &h2_i,
        &w2_i,
        &c_i
    );
    let cfg = LaunchConfig {
        grid_dim: (
            w2.div_ceil(OUTCONV_TILE) as u32,
            h2.div_ceil(OUTCONV_TILE) as u32,
            1,
        ),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    // SAFETY: `outconv_<type>(const void *x, const void *w, void *y, int h2, int w2, int c)`,
    // in that order, with THREADS (= OC_THREADS, 256) threads and a block per OC_T x OC_T
    // tile of y. Checked above: a half-precision type (the only ones whose tensor-core path
    // runs), x holds (h2 + 3) (w2 + 3) c elements and w 16 x 16 x c, both 16-byte aligned
    // (the kernel's vector loads, c a multiple of OC_CK = 16), y h2 w2 16 elements, 4-byte
    // aligned (pairs of outputs); the kernel reads no cell past the padded map and writes no
    // output past y.
    unsafe { go(b, cfg) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grids_are_clamped_and_never_empty() {
        assert_eq!(grid(0).grid_dim.0, 1);
        assert_eq!(grid(THREADS as usize + 1).grid_dim.0, 2);
        assert_eq!(grid(usize::MAX / 2).grid_dim.0, MAX_BLOCKS as u32);
        assert_eq!(blocks(0).grid_dim.0, 1);
        assert_eq!(grid(1).block_dim.0, THREADS);
    }

    #[test]
    fn vectorised_epilogue_needs_vector_multiples() {
        let p = EpiParams {
            c: 64,
            out_stride: 96,
            out_off: 32,
            ..Default::default()
        };
        assert!(epilogue_vectorised(&p, 8));
        assert!(!epilogue_vectorised(&EpiParams { out_off: 4, ..p }, 8));
        assert!(epilogue_vectorised(&EpiParams { out_off: 4, ..p }, 4));
        // The second output's stride counts only when there is one.
        assert!(epilogue_vectorised(
            &EpiParams {
                out2_stride: 3,
                ..p
            },
            8
        ));
        assert!(!epilogue_vectorised(
            &EpiParams {
                out2: 1,
                out2_stride: 3,
                ..p
            },
            8
        ));
    }
}
