//! The CUDA engine: FLAVR on cuDNN and our NVRTC-compiled kernels (`kernels/*.cu`).
//! Only this module touches cudarc.
//!
//! - [`Engine`] (engine.rs): the network on one GPU (open, the run).
//! - configure.rs: [`Engine::configure`], the plan for a frame size (graph, arena, algorithm
//!   search and graph-API fusions, frame I/O, the outconv on our kernel).
//! - graph.rs: the forward pass as data (steps over buffers) and the buffers' lifetimes.
//! - arena.rs: the liveness-based arena planner.
//! - io.rs: frame slots, transfer buffers, frames in and out.
//! - diag.rs: test, benchmark and diagnostic entry points of the engine.
//! - cudnn/: the convolution library's handle, descriptors and algorithm search.
//! - kernels.rs / launch.rs: our kernels, compiled at open, and their checked launches;
//!   params.rs: the Rust side of `kernels/params.cuh`.
//! - scene.rs: scene-cut detection's box sums on the GPU ([`SceneReducer`]).
//! - memory.rs: device buffers, typed device views, pinned buffers.
//! - weights.rs: host-side rearrangement of the weights for the GPU.
//! - [`options`]: the engine's tuning and diagnosis switches ([`EngineOptions`]).
//! - [`synth`]: [`crate::model::synth`], the synthetic weights, under its former path.

mod arena;
mod configure;
pub(crate) mod cudnn;
mod device_io;
mod diag;
mod engine;
mod error;
mod graph;
mod io;
pub(crate) mod kernels;
pub(crate) mod launch;
pub(crate) mod memory;
pub mod options;
mod params;
mod scene;
/// The synthetic weights moved to [`crate::model::synth`] (the CPU uses them too); the
/// benchmark and the engine's tests still name them here.
pub use crate::model::synth;
pub(crate) mod weights;

use std::sync::Arc;

pub use crate::backend::SharedContext;
use crate::backend::{Backend, BackendError, DeviceFrame, FrameLayout, Precision, SceneSums};
use crate::model::Flavr;

pub use cudnn::probe_fp8::{ProbeRow, ProbeShape, network_shapes, probe_fp8};
pub use cudnn::{Algo, Candidate, ConvChoice, ConvEpilogue, GraphChoice};
pub use diag::StepTime;
pub use engine::{Engine, MemoryReport};
pub use error::CudaError;
pub use options::{DEFAULT_WORKSPACE_CAP, EngineOptions, Fault};
pub use scene::SceneReducer;

/// Opens the CUDA backend on GPU `device_id`: creates the context and stream, compiles the
/// kernels and uploads the weights. Fails with a message naming the cause (no driver, no GPU
/// with that id, no cuDNN, no NVRTC, out of memory).
pub fn open(
    model: Arc<Flavr>,
    device_id: u32,
    precision: Precision,
    options: EngineOptions,
) -> Result<Box<dyn Backend>, BackendError> {
    open_in(model, device_id, precision, options, None)
}

/// [`open`] in `shared` (the device's primary context when `None`).
pub fn open_in(
    model: Arc<Flavr>,
    device_id: u32,
    precision: Precision,
    options: EngineOptions,
    shared: Option<SharedContext>,
) -> Result<Box<dyn Backend>, BackendError> {
    let engine = guard(|| Engine::open_in(&model, device_id, precision, options, shared))?;
    Ok(Box::new(CudaBackend { engine }))
}

/// The GPUs the driver sees (`devices=all`), or why they cannot be counted.
pub fn device_count() -> Result<usize, BackendError> {
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::NoDriver.into());
    }
    let count = std::panic::catch_unwind(|| {
        cudarc::driver::result::init()?;
        cudarc::driver::CudaContext::device_count()
    })
    .map_err(|_| BackendError::Library("the CUDA driver library is unusable".into()))?
    .map_err(|e| {
        BackendError::NoDevice(format!("cannot count the GPUs: {}", error::driver_text(&e)))
    })?;
    Ok(count.max(0) as usize)
}

/// Opens the engine itself (tests, the benchmark), with the same errors as [`open`].
pub fn open_engine(
    model: &Flavr,
    device_id: u32,
    precision: Precision,
    options: EngineOptions,
) -> Result<Engine, CudaError> {
    guard(|| Engine::open(model, device_id, precision, options))
}

/// Runs an engine open, turning a panic into an error: a library that loads but lacks a symbol
/// makes cudarc panic.
fn guard(open: impl FnOnce() -> Result<Engine, CudaError>) -> Result<Engine, CudaError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(open)).unwrap_or_else(|p| {
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

    fn depth(&self) -> usize {
        self.engine.depth()
    }

    fn submit(&mut self, window: [usize; 4]) -> Result<(), BackendError> {
        Ok(self.engine.submit(window)?)
    }

    fn ready(&mut self) -> Result<bool, BackendError> {
        Ok(self.engine.ready()?)
    }

    fn collect(&mut self, outputs: &mut [&mut [u8]]) -> Result<(), BackendError> {
        Ok(self.engine.collect(outputs)?)
    }

    fn abandon(&mut self) {
        self.engine.abandon();
    }

    fn load_frame_device(&mut self, slot: usize, frame: &DeviceFrame) -> Result<(), BackendError> {
        Ok(self.engine.load_frame_device(slot, frame)?)
    }

    fn interpolate_device(
        &mut self,
        window: [usize; 4],
        outputs: &[DeviceFrame],
    ) -> Result<(), BackendError> {
        Ok(self.engine.interpolate_device(window, outputs)?)
    }

    fn scene_sums(&self) -> Result<Box<dyn SceneSums>, BackendError> {
        Ok(Box::new(self.engine.scene_reducer()?))
    }
}
