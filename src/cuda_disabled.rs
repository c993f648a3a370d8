// SPDX-License-Identifier: MIT OR Apache-2.0
//! Stands in for the CUDA engine ([`crate::cuda`]) in a build without the `cuda` cargo
//! feature: the element's calls compile, and opening the backend fails with an error that
//! names the missing feature (`backend=cuda` fails at start, `backend=auto` falls back to the
//! CPU with a warning).

use std::sync::Arc;

pub use crate::backend::SharedContext;
use crate::backend::{Backend, BackendError, Precision};
use crate::model::Flavr;

/// The engine's errors: in this build only [`open`] fails, with a [`BackendError`].
#[derive(Debug, thiserror::Error)]
pub enum CudaError {}

impl From<CudaError> for BackendError {
    fn from(e: CudaError) -> BackendError {
        match e {}
    }
}

/// The engine's options; there is nothing to set in a build without CUDA.
#[derive(Clone, Debug, Default)]
pub struct EngineOptions;

impl EngineOptions {
    /// Reads no variable: the `FLAVR_CUDA_*` switches mean nothing without the engine.
    pub fn from_env() -> Result<EngineOptions, CudaError> {
        Ok(EngineOptions)
    }
}

/// Always fails: this build has no CUDA backend.
pub fn open(
    _model: Arc<Flavr>,
    _device_id: u32,
    _precision: Precision,
    _options: EngineOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    Err(BackendError::NotBuilt {
        backend: "CUDA",
        feature: "cuda",
    })
}

/// Always fails: this build has no CUDA backend.
pub fn open_in(
    model: Arc<Flavr>,
    device_id: u32,
    precision: Precision,
    options: EngineOptions,
    _shared: Option<SharedContext>,
) -> Result<Box<dyn Backend>, BackendError> {
    open(model, device_id, precision, options)
}

/// Always fails: this build has no CUDA backend.
pub fn device_count() -> Result<usize, BackendError> {
    Err(BackendError::NotBuilt {
        backend: "CUDA",
        feature: "cuda",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_names_the_missing_feature() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/flavr2x_w8.safetensors");
        let model = Arc::new(Flavr::load_path(&path).unwrap());
        let options = EngineOptions::from_env().unwrap();
        let e = open(model, 0, Precision::Fp16, options).err().unwrap();
        let text = e.to_string();
        assert!(text.contains("`cuda` cargo feature"), "{text}");
    }
}
