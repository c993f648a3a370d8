// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 14: stop and seek without waiting for the network, `factor` 3 failing at start, the
//! drain at SEGMENT_DONE, drain errors on the bus, and the smaller items (CONVERT query,
//! reverse playback, stats, zero durations, unloaded buffers, one caps warning), in real
//! pipelines on the CPU backend. The timings are printed (`-- --nocapture`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use gst::prelude::*;

mod gst_common;
use gst_common::{cpu_harness, fixture, init, wait_for};

const M2X: &str = "flavr2x_w8.safetensors";

fn model() -> String {
    fixture(M2X).to_str().unwrap().to_string()
}

fn pipeline(desc: &str) -> gst::Pipeline {
    init();
    gst::parse::launch(desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap()
}

/// 640x480 on the CPU backend with the embedded model: one window takes many seconds here.
const BIG: &str = "videotestsrc pattern=ball ! \
     video/x-raw,format=RGB,width=640,height=480,framerate=30/1 ! \
     flavrinterp name=f backend=cpu ! fakesink name=sink";

/// Whether a thread of this process is called `name`.
fn thread_alive(name: &str) -> bool {
    std::fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(Result::ok).any(|t| {
                std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim_end() == name)
            })
        })
        .unwrap_or(false)
}

/// Waits (at most `limit`) until no `flavrinterp-net` thread is left; the time it took.
fn net_thread_gone(limit: Duration) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if !thread_alive("flavrinterp-net") {
            return Some(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Starts BIG and waits until the network thread is in its first window (the first window
/// needs four frames, which come at once; three seconds are well inside it).
fn start_big() -> gst::Pipeline {
    let p = pipeline(BIG);
    p.set_state(gst::State::Playing).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(thread_alive("flavrinterp-net"), "the network thread runs");
    p
}

// The tests look for the network thread by name: they run one at a time.
static BIG_LOCK: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    BIG_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn null_during_a_running_window_is_quick() {
    let _g = serial();
    let p = start_big();
    let t0 = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    let took = t0.elapsed();
    let gone = net_thread_gone(Duration::from_secs(60));
    println!(
        "set_state(NULL) during a 640x480 CPU window: {:.3} s; abandoned network thread ended \
         {:?} later",
        took.as_secs_f64(),
        gone
    );
    assert!(took <= Duration::from_secs(1), "NULL took {took:?}");
    assert!(
        gone.is_some(),
        "the abandoned window did not end within 60 s"
    );
}

#[test]
fn flushing_seek_during_a_running_window_is_quick() {
    let _g = serial();
    let p = start_big();
    let t0 = Instant::now();
    let ok = p.seek_simple(gst::SeekFlags::FLUSH, gst::ClockTime::ZERO);
    let took = t0.elapsed();
    println!(
        "flushing seek during a 640x480 CPU window: {:.3} s (accepted: {})",
        took.as_secs_f64(),
        ok.is_ok()
    );
    let t1 = Instant::now();
    p.set_state(gst::State::Null).unwrap();
    println!("then set_state(NULL): {:.3} s", t1.elapsed().as_secs_f64());
    assert!(ok.is_ok(), "seek refused");
    assert!(
        took <= Duration::from_secs(1),
        "flushing seek took {took:?}"
    );
    net_thread_gone(Duration::from_secs(60));
}

/// A folder holding only the plugin library of this build, for `GST_PLUGIN_PATH` (as in
/// `pipelines.rs`).
fn plugin_env() -> &'static [(&'static str, PathBuf); 2] {
    static ENV: OnceLock<[(&str, PathBuf); 2]> = OnceLock::new();
    ENV.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let lib = exe.parent().unwrap().join("libgstflavrinterp.so");
        assert!(lib.exists(), "no {}", lib.display());
        let dir = std::env::temp_dir().join(format!("flavrinterp-rel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&lib, dir.join("libgstflavrinterp.so")).unwrap();
        let registry = dir.join("registry.bin");
        [("GST_PLUGIN_PATH", dir), ("GST_REGISTRY", registry)]
    })
}

fn gst_launch(args: &str) -> Command {
    let mut cmd = Command::new("gst-launch-1.0");
    cmd.args(args.split_whitespace())
        .envs(plugin_env().iter().map(|(k, v)| (k, v)));
    cmd
}

#[test]
fn sigint_stops_gst_launch_during_a_window() {
    let _g = serial();
    let desc = BIG.replace(" name=f", "").replace(" name=sink", "");
    let mut child = gst_launch(&desc)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let t0 = Instant::now();
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .is_ok_and(|s| s.success());
    let mut status = None;
    while sent && t0.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = t0.elapsed();
    // Already reaped when it exited; otherwise ended here.
    let _ = child.kill();
    let _ = child.wait();
    println!(
        "gst-launch-1.0 (640x480, CPU) exit after SIGINT during a window: {:.3} s ({status:?})",
        took.as_secs_f64()
    );
    assert!(sent, "kill -INT failed");
    assert!(status.is_some(), "still running 60 s after SIGINT");
    assert!(took <= Duration::from_secs(2), "exit took {took:?}");
}

#[test]
fn factor_3_fails_at_start_with_a_message() {
    let _g = serial();
    init();
    for factor in [3u32, 5, 6, 7] {
        let p = pipeline(&format!(
            "videotestsrc num-buffers=5 ! video/x-raw,width=32,height=24 ! \
             flavrinterp factor={factor} backend=cpu model-location={} ! fakesink",
            model()
        ));
        let r = p.set_state(gst::State::Playing);
        let msg = p
            .bus()
            .unwrap()
            .timed_pop_filtered(gst::ClockTime::from_seconds(5), &[gst::MessageType::Error]);
        p.set_state(gst::State::Null).unwrap();
        let text = match msg.as_ref().map(|m| m.view()) {
            Some(gst::MessageView::Error(e)) => e.error().to_string(),
            _ => String::new(),
        };
        assert!(r.is_err(), "factor {factor}: the state change succeeded");
        assert!(
            text.contains(&format!("factor {factor}")) && text.contains("2, 4 or 8"),
            "factor {factor}: {text:?}"
        );
    }
    // gst-launch-1.0 exits non-zero and says why.
    let out = gst_launch(&format!(
        "videotestsrc num-buffers=5 ! video/x-raw,width=32,height=24 ! \
         flavrinterp factor=3 backend=cpu model-location={} ! fakesink",
        model()
    ))
    .output()
    .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    println!("gst-launch-1.0 factor=3: {:?}", out.status);
    assert!(!out.status.success(), "rc 0: {text}");
    assert!(text.contains("factor 3"), "{text}");
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Segment,
    SegmentDone,
    Buffer,
}

#[test]
fn segment_seek_loop_drains_at_segment_done() {
    let _g = serial();
    let p = pipeline(&format!(
        "videotestsrc pattern=ball ! video/x-raw,format=RGB,width=32,height=24,framerate=30/1 ! \
         flavrinterp backend=cpu model-location={} ! fakesink name=sink sync=false",
        model()
    ));
    let log = Arc::new(Mutex::new(Vec::<Ev>::new()));
    let l = log.clone();
    p.by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap()
        .add_probe(
            gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
            move |_, info| {
                let ev = match &info.data {
                    Some(gst::PadProbeData::Buffer(_)) => Some(Ev::Buffer),
                    Some(gst::PadProbeData::Event(e)) => match e.view() {
                        gst::EventView::Segment(_) => Some(Ev::Segment),
                        gst::EventView::SegmentDone(_) => Some(Ev::SegmentDone),
                        _ => None,
                    },
                    _ => None,
                };
                if let Some(ev) = ev {
                    l.lock().unwrap().push(ev);
                }
                gst::PadProbeReturn::Ok
            },
        );
    p.set_state(gst::State::Paused).unwrap();
    let (r, _, _) = p.state(gst::ClockTime::from_seconds(30));
    r.unwrap();
    let seek = |flags| {
        p.seek(
            1.0,
            flags | gst::SeekFlags::SEGMENT | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            gst::ClockTime::ZERO,
            gst::SeekType::Set,
            gst::ClockTime::SECOND,
        )
        .unwrap()
    };
    seek(gst::SeekFlags::FLUSH);
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let loops = 3;
    let mut done = 0;
    while done < loops {
        wait_for(
            &bus,
            gst::MessageType::SegmentDone,
            gst::ClockTime::from_seconds(60),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        done += 1;
        if done < loops {
            // The loop: a non-flushing segment seek, played seamlessly after this one.
            seek(gst::SeekFlags::empty());
        }
    }
    // Anything that would come after the last SEGMENT_DONE.
    std::thread::sleep(Duration::from_millis(500));
    p.set_state(gst::State::Null).unwrap();
    let log = log.lock().unwrap().clone();
    // Groups from each segment event; the last `loops` are the loops.
    let starts: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, e)| **e == Ev::Segment)
        .map(|(i, _)| i)
        .collect();
    assert!(starts.len() >= loops, "{log:?}");
    let mut counts = Vec::new();
    for (n, &s) in starts[starts.len() - loops..].iter().enumerate() {
        let end = starts
            .get(starts.len() - loops + n + 1)
            .copied()
            .unwrap_or(log.len());
        let group = &log[s..end];
        let done_at = group.iter().position(|e| *e == Ev::SegmentDone);
        let buffers = group.iter().filter(|e| **e == Ev::Buffer).count();
        let after = done_at.map(|d| group[d..].iter().filter(|e| **e == Ev::Buffer).count());
        counts.push((buffers, after));
    }
    println!("segment loops (frames, frames after SEGMENT_DONE): {counts:?}");
    for (buffers, after) in counts {
        assert_eq!(
            buffers, 60,
            "30 originals, 29 new frames and the last one's copy per loop"
        );
        assert_eq!(after, Some(0), "frames after SEGMENT_DONE");
    }
}

