//! Typed launches of our kernels: each function sets the grid, pushes the arguments in the
//! kernel's order and launches on the given stream. Parameter structs mirror the kernels'
//! (`#[repr(C)]`, same field order).

use cudarc::driver::{CudaStream, DeviceRepr, LaunchConfig, PushKernelArg};

use super::error::{DriverContext, Result};
use super::kernels::Kernels;

/// Threads per block of every grid-stride kernel (the reductions assume 256).
pub const THREADS: u32 = 256;
/// Most blocks of a grid-stride kernel.
const MAX_BLOCKS: usize = 8192;
/// Blocks of an SE pooling pass (its partial-sum buffer holds this many rows of channels).
pub const POOL_BLOCKS: usize = 1024;
/// Blocks of a slot sum (partial buffer of 3 floats each).
pub const SLOT_BLOCKS: usize = 256;

/// Mirrors `EpiParams` in kernels/elementwise.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EpiParams {
    pub x: u64,
    pub resid: u64,
    pub bias: u64,
    pub gate: u64,
    pub out: u64,
    pub out2: u64,
    pub rows: i64,
    pub c: i32,
    pub act: i32,
    pub out_stride: i32,
    pub out_off: i32,
    pub out2_stride: i32,
    pub out2_off: i32,
    pub fold_t: i32,
    pub fold_p: i32,
    pub ph_t: i32,
    pub ph_h: i32,
    pub ph_w: i32,
    /// Period of the bias and gate channels (0: `c`).
    pub gc: i32,
}
// SAFETY: plain old data, same layout as the CUDA struct.
unsafe impl DeviceRepr for EpiParams {}

pub const ACT_NONE: i32 = 0;
pub const ACT_RELU: i32 = 1;
pub const ACT_LRELU: i32 = 2;

/// Mirrors `FrameParams` in kernels/pixels.cu.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FrameParams {
    pub off: [i64; 3],
    pub stride: [i32; 3],
    pub format: i32,
    pub width: i32,
    pub height: i32,
    pub pw: i32,
    pub ph: i32,
    /// The CPU reference's Y'CbCr constants (same struct, same arithmetic).
    pub yuv: crate::backend::pixels::YuvCoeffs,
}
// SAFETY: plain old data, same layout as the CUDA struct.
unsafe impl DeviceRepr for FrameParams {}

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

/// Launches `f` on stream `s` with the arguments in order.
macro_rules! launch {
    ($s:expr, $f:expr, $cfg:expr, $($arg:expr),+ $(,)?) => {{
        let mut b = $s.launch_builder($f);
        $( b.arg($arg); )+
        // SAFETY: every call site passes the kernel's arguments in order with matching types,
        // and the device pointers come from live allocations planned for these shapes.
        unsafe { b.launch($cfg) }.during("cuLaunchKernel").map(|_| ())
    }};
}

/// Whether `epilogue` (16-byte vectors) can run; otherwise `epilogue1`.
pub fn epilogue_vectorised(p: &EpiParams, v: usize) -> bool {
    let v = v as i32;
    p.c % v == 0
        && p.out_stride % v == 0
        && p.out_off % v == 0
        && (p.out2 == 0 || (p.out2_stride % v == 0 && p.out2_off % v == 0))
        && p.gc % v == 0
}

pub fn epilogue(s: &CudaStream, k: &Kernels, p: &EpiParams, v: usize) -> Result<()> {
    let vec = epilogue_vectorised(p, v);
    let per = if vec { v } else { 1 };
    let n = p.rows as usize * p.c as usize / per;
    let f = if vec { &k.epilogue } else { &k.epilogue1 };
    launch!(s, f, grid(n), p)
}

/// Reflection pad `pad` with LeakyReLU, written in 2x2 space-to-depth form; `phased`: the
/// input is in sub-pixel phase layout.
pub fn reflect_pad(
    s: &CudaStream,
    k: &Kernels,
    x: u64,
    y: u64,
    h: usize,
    w: usize,
    c: usize,
    pad: usize,
    v: usize,
    phased: bool,
) -> Result<()> {
    let vec = c.is_multiple_of(v);
    let n = (h + 2 * pad) * (w + 2 * pad) * c / if vec { v } else { 1 };
    let (h, w, c, pad, vec) = (h as i32, w as i32, c as i32, pad as i32, vec as i32);
    let phased = phased as i32;
    launch!(
        s,
        &k.reflect_pad,
        grid(n),
        &x,
        &y,
        &h,
        &w,
        &c,
        &pad,
        &vec,
        &phased
    )
}

