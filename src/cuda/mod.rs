//! The CUDA engine: FLAVR on cuDNN and our NVRTC-compiled kernels (`kernels/*.cu`).
//! Only this module touches cudarc.
//!
//! - [`engine`]: the network on one GPU (plan, buffers, launches).
//! - [`cudnn`]: the convolution library's descriptors and algorithm search.
//! - [`cudnn_graph`]: cuDNN's graph API: more engine configurations, timed at configure.
//! - [`kernels`] / [`launch`]: our kernels, compiled at open, and their typed launches.
//! - [`plan_cache`]: the graph API's tuning results, kept between runs.
//! - [`memory`]: device and pinned buffers, and the liveness-based arena planner.
//! - [`weights`]: host-side rearrangement of the weights for the GPU.
//! - [`synth`]: deterministic synthetic weights (tests, benchmark).

pub mod cudnn;
pub mod cudnn_graph;
pub mod engine;
pub mod error;
pub mod kernels;
pub mod launch;
pub mod memory;
pub mod plan_cache;
pub mod synth;
pub mod weights;

use std::sync::Arc;

use crate::backend::{Backend, BackendError, FrameLayout, Precision};
use crate::model::Flavr;

pub use engine::{Engine, MemoryReport};
pub use error::CudaError;

/// Opens the CUDA backend on GPU `device_id`: creates the context and stream, compiles the
/// kernels and uploads the weights. Fails with a message naming the cause (no driver, no GPU
/// with that id, no cuDNN, no NVRTC, out of memory).
pub fn open(
    model: Arc<Flavr>,
    device_id: u32,
    precision: Precision,
) -> Result<Box<dyn Backend>, BackendError> {
    let engine = open_engine(&model, device_id, precision)?;
    Ok(Box::new(CudaBackend { engine }))
}

/// Opens the engine itself (tests, the benchmark), with the same errors as [`open`].
pub fn open_engine(
    model: &Flavr,
    device_id: u32,
    precision: Precision,
) -> Result<Engine, CudaError> {
    // A library that loads but lacks a symbol makes cudarc panic; report it as an error.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        Engine::open(model, device_id, precision)
    }))
    .unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Err(CudaError::Unsupported(format!(
            "CUDA libraries unusable: {msg}"
        )))
    })
}

/// [`Backend`] over an [`Engine`].
pub struct CudaBackend {
    engine: Engine,
}

impl Backend for CudaBackend {
    fn name(&self) -> String {
        self.engine.name()
    }

    fn n_outputs(&self) -> usize {
        self.engine.n_outputs()
    }

    fn configure(&mut self, layout: &FrameLayout) -> Result<(), BackendError> {
        Ok(self.engine.configure(layout)?)
    }

    fn load_frame(&mut self, slot: usize, frame: &[u8]) -> Result<(), BackendError> {
        Ok(self.engine.load_frame(slot, frame)?)
    }

    fn interpolate(
        &mut self,
        window: [usize; 4],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), BackendError> {
        Ok(self.engine.interpolate(window, outputs)?)
    }
}