/// A harness on the element with `max-in-flight` 0 (each window done before push returns).
fn harness(caps: &str) -> (gst_check::Harness, gst::Bus) {
    harness_with(caps, 0)
}

fn harness_with(caps: &str, in_flight: u32) -> (gst_check::Harness, gst::Bus) {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("model-location", model())
        .property("max-in-flight", in_flight)
        .build()
        .unwrap();
    let (mut h, bus) = cpu_harness(&el);
    h.set_src_caps_str(caps);
    (h, bus)
}

const CAPS: &str = "video/x-raw,format=RGB,width=32,height=24,framerate=30/1";
const FRAME: u64 = 33_333_333;

fn frame(i: u64, pts: Option<u64>, duration: Option<u64>) -> gst::Buffer {
    let mut b = gst::Buffer::from_mut_slice(vec![(i * 37 % 251) as u8; 32 * 24 * 3]);
    {
        let b = b.get_mut().unwrap();
        b.set_pts(pts.map(gst::ClockTime::from_nseconds));
        b.set_duration(duration.map(gst::ClockTime::from_nseconds));
    }
    b
}

fn pull_all(h: &mut gst_check::Harness) -> Vec<gst::Buffer> {
    std::iter::from_fn(|| h.try_pull()).collect()
}

fn messages(bus: &gst::Bus, t: gst::MessageType) -> Vec<String> {
    std::iter::from_fn(|| bus.pop_filtered(&[t]))
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            gst::MessageView::Warning(w) => w.error().to_string(),
            _ => format!("{m:?}"),
        })
        .collect()
}