/// Sub-pixel phase geometry for [`pool`]: logical grid `[t, h, w]` inside a physical
/// `[t, h + 1, w + 1]` grid, offset by (a, b).
#[derive(Clone, Copy, Debug)]
pub struct PhaseGeo {
    pub h: usize,
    pub w: usize,
    pub a: usize,
    pub b: usize,
}

/// Partial channel sums of `x [rows, c]` with rows `rs` elements apart (or of a phase, see
/// [`PhaseGeo`]) into `partial`; returns the number of partial rows written.
#[allow(clippy::too_many_arguments)]
pub fn pool(
    s: &CudaStream,
    k: &Kernels,
    v: usize,
    x: u64,
    rows: usize,
    c: usize,
    rs: usize,
    partial: u64,
    geo: Option<PhaseGeo>,
) -> Result<usize> {
    let lanes = c / v;
    let vec = c.is_multiple_of(v)
        && rs.is_multiple_of(v)
        && lanes > 0
        && (THREADS as usize).is_multiple_of(lanes);
    let rpb = rows.div_ceil(POOL_BLOCKS).max(1);
    let nblk = rows.div_ceil(rpb);
    let (rows_i, c_i, rs_i, rpb_i, vec_i) =
        (rows as i64, c as i32, rs as i32, rpb as i32, vec as i32);
    let g = geo.map_or([0i32; 4], |g| {
        [g.h as i32, g.w as i32, g.a as i32, g.b as i32]
    });
    launch!(
        s,
        &k.pool,
        blocks(nblk),
        &x,
        &rows_i,
        &c_i,
        &rs_i,
        &rpb_i,
        &partial,
        &vec_i,
        &g[0],
        &g[1],
        &g[2],
        &g[3]
    )?;
    Ok(nblk)
}

/// The SE gate from `nblk` partial rows over `rows` rows: mean (+ `bias`), matrix-vector and
/// sigmoid into `gate`.
#[allow(clippy::too_many_arguments)]
pub fn se_finish(
    s: &CudaStream,
    k: &Kernels,
    partial: u64,
    nblk: usize,
    rows: usize,
    c: usize,
    bias: u64,
    w: u64,
    b: u64,
    mean: u64,
    gate: u64,
) -> Result<()> {
    let (nblk_i, c_i) = (nblk as i32, c as i32);
    let inv = 1.0f32 / rows as f32;
    launch!(
        s,
        &k.se_mean,
        grid(c),
        &partial,
        &nblk_i,
        &c_i,
        &bias,
        &inv,
        &mean
    )?;
    launch!(
        s,
        &k.se_gate,
        blocks(c.div_ceil(8)),
        &mean,
        &w,
        &b,
        &c_i,
        &gate
    )
}

pub fn frame_to_slot(
    s: &CudaStream,
    k: &Kernels,
    src: u64,
    p: &FrameParams,
    slot: u64,
) -> Result<()> {
    launch!(
        s,
        &k.frame_to_slot,
        grid((p.pw * p.ph) as usize),
        &src,
        p,
        &slot
    )
}

pub fn f32_to_slot(
    s: &CudaStream,
    k: &Kernels,
    src: u64,
    p: &FrameParams,
    slot: u64,
) -> Result<()> {
    launch!(
        s,
        &k.f32_to_slot,
        grid((p.pw * p.ph) as usize),
        &src,
        p,
        &slot
    )
}

/// Sums of a slot's channels (over its padded frame) into `sums` (3 doubles).
pub fn slot_sums(
    s: &CudaStream,
    k: &Kernels,
    slot: u64,
    npix: usize,
    partial: u64,
    sums: u64,
) -> Result<()> {
    let npix_i = npix as i32;
    let nblk = SLOT_BLOCKS as i32;
    launch!(
        s,
        &k.slot_sum,
        blocks(SLOT_BLOCKS),
        &slot,
        &npix_i,
        &partial
    )?;
    launch!(s, &k.slot_sum_final, blocks(1), &partial, &nblk, &sums)
}

