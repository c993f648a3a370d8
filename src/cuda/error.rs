//! Errors of the CUDA engine, each naming its cause, and their mapping to [`BackendError`].

use cudarc::cudnn::sys::cudnnStatus_t;
use cudarc::driver::{DriverError, sys::CUresult};
use cudarc::nvrtc::CompileError;

use crate::backend::BackendError;

#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    #[error(
        "the NVIDIA driver library (libcuda.so.1) cannot be loaded: no NVIDIA driver installed"
    )]
    NoDriver,
    #[error(
        "cuDNN (libcudnn.so.9) cannot be loaded: install cuDNN 9 or add its folder to LD_LIBRARY_PATH"
    )]
    NoCudnn,
    #[error(
        "NVRTC (libnvrtc.so) cannot be loaded: install the CUDA runtime compiler or add its folder \
         (e.g. /usr/local/cuda/lib64) to LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    #[error("no CUDA device with id {id}: {count} device(s) found")]
    NoSuchDevice { id: u32, count: i32 },
    #[error("CUDA device {id} is unusable: {cause}")]
    Device { id: u32, cause: String },
    #[error("CUDA call {call} failed: {cause}")]
    Driver { call: &'static str, cause: String },
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    #[error("kernel compilation with NVRTC failed: {0}")]
    Compile(String),
    #[error("cuDNN call {call} failed: {status:?}")]
    Cudnn {
        call: &'static str,
        status: cudnnStatus_t,
    },
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Layout(String),
    /// A broken internal invariant (a device buffer too small for a launch, ...): a bug.
    #[error("internal error of the CUDA engine: {0}")]
    Internal(String),
    /// An engine option (a `FLAVR_CUDA_*` variable) that cannot be read.
    #[error("{0}")]
    Option(String),
}

/// `Result` with the engine's error.
pub type Result<T, E = CudaError> = std::result::Result<T, E>;

/// Text of a driver error ("CUDA_ERROR_OUT_OF_MEMORY: out of memory").
pub fn driver_text(e: &DriverError) -> String {
    let name = e.error_name().map(|s| s.to_string_lossy().into_owned());
    let text = e.error_string().map(|s| s.to_string_lossy().into_owned());
    match (name, text) {
        (Ok(n), Ok(t)) => format!("{n}: {t}"),
        _ => format!("{:?}", e.0),
    }
}

/// Adds the name of the failed call to a driver error; out-of-memory becomes its own variant.
pub trait DriverContext<T> {
    fn during(self, call: &'static str) -> Result<T>;
}

impl<T> DriverContext<T> for std::result::Result<T, DriverError> {
    fn during(self, call: &'static str) -> Result<T> {
        self.map_err(|e| {
            if e.0 == CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                CudaError::OutOfMemory(format!("{call}: {}", driver_text(&e)))
            } else {
                CudaError::Driver {
                    call,
                    cause: driver_text(&e),
                }
            }
        })
    }
}

/// Checks a cuDNN status.
pub fn cudnn_check(status: cudnnStatus_t, call: &'static str) -> Result<()> {
    match status {
        cudnnStatus_t::CUDNN_STATUS_SUCCESS => Ok(()),
        cudnnStatus_t::CUDNN_STATUS_ALLOC_FAILED => Err(CudaError::OutOfMemory(format!(
            "{call}: cuDNN could not allocate memory"
        ))),
        status => Err(CudaError::Cudnn { call, status }),
    }
}

impl From<CompileError> for CudaError {
    fn from(e: CompileError) -> CudaError {
        match e {
            CompileError::CompileError { log, options, .. } => CudaError::Compile(format!(
                "options {options:?}; log:\n{}",
                log.to_string_lossy()
            )),
            other => CudaError::Compile(format!("{other:?}")),
        }
    }
}

impl From<CudaError> for BackendError {
    fn from(e: CudaError) -> BackendError {
        let text = e.to_string();
        match e {
            CudaError::NoDriver | CudaError::NoSuchDevice { .. } | CudaError::Device { .. } => {
                BackendError::NoDevice(text)
            }
            CudaError::NoCudnn | CudaError::NoNvrtc | CudaError::Compile(_) => {
                BackendError::Library(text)
            }
            CudaError::OutOfMemory(_) => BackendError::OutOfMemory(text),
            CudaError::Layout(_) => BackendError::Layout(text),
            CudaError::Driver { .. }
            | CudaError::Cudnn { .. }
            | CudaError::Unsupported(_)
            | CudaError::Internal(_)
            | CudaError::Option(_) => BackendError::Failed(text),
        }
    }
}
