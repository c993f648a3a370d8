//! Thin RAII wrappers over the cuDNN legacy convolution API (through cudarc's `sys` bindings):
//! channels-last 5-D descriptors, algorithm search at configure time, and the two calls the
//! network needs (forward convolution, and backward-data for the transposed convolutions).

use std::ffi::c_void;

use cudarc::cudnn::sys;
use cudarc::driver::CudaStream;

use super::error::{CudaError, Result, cudnn_check};
use crate::backend::Precision;

pub fn data_type(p: Precision) -> sys::cudnnDataType_t {
    match p {
        Precision::Fp32 => sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
        Precision::Fp16 => sys::cudnnDataType_t::CUDNN_DATA_HALF,
        Precision::Bf16 => sys::cudnnDataType_t::CUDNN_DATA_BFLOAT16,
    }
}

/// cuDNN's version number (e.g. 91400 for 9.14.0), or an error when the library is absent.
pub fn version() -> Result<usize> {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Err(CudaError::NoCudnn);
    }
    // SAFETY: no arguments; the library is loaded.
    Ok(unsafe { sys::cudnnGetVersion() })
}

/// A cuDNN handle bound to one stream.
pub struct Dnn {
    h: sys::cudnnHandle_t,
}

// SAFETY: the handle is used from one thread at a time (the engine is not Sync).
unsafe impl Send for Dnn {}

impl Dnn {
    /// The raw handle, for the graph API (super::cudnn_graph).
    pub(super) fn handle(&self) -> sys::cudnnHandle_t {
        self.h
    }

    pub fn new(stream: &CudaStream) -> Result<Dnn> {
        version()?;
        let mut h = std::ptr::null_mut();
        // SAFETY: out-pointer to a handle; the context is current (bound by the caller).
        cudnn_check(unsafe { sys::cudnnCreate(&mut h) }, "cudnnCreate")?;
        let dnn = Dnn { h };
        // SAFETY: valid handle and stream of the same context.
        cudnn_check(
            unsafe { sys::cudnnSetStream(dnn.h, stream.cu_stream() as sys::cudaStream_t) },
            "cudnnSetStream",
        )?;
        Ok(dnn)
    }
}

impl Drop for Dnn {
    fn drop(&mut self) {
        // SAFETY: created by cudnnCreate, destroyed once.
        let _ = unsafe { sys::cudnnDestroy(self.h) };
    }
}

/// A packed channels-last tensor `[n, c, d, h, w]` (memory order n, d, h, w, c).
pub struct TensorDesc(sys::cudnnTensorDescriptor_t);
// SAFETY: an opaque host-side descriptor, owned; used by one thread at a time.
unsafe impl Send for TensorDesc {}

impl TensorDesc {
    pub fn ndhwc(dt: sys::cudnnDataType_t, dims: [usize; 5]) -> Result<TensorDesc> {
        let [_, c, d, h, w] = dims;
        let dims_i = to_int(&dims)?;
        let strides = to_int(&[d * h * w * c, 1, h * w * c, w * c, c])?;
        let mut t = std::ptr::null_mut();
        // SAFETY: out-pointer to a new descriptor.
        cudnn_check(
            unsafe { sys::cudnnCreateTensorDescriptor(&mut t) },
            "cudnnCreateTensorDescriptor",
        )?;
        let desc = TensorDesc(t);
        // SAFETY: 5 dims and 5 strides.
        cudnn_check(
            unsafe {
                sys::cudnnSetTensorNdDescriptor(desc.0, dt, 5, dims_i.as_ptr(), strides.as_ptr())
            },
            "cudnnSetTensorNdDescriptor",
        )?;
        Ok(desc)
    }
}

impl Drop for TensorDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { sys::cudnnDestroyTensorDescriptor(self.0) };
    }
}

/// A channels-last filter `[k, c, t, r, s]` (memory order k, t, r, s, c).
pub struct FilterDesc(sys::cudnnFilterDescriptor_t);
// SAFETY: as for TensorDesc.
unsafe impl Send for FilterDesc {}

