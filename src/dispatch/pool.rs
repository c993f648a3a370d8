// SPDX-License-Identifier: MIT OR Apache-2.0
//! The dispatcher: the steps of a window turned into tasks, spread over engine threads, and
//! the frames handed back in order (see the module docs of [`crate::dispatch`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{Engine, Reorder};
use crate::window::{Key, Step};

/// What the dispatcher hands back, in the order of the steps.
#[derive(Debug)]
pub enum Out<F> {
    /// A frame to push: an `Emit` (`copy` false) or an `EmitCopy` (`copy` true, `frame` is
    /// the source original).
    Frame {
        frame: F,
        pts: u64,
        duration: Option<u64>,
        copy: bool,
    },
    /// Every frame of one [`Dispatcher::submit`] was handed out.
    BatchDone,
    /// The stream cannot go on: no engine is left, or the steps were inconsistent.
    Failed(String),
}

/// An engine taken out after a failure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineDown {
    /// Its place in the list the dispatcher was made with.
    pub index: usize,
    pub name: String,
    /// The failure.
    pub error: String,
    /// Windows given to the other engines (the failed one and those queued to it).
    pub redone: usize,
    /// Engines still running.
    pub left: usize,
}

/// Receives the outputs, in order, with the generation they belong to. Called with the
/// dispatcher's lock held: it must not call back into the dispatcher.
pub type Sink<F> = Box<dyn FnMut(u64, Out<F>) + Send>;
/// Hears of engines taken out; called without the dispatcher's lock.
pub type Warn = Box<dyn Fn(EngineDown) + Send + Sync>;

struct Task<E: Engine> {
    id: u64,
    generation: u64,
    ctx: E::Ctx,
    cancel: Arc<AtomicBool>,
    keys: [Key; 4],
    /// `None` while the frame is still being made by another task.
    inputs: [Option<E::Frame>; 4],
    outputs: Vec<(usize, Key)>,
}

impl<E: Engine> Clone for Task<E> {
    fn clone(&self) -> Self {
        Task {
            id: self.id,
            generation: self.generation,
            ctx: self.ctx.clone(),
            cancel: self.cancel.clone(),
            keys: self.keys,
            inputs: self.inputs.clone(),
            outputs: self.outputs.clone(),
        }
    }
}

enum Held<F> {
    Ready(F),
    /// Being made by a task.
    Pending,
}

/// An `Emit` waiting for its frame.
struct Waiter {
    seq: u64,
    pts: u64,
    duration: Option<u64>,
    copy: bool,
}

struct Lane<E: Engine> {
    engine: Arc<Mutex<E>>,
    name: String,
    alive: bool,
    queue: VecDeque<Task<E>>,
    running: bool,
}

impl<E: Engine> Lane<E> {
    fn load(&self) -> usize {
        self.queue.len() + usize::from(self.running)
    }
}

struct State<E: Engine> {
    generation: u64,
    /// Which frame each slot named by the steps holds. A slot keeps its frame after the steps
    /// release it (the single backend still has it loaded), so a frame is dropped only once it
    /// is released and in no slot.
    slots: Vec<Option<Key>>,
    frames: HashMap<Key, Held<E::Frame>>,
    released: HashSet<Key>,
    /// Tasks waiting for an input frame, oldest first.
    blocked: Vec<Task<E>>,
    /// Tasks ready for an engine, oldest first.
    ready: VecDeque<Task<E>>,
    lanes: Vec<Lane<E>>,
    reorder: Reorder<Out<E::Frame>>,
    emits: HashMap<Key, Vec<Waiter>>,
    next_task: u64,
    /// Where the round-robin tie-break starts.
    turn: usize,
    depth: usize,
    /// Set once no engine is left.
    failed: Option<String>,
    busy: Duration,
    shutdown: bool,
    sink: Sink<E::Frame>,
}