pub fn window_mean(
    s: &CudaStream,
    k: &Kernels,
    sums: u64,
    win: u64,
    npix: usize,
    mean: u64,
) -> Result<()> {
    let npix_i = npix as i32;
    launch!(s, &k.window_mean, blocks(1), &sums, &win, &npix_i, &mean)
}

/// The network input of a window, space-to-depth with time in channels (kernels/pixels.cu
/// `assemble`).
#[allow(clippy::too_many_arguments)]
pub fn assemble(
    s: &CudaStream,
    k: &Kernels,
    slots: u64,
    slot_elems: usize,
    win: u64,
    mean: u64,
    pw: usize,
    ph: usize,
    out: u64,
) -> Result<()> {
    let n = (ph / 2 + 3) * (pw / 2 + 3);
    let (se, pw, ph) = (slot_elems as i64, pw as i32, ph as i32);
    launch!(
        s,
        &k.assemble,
        grid(n),
        &slots,
        &se,
        &win,
        &mean,
        &pw,
        &ph,
        &out
    )
}

#[allow(clippy::too_many_arguments)]
pub fn out_frame(
    s: &CudaStream,
    k: &Kernels,
    y: u64,
    kpad: usize,
    n_out: usize,
    bias: u64,
    mean: u64,
    frame: usize,
    p: &FrameParams,
    dst: u64,
) -> Result<()> {
    let yuv = p.format == 5 || p.format == 6;
    let n = if yuv {
        ((p.width as usize).div_ceil(2)) * ((p.height as usize).div_ceil(2))
    } else {
        (p.width * p.height) as usize
    };
    let (kp, n3, fr) = (kpad as i32, 3 * n_out as i32, frame as i32);
    launch!(
        s,
        &k.out_frame,
        grid(n),
        &y,
        &kp,
        &n3,
        &bias,
        &mean,
        &fr,
        p,
        &dst
    )
}

#[allow(clippy::too_many_arguments)]
pub fn out_f32(
    s: &CudaStream,
    k: &Kernels,
    y: u64,
    kpad: usize,
    bias: u64,
    mean: u64,
    nout: usize,
    p: &FrameParams,
    dst: u64,
) -> Result<()> {
    let (kp, n) = (kpad as i32, nout as i32);
    launch!(
        s,
        &k.out_f32,
        grid((p.width * p.height) as usize),
        &y,
        &kp,
        &bias,
        &mean,
        &n,
        p,
        &dst
    )
}

/// Self-check of one convolution (FLAVR_CUDA_VERIFY): the direct convolution of `x` with `w`
/// into `refbuf` (float32), then max |y - ref|, max |ref| and the index of the largest
/// difference into `out` (3 x u32, zeroed by the caller).
#[allow(clippy::too_many_arguments)]
pub fn check_conv(
    s: &CudaStream,
    k: &Kernels,
    x: u64,
    w: u64,
    y: u64,
    refbuf: u64,
    out: u64,
    x_dims: [usize; 5],
    shape: &super::weights::ConvShape,
    y_dims: [usize; 5],
) -> Result<()> {
    let [_, c, t, h, wd] = x_dims.map(|v| v as i32);
    let [_, ko, to, ho, wo] = y_dims.map(|v| v as i32);
    let [kt, kh, kw] = shape.taps.map(|v| v as i32);
    let [st, sh, sw] = shape.stride.map(|v| v as i32);
    let [pt, ph, pw] = shape.pad.map(|v| v as i32);
    let n: usize = y_dims.iter().product();
    launch!(
        s,
        &k.ref_conv,
        grid(n),
        &x,
        &w,
        &refbuf,
        &c,
        &t,
        &h,
        &wd,
        &ko,
        &kt,
        &kh,
        &kw,
        &st,
        &sh,
        &sw,
        &pt,
        &ph,
        &pw,
        &to,
        &ho,
        &wo
    )?;
    let n64 = n as i64;
    launch!(s, &k.max_diff, grid(n), &y, &refbuf, &n64, &out)
}
