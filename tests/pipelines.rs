// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavrinterp` in real pipelines (videotestsrc, appsink, a decoder, a flushing seek), and the
//! example scripts in `pipelines/`, all on the CPU backend with the narrow 2x test model.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use gst::prelude::*;
use gstflavrinterp::window::scale;

mod gst_common;
use gst_common::{fixture, init, launch_with_sink, wait_for};

fn model() -> String {
    fixture("flavr2x_w8.safetensors")
        .to_str()
        .unwrap()
        .to_string()
}

fn have(elements: &[&str]) -> bool {
    for e in elements {
        if gst::ElementFactory::find(e).is_none() {
            eprintln!("skipping: element {e} is not installed");
            return false;
        }
    }
    true
}

/// Runs `desc` to EOS; returns what appsink `sink` got (pts, caps of the last sample).
fn run(desc: &str) -> (Vec<u64>, gst::Caps) {
    let (pipeline, sink) = launch_with_sink(desc);
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut pts = Vec::new();
    let mut caps = None;
    // appsink's action signal: a sample, or none at EOS.
    while let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
        let b = sample.buffer().unwrap();
        pts.push(b.pts().unwrap().nseconds());
        caps = sample.caps().map(|c| c.to_owned());
    }
    let bus = pipeline.bus().unwrap();
    let err = bus.pop_filtered(&[gst::MessageType::Error]);
    pipeline.set_state(gst::State::Null).unwrap();
    if let Some(e) = err {
        panic!("pipeline error: {e:?}");
    }
    (pts, caps.expect("at least one sample"))
}

fn framerate(caps: &gst::Caps) -> gst::Fraction {
    caps.structure(0)
        .unwrap()
        .get::<gst::Fraction>("framerate")
        .unwrap()
}

#[test]
fn videotestsrc_to_appsink_counts_every_frame() {
    for (factor, fps) in [(2u64, 60), (4, 120)] {
        let n = 12u64;
        let desc = format!(
            "videotestsrc num-buffers={n} pattern=ball ! \
             video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! \
             flavrinterp factor={factor} backend=cpu model-location={} ! \
             appsink name=sink sync=false",
            model()
        );
        let (pts, caps) = run(&desc);
        assert_eq!(pts.len() as u64, n * factor, "factor {factor}");
        assert_eq!(framerate(&caps), gst::Fraction::new(fps, 1));
        assert!(pts.windows(2).all(|w| w[1] > w[0]));
        assert_eq!(pts[0], 0);
        // The last: a copy of the last input, at the last place of its slot.
        let (a, b) = ((n - 1) * 1_000_000_000 / 30, n * 1_000_000_000 / 30);
        assert_eq!(*pts.last().unwrap(), a + scale(b - a, factor - 1, factor));
    }
}

#[test]
fn rate_ranges_fixate_to_what_downstream_wants() {
    // Upstream can do 1..60 fps, downstream wants 50: upstream runs at 25.
    let desc = format!(
        "videotestsrc num-buffers=4 ! video/x-raw,format=RGB,width=32,height=24 ! \
         capsfilter name=up caps=video/x-raw,framerate=[1/1,60/1] ! \
         flavrinterp factor=2 backend=cpu model-location={} ! \
         video/x-raw,framerate=50/1 ! appsink name=sink sync=false",
        model()
    );
    let (pts, caps) = run(&desc);
    assert_eq!(framerate(&caps), gst::Fraction::new(50, 1));
    assert_eq!(pts.len(), 8);
    assert_eq!(pts[1], 20_000_000);
}

#[test]
fn decoder_output_flows_without_stalling() {
    init();
    if !have(&["x264enc", "avdec_h264", "h264parse"]) {
        return;
    }
    let n = 20u64;
    let desc = format!(
        "videotestsrc num-buffers={n} pattern=ball ! \
         video/x-raw,format=I420,width=64,height=48,framerate=30/1 ! \
         x264enc speed-preset=ultrafast ! h264parse ! avdec_h264 ! \
         flavrinterp factor=4 backend=cpu model-location={} ! appsink name=sink sync=false",
        model()
    );
    let (pts, _) = run(&desc);
    assert_eq!(pts.len() as u64, n * 4);
}

