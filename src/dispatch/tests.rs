// SPDX-License-Identifier: MIT OR Apache-2.0
//! The dispatcher and the reorder stage against a sequential run of the same steps, with a
//! fake engine whose "frames" are numbers and whose tasks take uneven times.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::*;
use crate::window::{FrameIn, Plan, Step, Window};

/// A model output made from four input numbers: different for every input order and index.
fn mix(inputs: [u64; 4], index: usize) -> u64 {
    inputs
        .iter()
        .fold(index as u64 + 17, |h, &x| h.wrapping_mul(1_000_003) ^ x)
}

struct Fake {
    index: usize,
    runs: u64,
    /// Fails every window after this many.
    fail_after: Option<u64>,
    /// Windows run, by engine.
    counter: Arc<Vec<AtomicU64>>,
}

impl Engine for Fake {
    type Frame = u64;
    type Ctx = ();
    type Error = String;

    fn name(&self) -> String {
        format!("fake{}", self.index)
    }

    fn forget(&mut self) {}

    fn blend(_: &(), a: &u64, b: &u64, k: u64, factor: u64) -> Result<u64, String> {
        Ok(cheap(*a, *b, k, factor))
    }

    fn run(
        &mut self,
        _ctx: &(),
        window: [(Key, &u64); 4],
        outputs: &[(usize, Key)],
        _cancel: &Arc<AtomicBool>,
    ) -> Result<Vec<(Key, u64)>, String> {
        if self.fail_after.is_some_and(|n| self.runs >= n) {
            return Err(format!("fault after {} windows", self.runs));
        }
        // Uneven times, so later tasks often finish first.
        let t = (window[1].0.tick * 7 + self.index as u64 * 3) % 5;
        std::thread::sleep(Duration::from_millis(t));
        self.runs += 1;
        self.counter[self.index].fetch_add(1, Ordering::SeqCst);
        let inputs = window.map(|(_, f)| *f);
        Ok(outputs.iter().map(|&(i, k)| (k, mix(inputs, i))).collect())
    }
}

/// The fake blend: new frame `k` of `factor` between originals `a` and `b`.
fn cheap(a: u64, b: u64, k: u64, factor: u64) -> u64 {
    (a * 1_000 + b) * 100 + k * 10 + factor
}

/// (value, pts, duration, copy) of each frame handed out.
type Frame = (u64, u64, Option<u64>, bool);
/// The input frames (key, value) and the steps of one input frame.
type Batch = (Vec<(Key, u64)>, Vec<Step>);
/// Frames handed out, batches done, failures.
type Got = (Vec<Frame>, usize, Vec<String>);

/// Steps of `n` frames through a window at `factor` with a model of `n_out` outputs, per
/// input frame (the drain last), and the original frames' numbers by key.
fn batches(factor: u32, n_out: usize, n: u64, cut_at: Option<u64>) -> Vec<Batch> {
    let mut w = Window::new(
        Plan::new(factor, n_out).unwrap(),
        crate::backend::SLOTS,
        Some(1000),
    );
    let mut out = Vec::new();
    for i in 0..n {
        let p = w
            .push(FrameIn {
                pts: Some(i * 1000),
                duration: Some(1000),
                discont: false,
                cut: cut_at == Some(i),
            })
            .unwrap();
        out.push((vec![(p.key, 1_000 + i)], p.steps));
    }
    out.push((Vec::new(), w.drain().unwrap()));
    out
}

/// The steps carried out in order on one engine.
fn sequential(batches: &[Batch]) -> Vec<Frame> {
    sequential_cheap(batches, 0, None)
}

