// SPDX-License-Identifier: MIT OR Apache-2.0
//! The network thread (`flavrinterp-net`): carries out the window's steps away from the
//! streaming thread, so that stop and flushing seeks never wait for a window.
//!
//! The streaming thread sends one job per input frame (the frame and the steps it made ready)
//! and waits until at most `max-in-flight` jobs are unfinished; a flush or a stop wakes it at
//! once. A flush starts a new *generation*: jobs of the old one are abandoned (their cancel flag
//! is raised, which the CPU backend checks between layers) and their frames never come out.
//!
//! With several engines (`devices`) there is no such thread: the jobs go to the dispatcher
//! ([`crate::dispatch`]), whose engine threads hand the frames back here in order. The QoS
//! choice ([`super::qos`]) is made as a job is submitted, and a late job goes to the dispatcher
//! as blends (made at once, no engine task); its time, from submission to its last frame, is
//! what the next choices measure the network by.

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::{Duration, Instant};

use super::cuda_path::DeviceIo;
use super::engines::BackendEngine;
use super::qos::{Counts, Decision, JobQos};
use super::stream::{self, Done, Exec};
use crate::backend::{Backend, BackendError};
use crate::dispatch::{Dispatcher, Out, Warn};
use crate::error::Error;
use crate::window::{Key, Step};

struct Job {
    generation: u64,
    cancel: Arc<AtomicBool>,
    info: gst_video::VideoInfo,
    inputs: Vec<(Key, gst::Buffer)>,
    steps: Vec<Step>,
    /// The choice between the network and cheap frames, made as the job starts.
    qos: Option<JobQos>,
    /// Frames in CUDA memory (one backend only).
    dev: Option<DeviceIo>,
}

struct Pipe {
    generation: u64,
    /// Raised to abandon the jobs of this generation.
    cancel: Arc<AtomicBool>,
    /// Jobs of this generation sent and not finished.
    pending: usize,
    /// Frames made, in order, not yet taken.
    out: VecDeque<gst::Buffer>,
    error: Option<Error>,
    /// Between FLUSH_START (or stop) and FLUSH_STOP: waits end at once.
    flushing: bool,
    /// Time the network thread spent on jobs that counted.
    busy: Duration,
    /// Jobs given to the dispatcher whose frames are not all out, oldest first.
    jobs: VecDeque<Submitted>,
    /// Jobs whose frames are all out, with the time they took: for [`JobQos::finish`].
    finished: Vec<(Submitted, Duration)>,
    /// New frames of the dispatcher path that are blends, while held.
    blended: HashSet<Key>,
}

/// A job given to the dispatcher, until its last frame is out.
struct Submitted {
    qos: Option<JobQos>,
    decision: Decision,
    windows: u64,
    counts: Counts,
    t0: Instant,
}

/// Why [`Net::wait`] gave up.
pub(super) enum WaitError {
    Flushing,
    Failed(Error),
}

/// What runs the jobs.
enum Runner {
    /// One backend, on the network thread.
    One {
        tx: Mutex<mpsc::Sender<Job>>,
        backend: Arc<Mutex<Box<dyn Backend>>>,
    },
    /// Several engines behind the dispatcher.
    Many(Dispatcher<BackendEngine>),
}

/// The handle the element keeps: what runs the jobs and the shared state.
pub(super) struct Net {
    pipe: Arc<(Mutex<Pipe>, Condvar)>,
    runner: Runner,
    /// How frames in CUDA memory are handled, given to each job from now on.
    dev: Mutex<Option<DeviceIo>>,
}

fn new_pipe() -> Arc<(Mutex<Pipe>, Condvar)> {
    Arc::new((
        Mutex::new(Pipe {
            generation: 0,
            cancel: Arc::new(AtomicBool::new(false)),
            pending: 0,
            out: VecDeque::new(),
            error: None,
            flushing: false,
            busy: Duration::ZERO,
            jobs: VecDeque::new(),
            finished: Vec::new(),
            blended: HashSet::new(),
        }),
        Condvar::new(),
    ))
}

