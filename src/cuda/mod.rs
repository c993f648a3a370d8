//! The CUDA engine: FLAVR on cuDNN and our NVRTC-compiled kernels (`kernels/*.cu`).
//! Only this module touches cudarc.

use std::sync::Arc;

use crate::backend::{Backend, BackendError, Precision};
use crate::model::Flavr;

/// Opens the CUDA backend on GPU `device_id`: creates the context and stream, compiles the
/// kernels and uploads the weights. Fails with a message naming the cause (no driver, no GPU
/// with that id, no cuDNN, no NVRTC, out of memory).
pub fn open(
    model: Arc<Flavr>,
    device_id: u32,
    precision: Precision,
) -> Result<Box<dyn Backend>, BackendError> {
    let _ = (model, device_id, precision);
    Err(BackendError::NoDevice(
        "the CUDA backend is not built yet".into(),
    ))
}