impl FilterDesc {
    pub fn khwc(dt: sys::cudnnDataType_t, dims: [usize; 5]) -> Result<FilterDesc> {
        let dims_i = to_int(&dims)?;
        let mut f = std::ptr::null_mut();
        // SAFETY: out-pointer to a new descriptor.
        cudnn_check(
            unsafe { sys::cudnnCreateFilterDescriptor(&mut f) },
            "cudnnCreateFilterDescriptor",
        )?;
        let desc = FilterDesc(f);
        // SAFETY: 5 dims.
        cudnn_check(
            unsafe {
                sys::cudnnSetFilterNdDescriptor(
                    desc.0,
                    dt,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
                    5,
                    dims_i.as_ptr(),
                )
            },
            "cudnnSetFilterNdDescriptor",
        )?;
        Ok(desc)
    }
}

impl Drop for FilterDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { sys::cudnnDestroyFilterDescriptor(self.0) };
    }
}

/// A 3-D cross-correlation with padding and stride, float32 accumulation.
pub struct ConvDesc(sys::cudnnConvolutionDescriptor_t);
// SAFETY: as for TensorDesc.
unsafe impl Send for ConvDesc {}

impl ConvDesc {
    pub fn new(pad: [usize; 3], stride: [usize; 3]) -> Result<ConvDesc> {
        let mut c = std::ptr::null_mut();
        // SAFETY: out-pointer to a new descriptor.
        cudnn_check(
            unsafe { sys::cudnnCreateConvolutionDescriptor(&mut c) },
            "cudnnCreateConvolutionDescriptor",
        )?;
        let desc = ConvDesc(c);
        let pad = to_int(&pad)?;
        let stride = to_int(&stride)?;
        let dil = [1i32; 3];
        // SAFETY: arrays of length 3.
        cudnn_check(
            unsafe {
                sys::cudnnSetConvolutionNdDescriptor(
                    desc.0,
                    3,
                    pad.as_ptr(),
                    stride.as_ptr(),
                    dil.as_ptr(),
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                )
            },
            "cudnnSetConvolutionNdDescriptor",
        )?;
        Ok(desc)
    }

    pub fn set_math(&self, m: sys::cudnnMathType_t) -> Result<()> {
        // SAFETY: valid descriptor.
        cudnn_check(
            unsafe { sys::cudnnSetConvolutionMathType(self.0, m) },
            "cudnnSetConvolutionMathType",
        )
    }
}

impl Drop for ConvDesc {
    fn drop(&mut self) {
        // SAFETY: created once, destroyed once.
        let _ = unsafe { sys::cudnnDestroyConvolutionDescriptor(self.0) };
    }
}

fn to_int(v: &[usize]) -> Result<Vec<i32>> {
    v.iter()
        .map(|&x| {
            i32::try_from(x).map_err(|_| CudaError::Unsupported(format!("dimension {x} too large")))
        })
        .collect()
}

/// The algorithm picked for one convolution.
#[derive(Clone, Copy, Debug)]
pub enum Algo {
    Fwd(sys::cudnnConvolutionFwdAlgo_t),
    BwdData(sys::cudnnConvolutionBwdDataAlgo_t),
}

/// One candidate from cuDNN's search.
#[derive(Clone, Copy, Debug)]
pub struct Candidate {
    pub algo: Algo,
    pub status: sys::cudnnStatus_t,
    pub ms: f32,
    pub workspace: usize,
    pub math: sys::cudnnMathType_t,
}

/// Whether an algorithm computes the convolution as a (direct or implicit) GEMM: the same
/// products summed in float32. FFT and Winograd algorithms transform the data and round
/// differently (larger errors, unwelcome in the float32 exact mode); with channels-last data
/// the GEMM family was also the fastest wherever the search could choose freely (fp16/bf16 at
/// every size measured). FLAVR_CUDA_ALL_ALGOS=1 lets the search use every algorithm.
pub fn gemm_family(a: Algo) -> bool {
    use sys::cudnnConvolutionBwdDataAlgo_t as B;
    use sys::cudnnConvolutionFwdAlgo_t as F;
    match a {
        Algo::Fwd(f) => matches!(
            f,
            F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM
                | F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM
                | F::CUDNN_CONVOLUTION_FWD_ALGO_GEMM
                | F::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT
        ),
        Algo::BwdData(b) => matches!(
            b,
            B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 | B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
        ),
    }
}