/// [`sequential`] with the batches `b` where `cheap(b)` made of blends at `factor`.
fn sequential_cheap(
    batches: &[Batch],
    factor: u64,
    cheap: Option<fn(usize) -> bool>,
) -> Vec<Frame> {
    let mut frames: HashMap<Key, u64> = HashMap::new();
    let mut slots: HashMap<usize, u64> = HashMap::new();
    let mut out = Vec::new();
    for (b, (inputs, steps)) in batches.iter().enumerate() {
        frames.extend(inputs.iter().copied());
        for s in steps {
            match s {
                Step::Load { key, slot } => {
                    slots.insert(*slot, frames[key]);
                }
                Step::Run { outputs, .. } if cheap.is_some_and(|c| c(b)) => {
                    for (_, k) in outputs {
                        let (j, kk) = (k.tick / factor, k.tick % factor);
                        let at = |t| {
                            frames[&Key {
                                run: k.run,
                                tick: t,
                            }]
                        };
                        let v = self::cheap(at(j * factor), at((j + 1) * factor), kk, factor);
                        frames.insert(*k, v);
                    }
                }
                Step::Run { window, outputs } => {
                    let inputs = window.map(|s| slots[&s]);
                    for (i, k) in outputs {
                        frames.insert(*k, mix(inputs, *i));
                    }
                }
                Step::Emit {
                    key, pts, duration, ..
                } => out.push((frames[key], *pts, *duration, false)),
                Step::EmitCopy {
                    source,
                    pts,
                    duration,
                    ..
                } => out.push((frames[source], *pts, *duration, true)),
                Step::Release { .. } => {}
            }
        }
    }
    out
}

struct Run {
    frames: Vec<Frame>,
    failed: Vec<String>,
    down: Vec<EngineDown>,
    per_engine: Vec<u64>,
}

/// The batches through a dispatcher of `n` fake engines; waits for every batch (or a failure).
fn dispatched(n: usize, depth: usize, faults: &[(usize, u64)], batches: Vec<Batch>) -> Run {
    dispatched_cheap(n, depth, faults, batches, 0, None)
}

