//! The CUDA backend with windows in flight (`submit` / `collect`): interleaved with frame
//! loads, two windows in flight, a load into a slot that a window in flight still reads, an
//! abandoned window, the outputs must equal the one-window-at-a-time path (`interpolate`) byte
//! for byte. Also the misuses: a third window submitted, a collect with nothing in flight, an
//! interpolate while windows are in flight.
//!
//! Without a GPU each test prints "skipped: no usable CUDA GPU (...)" and passes.

mod cuda_common;

use std::sync::Arc;

use cuda_common::*;
use gstflavrinterp::backend::{Backend, FrameLayout, PixelFormat, Precision, SLOTS, YuvMatrix};

/// Frame `i`'s slot, and the slots of the window between frames `k` and `k + 1` of `n`.
fn slot(i: usize) -> usize {
    i % SLOTS
}

fn window(k: usize, n: usize) -> [usize; 4] {
    let at = |i: isize| slot(i.clamp(0, n as isize - 1) as usize);
    let k = k as isize;
    [at(k - 1), at(k), at(k + 1), at(k + 2)]
}

/// The last frame window `k` reads.
fn last_frame(k: usize, n: usize) -> usize {
    (k + 2).min(n - 1)
}

fn outputs(b: &dyn Backend, size: usize) -> Vec<Vec<u8>> {
    vec![vec![0u8; size]; b.n_outputs()]
}

fn slices(o: &mut [Vec<u8>]) -> Vec<&mut [u8]> {
    o.iter_mut().map(|v| v.as_mut_slice()).collect()
}

/// Every window of `frames`, one at a time (load what it needs, interpolate).
fn one_at_a_time(b: &mut dyn Backend, frames: &[Vec<u8>], size: usize) -> Vec<Vec<Vec<u8>>> {
    let n = frames.len();
    let mut loaded = 0;
    let mut all = Vec::new();
    for k in 0..n - 1 {
        while loaded <= last_frame(k, n) {
            b.load_frame(slot(loaded), &frames[loaded]).unwrap();
            loaded += 1;
        }
        let mut o = outputs(b, size);
        b.interpolate(window(k, n), &mut slices(&mut o)).unwrap();
        all.push(o);
    }
    all
}

/// The same windows two at a time: windows k and k + 1 submitted, then the frames windows
/// k + 2 and k + 3 need loaded while both are in flight (the second of them into the slot of
/// frame k - 1, which window k reads), then both collected.
fn two_in_flight(b: &mut dyn Backend, frames: &[Vec<u8>], size: usize) -> Vec<Vec<Vec<u8>>> {
    let n = frames.len();
    let mut loaded = 0;
    let mut all = Vec::new();
    let load_through = |b: &mut dyn Backend, last: usize, loaded: &mut usize| {
        while *loaded <= last {
            b.load_frame(slot(*loaded), &frames[*loaded]).unwrap();
            *loaded += 1;
        }
    };
    load_through(
        b,
        last_frame(0, n).max(last_frame(1.min(n - 2), n)),
        &mut loaded,
    );
    let mut k = 0;
    while k < n - 1 {
        let pair = if k + 1 < n - 1 { 2 } else { 1 };
        for j in k..k + pair {
            b.submit(window(j, n)).unwrap();
        }
        if pair == 2 {
            assert!(b.submit(window(k, n)).is_err(), "a third window was taken");
        }
        // The next pair's frames, while this pair computes.
        let next = (k + pair + 1).min(n - 2);
        load_through(b, last_frame(next, n), &mut loaded);
        for _ in 0..pair {
            let mut o = outputs(b, size);
            b.collect(&mut slices(&mut o)).unwrap();
            all.push(o);
        }
        k += pair;
    }
    all
}

fn frames(layout: &FrameLayout, n: usize, seed: u32) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| random_bytes(layout.size, seed + i as u32))
        .collect()
}

fn layouts(w: usize, h: usize) -> Vec<FrameLayout> {
    vec![
        FrameLayout::packed(PixelFormat::Rgb, w, h, YuvMatrix::BT709),
        FrameLayout::packed(PixelFormat::I420, w, h, YuvMatrix::BT709),
    ]
}

