// SPDX-License-Identifier: MIT OR Apache-2.0
//! Several engines behind one element, free of GStreamer types.
//!
//! The window ([`crate::window`]) gives a list of [`Step`](crate::window::Step)s for one
//! engine: load frames into slots, run the network, emit frames, release frames. The
//! [`Dispatcher`] carries out the same steps over N engines:
//!
//! - every `Run` becomes a *task*: the four input frames (by key, with their bytes) and the
//!   model outputs wanted. A task whose inputs are frames still being made (recursive factors
//!   read new frames) waits until they are made;
//! - ready tasks go, oldest first, to the engine with the fewest tasks (ties in turn, round
//!   robin), at most `depth` per engine (queued plus running);
//! - each `Emit` takes a place in the [`Reorder`] stage, filled when its frame is there, so
//!   frames are handed out in the order of the steps, whichever engine finishes first;
//! - a batch submitted *cheap* (the element's QoS judged its windows late) runs no task: each
//!   output of its `Run` steps is [`Engine::blend`] of the two originals around it, made at
//!   once on the submitting thread, and goes through the reorder stage like any other frame;
//! - an engine whose task fails is taken out: its tasks (the failed one and those queued to it)
//!   go back to the front of the queue for the others, and the caller hears of it
//!   ([`EngineDown`]). With no engine left the dispatcher fails ([`Out::Failed`]).
//!
//! Every engine keeps its own frames (an engine loads what it lacks from the task's inputs),
//! so results do not depend on which engine ran a task.

mod devices;
mod pool;
mod reorder;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use devices::{Devices, EngineFault, MAX_ENGINES, parse_devices, parse_faults};
pub use pool::{Dispatcher, EngineDown, Out, Sink, Warn};
pub use reorder::Reorder;

use crate::window::Key;

/// One engine (a backend instance) as the dispatcher drives it, from a thread of its own.
pub trait Engine: Send + 'static {
    /// A frame: its bytes, cheap to clone (shared).
    type Frame: Clone + Send + 'static;
    /// What a task needs besides its frames (the frame format), the same for a whole batch.
    type Ctx: Clone + Send + 'static;
    type Error: std::fmt::Display + Send + 'static;

    /// Short name for messages ("cpu", "cuda:1 fp16").
    fn name(&self) -> String;

    /// Drops the frames it keeps loaded (a flush: keys may be reused afterwards).
    fn forget(&mut self);

    /// A cheap frame instead of the network: new frame `k` of `factor` between originals `a`
    /// and `b` (a blend). Called on the thread that submits, with the dispatcher's lock held.
    fn blend(
        ctx: &Self::Ctx,
        a: &Self::Frame,
        b: &Self::Frame,
        k: u64,
        factor: u64,
    ) -> Result<Self::Frame, Self::Error>;

    /// Runs the network on `window` (frames i-1, i, i+1, i+2 with their keys) and returns the
    /// frames `outputs` asks for: model output `index` as frame `key`, for every pair. May give
    /// up early once `cancel` is raised (the result is then thrown away).
    fn run(
        &mut self,
        ctx: &Self::Ctx,
        window: [(Key, &Self::Frame); 4],
        outputs: &[(usize, Key)],
        cancel: &Arc<AtomicBool>,
    ) -> Result<Vec<(Key, Self::Frame)>, Self::Error>;
}