impl Net {
    /// Starts the thread; it owns `backend` (shared with [`Net::configure`]) and ends when the
    /// `Net` is dropped, after the job it is on (abandoned quickly once cancelled).
    pub fn spawn(backend: Box<dyn Backend>) -> Result<Net, Error> {
        let (tx, rx) = mpsc::channel::<Job>();
        let pipe = new_pipe();
        let backend = Arc::new(Mutex::new(backend));
        let (p, b) = (pipe.clone(), backend.clone());
        std::thread::Builder::new()
            .name("flavrinterp-net".into())
            .spawn(move || work(rx, p, b))
            .map_err(|e| Error::Buffer(format!("cannot start the network thread: {e}")))?;
        Ok(Net {
            pipe,
            runner: Runner::One {
                tx: Mutex::new(tx),
                backend,
            },
            dev: Mutex::new(None),
        })
    }

    /// Starts one thread per engine behind the dispatcher, at most `depth` windows per engine;
    /// `warn` hears of an engine taken out after a failure.
    pub fn spawn_many(engines: Vec<BackendEngine>, depth: usize, warn: Warn) -> Result<Net, Error> {
        let pipe = new_pipe();
        let p = pipe.clone();
        let sink = Box::new(move |generation: u64, o: Out<gst::Buffer>| {
            let (lock, cond) = &*p;
            let mut p = lock.lock().unwrap();
            if p.generation != generation {
                return;
            }
            match o {
                Out::Frame {
                    frame,
                    pts,
                    duration,
                    copy: false,
                } => p.out.push_back(stream::retimed(frame, pts, duration)),
                Out::Frame {
                    frame,
                    pts,
                    duration,
                    copy: true,
                } => p.out.push_back(stream::copy_of(&frame, pts, duration)),
                Out::BatchDone => {
                    p.pending = p.pending.saturating_sub(1);
                    if let Some(job) = p.jobs.pop_front() {
                        let took = job.t0.elapsed();
                        p.finished.push((job, took));
                    }
                }
                Out::Failed(m) => {
                    // The batches in flight never finish: nothing is left to wait for.
                    p.pending = 0;
                    p.jobs.clear();
                    p.error
                        .get_or_insert(Error::Backend(BackendError::Failed(m)));
                }
            }
            cond.notify_all();
        });
        let d = Dispatcher::new(engines, depth, sink, warn).map_err(Error::Buffer)?;
        Ok(Net {
            pipe,
            runner: Runner::Many(d),
            dev: Mutex::new(None),
        })
    }

    /// Configures the backend(s) for a new layout (waits for a job still running, if any).
    pub fn configure(&self, layout: &crate::backend::FrameLayout) -> Result<(), BackendError> {
        match &self.runner {
            Runner::One { backend, .. } => backend.lock().unwrap().configure(layout),
            Runner::Many(d) => {
                d.reset(self.pipe.0.lock().unwrap().generation);
                d.for_each_alive(|e| e.configure(layout))
            }
        }
    }

    /// Box sums for scene-cut detection on the one backend's device
    /// ([`Backend::scene_sums`]); an error with several engines or a backend without them
    /// (the CPU reduces then).
    pub fn scene_sums(&self) -> Result<Box<dyn crate::backend::SceneSums>, BackendError> {
        match &self.runner {
            Runner::One { backend, .. } => backend.lock().unwrap().scene_sums(),
            Runner::Many(_) => Err(BackendError::Layout(
                "several engines: scene-cut detection reduces frames on the CPU".into(),
            )),
        }
    }

    /// How the jobs submitted from now on handle frames in CUDA memory (`None`: system memory
    /// only). Only the one-backend runner uses it: several engines never get CUDA memory.
    pub fn set_device_io(&self, dev: Option<DeviceIo>) {
        *self.dev.lock().unwrap() = dev;
    }

