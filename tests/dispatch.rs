// SPDX-License-Identifier: MIT OR Apache-2.0
//! Issue 18 on the CPU: `devices` with N CPU engines behind the dispatcher gives the frames of
//! the single backend (bytes, order, timestamps, offsets); the latency counts the windows in
//! flight of every engine; an engine that fails mid-stream is taken out with a warning and its
//! windows are redone; all failing is an error; bad `devices` fail at start. The fault cases
//! run in a child process, since `FLAVR_FAULT_ENGINE` is read from the environment.

use std::sync::{Mutex, MutexGuard};

use gst::prelude::*;

mod gst_common;
use gst_common::{cpu_harness, fixture, init, run_child};

const M2X: &str = "flavr2x_w8.safetensors";
const M4X: &str = "flavr4x_w16.safetensors";
const W: usize = 32;
const H: usize = 24;
const FRAME: u64 = 33_333_333;
const CAPS: &str = "video/x-raw,format=RGB,width=32,height=24,framerate=30/1";

/// The tests run one at a time: the CPU engines take every core.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shot `seed` moved right by `shift` pixels: smooth waves per channel.
fn picture(seed: u64, shift: f32) -> Vec<u8> {
    let k = seed as f32;
    let mut out = Vec::with_capacity(W * H * 3);
    for y in 0..H {
        for x in 0..W {
            let (xf, yf) = (x as f32 - shift, y as f32);
            for c in 0..3 {
                let ph = k * 1.7 + c as f32;
                let v = (0.31 * k * xf + 0.17 * yf + ph).sin() + (0.11 * xf - 0.23 * k * yf).cos();
                out.push(((0.5 + v / 4.0).clamp(0.0, 1.0) * 255.0).round() as u8);
            }
        }
    }
    out
}

/// Input frame `i` of 0..: shot 1, then shot 2 from frame 7 on (a scene cut).
fn frame(i: u64) -> gst::Buffer {
    let seed = if i < 7 { 1 } else { 5 };
    let mut b = gst::Buffer::from_mut_slice(picture(seed, i as f32 * 1.5));
    {
        let b = b.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_nseconds(i * FRAME));
        b.set_duration(gst::ClockTime::from_nseconds(FRAME));
    }
    b
}

/// (pts, duration, offset, bytes) of each frame out.
type Frame = (u64, Option<u64>, u64, Vec<u8>);

struct Out {
    frames: Vec<Frame>,
    warnings: Vec<String>,
    errors: Vec<String>,
    flow: Result<(), gst::FlowError>,
    cuts: usize,
}

/// `n` frames through the element with `props`, then EOS; what came out and what was posted.
fn run(props: &[(&str, &str)], n: u64) -> Out {
    init();
    let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
    for (k, v) in props {
        el.set_property_from_str(k, v);
    }
    let (mut h, bus) = cpu_harness(&el);
    h.set_src_caps_str(CAPS);
    let mut flow = Ok(());
    for i in 0..n {
        if let Err(e) = h.push(frame(i)) {
            flow = Err(e);
            break;
        }
    }
    h.push_event(gst::event::Eos::new());
    let frames = std::iter::from_fn(|| h.try_pull())
        .map(|b| {
            (
                b.pts().unwrap().nseconds(),
                b.duration().map(gst::ClockTime::nseconds),
                b.offset(),
                b.map_readable().unwrap().to_vec(),
            )
        })
        .collect();
    let (mut warnings, mut errors, mut cuts) = (Vec::new(), Vec::new(), 0);
    while let Some(m) = bus.pop() {
        match m.view() {
            gst::MessageView::Warning(w) => warnings.push(w.error().to_string()),
            gst::MessageView::Error(e) => errors.push(e.error().to_string()),
            gst::MessageView::Element(e)
                if e.structure()
                    .is_some_and(|s| s.name() == "flavrinterp-scene-cut") =>
            {
                cuts += 1
            }
            _ => {}
        }
    }
    Out {
        frames,
        warnings,
        errors,
        flow,
        cuts,
    }
}

