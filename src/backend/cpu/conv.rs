//! Convolutions as matrix products (im2col + GEMM through the `gemm` crate).
//!
//! Activations are planar `[C, T, H, W]` float32 (one sample). A convolution with `Cout`
//! outputs, `Cin` inputs and `taps` kernel positions is the product
//! `out[Cout, N] = weight[Cout, Cin * taps] x col[Cin * taps, N]`, where `N` runs over the
//! output positions `(t, oh, ow)` and `col` gathers, for each input channel and tap, the input
//! value each output position sees (zero outside the input: zero padding).
//!
//! The output positions are cut into chunks of a few hundred columns. Each chunk gathers its
//! own slice of `col` into a per-thread scratch buffer and multiplies it with a single-threaded
//! GEMM; chunks run in parallel on the rayon pool. This keeps the gathered matrix small (a few
//! MB per thread at any frame size) and the GEMMs at the crate's best single-core rate.
//!
//! A transposed convolution `(3, 4, 4) / (1, 2, 2) / (1, 1, 1)` is split into its four
//! sub-pixel phases: output pixels `(2m + py, 2n + px)` of one phase form an ordinary
//! convolution of the input with 3 x 2 x 2 taps, so each phase is one GEMM with `Cin * 12`
//! columns, and its result is scattered to every other output pixel.

use std::cell::RefCell;

use rayon::prelude::*;

use crate::model::Tensor;

/// Shape of a planar activation `[c, t, h, w]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub c: usize,
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl Dims {
    pub fn new(c: usize, t: usize, h: usize, w: usize) -> Dims {
        Dims { c, t, h, w }
    }

    /// Elements of one channel (`t * h * w`).
    pub fn plane(&self) -> usize {
        self.t * self.h * self.w
    }

    /// Elements of the whole activation.
    pub fn len(&self) -> usize {
        self.c * self.plane()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Activation applied to a convolution's output (after its bias), in the same pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Act {
    None,
    Relu,
    /// LeakyReLU with slope 0.2.
    LeakyRelu,
}

impl Act {
    #[inline(always)]
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::None => v,
            Act::Relu => v.max(0.0),
            Act::LeakyRelu => {
                if v < 0.0 {
                    0.2 * v
                } else {
                    v
                }
            }
        }
    }
}

/// One kernel position: the input offset `(dt, dy, dx)` it reads, relative to the output
/// position scaled by the stride (`(t + dt, oh * s + dy, ow * s + dx)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tap {
    dt: isize,
    dy: isize,
    dx: isize,
}

/// Floats of gathered input a chunk may use (16 MB per thread).
const COL_BUDGET: usize = 4 << 20;
/// Most bytes a thread's [`Scratch`] grows to: the gathered input, and a transposed conv's
/// product (`cout` x `CHUNK_TARGET` floats, `cout` at most 1024 here; 3 MB).
pub const SCRATCH_BYTES_PER_THREAD: u64 = 4 * (COL_BUDGET + 1024 * CHUNK_TARGET) as u64;
/// Preferred output positions per chunk (the crate's single-core GEMM is at its best with a few
/// hundred columns).
const CHUNK_TARGET: usize = 768;
/// Fewest output positions per chunk, unless the whole output is smaller.
const CHUNK_MIN: usize = 128;

/// Per-thread scratch: the gathered input of a chunk and, for transposed convs, the product
/// before it is scattered.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    tmp: Vec<f32>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's scratch buffers (a fresh one if they are already in use).
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|s| match s.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Scratch::default()),
    })
}

fn grow(v: &mut Vec<f32>, len: usize) -> &mut [f32] {
    if v.len() < len {
        v.resize(len, 0.0);
    }
    &mut v[..len]
}

/// Output positions per chunk for `n` positions and `k` gathered rows.
fn chunk_len(n: usize, k: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    // At least two chunks per thread where the output allows it.
    let even = n.div_ceil(2 * threads);
    let by_budget = (COL_BUDGET / k.max(1)).max(16);
    let len = CHUNK_TARGET.min(even.max(CHUNK_MIN)).min(by_budget);
    // Multiples of 16 suit the GEMM micro-kernels.
    let len = if len >= 32 { len / 16 * 16 } else { len };
    len.clamp(1, n.max(1))
}

/// A raw pointer that chunks running on several threads write through, each to its own
/// disjoint set of elements.
#[derive(Clone, Copy)]
struct SharedMut(*mut f32);
// SAFETY: only used for writes to disjoint elements (each chunk owns its output positions),
// while the owning `&mut [f32]` is borrowed for the duration of the parallel loop.
unsafe impl Send for SharedMut {}
unsafe impl Sync for SharedMut {}

