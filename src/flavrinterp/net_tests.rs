// SPDX-License-Identifier: MIT OR Apache-2.0
//! The network thread with a fake backend that pipelines like the CUDA engine (windows
//! submitted, computed in the background, collected in order): frame order and contents,
//! windows really in flight together, flushes between a submit and its collect, errors of
//! either half.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{Net, WaitError};
use crate::backend::{Backend, BackendError, FrameLayout, SLOTS};
use crate::window::{FrameIn, Plan, Window};

/// What the fake backend's windows make: a value from the four frames' values, so that a frame
/// from the wrong window (or a stale one) shows.
fn mix(v: [u8; 4]) -> u8 {
    let s = v[0] as u32 + 3 * v[1] as u32 + 5 * v[2] as u32 + 7 * v[3] as u32;
    (s % 251) as u8
}

#[derive(Default)]
struct Seen {
    /// Most windows submitted and not collected at once.
    max_in_flight: usize,
    submits: usize,
    abandons: usize,
}

/// A backend of depth 2 whose windows take `work` each, one after another, from their submit
/// (a GPU's stream); the value is read from the slots at submit.
struct FakePipe {
    slots: [u8; SLOTS],
    size: usize,
    work: Duration,
    /// Value and time done of each window in flight, oldest first.
    queue: VecDeque<(u8, Instant)>,
    seen: Arc<Mutex<Seen>>,
    /// Fail the submit, or the collect, of this window (counting from 1).
    fail_submit: Option<usize>,
    fail_collect: Option<usize>,
    collects: usize,
}

impl FakePipe {
    fn new(size: usize, work: Duration, seen: Arc<Mutex<Seen>>) -> FakePipe {
        FakePipe {
            slots: [0; SLOTS],
            size,
            work,
            queue: VecDeque::new(),
            seen,
            fail_submit: None,
            fail_collect: None,
            collects: 0,
        }
    }
}

impl Backend for FakePipe {
    fn name(&self) -> String {
        "fake-pipe".into()
    }
    fn n_outputs(&self) -> usize {
        1
    }
    fn configure(&mut self, _layout: &FrameLayout) -> Result<(), BackendError> {
        Ok(())
    }
    fn load_frame(&mut self, slot: usize, frame: &[u8]) -> Result<(), BackendError> {
        self.slots[slot] = frame[0];
        Ok(())
    }
    fn interpolate(&mut self, _w: [usize; 4], _o: &mut [&mut [u8]]) -> Result<(), BackendError> {
        Err(BackendError::Failed(
            "the element must submit and collect".into(),
        ))
    }
    fn depth(&self) -> usize {
        2
    }
    fn submit(&mut self, w: [usize; 4]) -> Result<(), BackendError> {
        if self.queue.len() >= 2 {
            return Err(BackendError::Failed("more than 2 windows submitted".into()));
        }
        let mut seen = self.seen.lock().unwrap();
        seen.submits += 1;
        if self.fail_submit == Some(seen.submits) {
            return Err(BackendError::Failed(format!(
                "submit {} fails",
                seen.submits
            )));
        }
        let v = mix(w.map(|s| self.slots[s]));
        let start = self
            .queue
            .back()
            .map_or(Instant::now(), |q| q.1.max(Instant::now()));
        self.queue.push_back((v, start + self.work));
        seen.max_in_flight = seen.max_in_flight.max(self.queue.len());
        Ok(())
    }
    fn ready(&mut self) -> Result<bool, BackendError> {
        Ok(self.queue.front().is_none_or(|q| Instant::now() >= q.1))
    }
    fn collect(&mut self, outputs: &mut [&mut [u8]]) -> Result<(), BackendError> {
        let (v, at) = self
            .queue
            .pop_front()
            .ok_or_else(|| BackendError::Failed("nothing to collect".into()))?;
        self.collects += 1;
        if self.fail_collect == Some(self.collects) {
            return Err(BackendError::Failed(format!(
                "collect {} fails",
                self.collects
            )));
        }
        std::thread::sleep(at.saturating_duration_since(Instant::now()));
        outputs[0][..self.size].fill(v);
        Ok(())
    }
    fn abandon(&mut self) {
        self.queue.clear();
        self.seen.lock().unwrap().abandons += 1;
    }
}

const FRAME_NS: u64 = 33_333_333;

fn info() -> gst_video::VideoInfo {
    gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, 4, 2)
        .build()
        .unwrap()
}

/// The streaming thread's part: pushes frames of values `values` (timestamps from `t0`
/// frames) through a 2x window, one job per frame, at most one more in flight, then drains.
fn stream(net: &Net, values: &[u8], t0: u64) -> Result<Vec<gst::Buffer>, WaitError> {
    let info = info();
    let mut window = Window::new(Plan::new(2, 1).unwrap(), SLOTS, Some(FRAME_NS));
    let mut out = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        let pts = (t0 + i as u64) * FRAME_NS;
        let pushed = window
            .push(FrameIn {
                pts: Some(pts),
                ..FrameIn::default()
            })
            .unwrap();
        let buf = gst::Buffer::from_mut_slice(vec![v; info.size()]);
        net.submit(&info, vec![(pushed.key, buf)], pushed.steps, None);
        out.extend(net.wait(1)?);
    }
    net.submit(&info, Vec::new(), window.drain().unwrap(), None);
    out.extend(net.wait(0)?);
    Ok(out)
}