struct Shared<E: Engine> {
    state: Mutex<State<E>>,
    cond: Condvar,
    warn: Warn,
}

/// N engines, each on a thread of its own, fed from one queue of tasks.
pub struct Dispatcher<E: Engine> {
    shared: Arc<Shared<E>>,
}

impl<E: Engine> Dispatcher<E> {
    /// Starts one thread per engine. `depth` (at least 1) bounds the tasks given to one engine
    /// (queued and running).
    pub fn new(
        engines: Vec<E>,
        depth: usize,
        sink: Sink<E::Frame>,
        warn: Warn,
    ) -> Result<Dispatcher<E>, String> {
        if engines.is_empty() {
            return Err("no engine to dispatch to".into());
        }
        let lanes = engines
            .into_iter()
            .map(|e| Lane {
                name: e.name(),
                engine: Arc::new(Mutex::new(e)),
                alive: true,
                queue: VecDeque::new(),
                running: false,
            })
            .collect::<Vec<_>>();
        let n = lanes.len();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                generation: 0,
                slots: Vec::new(),
                frames: HashMap::new(),
                released: HashSet::new(),
                blocked: Vec::new(),
                ready: VecDeque::new(),
                lanes,
                reorder: Reorder::default(),
                emits: HashMap::new(),
                next_task: 0,
                turn: 0,
                depth: depth.max(1),
                failed: None,
                busy: Duration::ZERO,
                shutdown: false,
                sink,
            }),
            cond: Condvar::new(),
            warn,
        });
        let d = Dispatcher { shared };
        for i in 0..n {
            let s = d.shared.clone();
            std::thread::Builder::new()
                .name(format!("flavrinterp-e{i}"))
                .spawn(move || work(s, i))
                .map_err(|e| format!("cannot start the thread of engine {i}: {e}"))?;
        }
        Ok(d)
    }

    fn lock(&self) -> MutexGuard<'_, State<E>> {
        self.shared.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Carries out `steps` (after storing `inputs`) for `generation`; returns at once. The
    /// frames come out through the sink, then [`Out::BatchDone`]. A new generation first
    /// forgets everything of the old one (a flush). `cheap`: the keys' factor (ticks per input
    /// frame) when the batch's windows are to be blends ([`Engine::blend`]), not tasks.
    pub fn submit(
        &self,
        generation: u64,
        ctx: E::Ctx,
        cancel: Arc<AtomicBool>,
        inputs: Vec<(Key, E::Frame)>,
        steps: Vec<Step>,
        cheap: Option<u64>,
    ) {
        let mut guard = self.lock();
        let st = &mut *guard;
        if st.generation != generation {
            st.reset(generation);
        }
        if let Some(msg) = st.failed.clone() {
            (st.sink)(generation, Out::Failed(msg));
            return;
        }
        for (k, f) in inputs {
            st.frames.insert(k, Held::Ready(f));
        }
        for step in steps {
            let done = match step {
                Step::Load { key, slot } => {
                    if st.slots.len() <= slot {
                        st.slots.resize(slot + 1, None);
                    }
                    if let Some(old) = st.slots[slot].replace(key) {
                        st.collect(old);
                    }
                    Ok(())
                }
                Step::Run { window, outputs } => match cheap {
                    Some(factor) => st.blend(outputs, factor, &ctx),
                    None => st.task(window, outputs, &ctx, &cancel),
                },
                Step::Emit {
                    key, pts, duration, ..
                } => st.emit(key, pts, duration, false),
                Step::EmitCopy {
                    source,
                    pts,
                    duration,
                    ..
                } => st.emit(source, pts, duration, true),
                Step::Release { key } => {
                    st.released.insert(key);
                    st.collect(key);
                    Ok(())
                }
            };
            if let Err(msg) = done {
                (st.sink)(generation, Out::Failed(msg));
                return;
            }
        }
        st.reorder.push(Out::BatchDone);
        st.dispatch();
        self.shared.cond.notify_all();
        st.hand_out();
    }

    /// Forgets the tasks and frames of the current generation and starts `generation` (a
    /// flush, or a new frame layout). Tasks running finish and are thrown away.
    pub fn reset(&self, generation: u64) {
        self.lock().reset(generation);
    }

    /// Calls `f` on every engine still running, one after the other (to configure them); the
    /// first error ends it. Call it only with no task in flight: it waits for a running one.
    pub fn for_each_alive<R>(&self, mut f: impl FnMut(&mut E) -> Result<(), R>) -> Result<(), R> {
        let engines: Vec<_> = self
            .lock()
            .lanes
            .iter()
            .filter(|l| l.alive)
            .map(|l| l.engine.clone())
            .collect();
        for e in engines {
            f(&mut e.lock().unwrap_or_else(|e| e.into_inner()))?;
        }
        Ok(())
    }

    /// Engines still running.
    pub fn alive(&self) -> usize {
        self.lock().lanes.iter().filter(|l| l.alive).count()
    }

    /// Time the engines spent on tasks that counted, summed over the engines.
    pub fn busy(&self) -> Duration {
        self.lock().busy
    }
}