#[test]
fn latency_counts_the_windows_in_flight() {
    let _g = serial();
    for in_flight in [0u32, 1, 4] {
        let (mut h, _bus) = harness_with(CAPS, in_flight);
        h.set_upstream_latency(gst::ClockTime::ZERO);
        let lat = h.query_latency().unwrap();
        // The 2x model waits for 2 frames; each window in flight adds one.
        assert_eq!(
            lat.nseconds(),
            (2 + u64::from(in_flight)) * FRAME,
            "{in_flight}"
        );
    }
}

#[test]
fn in_flight_windows_give_the_same_frames() {
    let _g = serial();
    let mut outs = Vec::new();
    for in_flight in [0u32, 1, 4] {
        let (mut h, _bus) = harness_with(CAPS, in_flight);
        for i in 0..9 {
            h.push(frame(i, Some(i * FRAME), Some(FRAME))).unwrap();
        }
        h.push_event(gst::event::Eos::new());
        let out: Vec<(u64, Vec<u8>, u64)> = pull_all(&mut h)
            .iter()
            .map(|b| {
                (
                    b.pts().unwrap().nseconds(),
                    b.map_readable().unwrap().to_vec(),
                    b.offset(),
                )
            })
            .collect();
        assert_eq!(out.len(), 18, "in flight {in_flight}");
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1]);
    assert_eq!(outs[0], outs[2]);
}