    /// Queues the steps of one input frame (or a drain) for the thread.
    pub fn submit(
        &self,
        info: &gst_video::VideoInfo,
        inputs: Vec<(Key, gst::Buffer)>,
        steps: Vec<Step>,
        qos: Option<JobQos>,
    ) {
        let (lock, _) = &*self.pipe;
        if let Runner::Many(d) = &self.runner {
            // The QoS choice, before the pipe's lock (it reads the clock and the QoS state).
            let decision = qos.as_ref().map_or(Decision::Network, JobQos::decide);
            let cheap = match decision {
                Decision::Cheap { .. } => qos.as_ref().map(|q| q.factor),
                Decision::Network => None,
            };
            let mut p = lock.lock().unwrap();
            let counts = count_new(&mut p.blended, &steps, cheap.is_some());
            // Counted first: the frames may come back before submit returns.
            p.pending += 1;
            p.jobs.push_back(Submitted {
                qos,
                decision,
                windows: counts.windows,
                counts,
                t0: Instant::now(),
            });
            let (generation, cancel) = (p.generation, p.cancel.clone());
            drop(p);
            d.submit(generation, info.clone(), cancel, inputs, steps, cheap);
            return;
        }
        let mut p = lock.lock().unwrap();
        let Runner::One { tx, .. } = &self.runner else {
            return;
        };
        let job = Job {
            generation: p.generation,
            cancel: p.cancel.clone(),
            info: info.clone(),
            inputs,
            steps,
            qos,
            dev: self.dev.lock().unwrap().clone(),
        };
        if tx.lock().unwrap().send(job).is_ok() {
            p.pending += 1;
        } else {
            p.error
                .get_or_insert(Error::Buffer("the network thread has ended".into()));
        }
    }

    /// Waits until at most `max_pending` jobs are unfinished; returns the frames made so far.
    pub fn wait(&self, max_pending: usize) -> Result<Vec<gst::Buffer>, WaitError> {
        let (lock, cond) = &*self.pipe;
        let mut p = lock.lock().unwrap();
        loop {
            if p.flushing {
                return Err(WaitError::Flushing);
            }
            if let Some(e) = p.error.take() {
                return Err(WaitError::Failed(e));
            }
            if p.pending <= max_pending {
                let out = p.out.drain(..).collect();
                let finished = std::mem::take(&mut p.finished);
                drop(p);
                // Without the pipe's lock: this may post QoS messages.
                for (job, took) in finished {
                    if let Some(q) = &job.qos {
                        q.finish(job.decision, job.windows, took, job.counts);
                    }
                }
                return Ok(out);
            }
            p = cond.wait(p).unwrap();
        }
    }

    /// FLUSH_START or stop: abandons the jobs in flight and wakes a waiting streaming thread.
    pub fn flush_start(&self) {
        let (lock, cond) = &*self.pipe;
        let mut p = lock.lock().unwrap();
        p.flushing = true;
        p.cancel.store(true, Ordering::SeqCst);
        cond.notify_all();
    }

    /// FLUSH_STOP: a new generation; nothing of the old one comes out.
    pub fn flush_stop(&self) {
        let (lock, _) = &*self.pipe;
        let mut p = lock.lock().unwrap();
        p.cancel.store(true, Ordering::SeqCst);
        p.generation += 1;
        p.cancel = Arc::new(AtomicBool::new(false));
        p.pending = 0;
        p.out.clear();
        p.error = None;
        p.flushing = false;
        p.jobs.clear();
        p.finished.clear();
        p.blended.clear();
        let generation = p.generation;
        drop(p);
        if let Runner::Many(d) = &self.runner {
            d.reset(generation);
        }
    }