impl<E: Engine> Drop for Dispatcher<E> {
    fn drop(&mut self) {
        // The threads end after their current task (abandoned quickly once cancelled).
        self.lock().shutdown = true;
        self.shared.cond.notify_all();
    }
}

impl<E: Engine> State<E> {
    fn reset(&mut self, generation: u64) {
        self.generation = generation;
        self.slots.clear();
        self.frames.clear();
        self.released.clear();
        self.blocked.clear();
        self.ready.clear();
        for lane in &mut self.lanes {
            lane.queue.clear();
        }
        self.reorder.clear();
        self.emits.clear();
    }

    fn task(
        &mut self,
        window: [usize; 4],
        outputs: Vec<(usize, Key)>,
        ctx: &E::Ctx,
        cancel: &Arc<AtomicBool>,
    ) -> Result<(), String> {
        let mut keys = [Key { run: 0, tick: 0 }; 4];
        let mut inputs: [Option<E::Frame>; 4] = [None, None, None, None];
        for (n, &slot) in window.iter().enumerate() {
            let key = self
                .slots
                .get(slot)
                .copied()
                .flatten()
                .ok_or_else(|| format!("internal: slot {slot} is run before a load"))?;
            keys[n] = key;
            inputs[n] = match self.frames.get(&key) {
                Some(Held::Ready(f)) => Some(f.clone()),
                Some(Held::Pending) => None,
                None => return Err(format!("internal: frame {key:?} is not held")),
            };
        }
        for &(_, key) in &outputs {
            self.frames.insert(key, Held::Pending);
        }
        let task = Task {
            id: self.next_task,
            generation: self.generation,
            ctx: ctx.clone(),
            cancel: cancel.clone(),
            keys,
            inputs,
            outputs,
        };
        self.next_task += 1;
        if task.inputs.iter().all(Option::is_some) {
            self.ready.push_back(task);
        } else {
            self.blocked.push(task);
        }
        Ok(())
    }

    /// A cheap window: each output, new frame `k` between originals `j` and `j + 1`, is their
    /// blend, made now and handed on as if a task had made it.
    fn blend(
        &mut self,
        outputs: Vec<(usize, Key)>,
        factor: u64,
        ctx: &E::Ctx,
    ) -> Result<(), String> {
        if factor == 0 {
            return Err("internal: a cheap window with factor 0".into());
        }
        let mut made = Vec::with_capacity(outputs.len());
        for &(_, key) in &outputs {
            let (j, k) = (key.tick / factor, key.tick % factor);
            let original = |tick: u64| match self.frames.get(&Key { run: key.run, tick }) {
                Some(Held::Ready(f)) => Ok(f),
                _ => Err(format!(
                    "internal: original {tick} of run {} to blend is not held",
                    key.run
                )),
            };
            let (a, b) = (original(j * factor)?, original((j + 1) * factor)?);
            let f = E::blend(ctx, a, b, k, factor).map_err(|e| format!("blend: {e}"))?;
            made.push((key, f));
        }
        for &(_, key) in &outputs {
            self.frames.insert(key, Held::Pending);
        }
        self.complete(made);
        Ok(())
    }