/// The frames a 2x stream of `values` must give: each original, then the window's value
/// between it and the next (neighbours clamped at the ends).
fn expected(values: &[u8]) -> Vec<u8> {
    let n = values.len() as isize;
    let at = |i: isize| values[i.clamp(0, n - 1) as usize];
    let mut e = Vec::new();
    for i in 0..n {
        e.push(at(i));
        if i + 1 < n {
            e.push(mix([at(i - 1), at(i), at(i + 1), at(i + 2)]));
        }
    }
    // At EOS the last original's slot is filled with a copy of it (factor 2: one).
    if n > 0 {
        e.push(at(n - 1));
    }
    e
}

fn values_of(out: &[gst::Buffer]) -> Vec<u8> {
    out.iter()
        .map(|b| b.map_readable().unwrap()[0])
        .collect::<Vec<_>>()
}

fn check_times(out: &[gst::Buffer], t0: u64) {
    for (k, b) in out.iter().enumerate() {
        let want = t0 * FRAME_NS + (k as u64 * FRAME_NS).div_ceil(2);
        let pts = b.pts().unwrap().nseconds();
        assert!(
            pts.abs_diff(want) <= 1,
            "frame {k}: pts {pts}, expected {want}"
        );
    }
}

fn values(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed))
        .collect()
}

fn spawn(fake: FakePipe) -> Net {
    Net::spawn(Box::new(fake)).unwrap()
}

#[test]
fn pipelined_windows_come_out_in_order_and_overlap() {
    gst::init().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let net = spawn(FakePipe::new(
        info().size(),
        Duration::from_millis(15),
        seen.clone(),
    ));
    for n in [1usize, 2, 3, 4, 12] {
        let v = values(n, n as u8);
        let out = stream(&net, &v, 0).unwrap_or_else(|_| panic!("{n} frames failed"));
        assert_eq!(values_of(&out), expected(&v), "{n} frames");
        check_times(&out, 0);
    }
    let seen = seen.lock().unwrap();
    // Window k + 1 was submitted before window k was collected.
    assert_eq!(seen.max_in_flight, 2, "the windows never overlapped");
    assert_eq!(seen.abandons, 0);
}

#[test]
fn a_flush_between_submit_and_collect_abandons_the_window() {
    gst::init().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let net = spawn(FakePipe::new(
        info().size(),
        Duration::from_millis(100),
        seen.clone(),
    ));
    // Four frames: two windows; the flush comes while the first is in flight.
    let info = info();
    let mut window = Window::new(Plan::new(2, 1).unwrap(), SLOTS, Some(FRAME_NS));
    for (i, v) in [200u8, 201, 202, 203].into_iter().enumerate() {
        let pushed = window
            .push(FrameIn {
                pts: Some(i as u64 * FRAME_NS),
                ..FrameIn::default()
            })
            .unwrap();
        let buf = gst::Buffer::from_mut_slice(vec![v; info.size()]);
        net.submit(&info, vec![(pushed.key, buf)], pushed.steps, None);
    }
    let t = Instant::now();
    while seen.lock().unwrap().submits == 0 {
        assert!(t.elapsed() < Duration::from_secs(10), "no window submitted");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t = Instant::now();
    net.flush_start();
    assert!(matches!(net.wait(0), Err(WaitError::Flushing)));
    net.flush_stop();
    // A new stream: none of the old frames, and no stale window's frame, comes out.
    let v = values(6, 3);
    let out = stream(&net, &v, 100).unwrap_or_else(|_| panic!("after the flush"));
    assert_eq!(values_of(&out), expected(&v));
    check_times(&out, 100);
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(
        seen.lock().unwrap().abandons >= 1,
        "no window was abandoned"
    );
}

#[test]
fn errors_of_submit_and_collect_surface() {
    gst::init().unwrap();
    for (fail_submit, fail_collect) in [(Some(3), None), (None, Some(2)), (None, Some(5))] {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let mut fake = FakePipe::new(info().size(), Duration::from_millis(5), seen);
        fake.fail_submit = fail_submit;
        fake.fail_collect = fail_collect;
        let net = spawn(fake);
        match stream(&net, &values(10, 1), 0) {
            Err(WaitError::Failed(e)) => {
                let e = e.to_string();
                assert!(e.contains("fails"), "{e}");
            }
            Err(WaitError::Flushing) => panic!("flushing"),
            Ok(out) => panic!(
                "submit {fail_submit:?} / collect {fail_collect:?}: no error, {} frames",
                out.len()
            ),
        }
    }
}