    /// Seconds the thread spent on windows that counted (summed over the engines).
    pub fn busy(&self) -> Duration {
        match &self.runner {
            Runner::One { .. } => self.pipe.0.lock().unwrap().busy,
            Runner::Many(d) => d.busy(),
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // The thread sees the channel close after its job, which ends soon once cancelled.
        self.flush_start();
    }
}

/// What [`work`] keeps of a job until it finishes (its steps are with the executor).
struct Meta {
    id: u64,
    generation: u64,
    cancel: Arc<AtomicBool>,
    info: gst_video::VideoInfo,
    qos: Option<JobQos>,
    decision: Decision,
    windows: u64,
    t0: Instant,
}

/// How long the thread waits for the next job between two looks at the paused job's window.
const POLL: Duration = Duration::from_micros(200);

/// What ends the wait of a paused job.
enum Next {
    Job(Box<Job>),
    /// Its window is done (or the channel closed: nothing more will come).
    Ready,
    /// Its jobs were abandoned.
    Cancelled,
}

/// With a job paused for its windows: waits for the next job (to load its frame and submit its
/// window while the paused one computes) or the paused job's window, whichever comes first.
fn next_or_ready(
    rx: &mpsc::Receiver<Job>,
    backend: &Mutex<Box<dyn Backend>>,
    exec: &Exec,
    cancel: &AtomicBool,
) -> Next {
    loop {
        // First: a stop closes the channel after raising the flag.
        if cancel.load(Ordering::SeqCst) {
            return Next::Cancelled;
        }
        match rx.try_recv() {
            Ok(job) => return Next::Job(Box::new(job)),
            Err(mpsc::TryRecvError::Disconnected) => return Next::Ready,
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let ready = {
            let mut b = backend.lock().unwrap_or_else(|e| e.into_inner());
            // An error surfaces when the window is collected.
            exec.ready(&mut **b).unwrap_or(true)
        };
        if ready {
            return Next::Ready;
        }
        match rx.recv_timeout(POLL) {
            Ok(job) => return Next::Job(Box::new(job)),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Next::Ready,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Hands a finished job's frames (or error) to the streaming thread and its timing to QoS.
/// `last_end`: when the job before finished; a job's time counts from its start or then,
/// whichever is later, so that overlapping jobs are not counted twice.
fn finish(pipe: &(Mutex<Pipe>, Condvar), meta: Meta, done: Done, last_end: &mut Instant) {
    let now = Instant::now();
    let elapsed = now.duration_since(meta.t0.max(*last_end));
    *last_end = now;
    let cancelled = meta.cancel.load(Ordering::SeqCst);
    // Before the pipe's lock: this may post a message.
    if done.result.is_ok()
        && !cancelled
        && let Some(q) = &meta.qos
    {
        q.finish(meta.decision, meta.windows, elapsed, done.counts);
    }
    let (lock, cond) = pipe;
    let mut p = lock.lock().unwrap();
    if p.generation == meta.generation && !cancelled {
        p.pending = p.pending.saturating_sub(1);
        p.busy += elapsed;
        match done.result {
            Ok(()) => p.out.extend(done.out),
            Err(e) => {
                p.error.get_or_insert(e);
            }
        }
    }
    cond.notify_all();
}

/// The end of a paused job whose steps were lost (a panic).
fn lost() -> Done {
    Done {
        id: 0,
        result: Err(Error::Buffer("the network thread panicked".into())),
        out: Vec::new(),
        counts: Default::default(),
    }
}

/// Runs `f` on the backend, a panic turned into an error of the job `id`.
fn guarded(
    backend: &Mutex<Box<dyn Backend>>,
    id: u64,
    f: impl FnOnce(&mut dyn Backend) -> Vec<Done>,
) -> Vec<Done> {
    let mut b = backend.lock().unwrap_or_else(|e| e.into_inner());
    std::panic::catch_unwind(AssertUnwindSafe(|| f(&mut **b))).unwrap_or_else(|_| {
        vec![Done {
            id,
            result: Err(Error::Buffer("the network thread panicked".into())),
            out: Vec::new(),
            counts: Default::default(),
        }]
    })
}

/// The windows and new frames of a dispatcher job's `steps`, and those of its new frames that
/// are blends: made by this job when `cheap`, or by an earlier cheap one (`blended` keeps
/// those while they are held).
fn count_new(blended: &mut HashSet<Key>, steps: &[Step], cheap: bool) -> Counts {
    let mut c = Counts::default();
    for s in steps {
        match s {
            Step::Run { outputs, .. } => {
                c.windows += 1;
                if cheap {
                    blended.extend(outputs.iter().map(|&(_, k)| k));
                }
            }
            Step::Emit {
                key,
                original: false,
                ..
            } => {
                c.frames_new += 1;
                c.frames_cheap += u64::from(blended.contains(key));
            }
            Step::EmitCopy { .. } => c.frames_new += 1,
            Step::Release { key } => {
                blended.remove(key);
            }
            _ => {}
        }
    }
    c
}

fn work(
    rx: mpsc::Receiver<Job>,
    pipe: Arc<(Mutex<Pipe>, Condvar)>,
    backend: Arc<Mutex<Box<dyn Backend>>>,
) {
    let mut exec = Exec::default();
    let mut generation = None;
    // The job whose last steps wait for its window (see Exec::run).
    let mut paused: Option<Meta> = None;
    let mut last_end = Instant::now();
    let mut next_id = 0u64;
    loop {
        let job = match &paused {
            Some(m) => match next_or_ready(&rx, &backend, &exec, &m.cancel) {
                Next::Job(job) => *job,
                Next::Ready => {
                    let Some(m) = paused.take() else { continue };
                    let info = m.info.clone();
                    let done = guarded(&backend, m.id, |b| {
                        let mut d: Vec<Done> = exec.finish_tail(b, &info).into_iter().collect();
                        if let Some(d) = d.first_mut()
                            && d.result.is_ok()
                        {
                            d.result = exec.settle(b, info.size());
                        }
                        d
                    });
                    match done.into_iter().next() {
                        Some(d) => finish(&pipe, m, d, &mut last_end),
                        None => finish(&pipe, m, lost(), &mut last_end),
                    }
                    continue;
                }
                Next::Cancelled => {
                    paused = None;
                    let mut b = backend.lock().unwrap_or_else(|e| e.into_inner());
                    exec.clear(&mut **b);
                    generation = None;
                    continue;
                }
            },
            None => match rx.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
        };
        let stale = job.cancel.load(Ordering::SeqCst)
            || paused
                .as_ref()
                .is_some_and(|m| m.cancel.load(Ordering::SeqCst));
        if generation != Some(job.generation) || stale {
            // A flush: the windows in flight and the paused job are abandoned.
            let mut b = backend.lock().unwrap_or_else(|e| e.into_inner());
            exec.clear(&mut **b);
            paused = None;
            generation = Some(job.generation);
        }
        if job.cancel.load(Ordering::SeqCst) {
            continue;
        }
        let t0 = Instant::now();
        let decision = job.qos.as_ref().map_or(Decision::Network, JobQos::decide);
        let cheap = match decision {
            Decision::Cheap { .. } => job.qos.as_ref().map(|q| q.factor),
            Decision::Network => None,
        };
        let windows = job
            .steps
            .iter()
            .filter(|s| matches!(s, Step::Run { .. }))
            .count() as u64;
        let id = next_id;
        next_id += 1;
        let meta = Meta {
            id,
            generation: job.generation,
            cancel: job.cancel.clone(),
            info: job.info.clone(),
            qos: job.qos,
            decision,
            windows,
            t0,
        };
        // The memories of this job's frames (a paused job's tail, run below, sees them too; it
        // only pushes and releases frames, which is right in either memory).
        exec.dev = job.dev.clone();
        let done = guarded(&backend, id, |b| {
            b.set_cancel(Some(job.cancel.clone()));
            exec.run(
                b,
                &job.info,
                id,
                job.inputs,
                job.steps,
                &job.cancel,
                cheap,
                true,
            )
        });
        let mut meta = Some(meta);
        for d in done {
            let m = if paused.as_ref().is_some_and(|m| m.id == d.id) {
                paused.take()
            } else if meta.as_ref().is_some_and(|m| m.id == d.id) {
                meta.take()
            } else {
                None
            };
            if let Some(m) = m {
                finish(&pipe, m, d, &mut last_end);
            }
        }
        if let Some(m) = meta
            && exec.paused() == Some(m.id)
        {
            paused = Some(m);
        }
        // After a panic the paused job's tail is gone: it fails.
        if paused.is_some()
            && exec.paused().is_none()
            && let Some(m) = paused.take()
        {
            finish(&pipe, m, lost(), &mut last_end);
        }
    }
}

#[cfg(test)]
#[path = "net_tests.rs"]
mod tests;