    fn emit(
        &mut self,
        key: Key,
        pts: u64,
        duration: Option<u64>,
        copy: bool,
    ) -> Result<(), String> {
        match self.frames.get(&key) {
            Some(Held::Ready(f)) => {
                let frame = f.clone();
                self.reorder.push(Out::Frame {
                    frame,
                    pts,
                    duration,
                    copy,
                });
            }
            Some(Held::Pending) => {
                let seq = self.reorder.reserve();
                self.emits.entry(key).or_default().push(Waiter {
                    seq,
                    pts,
                    duration,
                    copy,
                });
            }
            None => return Err(format!("internal: frame {key:?} is emitted but not held")),
        }
        Ok(())
    }

    /// Drops frame `key` once the steps released it, no slot holds it and it is made.
    fn collect(&mut self, key: Key) {
        if self.released.contains(&key)
            && !self.slots.contains(&Some(key))
            && matches!(self.frames.get(&key), Some(Held::Ready(_)))
        {
            self.frames.remove(&key);
            self.released.remove(&key);
        }
    }

    /// Puts `task` into the ready queue by age.
    fn insert_ready(&mut self, task: Task<E>) {
        let at = self.ready.partition_point(|t| t.id < task.id);
        self.ready.insert(at, task);
    }

    /// Gives ready tasks to the least-loaded engines with room (ties: round robin).
    fn dispatch(&mut self) {
        let n = self.lanes.len();
        while !self.ready.is_empty() {
            let pick = (0..n)
                .map(|i| (self.turn + i) % n)
                .filter(|&i| self.lanes[i].alive && self.lanes[i].load() < self.depth)
                .min_by_key(|&i| self.lanes[i].load());
            let Some(i) = pick else { break };
            let Some(task) = self.ready.pop_front() else {
                break;
            };
            self.lanes[i].queue.push_back(task);
            self.turn = (i + 1) % n;
        }
    }

    /// Frames made by a task: into the emits and tasks waiting for them, and kept.
    fn complete(&mut self, outs: Vec<(Key, E::Frame)>) {
        for (key, f) in outs {
            for w in self.emits.remove(&key).unwrap_or_default() {
                self.reorder.put(
                    w.seq,
                    Out::Frame {
                        frame: f.clone(),
                        pts: w.pts,
                        duration: w.duration,
                        copy: w.copy,
                    },
                );
            }
            for t in &mut self.blocked {
                for (input, k) in t.inputs.iter_mut().zip(&t.keys) {
                    if input.is_none() && *k == key {
                        *input = Some(f.clone());
                    }
                }
            }
            if let Some(h @ Held::Pending) = self.frames.get_mut(&key) {
                *h = Held::Ready(f);
                self.collect(key);
            }
        }
        let (now, still): (Vec<_>, Vec<_>) = std::mem::take(&mut self.blocked)
            .into_iter()
            .partition(|t| t.inputs.iter().all(Option::is_some));
        self.blocked = still;
        for t in now {
            self.insert_ready(t);
        }
    }

    /// Marks engine `i` out after a task failed on it: nothing more goes to it. Its tasks
    /// stay queued until [`State::take_out`], so the caller can say so first.
    fn mark_down(&mut self, i: usize, error: String) -> EngineDown {
        self.lanes[i].alive = false;
        EngineDown {
            index: i,
            name: self.lanes[i].name.clone(),
            error,
            redone: self.lanes[i].queue.len() + 1,
            left: self.lanes.iter().filter(|l| l.alive).count(),
        }
    }