fn props<'a>(model: &'a str, factor: &'a str, devices: &'a str) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![("model-location", model), ("factor", factor)];
    if !devices.is_empty() {
        p.push(("devices", devices));
    }
    p
}

#[test]
fn n_cpu_engines_give_the_single_backend_frames() {
    let _g = serial();
    for (model, factor) in [(M2X, "2"), (M2X, "4"), (M4X, "4")] {
        let path = fixture(model).to_str().unwrap().to_string();
        let single = run(&props(&path, factor, ""), 12);
        assert_eq!(single.cuts, 1, "the frames hold one scene cut");
        let f: u64 = factor.parse().unwrap();
        assert_eq!(single.frames.len() as u64, 12 * f);
        // Originals bit-exact, at their place; timestamps rise; offsets count.
        for i in 0..12u64 {
            let fr = &single.frames[(i * f) as usize];
            assert_eq!(fr.0, i * FRAME);
            assert_eq!(
                fr.3,
                frame(i).map_readable().unwrap().to_vec(),
                "original {i}"
            );
        }
        for (n, w) in single.frames.windows(2).enumerate() {
            assert!(w[0].0 < w[1].0 && w[0].2 + 1 == w[1].2, "frame {n}");
        }
        for devices in ["cpu:1", "cpu:2", "cpu:3", "0,1"] {
            let multi = run(&props(&path, factor, devices), 12);
            assert!(multi.errors.is_empty(), "{devices}: {:?}", multi.errors);
            assert!(multi.warnings.is_empty(), "{devices}: {:?}", multi.warnings);
            assert_eq!(multi.cuts, 1);
            assert_eq!(multi.frames.len(), single.frames.len(), "{devices}");
            for (n, (a, b)) in single.frames.iter().zip(&multi.frames).enumerate() {
                assert!(
                    a == b,
                    "{model} factor {factor} devices {devices}: frame {n} differs (pts {} vs {})",
                    a.0,
                    b.0
                );
            }
            println!(
                "{model} factor {factor} devices={devices}: {} frames, identical to one backend",
                multi.frames.len()
            );
        }
    }
}

#[test]
fn latency_counts_the_windows_in_flight_of_every_engine() {
    let _g = serial();
    init();
    let model = fixture(M2X).to_str().unwrap().to_string();
    for (devices, in_flight, frames) in [
        ("", "1", 3),
        ("cpu:1", "1", 3),
        ("cpu:3", "1", 5),
        ("cpu:3", "0", 2),
        ("cpu:2", "2", 6),
    ] {
        let el = gst::ElementFactory::make("flavrinterp").build().unwrap();
        el.set_property_from_str("model-location", &model);
        el.set_property_from_str("max-in-flight", in_flight);
        if !devices.is_empty() {
            el.set_property_from_str("devices", devices);
        }
        let (mut h, _bus) = cpu_harness(&el);
        h.set_src_caps_str(CAPS);
        h.set_upstream_latency(gst::ClockTime::ZERO);
        let lat = h.query_latency().unwrap();
        assert_eq!(
            lat.nseconds(),
            frames * FRAME,
            "devices {devices:?}, max-in-flight {in_flight}"
        );
    }
}

/// The message of the error that stops a pipeline with these element properties at start.
fn start_error(props: &str) -> String {
    init();
    let p = gst::parse::launch(&format!(
        "videotestsrc num-buffers=3 ! video/x-raw,format=RGB,width=32,height=24 ! \
         flavrinterp model-location={} {props} ! fakesink",
        fixture(M2X).display()
    ))
    .unwrap();
    let bus = p.bus().unwrap();
    let started = p.set_state(gst::State::Paused);
    let msg = bus
        .timed_pop_filtered(gst::ClockTime::from_seconds(10), &[gst::MessageType::Error])
        .map(|m| match m.view() {
            gst::MessageView::Error(e) => e.error().to_string(),
            _ => unreachable!(),
        });
    p.set_state(gst::State::Null).unwrap();
    assert!(started.is_err(), "{props}: started");
    msg.unwrap_or_else(|| panic!("{props}: no error on the bus"))
}