#[test]
fn convert_query_answers_at_the_output_rate() {
    let _g = serial();
    let p = pipeline(&format!(
        "videotestsrc ! video/x-raw,format=RGB,width=32,height=24,framerate=30/1 ! \
         flavrinterp name=f factor=4 backend=cpu model-location={} ! fakesink",
        fixture("flavr4x_w16.safetensors").display()
    ));
    p.set_state(gst::State::Paused).unwrap();
    p.state(gst::ClockTime::from_seconds(30)).0.unwrap();
    let src = p.by_name("f").unwrap().static_pad("src").unwrap();
    let frames = src.query_convert_generic(gst::ClockTime::SECOND, gst::Format::Default);
    let time = src.query_convert::<Option<gst::ClockTime>>(gst::format::Default::from_u64(120));
    p.set_state(gst::State::Null).unwrap();
    // 30 fps in, factor 4: 120 frames a second.
    assert_eq!(frames.map(|v| v.value()), Some(120));
    assert_eq!(time.flatten(), Some(gst::ClockTime::SECOND));
}

#[test]
fn reverse_playback_passes_frames_with_a_warning_once() {
    let _g = serial();
    let (mut h, bus) = harness(CAPS);
    let mut seg = gst::FormattedSegment::<gst::ClockTime>::new();
    seg.set_rate(-1.0);
    seg.set_start(gst::ClockTime::ZERO);
    seg.set_stop(gst::ClockTime::from_seconds(1));
    assert!(h.push_event(gst::event::Segment::new(&seg)));
    let n = 6u64;
    let mut inputs = Vec::new();
    for i in (0..n).rev() {
        let b = frame(i, Some(i * FRAME), None);
        inputs.push(b.clone());
        h.push(b).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len() as u64, n);
    for (o, i) in out.iter().zip(&inputs) {
        assert_eq!(o.pts(), i.pts());
        assert_eq!(o.duration(), Some(gst::ClockTime::from_nseconds(FRAME)));
        assert_eq!(
            o.map_readable().unwrap().as_slice(),
            i.map_readable().unwrap().as_slice()
        );
    }
    let w: Vec<String> = messages(&bus, gst::MessageType::Warning)
        .into_iter()
        .filter(|w| w.contains("everse"))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
}

fn stats(bus: &gst::Bus) -> gst::Structure {
    std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Element]))
        .filter_map(|m| m.structure().map(|s| s.to_owned()))
        .find(|s| s.name() == "flavrinterp-stats")
        .expect("a stats message")
}