/// The fastest successful candidate whose workspace fits `ws_cap`, whose algorithm is of the
/// GEMM family (see [`gemm_family`]) and whose arithmetic the precision allows (float32: FMA
/// only, no TF32 tensor cores).
pub fn choose(precision: Precision, found: &[Candidate], ws_cap: usize) -> Option<Candidate> {
    use sys::cudnnMathType_t::*;
    let all = std::env::var_os("FLAVR_CUDA_ALL_ALGOS").is_some();
    found
        .iter()
        .filter(|c| {
            c.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                && c.workspace <= ws_cap
                && (all || gemm_family(c.algo))
                && (precision != Precision::Fp32
                    || matches!(c.math, CUDNN_FMA_MATH | CUDNN_DEFAULT_MATH))
        })
        .min_by(|a, b| a.ms.total_cmp(&b.ms))
        .copied()
}

/// A convolution ready to run: descriptors for input, filter and output. A transposed
/// convolution is cuDNN's backward-data of the convolution that maps its output to its input.
pub struct Conv {
    pub transposed: bool,
    x: TensorDesc,
    w: FilterDesc,
    conv: ConvDesc,
    y: TensorDesc,
    pub chosen: Option<Candidate>,
}

impl Conv {
    /// `x_dims`/`y_dims`: `[n, c, d, h, w]` of the input and output; `w_dims`: `[k, c, t, r, s]`
    /// (for a transposed conv, k = its input channels, c = its output channels).
    pub fn new(
        dt: sys::cudnnDataType_t,
        transposed: bool,
        x_dims: [usize; 5],
        w_dims: [usize; 5],
        y_dims: [usize; 5],
        pad: [usize; 3],
        stride: [usize; 3],
    ) -> Result<Conv> {
        let conv = Conv {
            transposed,
            x: TensorDesc::ndhwc(dt, x_dims)?,
            w: FilterDesc::khwc(dt, w_dims)?,
            conv: ConvDesc::new(pad, stride)?,
            y: TensorDesc::ndhwc(dt, y_dims)?,
            chosen: None,
        };
        // cuDNN's idea of the forward output must match ours (input for a transposed conv).
        let (fwd_in, fwd_out) = if transposed {
            (&conv.y, as_i32(&x_dims))
        } else {
            (&conv.x, as_i32(&y_dims))
        };
        let mut out = [0i32; 5];
        // SAFETY: valid descriptors, output array of 5.
        cudnn_check(
            unsafe {
                sys::cudnnGetConvolutionNdForwardOutputDim(
                    conv.conv.0,
                    fwd_in.0,
                    conv.w.0,
                    5,
                    out.as_mut_ptr(),
                )
            },
            "cudnnGetConvolutionNdForwardOutputDim",
        )?;
        if out != fwd_out {
            return Err(CudaError::Unsupported(format!(
                "convolution shape mismatch: cuDNN computes {out:?}, the plan expects {fwd_out:?}"
            )));
        }
        Ok(conv)
    }