#[test]
fn windows_in_flight_match_one_at_a_time_byte_for_byte() {
    for (model, p) in [
        ("flavr2x_w8.safetensors", Precision::Fp16),
        ("flavr4x_w16.safetensors", Precision::Fp16),
        ("flavr2x_w8.safetensors", Precision::Fp32),
    ] {
        let model = Arc::new(load_model(model));
        let Some(mut b) = backend(model, p) else {
            return;
        };
        assert_eq!(b.depth(), 2);
        // Large enough that a window takes longer than a load: a load that did not wait for
        // the window reading its slot would change that window's frames.
        for layout in layouts(320, 184) {
            b.configure(&layout).unwrap();
            for n in [2usize, 3, 9] {
                let f = frames(&layout, n, 7 * n as u32);
                let want = one_at_a_time(&mut *b, &f, layout.size);
                let got = two_in_flight(&mut *b, &f, layout.size);
                assert_eq!(got.len(), want.len());
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        g == w,
                        "{p:?} {:?}, {n} frames: window {k} differs from the one-at-a-time path",
                        layout.format
                    );
                }
                // Windows differ from each other (the comparison is not of constants).
                if n > 2 {
                    assert!(want[0] != want[1]);
                }
            }
        }
    }
}

#[test]
fn abandoned_windows_never_come_out() {
    let model = Arc::new(load_model("flavr2x_w8.safetensors"));
    let Some(mut b) = backend(model, Precision::Fp16) else {
        return;
    };
    let layout = FrameLayout::packed(PixelFormat::Rgb, 96, 64, YuvMatrix::BT709);
    b.configure(&layout).unwrap();
    let f = frames(&layout, 6, 3);
    let want = one_at_a_time(&mut *b, &f, layout.size);
    // Two windows of other frames in flight, then abandoned (a flush).
    let other = frames(&layout, 6, 99);
    for (i, fr) in other.iter().enumerate() {
        b.load_frame(slot(i), fr).unwrap();
    }
    b.submit(window(1, 6)).unwrap();
    b.submit(window(2, 6)).unwrap();
    b.abandon();
    let got = two_in_flight(&mut *b, &f, layout.size);
    assert!(got == want, "a window after the abandoned ones differs");
}

#[test]
fn misuse_is_an_error_not_a_wrong_frame() {
    let model = Arc::new(load_model("flavr2x_w8.safetensors"));
    let Some(mut b) = backend(model, Precision::Fp16) else {
        return;
    };
    let layout = FrameLayout::packed(PixelFormat::Rgb, 40, 24, YuvMatrix::BT709);
    b.configure(&layout).unwrap();
    let f = frames(&layout, 4, 5);
    for (i, fr) in f.iter().enumerate() {
        b.load_frame(slot(i), fr).unwrap();
    }
    let mut o = outputs(&*b, layout.size);
    assert!(
        b.collect(&mut slices(&mut o)).is_err(),
        "collect of nothing"
    );
    assert!(b.ready().unwrap());
    b.submit(window(0, 4)).unwrap();
    b.submit(window(1, 4)).unwrap();
    assert!(b.submit(window(2, 4)).is_err(), "a third window in flight");
    assert!(
        b.interpolate(window(2, 4), &mut slices(&mut o)).is_err(),
        "interpolate with windows in flight"
    );
    let mut short = vec![vec![0u8; layout.size - 1]; b.n_outputs()];
    assert!(b.collect(&mut slices(&mut short)).is_err(), "short output");
    // Still both in flight, in order.
    let mut first = outputs(&*b, layout.size);
    let mut second = outputs(&*b, layout.size);
    b.collect(&mut slices(&mut first)).unwrap();
    b.collect(&mut slices(&mut second)).unwrap();
    let mut again = outputs(&*b, layout.size);
    b.interpolate(window(0, 4), &mut slices(&mut again))
        .unwrap();
    assert!(again == first, "the first window collected is not window 0");
    b.interpolate(window(1, 4), &mut slices(&mut again))
        .unwrap();
    assert!(
        again == second,
        "the second window collected is not window 1"
    );
    assert!(first != second);
}