#[test]
fn bad_devices_fail_at_start_with_a_reason() {
    let _g = serial();
    for (props, want) in [
        ("backend=cpu devices=0,,1", "an empty entry"),
        ("backend=cpu devices=gpu0", "`gpu0` is not a GPU id"),
        ("backend=cpu devices=cpu:0", "0 CPU engines"),
        ("backend=cpu devices=cpu:x", "not a number of CPU engines"),
        ("backend=cpu devices=all", "devices=cpu:N"),
        ("backend=cuda devices=cpu:2", "backend=cuda"),
    ] {
        let e = start_error(props);
        assert!(e.contains(want), "{props}: {e}");
        println!("{props}: {e}");
    }
}

/// Runs `child` of this test binary with `FLAVR_FAULT_ENGINE=fault`.
fn child(name: &str, fault: &str) {
    run_child(name, ("FLAVR_FAULT_ENGINE", fault));
}

#[test]
fn a_failing_engine_is_taken_out_and_no_frame_is_lost() {
    let _g = serial();
    child("child_engine_1_fails_after_2", "1:after:2");
}

#[test]
#[ignore = "run by a_failing_engine_is_taken_out_and_no_frame_is_lost"]
fn child_engine_1_fails_after_2() {
    assert_eq!(
        std::env::var("FLAVR_FAULT_ENGINE").as_deref(),
        Ok("1:after:2")
    );
    let path = fixture(M2X).to_str().unwrap().to_string();
    for factor in ["2", "4"] {
        // The single backend does not read the switch.
        let single = run(&props(&path, factor, ""), 12);
        let multi = run(&props(&path, factor, "cpu:3"), 12);
        assert!(
            multi.flow.is_ok() && multi.errors.is_empty(),
            "{:?}",
            multi.errors
        );
        assert_eq!(multi.frames.len(), single.frames.len(), "factor {factor}");
        assert!(
            multi.frames == single.frames,
            "factor {factor}: frames differ"
        );
        assert_eq!(multi.warnings.len(), 1, "{:?}", multi.warnings);
        let w = &multi.warnings[0];
        assert!(
            w.contains("Engine 1")
                && w.contains("FLAVR_FAULT_ENGINE=1:after:2")
                && w.contains("2 engine(s) left"),
            "{w}"
        );
        println!(
            "factor {factor}: {} frames, identical; warning: {w}",
            multi.frames.len()
        );
    }
}

#[test]
fn all_engines_failing_is_an_error() {
    let _g = serial();
    child("child_all_engines_fail", "0:after:1,1:after:2");
}

#[test]
#[ignore = "run by all_engines_failing_is_an_error"]
fn child_all_engines_fail() {
    let path = fixture(M2X).to_str().unwrap().to_string();
    let out = run(&props(&path, "2", "cpu:2"), 12);
    assert_eq!(out.warnings.len(), 2, "{:?}", out.warnings);
    assert!(out.flow.is_err() || !out.errors.is_empty());
    assert!(!out.errors.is_empty());
    for e in &out.errors {
        assert!(e.contains("all 2 engines failed"), "{e}");
    }
    assert!(out.frames.len() < 23, "{} frames", out.frames.len());
    println!("error: {}", out.errors[0]);
}

#[test]
fn an_engine_failing_at_start_fails_the_start() {
    let _g = serial();
    child("child_engine_fails_at_start", "1:start");
}

#[test]
#[ignore = "run by an_engine_failing_at_start_fails_the_start"]
fn child_engine_fails_at_start() {
    let e = start_error("backend=cpu devices=cpu:2");
    assert!(e.contains("FLAVR_FAULT_ENGINE=1:start"), "{e}");
    println!("error: {e}");
}