/// [`dispatched`], the batches `b` where `cheap(b)` submitted cheap at `factor`.
fn dispatched_cheap(
    n: usize,
    depth: usize,
    faults: &[(usize, u64)],
    batches: Vec<Batch>,
    factor: u64,
    cheap: Option<fn(usize) -> bool>,
) -> Run {
    let counter: Arc<Vec<AtomicU64>> = Arc::new((0..n).map(|_| AtomicU64::new(0)).collect());
    let engines: Vec<Fake> = (0..n)
        .map(|index| Fake {
            index,
            runs: 0,
            fail_after: faults.iter().find(|f| f.0 == index).map(|f| f.1),
            counter: counter.clone(),
        })
        .collect();
    let got: Arc<Mutex<Got>> = Arc::default();
    let downs: Arc<Mutex<Vec<EngineDown>>> = Arc::default();
    let (g, d) = (got.clone(), downs.clone());
    let disp = Dispatcher::new(
        engines,
        depth,
        Box::new(move |_gen: u64, o: Out<u64>| {
            let mut g = g.lock().unwrap();
            match o {
                Out::Frame {
                    frame,
                    pts,
                    duration,
                    copy,
                } => g.0.push((frame, pts, duration, copy)),
                Out::BatchDone => g.1 += 1,
                Out::Failed(m) => g.2.push(m),
            }
        }),
        Box::new(move |down: EngineDown| d.lock().unwrap().push(down)),
    )
    .unwrap();
    let total = batches.len();
    let cancel = Arc::new(AtomicBool::new(false));
    for (b, (inputs, steps)) in batches.into_iter().enumerate() {
        let c = cheap.filter(|c| c(b)).map(|_| factor);
        disp.submit(0, (), cancel.clone(), inputs, steps, c);
    }
    let t0 = Instant::now();
    loop {
        {
            let g = got.lock().unwrap();
            if g.1 == total || !g.2.is_empty() {
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "dispatcher hangs");
        std::thread::sleep(Duration::from_millis(2));
    }
    let g = got.lock().unwrap();
    Run {
        frames: g.0.clone(),
        failed: g.2.clone(),
        down: downs.lock().unwrap().clone(),
        per_engine: counter.iter().map(|c| c.load(Ordering::SeqCst)).collect(),
    }
}

#[test]
fn reorder_hands_out_in_place_order() {
    let mut r = Reorder::default();
    let a = r.reserve();
    let b = r.reserve();
    r.push("c");
    assert_eq!(r.pop(), None, "place a is not filled");
    assert!(r.put(b, "b"));
    assert!(!r.put(b, "b again"), "filled twice");
    assert_eq!(r.pop(), None);
    assert!(r.put(a, "a"));
    assert_eq!(
        [r.pop(), r.pop(), r.pop(), r.pop()],
        [Some("a"), Some("b"), Some("c"), None]
    );
    assert!(!r.put(a, "late"), "handed out already");
    let d = r.reserve();
    r.clear();
    assert!(!r.put(d, "after clear"), "a place from before clear");
    assert!(r.is_empty());
}

#[test]
fn n_engines_give_the_sequential_frames_in_order() {
    // factor 2 (one window per frame), 4 and 8 with a 2x model (recursive: windows wait for
    // frames other windows make), 4 with a 4x model; with and without a scene cut.
    for (factor, n_out) in [(2, 1), (4, 1), (8, 1), (4, 3)] {
        for cut in [None, Some(6)] {
            let b = batches(factor, n_out, 13, cut);
            let want = sequential(&b);
            for n in [1, 2, 3, 4] {
                for depth in [1, 2] {
                    let run = dispatched(n, depth, &[], b.clone());
                    assert!(run.failed.is_empty(), "{:?}", run.failed);
                    assert_eq!(
                        run.frames, want,
                        "factor {factor}, model {n_out}, cut {cut:?}, {n} engines, depth {depth}"
                    );
                }
            }
        }
    }
}

#[test]
fn cheap_batches_are_blends_in_order_and_run_no_task() {
    // Every batch cheap: no engine runs a window, the frames are the blends, in order.
    for (factor, n_out) in [(2u32, 1), (4, 1), (8, 1), (4, 3)] {
        let f = u64::from(factor);
        for cut in [None, Some(6)] {
            let b = batches(factor, n_out, 13, cut);
            let want = sequential_cheap(&b, f, Some(|_| true));
            let run = dispatched_cheap(2, 1, &[], b.clone(), f, Some(|_| true));
            assert!(run.failed.is_empty(), "{:?}", run.failed);
            assert_eq!(
                run.frames, want,
                "factor {factor}, model {n_out}, cut {cut:?}"
            );
            assert_eq!(run.per_engine, vec![0, 0]);
            // Every other batch cheap: the network's frames and the blends, in order.
            let want = sequential_cheap(&b, f, Some(|b| b % 2 == 1));
            let run = dispatched_cheap(2, 1, &[], b, f, Some(|b| b % 2 == 1));
            assert!(run.failed.is_empty(), "{:?}", run.failed);
            assert_eq!(
                run.frames, want,
                "factor {factor}, model {n_out}, cut {cut:?}"
            );
            assert!(run.per_engine.iter().sum::<u64>() > 0);
        }
    }
}

#[test]
fn windows_are_spread_over_the_engines() {
    let run = dispatched(3, 1, &[], batches(2, 1, 30, None));
    assert!(
        run.per_engine.iter().all(|&c| c >= 3),
        "{:?}",
        run.per_engine
    );
    assert_eq!(run.per_engine.iter().sum::<u64>(), 29);
}

#[test]
fn a_failed_engine_is_taken_out_and_its_windows_redone() {
    let b = batches(4, 1, 20, None);
    let want = sequential(&b);
    let run = dispatched(3, 2, &[(1, 2)], b);
    assert!(run.failed.is_empty(), "{:?}", run.failed);
    assert_eq!(run.frames, want, "no frame lost, repeated or changed");
    assert_eq!(run.down.len(), 1, "{:?}", run.down);
    let d = &run.down[0];
    assert_eq!((d.index, d.left), (1, 2));
    assert!(d.redone >= 1 && d.error.contains("fault after 2"), "{d:?}");
    assert_eq!(run.per_engine[1], 2, "engine 1 made 2 windows");
}

#[test]
fn all_engines_failing_is_an_error() {
    let run = dispatched(2, 1, &[(0, 1), (1, 3)], batches(2, 1, 20, None));
    assert_eq!(run.down.len(), 2);
    assert_eq!(run.failed.len(), 1, "{:?}", run.failed);
    assert!(
        run.failed[0].contains("all 2 engines failed") && run.failed[0].contains("engine 1"),
        "{}",
        run.failed[0]
    );
    assert_eq!(run.per_engine, vec![1, 3]);
}

#[test]
fn a_new_generation_forgets_the_old_one() {
    let counter: Arc<Vec<AtomicU64>> = Arc::new(vec![AtomicU64::new(0), AtomicU64::new(0)]);
    let engines: Vec<Fake> = (0..2)
        .map(|index| Fake {
            index,
            runs: 0,
            fail_after: None,
            counter: counter.clone(),
        })
        .collect();
    let seen: Arc<Mutex<Vec<(u64, bool)>>> = Arc::default();
    let s = seen.clone();
    let disp = Dispatcher::new(
        engines,
        1,
        Box::new(move |generation: u64, o: Out<u64>| {
            s.lock()
                .unwrap()
                .push((generation, matches!(o, Out::BatchDone)))
        }),
        Box::new(|_: EngineDown| {}),
    )
    .unwrap();
    let old = Arc::new(AtomicBool::new(false));
    let b = batches(2, 1, 10, None);
    for (inputs, steps) in b.clone() {
        disp.submit(0, (), old.clone(), inputs, steps, None);
    }
    old.store(true, Ordering::SeqCst);
    let new = Arc::new(AtomicBool::new(false));
    for (inputs, steps) in b.clone() {
        disp.submit(1, (), new.clone(), inputs, steps, None);
    }
    let t0 = Instant::now();
    while seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(g, done)| *g == 1 && *done)
        .count()
        < b.len()
    {
        assert!(t0.elapsed() < Duration::from_secs(20), "dispatcher hangs");
        std::thread::sleep(Duration::from_millis(2));
    }
    let seen = seen.lock().unwrap();
    let first_new = seen.iter().position(|(g, _)| *g == 1).unwrap();
    assert!(
        seen[first_new..].iter().all(|(g, _)| *g == 1),
        "old frames after the new generation started"
    );
    assert_eq!(
        seen.iter().filter(|(g, _)| *g == 1).count(),
        want_len(&b) + b.len()
    );
}

fn want_len(b: &[Batch]) -> usize {
    sequential(b).len()
}

#[test]
fn devices_parse() {
    assert_eq!(parse_devices(""), Ok(Devices::Single));
    assert_eq!(parse_devices(" all "), Ok(Devices::All));
    assert_eq!(parse_devices("0, 1,2"), Ok(Devices::List(vec![0, 1, 2])));
    assert_eq!(parse_devices("0,0"), Ok(Devices::List(vec![0, 0])));
    assert_eq!(parse_devices("cpu:3"), Ok(Devices::Cpu(3)));
    for bad in ["0,,1", "gpu0", "cpu:0", "cpu:x", "-1", "1;2", "cpu:65"] {
        let e = parse_devices(bad).unwrap_err();
        assert!(e.contains(&format!("devices=\"{bad}\"")), "{bad}: {e}");
    }
    assert_eq!(
        parse_faults("1:after:2, 0:start"),
        Ok(vec![(1, EngineFault::After(2)), (0, EngineFault::Start)])
    );
    for bad in ["1", "x:start", "1:after", "1:after:y", "1:stop"] {
        assert!(parse_faults(bad).is_err(), "{bad}");
    }
}
