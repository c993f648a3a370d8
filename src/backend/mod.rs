//! Inference backends: the interface the element drives, the pixel layouts it hands over,
//! and the CPU backend. The CUDA backend lives in [`crate::cuda`] behind the same trait.
//!
//! A backend owns a few frame *slots*. The element loads each new input frame into a slot once
//! ([`Backend::load_frame`], which converts it to the network's planar float RGB), then asks for
//! the frames between slots `window[1]` and `window[2]` ([`Backend::interpolate`]), written back
//! in the input's pixel layout. A frame therefore crosses to the backend once and serves the four
//! windows it belongs to.
//!
//! A backend may also *pipeline* windows ([`Backend::depth`] above 1): [`Backend::submit`]
//! queues a window and returns at once, [`Backend::collect`] hands the oldest one's frames
//! over, so that one window's download and copy overlap the next one's network. Backends that
//! do not (the CPU backend) keep the defaults; the element then computes a window when it
//! submits it (`interpolate`) and hands its frames over when it collects it.

pub mod cpu;
pub mod pixels;
#[cfg(test)]
mod test_layout;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use pixels::{FrameLayout, PixelFormat, YuvMatrix};

/// Number of frame slots a backend keeps; the element addresses them `0..SLOTS`.
/// Four for the window, plus room for the next frame while the window is still in use.
pub const SLOTS: usize = 6;

/// What went wrong inside a backend. Each message names the cause.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("no usable GPU: {0}")]
    NoDevice(String),
    #[error("GPU library missing or unusable: {0}")]
    Library(String),
    #[error("out of GPU memory: {0}")]
    OutOfMemory(String),
    /// The host (CPU backend) lacks the memory a frame size needs: checked before allocating.
    #[error("not enough memory: {0}")]
    HostMemory(String),
    #[error("frame layout not supported: {0}")]
    Layout(String),
    #[error("backend failure: {0}")]
    Failed(String),
    /// The backend was left out of this build (a cargo feature is off).
    #[error(
        "this build has no {backend} backend: rebuild gst-flavr with the `{feature}` cargo \
         feature (on by default; it was turned off with --no-default-features)"
    )]
    NotBuilt {
        backend: &'static str,
        feature: &'static str,
    },
}

/// A frame in CUDA device memory (GStreamer's `memory:CUDAMemory`): one allocation of `size`
/// bytes at device address `ptr`, its planes at `offsets` with `strides` (its own pitched
/// layout, not necessarily the caps'). The backend finds out itself which GPU and CUDA context
/// the address belongs to, and refuses memory of another GPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceFrame {
    /// The `CUcontext` the memory was allocated in, as the producer says (0: unknown).
    pub context: usize,
    pub ptr: u64,
    pub size: usize,
    pub offsets: Vec<usize>,
    pub strides: Vec<usize>,
}

/// A CUDA context made and owned by someone else (GStreamer's `GstCudaContext`), for the CUDA
/// engine to run in, so that its kernels read and write the pipeline's device memory directly.
pub struct SharedContext {
    /// The `CUcontext`, as an address.
    pub handle: usize,
    /// What keeps the context alive (a reference to its owner); the engine drops it last.
    pub keep: Box<dyn std::any::Any + Send>,
}

/// The box sums of scene-cut detection ([`crate::scene::Plane::box_sums`]) computed where a
/// backend keeps its frames (the CUDA backend: on the GPU), exactly equal to the CPU's. Made by
/// [`Backend::scene_sums`] and independent of it afterwards: the element calls it from the
/// streaming thread, in order with the frames, while the backend runs windows on its own
/// thread. Each call returns once the sums are on the host.
pub trait SceneSums: Send {
    /// Where the sums are computed, for logs ("cuda:0").
    fn name(&self) -> String;

    /// The sums of `plane` in host memory: `bytes` starts at the plane's first row and holds
    /// at least its [`crate::scene::Plane::span`].
    fn host(&mut self, plane: &crate::scene::Plane, bytes: &[u8])
    -> Result<Vec<u64>, BackendError>;

    /// The sums of the first plane of `frame` in device memory, `plane` its format and size
    /// with the frame's own first stride. Returns once `frame` may be unmapped.
    fn device(
        &mut self,
        plane: &crate::scene::Plane,
        frame: &DeviceFrame,
    ) -> Result<Vec<u64>, BackendError>;
}