#[test]
fn stats_count_frames_pushed_and_a_sane_rate() {
    let _g = serial();
    // One frame (and its copy): no window ran, so no rate.
    let (mut h, bus) = harness(CAPS);
    h.push(frame(0, Some(0), Some(FRAME))).unwrap();
    h.push_event(gst::event::Eos::new());
    assert_eq!(pull_all(&mut h).len(), 2);
    let s = stats(&bus);
    assert_eq!(s.get::<u64>("frames-out").unwrap(), 2);
    let fps = s.get::<f64>("fps").unwrap();
    assert!(fps < 1000.0, "fps {fps} for a 1-frame stream");

    // A flush in flight: frames thrown away are not counted.
    let (mut h, bus) = harness_with(CAPS, 4);
    for i in 0..6 {
        h.push(frame(i, Some(i * FRAME), Some(FRAME))).unwrap();
    }
    let mut got = pull_all(&mut h).len();
    h.push_event(gst::event::FlushStart::new());
    h.push_event(gst::event::FlushStop::new(true));
    h.push_event(gst::event::Segment::new(&gst::FormattedSegment::<
        gst::ClockTime,
    >::new()));
    for i in 0..3 {
        h.push(frame(i, Some(i * FRAME), Some(FRAME))).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    got += pull_all(&mut h).len();
    let s = stats(&bus);
    assert_eq!(s.get::<u64>("frames-out").unwrap(), got as u64);
}

#[test]
fn zero_duration_last_frame_gets_the_caps_duration() {
    let _g = serial();
    let (mut h, _bus) = harness(CAPS);
    for i in 0..3 {
        h.push(frame(i, Some(i * FRAME), Some(0))).unwrap();
    }
    h.push_event(gst::event::Eos::new());
    let out = pull_all(&mut h);
    assert_eq!(out.len(), 6);
    let last = out[4].duration().unwrap().nseconds();
    // The caps frame duration divided by the factor; its copy fills the rest of that frame.
    assert_eq!(last, FRAME.div_ceil(2), "{last}");
    let copy = &out[5];
    assert_eq!(
        copy.pts().unwrap().nseconds() + copy.duration().unwrap().nseconds(),
        3 * FRAME
    );
}

#[test]
fn a_short_buffer_is_an_error_even_if_never_loaded() {
    let _g = serial();
    let (mut h, bus) = harness(CAPS);
    let mut b = gst::Buffer::from_mut_slice(vec![0u8; 10]);
    b.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
    let r = h.push(b);
    h.push_event(gst::event::Eos::new());
    let errors = messages(&bus, gst::MessageType::Error);
    assert_eq!(r, Err(gst::FlowError::Error), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("smaller than")),
        "{errors:?}"
    );
}

#[test]
fn refused_caps_warn_once() {
    let _g = serial();
    let (mut h, bus) = harness(CAPS);
    let _ = h.push_event(gst::event::Caps::new(
        &"video/x-raw,format=YUY2,width=32,height=24,framerate=30/1"
            .parse::<gst::Caps>()
            .unwrap(),
    ));
    let _ = h.push(gst::Buffer::with_size(32 * 24 * 2).unwrap());
    let w: Vec<String> = messages(&bus, gst::MessageType::Warning)
        .into_iter()
        .filter(|w| w.contains("YUY2"))
        .collect();
    assert_eq!(w.len(), 1, "{w:?}");
}

#[test]
fn a_failed_push_while_draining_is_an_error() {
    let _g = serial();
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("model-location", model())
        .property("max-in-flight", 0u32)
        .build()
        .unwrap();
    el.set_property_from_str("backend", "cpu");
    let bus = gst::Bus::new();
    el.set_bus(Some(&bus));
    let mut h = gst_check::Harness::with_element(&el, Some("sink"), None);
    let fail = Arc::new(AtomicBool::new(false));
    let f = fail.clone();
    let sink = gst::Pad::builder(gst::PadDirection::Sink)
        .chain_function(move |_, _, _| {
            if f.load(Ordering::SeqCst) {
                Err(gst::FlowError::Error)
            } else {
                Ok(gst::FlowSuccess::Ok)
            }
        })
        .event_function(|_, _, _| true)
        .build();
    sink.set_active(true).unwrap();
    el.static_pad("src").unwrap().link(&sink).unwrap();
    h.play();
    h.set_src_caps_str(CAPS);
    for i in 0..4 {
        h.push(frame(i, Some(i * FRAME), Some(FRAME))).unwrap();
    }
    fail.store(true, Ordering::SeqCst);
    h.push_event(gst::event::Eos::new());
    let errors = messages(&bus, gst::MessageType::Error);
    assert!(
        errors.iter().any(|e| e.contains("drained at EOS")),
        "{errors:?}"
    );
}