    /// Times the algorithms on real buffers (workspace `ws` of `ws_cap` bytes); every
    /// candidate cuDNN reports, with its status. See [`choose`].
    pub fn find(
        &mut self,
        dnn: &Dnn,
        precision: Precision,
        x: u64,
        w: u64,
        y: u64,
        ws: u64,
        ws_cap: usize,
    ) -> Result<Vec<Candidate>> {
        use sys::cudnnMathType_t::*;
        let search_math = if precision == Precision::Fp32 {
            CUDNN_FMA_MATH
        } else {
            CUDNN_TENSOR_OP_MATH
        };
        self.conv.set_math(search_math)?;
        let mut found = Vec::new();
        let mut n = 0i32;
        if self.transposed {
            let mut perf =
                [unsafe { std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>() }; 8];
            // SAFETY: descriptors match the buffers (planned from the same shapes); the
            // output buffer and workspace are scratch at configure time.
            cudnn_check(
                unsafe {
                    sys::cudnnFindConvolutionBackwardDataAlgorithmEx(
                        dnn.h,
                        self.w.0,
                        w as *const c_void,
                        self.x.0,
                        x as *const c_void,
                        self.conv.0,
                        self.y.0,
                        y as *mut c_void,
                        perf.len() as i32,
                        &mut n,
                        perf.as_mut_ptr(),
                        ws as *mut c_void,
                        ws_cap,
                    )
                },
                "cudnnFindConvolutionBackwardDataAlgorithmEx",
            )?;
            for p in &perf[..n.max(0) as usize] {
                found.push(Candidate {
                    algo: Algo::BwdData(p.algo),
                    status: p.status,
                    ms: p.time,
                    workspace: p.memory,
                    math: p.mathType,
                });
            }
        } else {
            let mut perf = [unsafe { std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>() }; 8];
            // SAFETY: as above.
            cudnn_check(
                unsafe {
                    sys::cudnnFindConvolutionForwardAlgorithmEx(
                        dnn.h,
                        self.x.0,
                        x as *const c_void,
                        self.w.0,
                        w as *const c_void,
                        self.conv.0,
                        self.y.0,
                        y as *mut c_void,
                        perf.len() as i32,
                        &mut n,
                        perf.as_mut_ptr(),
                        ws as *mut c_void,
                        ws_cap,
                    )
                },
                "cudnnFindConvolutionForwardAlgorithmEx",
            )?;
            for p in &perf[..n.max(0) as usize] {
                found.push(Candidate {
                    algo: Algo::Fwd(p.algo),
                    status: p.status,
                    ms: p.time,
                    workspace: p.memory,
                    math: p.mathType,
                });
            }
        }
        Ok(found)
    }

    /// Uses `c` from now on (float32 always runs with FMA arithmetic only).
    pub fn use_candidate(&mut self, precision: Precision, c: Candidate) -> Result<()> {
        let math = if precision == Precision::Fp32 {
            sys::cudnnMathType_t::CUDNN_FMA_MATH
        } else {
            c.math
        };
        self.conv.set_math(math)?;
        self.chosen = Some(c);
        Ok(())
    }

    /// Runs the convolution on the handle's stream: y = conv(x, w).
    ///
    /// # Safety
    /// `x`, `w`, `y` must be device buffers of the shapes given to `new`, and `ws` at least
    /// the chosen candidate's workspace.
    pub unsafe fn run(
        &self,
        dnn: &Dnn,
        x: u64,
        w: u64,
        y: u64,
        ws: u64,
        ws_bytes: usize,
    ) -> Result<()> {
        let Some(c) = self.chosen else {
            return Err(CudaError::Unsupported(
                "convolution run before an algorithm was chosen".into(),
            ));
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        let a = &alpha as *const f32 as *const c_void;
        let b = &beta as *const f32 as *const c_void;
        match c.algo {
            Algo::Fwd(algo) => cudnn_check(
                // SAFETY: the caller guarantees the buffers.
                unsafe {
                    sys::cudnnConvolutionForward(
                        dnn.h,
                        a,
                        self.x.0,
                        x as *const c_void,
                        self.w.0,
                        w as *const c_void,
                        self.conv.0,
                        algo,
                        ws as *mut c_void,
                        ws_bytes,
                        b,
                        self.y.0,
                        y as *mut c_void,
                    )
                },
                "cudnnConvolutionForward",
            ),
            Algo::BwdData(algo) => cudnn_check(
                // SAFETY: the caller guarantees the buffers.
                unsafe {
                    sys::cudnnConvolutionBackwardData(
                        dnn.h,
                        a,
                        self.w.0,
                        w as *const c_void,
                        self.x.0,
                        x as *const c_void,
                        self.conv.0,
                        algo,
                        ws as *mut c_void,
                        ws_bytes,
                        b,
                        self.y.0,
                        y as *mut c_void,
                    )
                },
                "cudnnConvolutionBackwardData",
            ),
        }
    }
}

fn as_i32(d: &[usize; 5]) -> [i32; 5] {
    [
        d[0] as i32,
        d[1] as i32,
        d[2] as i32,
        d[3] as i32,
        d[4] as i32,
    ]
}
