//! Thin RAII wrappers over the cuDNN legacy convolution API (through cudarc's `sys` bindings):
//! the handle, and a convolution ready to run with the two calls the network needs (forward
//! convolution, and backward-data for the transposed convolutions), on typed device views.
//! The descriptors are in [`desc`], the configure-time algorithm search in [`search`]; the
//! graph (backend) API's convolutions in [`backend`], their tuning results kept between runs
//! in [`plan_cache`]; [`probe_fp8`] probes the graph API's float8 convolutions.

mod backend;
mod desc;
mod plan_cache;
pub mod probe_fp8;
mod search;

pub use backend::{ConvEpilogue, GraphChoice};

pub(crate) use backend::{ConvBufs, ConvGeom, GraphConv};
pub use plan_cache::PlanCache;
pub use search::ConvChoice;
pub(crate) use search::{AlgoCache, GraphRequest, Search, shape_key};

use std::ffi::c_void;

use cudarc::cudnn::sys;
use cudarc::driver::CudaStream;

use super::error::{CudaError, Result, cudnn_check};
use super::memory::{DevView, Dtype};
use crate::backend::Precision;
use desc::{ConvDesc, FilterDesc, TensorDesc};

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
    /// The raw handle, for the graph API (backend.rs).
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

/// A row of cuDNN's timing table.
trait Perf {
    fn candidate(&self) -> Candidate;
}

impl Perf for sys::cudnnConvolutionFwdAlgoPerf_t {
    fn candidate(&self) -> Candidate {
        Candidate {
            algo: Algo::Fwd(self.algo),
            status: self.status,
            ms: self.time,
            workspace: self.memory,
            math: self.mathType,
        }
    }
}

impl Perf for sys::cudnnConvolutionBwdDataAlgoPerf_t {
    fn candidate(&self) -> Candidate {
        Candidate {
            algo: Algo::BwdData(self.algo),
            status: self.status,
            ms: self.time,
            workspace: self.memory,
            math: self.mathType,
        }
    }
}

/// How many rows of a timing table cuDNN may fill.
const PERF_ROWS: usize = 8;

/// A convolution ready to run: descriptors for input, filter and output, and the element
/// counts its buffers must hold. A transposed convolution is cuDNN's backward-data of the
/// convolution that maps its output to its input.
pub struct Conv {
    pub transposed: bool,
    x: TensorDesc,
    w: FilterDesc,
    conv: ConvDesc,
    y: TensorDesc,
    dtype: Dtype,
    /// Elements of the input, the filter and the output.
    lens: [usize; 3],
    pub chosen: Option<Candidate>,
}