    /// Gives the tasks of engine `i` (marked down) and `task`, which failed on it, to the
    /// others; fails when none is left.
    fn take_out(&mut self, i: usize, task: Task<E>, down: &EngineDown) {
        let mut redo: Vec<Task<E>> = self.lanes[i].queue.drain(..).collect();
        if task.generation == self.generation {
            redo.push(task);
        }
        for t in redo {
            self.insert_ready(t);
        }
        if self.lanes.iter().all(|l| !l.alive) {
            let msg = format!(
                "all {} engines failed; the last, engine {i} ({}): {}",
                self.lanes.len(),
                down.name,
                down.error
            );
            self.failed = Some(msg.clone());
            (self.sink)(self.generation, Out::Failed(msg));
        }
    }

    /// Hands out what the reorder stage has in order.
    fn hand_out(&mut self) {
        while let Some(o) = self.reorder.pop() {
            (self.sink)(self.generation, o);
        }
    }
}

/// The thread of engine `i`: takes its tasks one at a time and reports each result.
fn work<E: Engine>(shared: Arc<Shared<E>>, i: usize) {
    let lock = || shared.state.lock().unwrap_or_else(|e| e.into_inner());
    let engine = lock().lanes[i].engine.clone();
    let mut last_generation = None;
    let mut guard = lock();
    loop {
        if guard.shutdown || !guard.lanes[i].alive {
            return;
        }
        let Some(task) = guard.lanes[i].queue.pop_front() else {
            guard = shared.cond.wait(guard).unwrap_or_else(|e| e.into_inner());
            continue;
        };
        guard.lanes[i].running = true;
        drop(guard);
        let t0 = Instant::now();
        let result = if task.cancel.load(Ordering::SeqCst) {
            None
        } else {
            let mut e = engine.lock().unwrap_or_else(|e| e.into_inner());
            if last_generation != Some(task.generation) {
                e.forget();
                last_generation = Some(task.generation);
            }
            Some(run_task(&mut *e, &task))
        };
        let elapsed = t0.elapsed();
        guard = lock();
        guard.lanes[i].running = false;
        let counts = task.generation == guard.generation && !task.cancel.load(Ordering::SeqCst);
        match result {
            Some(Ok(outs)) if counts => {
                guard.busy += elapsed;
                guard.complete(outs);
            }
            Some(Err(error)) if counts => {
                // Said before any of its windows is redone, so the warning comes first.
                let down = guard.mark_down(i, error);
                drop(guard);
                (shared.warn)(down.clone());
                guard = lock();
                guard.take_out(i, task, &down);
            }
            _ => {}
        }
        guard.dispatch();
        shared.cond.notify_all();
        guard.hand_out();
    }
}

/// Runs one task on an engine; a panic or a missing output is a failure of the engine.
fn run_task<E: Engine>(e: &mut E, task: &Task<E>) -> Result<Vec<(Key, E::Frame)>, String> {
    let mut window = Vec::with_capacity(4);
    for (n, (input, &k)) in task.inputs.iter().zip(&task.keys).enumerate() {
        let f = input
            .as_ref()
            .ok_or_else(|| format!("internal: input {n} of a ready task is missing"))?;
        window.push((k, f));
    }
    let window: [(Key, &E::Frame); 4] = [window[0], window[1], window[2], window[3]];
    let outs = std::panic::catch_unwind(AssertUnwindSafe(|| {
        e.run(&task.ctx, window, &task.outputs, &task.cancel)
    }))
    .map_err(|_| "the engine panicked".to_string())?
    .map_err(|err| err.to_string())?;
    if let Some((_, k)) = task
        .outputs
        .iter()
        .find(|(_, k)| !outs.iter().any(|(o, _)| o == k))
    {
        return Err(format!("the engine made no frame {k:?}"));
    }
    Ok(outs)
}