/// A frame-interpolation engine.
pub trait Backend: Send {
    /// Short name for logs ("cpu", "cuda:0 fp16").
    fn name(&self) -> String;

    /// Interpolated frames the network makes per window (1 for a 2x model).
    fn n_outputs(&self) -> usize;

    /// Plans for frames of this layout (sizes need not be multiples of 8: the backend pads and
    /// crops). Called again when caps change; slots are invalid afterwards.
    fn configure(&mut self, layout: &FrameLayout) -> Result<(), BackendError>;

    /// A flag the element raises to abandon the window being computed (stop, flushing seek).
    /// A backend that supports it checks the flag between layers (CPU) or launches and then
    /// fails its [`Backend::interpolate`]; the default ignores it (the element still checks it
    /// between windows).
    fn set_cancel(&mut self, _cancel: Option<Arc<AtomicBool>>) {}

    /// Converts one input frame (bytes laid out as `layout` says) into slot `slot`.
    fn load_frame(&mut self, slot: usize, frame: &[u8]) -> Result<(), BackendError>;

    /// Converts one input frame in device memory into slot `slot` (the configured format and
    /// size, `frame`'s own plane layout), with no copy through the host. Returns once the frame
    /// may be unmapped. Backends without device memory refuse.
    fn load_frame_device(
        &mut self,
        _slot: usize,
        _frame: &DeviceFrame,
    ) -> Result<(), BackendError> {
        Err(BackendError::Layout(format!(
            "{} cannot read frames in GPU memory",
            self.name()
        )))
    }

    /// [`Backend::interpolate`] writing into frames in device memory (each in its own plane
    /// layout). Returns once the frames are written. Backends without device memory refuse.
    fn interpolate_device(
        &mut self,
        _window: [usize; 4],
        _outputs: &[DeviceFrame],
    ) -> Result<(), BackendError> {
        Err(BackendError::Layout(format!(
            "{} cannot write frames in GPU memory",
            self.name()
        )))
    }

    /// Runs the network on slots `window` (frames i-1, i, i+1, i+2) and writes the
    /// `n_outputs()` frames between `window[1]` and `window[2]`, in time order, into `outputs`
    /// (each a buffer of `layout.size` bytes in the configured layout).
    fn interpolate(
        &mut self,
        window: [usize; 4],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), BackendError>;

    /// Windows the backend can hold submitted and not collected. 1 (the default): it does not
    /// pipeline, and only [`Backend::interpolate`] is called.
    fn depth(&self) -> usize {
        1
    }

    /// Queues the network on slots `window` and returns without waiting; the frames come out
    /// of [`Backend::collect`], in submit order. Frames loaded after a submit may go into any
    /// slot the window does not read (and into those too: the backend orders the load after
    /// the window's read). An error when `depth()` windows are already submitted.
    fn submit(&mut self, _window: [usize; 4]) -> Result<(), BackendError> {
        Err(not_pipelined(&self.name()))
    }

    /// Whether [`Backend::collect`] would return without waiting (true with nothing
    /// submitted).
    fn ready(&mut self) -> Result<bool, BackendError> {
        Ok(true)
    }

    /// Waits for the oldest window submitted and writes its frames into `outputs`, as
    /// [`Backend::interpolate`] does.
    fn collect(&mut self, _outputs: &mut [&mut [u8]]) -> Result<(), BackendError> {
        Err(not_pipelined(&self.name()))
    }

    /// Forgets the windows submitted and not collected (a flush or a stop): their frames never
    /// come out.
    fn abandon(&mut self) {}

    /// A [`SceneSums`] on this backend's device, so that scene-cut detection reduces frames
    /// there. Backends without one refuse (the default), and the element reduces on the CPU.
    fn scene_sums(&self) -> Result<Box<dyn SceneSums>, BackendError> {
        Err(BackendError::Layout(format!(
            "{} does not reduce frames for scene-cut detection (the CPU does)",
            self.name()
        )))
    }
}

fn not_pipelined(name: &str) -> BackendError {
    BackendError::Failed(format!(
        "backend {name} does not pipeline windows (depth 1): use interpolate"
    ))
}

/// Arithmetic precision of a backend. The CPU backend always computes in `Fp32`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Precision {
    /// Exact mode: float32 everywhere.
    Fp32,
    /// float16 tensor cores, float32 accumulation.
    #[default]
    Fp16,
    /// bfloat16 tensor cores, float32 accumulation.
    Bf16,
}