impl Conv {
    /// `x_dims`/`y_dims`: `[n, c, d, h, w]` of the input and output; `w_dims`: `[k, c, t, r, s]`
    /// (for a transposed conv, k = its input channels, c = its output channels); all in the
    /// activation type of `precision`.
    pub fn new(
        precision: Precision,
        transposed: bool,
        x_dims: [usize; 5],
        w_dims: [usize; 5],
        y_dims: [usize; 5],
        pad: [usize; 3],
        stride: [usize; 3],
    ) -> Result<Conv> {
        let dt = data_type(precision);
        let conv = Conv {
            transposed,
            x: TensorDesc::ndhwc(dt, x_dims)?,
            w: FilterDesc::khwc(dt, w_dims)?,
            conv: ConvDesc::new(pad, stride)?,
            y: TensorDesc::ndhwc(dt, y_dims)?,
            dtype: Dtype::act(precision),
            lens: [x_dims, w_dims, y_dims].map(|d| d.iter().product()),
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
                    conv.conv.raw(),
                    fwd_in.raw(),
                    conv.w.raw(),
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

    /// An error unless the views hold this convolution's input, filter and output.
    fn check(&self, x: &DevView<'_>, w: &DevView<'_>, y: &DevView<'_>) -> Result<()> {
        let [xn, wn, yn] = self.lens;
        x.check(self.dtype, xn, "convolution input")?;
        w.check(self.dtype, wn, "convolution filter")?;
        y.check(self.dtype, yn, "convolution output")
    }

    /// Times the algorithms on real buffers (workspace `ws`; `y` is overwritten); every
    /// candidate cuDNN reports, with its status. See [`search::choose`].
    pub fn find(
        &mut self,
        dnn: &Dnn,
        precision: Precision,
        x: DevView<'_>,
        w: DevView<'_>,
        y: DevView<'_>,
        ws: DevView<'_>,
    ) -> Result<Vec<Candidate>> {
        use sys::cudnnMathType_t::*;
        self.check(&x, &w, &y)?;
        let search_math = if precision == Precision::Fp32 {
            CUDNN_FMA_MATH
        } else {
            CUDNN_TENSOR_OP_MATH
        };
        self.conv.set_math(search_math)?;
        let (xp, wp, yp) = (x.device_ptr(), w.device_ptr(), y.device_ptr());
        let (wsp, ws_bytes) = (ws.device_ptr(), ws.bytes());
        let mut n = 0i32;
        let found = if self.transposed {
            // SAFETY: plain old data, zero is a valid bit pattern for every field.
            let mut perf = [unsafe { std::mem::zeroed::<sys::cudnnConvolutionBwdDataAlgoPerf_t>() };
                PERF_ROWS];
            // SAFETY: the views hold the descriptors' shapes in their type (checked above) and
            // the workspace has ws_bytes bytes; cuDNN writes at most PERF_ROWS rows into perf.
            cudnn_check(
                unsafe {
                    sys::cudnnFindConvolutionBackwardDataAlgorithmEx(
                        dnn.h,
                        self.w.raw(),
                        wp as *const c_void,
                        self.x.raw(),
                        xp as *const c_void,
                        self.conv.raw(),
                        self.y.raw(),
                        yp as *mut c_void,
                        PERF_ROWS as i32,
                        &mut n,
                        perf.as_mut_ptr(),
                        wsp as *mut c_void,
                        ws_bytes,
                    )
                },
                "cudnnFindConvolutionBackwardDataAlgorithmEx",
            )?;
            rows(&perf, n)
        } else {
            // SAFETY: as above.
            let mut perf =
                [unsafe { std::mem::zeroed::<sys::cudnnConvolutionFwdAlgoPerf_t>() }; PERF_ROWS];
            // SAFETY: as above.
            cudnn_check(
                unsafe {
                    sys::cudnnFindConvolutionForwardAlgorithmEx(
                        dnn.h,
                        self.x.raw(),
                        xp as *const c_void,
                        self.w.raw(),
                        wp as *const c_void,
                        self.conv.raw(),
                        self.y.raw(),
                        yp as *mut c_void,
                        PERF_ROWS as i32,
                        &mut n,
                        perf.as_mut_ptr(),
                        wsp as *mut c_void,
                        ws_bytes,
                    )
                },
                "cudnnFindConvolutionForwardAlgorithmEx",
            )?;
            rows(&perf, n)
        };
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

    /// Runs the convolution on the handle's stream: y = conv(x, w), with workspace `ws` (at
    /// least what the chosen algorithm needs; none when it needs none).
    pub fn run(
        &self,
        dnn: &Dnn,
        x: DevView<'_>,
        w: DevView<'_>,
        y: DevView<'_>,
        ws: Option<DevView<'_>>,
    ) -> Result<()> {
        let Some(c) = self.chosen else {
            return Err(CudaError::Unsupported(
                "convolution run before an algorithm was chosen".into(),
            ));
        };
        self.check(&x, &w, &y)?;
        let (wsp, ws_bytes) = ws.map_or((0, 0), |v| (v.device_ptr(), v.bytes()));
        if ws_bytes < c.workspace {
            return Err(CudaError::Internal(format!(
                "convolution needs {} bytes of workspace, has {ws_bytes}",
                c.workspace
            )));
        }
        let (xp, wp, yp) = (x.device_ptr(), w.device_ptr(), y.device_ptr());
        let (alpha, beta) = (1.0f32, 0.0f32);
        let a = &alpha as *const f32 as *const c_void;
        let b = &beta as *const f32 as *const c_void;
        match c.algo {
            Algo::Fwd(algo) => cudnn_check(
                // SAFETY: x, w, y hold the descriptors' shapes in their type and the workspace
                // is at least the chosen algorithm's (all checked above); alpha and beta live
                // across the call.
                unsafe {
                    sys::cudnnConvolutionForward(
                        dnn.h,
                        a,
                        self.x.raw(),
                        xp as *const c_void,
                        self.w.raw(),
                        wp as *const c_void,
                        self.conv.raw(),
                        algo,
                        wsp as *mut c_void,
                        ws_bytes,
                        b,
                        self.y.raw(),
                        yp as *mut c_void,
                    )
                },
                "cudnnConvolutionForward",
            ),
            Algo::BwdData(algo) => cudnn_check(
                // SAFETY: as for the forward call.
                unsafe {
                    sys::cudnnConvolutionBackwardData(
                        dnn.h,
                        a,
                        self.w.raw(),
                        wp as *const c_void,
                        self.x.raw(),
                        xp as *const c_void,
                        self.conv.raw(),
                        algo,
                        wsp as *mut c_void,
                        ws_bytes,
                        b,
                        self.y.raw(),
                        yp as *mut c_void,
                    )
                },
                "cudnnConvolutionBackwardData",
            ),
        }
    }
}

/// The first `n` rows of a timing table as candidates.
fn rows<P: Perf>(perf: &[P], n: i32) -> Vec<Candidate> {
    perf[..(n.max(0) as usize).min(perf.len())]
        .iter()
        .map(Perf::candidate)
        .collect()
}

fn as_i32(d: &[usize; 5]) -> [i32; 5] {
    d.map(|v| v as i32)
}
