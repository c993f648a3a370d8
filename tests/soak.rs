// SPDX-License-Identifier: MIT OR Apache-2.0
//! Soak: `FLAVR_SOAK_FRAMES` frames (default 3,000, about a minute here) through `flavrinterp`
//! on the CPU backend at 64x48 with the narrow 2x model, in a real pipeline
//! (videotestsrc ! flavrinterp ! fakesink). Checks:
//!
//! - no frame lost: `2n` buffers out (the last frame's copy included), timestamps strictly increasing, at i/60 s (to 1 ns), offsets
//!   counting up by one;
//! - memory flat: the resident set after a warm-up (the first 10 % of the output) grows by at
//!   most [`RSS_GROWTH_BOUND`] to the end;
//! - throughput steady: CPU time per output frame in the last quarter at most 1.5 times that of
//!   the first quarter after the warm-up (CPU time, not wall time: this machine is shared, and
//!   wall-clock rates move with the neighbours' load; wall rates are printed too).
//!
//! The numbers are printed (`--nocapture`) for the README and the notes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

mod gst_common;
use gst_common::{fixture, init, wait_for_eos};

/// Bytes the resident set may grow after the warm-up. A leak of one frame's buffer (4.6 kB at
/// 64x48 I420) per window is 13.8 MB over the default 3,000 frames, three times this; the
/// allocator's own drift (arenas, the rayon pool's scratch, GStreamer's buffer pools) stays
/// within a few hundred kB in our runs.
const RSS_GROWTH_BOUND: u64 = 4 << 20;

/// Resident set (bytes) and CPU time of the process (seconds).
fn usage() -> (u64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap()
        * 1024;
    // utime and stime, fields 14 and 15 of /proc/self/stat, in clock ticks (100 per second).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    (rss, ticks as f64 / 100.0)
}

#[derive(Clone, Copy, Debug)]
struct Sample {
    frames: u64,
    wall: f64,
    cpu: f64,
    rss: u64,
}

#[derive(Default)]
struct Seen {
    count: u64,
    last_pts: Option<u64>,
    bad: Vec<String>,
    samples: Vec<Sample>,
}

#[test]
fn soak_cpu_small_frames() {
    init();
    let n: u64 = std::env::var("FLAVR_SOAK_FRAMES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    assert!(n >= 100, "FLAVR_SOAK_FRAMES={n}: at least 100");
    // The last frame's copy fills its slot.
    let expected = 2 * n;
    let desc = format!(
        "videotestsrc num-buffers={n} pattern=ball ! \
         video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! \
         flavrinterp backend=cpu model-location={} ! fakesink name=sink sync=false",
        fixture("flavr2x_w8.safetensors").display()
    );
    let p = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let every = (expected / 200).max(1);
    let t0 = Instant::now();
    {
        let seen = seen.clone();
        let pad = p.by_name("sink").unwrap().static_pad("sink").unwrap();
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(b) = info.buffer() else {
                return gst::PadProbeReturn::Ok;
            };
            let mut s = seen.lock().unwrap();
            let i = s.count;
            let pts = b.pts().map(|t| t.nseconds());
            // Frame i of a 60/1 stream starts at i/60 s (to a nanosecond: rounding).
            let want = i * 1_000_000_000 / 60;
            if pts.is_none_or(|p| p.abs_diff(want) > 1) && s.bad.len() < 10 {
                s.bad
                    .push(format!("buffer {i}: pts {pts:?}, expected {want}"));
            }
            if let (Some(p), Some(l)) = (pts, s.last_pts)
                && p <= l
                && s.bad.len() < 10
            {
                s.bad.push(format!("buffer {i}: pts {p} after {l}"));
            }
            if b.offset() != i && s.bad.len() < 10 {
                s.bad.push(format!("buffer {i}: offset {}", b.offset()));
            }
            s.last_pts = pts;
            s.count += 1;
            if s.count % every == 0 || s.count == expected {
                let (rss, cpu) = usage();
                let count = s.count;
                if count % (expected / 10).max(1) < every {
                    // Progress, for long runs.
                    eprintln!(
                        "soak: {count} frames out, {:.0} s, RSS {:.1} MiB, CPU {cpu:.0} s",
                        t0.elapsed().as_secs_f64(),
                        rss as f64 / (1 << 20) as f64
                    );
                }
                s.samples.push(Sample {
                    frames: count,
                    wall: t0.elapsed().as_secs_f64(),
                    cpu,
                    rss,
                });
            }
            gst::PadProbeReturn::Ok
        });
    }
    p.set_state(gst::State::Playing).unwrap();
    // Generous: 40 ms per input frame (the run is 30-60 frames/s here, as the machine's load
    // goes), and at least 10 minutes.
    let limit = Duration::from_secs((n / 25).max(600));
    let end = wait_for_eos(
        &p.bus().unwrap(),
        gst::ClockTime::from_nseconds(limit.as_nanos() as u64),
    );
    p.set_state(gst::State::Null).unwrap();
    if let Err(e) = end {
        panic!("{e}");
    }
    let s = seen.lock().unwrap();
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "soak: {n} frames in, {} out (expected {expected}) in {secs:.1} s ({:.1} frames in/s)",
        s.count,
        n as f64 / secs
    );
    assert!(s.bad.is_empty(), "{}", s.bad.join("\n"));
    assert_eq!(s.count, expected, "frames lost or added");

    // Memory: from the end of the warm-up (10 % of the output) to the end.
    let warm = s
        .samples
        .iter()
        .position(|x| x.frames >= expected / 10)
        .unwrap();
    let after = &s.samples[warm..];
    let base = after[0].rss;
    let max = after.iter().map(|x| x.rss).max().unwrap();
    let last = after.last().unwrap().rss;
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!(
        "soak: RSS {:.1} MiB at first sample, {:.1} MiB after warm-up ({} frames out), max \
         {:.1} MiB, last {:.1} MiB: growth {:.2} MiB (bound {:.0} MiB)",
        mib(s.samples[0].rss),
        mib(base),
        after[0].frames,
        mib(max),
        mib(last),
        mib(max.saturating_sub(base)),
        mib(RSS_GROWTH_BOUND)
    );

    // Throughput: first and last quarter of the run after the warm-up.
    let q = after.len() / 4;
    let rate = |a: &Sample, b: &Sample| {
        let f = (b.frames - a.frames) as f64;
        (f / (b.wall - a.wall), (b.cpu - a.cpu) / f * 1e3)
    };
    let (first_wall, first_cpu) = rate(&after[0], &after[q]);
    let (last_wall, last_cpu) = rate(&after[after.len() - 1 - q], &after[after.len() - 1]);
    println!(
        "soak: first quarter {first_wall:.1} frames out/s, {first_cpu:.2} ms CPU per frame; \
         last quarter {last_wall:.1} frames out/s, {last_cpu:.2} ms CPU per frame"
    );
    assert!(
        max.saturating_sub(base) <= RSS_GROWTH_BOUND,
        "RSS grew by {} bytes after the warm-up",
        max - base
    );
    assert!(
        last_cpu <= 1.5 * first_cpu,
        "CPU per frame went from {first_cpu:.2} ms to {last_cpu:.2} ms"
    );
}