#[test]
fn flushing_seek_leaves_no_stale_frame() {
    init();
    let desc = format!(
        "videotestsrc pattern=ball ! \
         video/x-raw,format=RGB,width=32,height=24,framerate=30/1 ! \
         identity name=in signal-handoffs=true ! \
         flavrinterp factor=2 backend=cpu model-location={} ! \
         appsink name=sink sync=false",
        model()
    );
    let pipeline = gst::parse::launch(&desc)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let inputs = Arc::new(Mutex::new(Vec::<u64>::new()));
    let identity = pipeline.by_name("in").unwrap();
    let rec = inputs.clone();
    identity.connect("handoff", false, move |args| {
        let buf = args[1].get::<gst::Buffer>().unwrap();
        rec.lock().unwrap().push(buf.pts().unwrap().nseconds());
        None
    });
    let outputs = Arc::new(Mutex::new(Vec::<u64>::new()));
    let sink = pipeline.by_name("sink").unwrap();
    sink.set_property("emit-signals", true);
    let rec = outputs.clone();
    sink.connect("new-sample", false, move |args| {
        let sink = args[0].get::<gst::Element>().unwrap();
        if let Some(sample) = sink.emit_by_name::<Option<gst::Sample>>("pull-sample", &[]) {
            let pts = sample.buffer().unwrap().pts().unwrap().nseconds();
            rec.lock().unwrap().push(pts);
        }
        Some(gst::FlowReturn::Ok.to_value())
    });
    let bus = pipeline.bus().unwrap();
    let wait = |t: gst::MessageType| {
        wait_for(&bus, t, gst::ClockTime::from_seconds(20)).unwrap_or_else(|e| panic!("{e}"))
    };
    pipeline.set_state(gst::State::Paused).unwrap();
    wait(gst::MessageType::AsyncDone);
    let before = inputs.lock().unwrap().clone();
    assert!(
        !before.is_empty(),
        "frames reached the window before the seek"
    );
    let (start, stop) = (1_000_000_000u64, 1_500_000_000u64);
    pipeline
        .seek(
            1.0,
            gst::SeekFlags::FLUSH | gst::SeekFlags::ACCURATE,
            gst::SeekType::Set,
            gst::ClockTime::from_nseconds(start),
            gst::SeekType::Set,
            gst::ClockTime::from_nseconds(stop),
        )
        .unwrap();
    wait(gst::MessageType::AsyncDone);
    pipeline.set_state(gst::State::Playing).unwrap();
    wait(gst::MessageType::Eos);
    pipeline.set_state(gst::State::Null).unwrap();

    let outputs = outputs.lock().unwrap().clone();
    let after: Vec<u64> = inputs
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|&p| p >= start)
        .collect();
    let n = after.len() as u64;
    assert!(n >= 10, "{n} frames after the seek");
    // Nothing from before the seek comes out after it, and the new range is complete.
    assert!(outputs.iter().all(|&p| p >= start), "{outputs:?}");
    assert_eq!(outputs.len() as u64, 2 * n);
    assert_eq!(outputs[0], start);
    // The last: the copy of the last input in its slot (half a frame at 30 fps).
    assert_eq!(outputs[outputs.len() - 2], *after.last().unwrap());
    assert_eq!(
        *outputs.last().unwrap(),
        *after.last().unwrap() + 16_666_667
    );
}

/// A folder holding only the plugin library of this build, for `GST_PLUGIN_PATH`, and the
/// registry file the scripts' `gst-launch-1.0` keeps (apart from the user's).
///
/// `cargo test` compiles the library's cdylib together with the rlib this test links, into
/// `deps/` beside this test binary; no second cargo runs. The library is copied out because
/// GStreamer would try every other shared object of `deps/` (proc macros, build scripts) as a
/// plugin.
fn plugin_env() -> &'static [(&'static str, PathBuf); 2] {
    static ENV: OnceLock<[(&str, PathBuf); 2]> = OnceLock::new();
    ENV.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let lib = exe.parent().unwrap().join("libgstflavrinterp.so");
        assert!(
            lib.exists(),
            "no {} (cargo test builds it with the library)",
            lib.display()
        );
        let dir = std::env::temp_dir().join(format!("flavrinterp-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(&lib, dir.join("libgstflavrinterp.so")).unwrap();
        let registry = dir.join("registry.bin");
        [("GST_PLUGIN_PATH", dir), ("GST_REGISTRY", registry)]
    })
}

fn script(name: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pipelines")
        .join(name);
    let mut cmd = Command::new("bash");
    cmd.arg(&path)
        .args(args)
        .envs(plugin_env().iter().map(|(k, v)| (k, v)))
        .env("FLAVR_MODEL", model())
        .env("FLAVR_BACKEND", "cpu");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn example_pipelines_run() {
    init();
    if !have(&["x264enc", "mp4mux", "qtdemux", "avdec_h264", "playbin"]) {
        return;
    }
    let dir = std::env::temp_dir().join(format!("flavrinterp-pipelines-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.mp4");
    let output = dir.join("out.mp4");
    let (i, o) = (input.to_str().unwrap(), output.to_str().unwrap());

    script("make-test-video.sh", &[i, "16", "64", "48"], &[]);
    assert_eq!(
        script("count-frames.sh", &[i], &[]).trim(),
        "16 frames, framerate 30/1, 64x48"
    );

    let summary = script("file-to-file.sh", &[i, o], &[]);
    assert!(
        summary.contains("16 frames in, 32 out, backend cpu"),
        "{summary}"
    );
    assert_eq!(
        script("count-frames.sh", &[o], &[]).trim(),
        "32 frames, framerate 60/1, 64x48"
    );

    let summary = script("file-to-file.sh", &[i, o], &[("FLAVR_FACTOR", "4")]);
    assert!(summary.contains("16 frames in, 64 out"), "{summary}");
    assert_eq!(
        script("count-frames.sh", &[o], &[]).trim(),
        "64 frames, framerate 120/1, 64x48"
    );

    let summary = script(
        "playbin-filter.sh",
        &[i],
        &[("VIDEO_SINK", "fakesink sync=false")],
    );
    assert!(summary.contains("16 frames in, 32 out"), "{summary}");

    let summary = script(
        "live-testsrc.sh",
        &[],
        &[
            ("NUM_BUFFERS", "10"),
            ("WIDTH", "64"),
            ("HEIGHT", "48"),
            ("VIDEO_SINK", "fakesink sync=true"),
        ],
    );
    assert!(summary.contains("10 frames in, 20 out"), "{summary}");
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&plugin_env()[0].1);
}