impl SharedMut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `dst[m, n] = lhs[m, k] x rhs[k, n]`, all row-major with the given row strides,
/// single-threaded.
///
/// # Safety
/// The pointers must address matrices of these shapes and strides; `dst` must not alias the
/// inputs.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_rm(
    m: usize,
    n: usize,
    k: usize,
    dst: *mut f32,
    dst_rs: usize,
    lhs: *const f32,
    lhs_rs: usize,
    rhs: *const f32,
    rhs_rs: usize,
) {
    // SAFETY: forwarded from the caller. `gemm` computes alpha * dst + beta * lhs * rhs; with
    // read_dst = false, dst is only written.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            false,
            lhs,
            1,
            lhs_rs as isize,
            rhs,
            1,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// Gathers `col[(ci, tap), j] = x[ci, t + dt, oh * s + dy, ow * s + dx]` (zero outside `x`)
/// for the output positions `p0 + j`, `j < col.len() / rows`, of an output `to x ho x wo`.
#[allow(clippy::too_many_arguments)]
fn im2col(
    x: &[f32],
    xd: Dims,
    taps: &[Tap],
    stride: usize,
    ho: usize,
    wo: usize,
    p0: usize,
    col: &mut [f32],
) {
    let nc = col.len() / (xd.c * taps.len());
    let plane = xd.plane();
    let (t_in, h_in, w_in) = (xd.t as isize, xd.h as isize, xd.w as isize);
    for ci in 0..xd.c {
        let xc = &x[ci * plane..(ci + 1) * plane];
        for (ti, tap) in taps.iter().enumerate() {
            let row = &mut col[(ci * taps.len() + ti) * nc..][..nc];
            let mut j = 0;
            while j < nc {
                let p = p0 + j;
                let r = p / wo;
                let ow0 = p % wo;
                let len = (wo - ow0).min(nc - j);
                let seg = &mut row[j..j + len];
                j += len;
                let it = (r / ho) as isize + tap.dt;
                let ih = ((r % ho) * stride) as isize + tap.dy;
                if it < 0 || it >= t_in || ih < 0 || ih >= h_in {
                    seg.fill(0.0);
                    continue;
                }
                let src = &xc[((it * h_in + ih) * w_in) as usize..][..xd.w];
                gather_row(seg, src, ow0, stride, tap.dx, w_in);
            }
        }
    }
}

/// `seg[j] = src[(ow0 + j) * s + dx]`, zero where that index is outside `0..w`.
#[inline]
fn gather_row(seg: &mut [f32], src: &[f32], ow0: usize, s: usize, dx: isize, w: isize) {
    let len = seg.len() as isize;
    let base = (ow0 * s) as isize + dx; // input column of seg[0]
    let si = s as isize;
    // First j with base + j * s >= 0, and first j with base + j * s >= w.
    let lo = if base >= 0 { 0 } else { (-base + si - 1) / si }.min(len);
    let hi = if base >= w {
        0
    } else {
        (w - base + si - 1) / si
    }
    .clamp(lo, len);
    seg[..lo as usize].fill(0.0);
    seg[hi as usize..].fill(0.0);
    let start = (base + lo * si) as usize;
    let mid = &mut seg[lo as usize..hi as usize];
    if s == 1 {
        mid.copy_from_slice(&src[start..start + mid.len()]);
    } else {
        for (d, i) in mid.iter_mut().zip((start..).step_by(s)) {
            *d = src[i];
        }
    }
}

/// Checks that `x` holds `xd` and `out` holds `od`; the error names the layer kind `what`.
fn check_buffers(what: &str, x: &[f32], xd: Dims, out: &[f32], od: Dims) -> Result<(), String> {
    if x.len() != xd.len() || out.len() != od.len() {
        return Err(format!(
            "{what} buffers hold {} and {} elements for shapes {xd:?} -> {od:?}",
            x.len(),
            out.len()
        ));
    }
    Ok(())
}

/// A 3D (or 2D, as `kT = 1`) convolution prepared as a GEMM: zero padding, spatial stride `s`
/// on H and W, time never strided.
#[derive(Clone, Debug)]
pub struct Conv {
    pub cin: usize,
    pub cout: usize,
    /// Kernel extent (kT, kH, kW) and padding (pT, pH, pW).
    pub kernel: [usize; 3],
    pub pad: [usize; 3],
    pub stride: usize,
    taps: Vec<Tap>,
    /// `[cout, cin * taps]`, the PyTorch weight as it is.
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Conv {
    /// From a PyTorch Conv3d weight `[Cout, Cin, kT, kH, kW]` or Conv2d weight
    /// `[Cout, Cin, kH, kW]` (a 3D conv with kT = 1), with padding `pad` (T, H, W) and spatial
    /// stride `stride`.
    pub fn new(
        weight: &Tensor,
        bias: Option<&Tensor>,
        pad: [usize; 3],
        stride: usize,
    ) -> Result<Conv, String> {
        let s = &weight.shape;
        let (cout, cin, kernel) = match s.len() {
            5 => (s[0], s[1], [s[2], s[3], s[4]]),
            4 => (s[0], s[1], [1, s[2], s[3]]),
            _ => return Err(format!("conv weight of rank {} (shape {s:?})", s.len())),
        };
        if stride == 0 || kernel.contains(&0) || cin == 0 || cout == 0 {
            return Err(format!("degenerate conv: weight {s:?}, stride {stride}"));
        }
        if let Some(b) = bias
            && b.shape != [cout]
        {
            return Err(format!("conv bias {:?} for {cout} outputs", b.shape));
        }
        let mut taps = Vec::with_capacity(kernel.iter().product());
        for kt in 0..kernel[0] {
            for kh in 0..kernel[1] {
                for kw in 0..kernel[2] {
                    taps.push(Tap {
                        dt: kt as isize - pad[0] as isize,
                        dy: kh as isize - pad[1] as isize,
                        dx: kw as isize - pad[2] as isize,
                    });
                }
            }
        }
        Ok(Conv {
            cin,
            cout,
            kernel,
            pad,
            stride,
            taps,
            weight: weight.data.clone(),
            bias: bias.map(|b| b.data.clone()),
        })
    }

    /// A 1x1 (x1) convolution from a `[cout, cin]` matrix, no bias.
    pub fn pointwise(weight: Vec<f32>, cout: usize, cin: usize) -> Result<Conv, String> {
        let t = Tensor::new(vec![cout, cin, 1, 1, 1], weight)
            .ok_or_else(|| format!("pointwise weight is not {cout} x {cin}"))?;
        Conv::new(&t, None, [0; 3], 1)
    }

    /// Output shape for an input of shape `x`, or an error when the input does not fit.
    pub fn out_dims(&self, x: Dims) -> Result<Dims, String> {
        if x.c != self.cin {
            return Err(format!(
                "conv expects {} input channels, got {}",
                self.cin, x.c
            ));
        }
        let ext = |n: usize, p: usize, k: usize, s: usize| -> Result<usize, String> {
            let padded = n + 2 * p;
            if padded < k {
                return Err(format!(
                    "input extent {n} (+2*{p}) is smaller than the kernel {k}"
                ));
            }
            Ok((padded - k) / s + 1)
        };
        Ok(Dims {
            c: self.cout,
            t: ext(x.t, self.pad[0], self.kernel[0], 1)?,
            h: ext(x.h, self.pad[1], self.kernel[1], self.stride)?,
            w: ext(x.w, self.pad[2], self.kernel[2], self.stride)?,
        })
    }

    /// Multiply-adds of one run on an input of shape `x` (zero padding counted).
    pub fn macs(&self, x: Dims) -> Result<f64, String> {
        let o = self.out_dims(x)?;
        Ok(o.len() as f64 * (self.cin * self.taps.len()) as f64)
    }

    /// Runs the convolution: `out = act(conv(x) + bias)`. `out` holds exactly the output
    /// (`out_dims(xd).len()` elements). Returns the per-channel sums of the output (in f64)
    /// when `sums` is set, else an empty vector.
    pub fn run(
        &self,
        x: &[f32],
        xd: Dims,
        out: &mut [f32],
        act: Act,
        sums: bool,
    ) -> Result<Vec<f64>, String> {
        let od = self.out_dims(xd)?;
        check_buffers("conv", x, xd, out, od)?;
        let n = od.plane();
        let k = self.cin * self.taps.len();
        // A 1x1x1 stride-1 conv reads its input as it is: no gathering.
        let direct = self.taps.len() == 1
            && self.taps[0]
                == Tap {
                    dt: 0,
                    dy: 0,
                    dx: 0,
                }
            && self.stride == 1;
        let chunk = chunk_len(n, if direct { 1 } else { k });
        let n_chunks = n.div_ceil(chunk);
        let dst = SharedMut(out.as_mut_ptr());
        let cout = self.cout;
        let result = (0..n_chunks)
            .into_par_iter()
            .map(|ci| {
                let p0 = ci * chunk;
                let nc = chunk.min(n - p0);
                let dst = dst.get();
                with_scratch(|scratch| {
                    // SAFETY: `dst` has cout rows of n elements (checked above); this chunk
                    // writes columns p0..p0 + nc only, no other chunk touches them. `col` and
                    // `x` are separate allocations from `out`.
                    unsafe {
                        if direct {
                            gemm_rm(
                                cout,
                                nc,
                                k,
                                dst.add(p0),
                                n,
                                self.weight.as_ptr(),
                                k,
                                x.as_ptr().add(p0),
                                n,
                            );
                        } else {
                            let col = grow(&mut scratch.col, k * nc);
                            im2col(x, xd, &self.taps, self.stride, od.h, od.w, p0, col);
                            gemm_rm(
                                cout,
                                nc,
                                k,
                                dst.add(p0),
                                n,
                                self.weight.as_ptr(),
                                k,
                                col.as_ptr(),
                                nc,
                            );
                        }
                    }
                });
                let mut s = if sums { vec![0.0f64; cout] } else { Vec::new() };
                for co in 0..cout {
                    // SAFETY: as above, row co's columns p0..p0 + nc belong to this chunk.
                    let row = unsafe { std::slice::from_raw_parts_mut(dst.add(co * n + p0), nc) };
                    let b = self.bias.as_ref().map_or(0.0, |b| b[co]);
                    let mut acc = 0.0f32;
                    for v in row.iter_mut() {
                        *v = act.apply(*v + b);
                        acc += *v;
                    }
                    if sums {
                        s[co] = acc as f64;
                    }
                }
                s
            })
            .reduce(Vec::new, add_sums);
        Ok(if sums && result.is_empty() {
            vec![0.0; cout]
        } else {
            result
        })
    }
}

fn add_sums(mut a: Vec<f64>, b: Vec<f64>) -> Vec<f64> {
    if a.is_empty() {
        return b;
    }
    for (x, y) in a.iter_mut().zip(&b) {
        *x += y;
    }
    a
}

/// ConvTranspose3d with kernel (3, 4, 4), stride (1, 2, 2), padding (1, 1, 1): the decoder's
/// upsampling conv. Output shape `[Cout, T, 2H, 2W]`.
#[derive(Clone, Debug)]
pub struct ConvTranspose {
    pub cin: usize,
    pub cout: usize,
    /// Taps of each phase `py * 2 + px`, 12 each, in the column order of `phases`.
    taps: [Vec<Tap>; 4],
    /// Weight matrix of each phase, `[cout, cin * 12]`.
    phases: [Vec<f32>; 4],
    bias: Option<Vec<f32>>,
}

/// For output row parity `py`, the two (kernel row, input row offset) pairs that reach it:
/// `oh = 2 * ih - 1 + kh`, so `oh = 2m` takes (kh 3, ih m - 1) and (kh 1, ih m), and
/// `oh = 2m + 1` takes (kh 2, ih m) and (kh 0, ih m + 1).
const PHASE_TAPS: [[(usize, isize); 2]; 2] = [[(3, -1), (1, 0)], [(2, 0), (0, 1)]];

impl ConvTranspose {
    /// From a PyTorch ConvTranspose3d weight `[Cin, Cout, 3, 4, 4]` and bias `[Cout]`.
    pub fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<ConvTranspose, String> {
        let s = &weight.shape;
        if s.len() != 5 || s[2..] != [3, 4, 4] || s[0] == 0 || s[1] == 0 {
            return Err(format!(
                "transposed conv weight {s:?}, expected [Cin, Cout, 3, 4, 4]"
            ));
        }
        let (cin, cout) = (s[0], s[1]);
        if let Some(b) = bias
            && b.shape != [cout]
        {
            return Err(format!(
                "transposed conv bias {:?} for {cout} outputs",
                b.shape
            ));
        }
        let w = &weight.data;
        let mut taps: [Vec<Tap>; 4] = Default::default();
        let mut phases: [Vec<f32>; 4] = Default::default();
        for (py, rows) in PHASE_TAPS.iter().enumerate() {
            for (px, cols) in PHASE_TAPS.iter().enumerate() {
                let ph = py * 2 + px;
                // ot = it - 1 + kt, so kernel step kt reads input time t + 1 - kt.
                for kt in 0..3 {
                    for &(_, dy) in rows {
                        for &(_, dx) in cols {
                            taps[ph].push(Tap {
                                dt: 1 - kt as isize,
                                dy,
                                dx,
                            });
                        }
                    }
                }
                let k = cin * 12;
                let mut m = vec![0.0f32; cout * k];
                for co in 0..cout {
                    for ci in 0..cin {
                        let mut j = 0;
                        for kt in 0..3 {
                            for &(kh, _) in rows {
                                for &(kw, _) in cols {
                                    m[co * k + ci * 12 + j] =
                                        w[(((ci * cout + co) * 3 + kt) * 4 + kh) * 4 + kw];
                                    j += 1;
                                }
                            }
                        }
                    }
                }
                phases[ph] = m;
            }
        }
        Ok(ConvTranspose {
            cin,
            cout,
            taps,
            phases,
            bias: bias.map(|b| b.data.clone()),
        })
    }

    pub fn out_dims(&self, x: Dims) -> Result<Dims, String> {
        if x.c != self.cin {
            return Err(format!(
                "transposed conv expects {} input channels, got {}",
                self.cin, x.c
            ));
        }
        Ok(Dims::new(self.cout, x.t, 2 * x.h, 2 * x.w))
    }

    /// Multiply-adds of one run (12 taps per output position).
    pub fn macs(&self, x: Dims) -> Result<f64, String> {
        Ok(self.out_dims(x)?.len() as f64 * (self.cin * 12) as f64)
    }

    /// `out = act(conv_transpose(x) + bias)`; returns per-channel sums when `sums` is set.
    pub fn run(
        &self,
        x: &[f32],
        xd: Dims,
        out: &mut [f32],
        act: Act,
        sums: bool,
    ) -> Result<Vec<f64>, String> {
        let od = self.out_dims(xd)?;
        check_buffers("transposed conv", x, xd, out, od)?;
        let n = xd.plane(); // input positions; each phase makes one output per input position
        let k = self.cin * 12;
        let chunk = chunk_len(n, k);
        let n_chunks = n.div_ceil(chunk);
        let dst = SharedMut(out.as_mut_ptr());
        let (cout, wi, ow) = (self.cout, xd.w, od.w);
        let out_plane = od.plane();
        let result = (0..n_chunks)
            .into_par_iter()
            .map(|ci| {
                let p0 = ci * chunk;
                let nc = chunk.min(n - p0);
                let dst = dst.get();
                let mut s = if sums { vec![0.0f64; cout] } else { Vec::new() };
                with_scratch(|scratch| {
                    let Scratch { col, tmp } = scratch;
                    let col = grow(col, k * nc);
                    let tmp = grow(tmp, cout * nc);
                    for py in 0..2 {
                        for px in 0..2 {
                            let ph = py * 2 + px;
                            im2col(x, xd, &self.taps[ph], 1, xd.h, xd.w, p0, col);
                            // SAFETY: tmp is cout x nc, col is k x nc, the weights cout x k.
                            unsafe {
                                gemm_rm(
                                    cout,
                                    nc,
                                    k,
                                    tmp.as_mut_ptr(),
                                    nc,
                                    self.phases[ph].as_ptr(),
                                    k,
                                    col.as_ptr(),
                                    nc,
                                );
                            }
                            for co in 0..cout {
                                let b = self.bias.as_ref().map_or(0.0, |b| b[co]);
                                let src = &tmp[co * nc..(co + 1) * nc];
                                let mut acc = 0.0f32;
                                let mut j = 0;
                                while j < nc {
                                    // Input position p = (t, m, n) -> output (t, 2m + py, 2n + px).
                                    let p = p0 + j;
                                    let r = p / wi; // t * H + m
                                    let n0 = p % wi;
                                    let len = (wi - n0).min(nc - j);
                                    let (t, m) = (r / xd.h, r % xd.h);
                                    let base =
                                        co * out_plane + (t * od.h + 2 * m + py) * ow + 2 * n0 + px;
                                    for (q, &v) in src[j..j + len].iter().enumerate() {
                                        let v = act.apply(v + b);
                                        acc += v;
                                        // SAFETY: the output index lies in `out` (m < H,
                                        // n0 + q < W), and positions of this chunk and
                                        // phase belong to no other chunk.
                                        unsafe { *dst.add(base + 2 * q) = v };
                                    }
                                    j += len;
                                }
                                if sums {
                                    s[co] += acc as f64;
                                }
                            }
                        }
                    }
                });
                s
            })
            .reduce(Vec::new, add_sums);
        Ok(if sums && result.is_empty() {
            vec![0.0; cout]
        } else {
            result
        })
    }
}
