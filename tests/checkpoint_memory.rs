//! Opening a checkpoint reads its index only: loading the model from a file that is mostly
//! optimizer state needs about the weights' memory, not the file's. One test only: the
//! allocator counts every allocation of the process.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gstflavrinterp::model::Flavr;

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = NOW.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(now, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        NOW.fetch_sub(layout.size(), Ordering::SeqCst);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = NOW.fetch_add(new_size - layout.size(), Ordering::SeqCst)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::SeqCst);
            } else {
                NOW.fetch_sub(layout.size() - new_size, Ordering::SeqCst);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn loading_needs_the_weights_memory_not_the_files() {
    let dir = common::fixtures();
    for name in ["flavr4x_w16.pth", "flavr4x_w16.legacy.pth"] {
        let p = dir.join(name);
        let file = std::fs::metadata(&p).unwrap().len() as usize;
        let base = NOW.load(Ordering::SeqCst);
        PEAK.store(base, Ordering::SeqCst);
        let m = Flavr::load_path(&p).unwrap();
        let peak = PEAK.load(Ordering::SeqCst) - base;
        let weights = 4 * m.spec.params();
        println!(
            "{name}: file {file} bytes, weights {weights} bytes, peak {peak} bytes ({:.2}x weights)",
            peak as f64 / weights as f64
        );
        assert!(
            file > 2 * weights,
            "the fixture should be mostly optimizer state"
        );
        assert!(
            peak < weights + weights * 3 / 10,
            "{name}: peak {peak} bytes for {weights} bytes of weights"
        );
        drop(m);
    }
}
