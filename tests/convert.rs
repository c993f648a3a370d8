// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavr-convert` end to end on short clips made here: audio and no audio, an odd size,
//! factor 4, `--fps`, the kept properties (pixel aspect, colorimetry, rotation), variable
//! frame rate, A/V sync, progress and summary, every user error, and Ctrl-C. The CPU
//! backend with the narrow 2x test model keeps them fast.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

mod gst_common;
use gst_common::{fixture, init, wait_for_eos};

#[path = "../src/bin/flavr-convert/orientation.rs"]
#[allow(dead_code)]
mod orientation;

const BIN: &str = env!("CARGO_BIN_EXE_flavr-convert");

fn model() -> String {
    fixture("flavr2x_w8.safetensors").display().to_string()
}

/// A fresh folder for one test.
fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("flavr-convert-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn have(elements: &[&str]) -> bool {
    init();
    for e in elements {
        if gst::ElementFactory::find(e).is_none() {
            eprintln!("skipping: element {e} is not installed");
            return false;
        }
    }
    true
}

/// A clip: a moving ball, H.264, `frames` at `fps`; AAC audio over the same time if `audio`.
struct Clip<'a> {
    w: u32,
    h: u32,
    frames: u32,
    fps: u32,
    audio: bool,
    /// Extra video caps fields, e.g. `colorimetry=bt709`.
    caps: &'a str,
    mux: &'a str,
}

impl Clip<'_> {
    fn small() -> Clip<'static> {
        Clip {
            w: 64,
            h: 48,
            frames: 12,
            fps: 30,
            audio: false,
            caps: "",
            mux: "mp4mux",
        }
    }

    fn make(&self, path: &Path) {
        self.make_with(path, |_| {});
    }

    /// Makes the clip; `video` gets the video caps filter (for timestamp probes).
    fn make_with(&self, path: &Path, video: impl FnOnce(&gst::Element)) {
        init();
        let audio = if self.audio {
            let buffers = (f64::from(self.frames) / f64::from(self.fps) * 44100.0 / 1024.0).ceil();
            format!(
                " audiotestsrc num-buffers={buffers} samplesperbuffer=1024 ! \
                 audio/x-raw,rate=44100,channels=1 ! avenc_aac ! queue ! m."
            )
        } else {
            String::new()
        };
        let desc = format!(
            "videotestsrc num-buffers={} pattern=ball ! capsfilter name=vcaps \
             caps=video/x-raw,format=I420,width={},height={},framerate={}/1{}{} ! \
             x264enc ! queue ! {} name=m ! filesink location={}{audio}",
            self.frames,
            self.w,
            self.h,
            self.fps,
            if self.caps.is_empty() { "" } else { "," },
            self.caps,
            self.mux,
            path.display()
        );
        let pipeline = gst::parse::launch(&desc)
            .unwrap()
            .downcast::<gst::Pipeline>()
            .unwrap();
        video(&pipeline.by_name("vcaps").unwrap());
        run_to_end(&pipeline);
    }
}

fn run_to_end(pipeline: &gst::Pipeline) {
    pipeline.set_state(gst::State::Playing).unwrap();
    let end = wait_for_eos(&pipeline.bus().unwrap(), gst::ClockTime::from_seconds(60));
    pipeline.set_state(gst::State::Null).unwrap();
    if let Err(e) = end {
        panic!("pipeline: {e}");
    }
}

/// One decoded stream of a file.
#[derive(Debug, Default, Clone)]
struct Track {
    caps: Option<gst::Caps>,
    pts: Vec<u64>,
    /// The end of the last buffer (pts + duration), ns.
    end: u64,
}

impl Track {
    fn first(&self) -> u64 {
        self.pts.first().copied().unwrap_or(0)
    }
    fn duration(&self) -> u64 {
        self.end - self.first()
    }
    fn field<T: for<'a> gst::glib::value::FromValue<'a> + 'static>(&self, name: &str) -> T {
        self.caps
            .as_ref()
            .unwrap()
            .structure(0)
            .unwrap()
            .get::<T>(name)
            .unwrap()
    }
}

/// A value the streaming threads fill.
type Shared<T> = Arc<Mutex<T>>;

/// The video and audio streams of `path`, decoded.
fn streams(path: &Path) -> (Track, Option<Track>) {
    init();
    let pipeline = gst::Pipeline::new();
    let decode = gst::ElementFactory::make("uridecodebin")
        .property(
            "uri",
            gst::glib::filename_to_uri(path, None).unwrap().as_str(),
        )
        .build()
        .unwrap();
    pipeline.add(&decode).unwrap();
    let tracks: Shared<Vec<(String, Shared<Track>)>> = Arc::default();
    let t = tracks.clone();
    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let pipeline = weak.upgrade().unwrap();
        let caps = pad.current_caps().unwrap();
        let kind = caps.structure(0).unwrap().name().to_string();
        let sink = gst::ElementFactory::make("fakesink")
            .property("sync", false)
            .build()
            .unwrap();
        pipeline.add(&sink).unwrap();
        sink.sync_state_with_parent().unwrap();
        let track = Arc::new(Mutex::new(Track {
            caps: Some(caps),
            ..Track::default()
        }));
        t.lock().unwrap().push((kind, track.clone()));
        let sinkpad = sink.static_pad("sink").unwrap();
        sinkpad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(b) = info.buffer() {
                let mut t = track.lock().unwrap();
                let pts = b.pts().unwrap().nseconds();
                t.pts.push(pts);
                t.end = t.end.max(pts + b.duration().map_or(0, |d| d.nseconds()));
            }
            gst::PadProbeReturn::Ok
        });
        pad.link(&sinkpad).unwrap();
    });
    run_to_end(&pipeline);
    let tracks = tracks.lock().unwrap();
    let get = |prefix: &str| {
        tracks
            .iter()
            .find(|(k, _)| k.starts_with(prefix))
            .map(|(_, t)| t.lock().unwrap().clone())
    };
    (get("video/").expect("a video stream"), get("audio/"))
}

fn convert(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("GST_DEBUG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs a conversion that must succeed; its JSON summary.
fn convert_ok(input: &Path, output: &Path, extra: &[&str]) -> serde_json::Value {
    let m = model();
    let mut args = vec![
        input.to_str().unwrap(),
        output.to_str().unwrap(),
        "--backend",
        "cpu",
        "--model",
        &m,
        "--json",
    ];
    args.extend(extra);
    let out = convert(&args);
    assert!(
        out.status.success(),
        "flavr-convert {args:?}: {}\n{}",
        out.status,
        text(&out.stderr)
    );
    serde_json::from_str(text(&out.stdout).trim()).expect("one JSON object on stdout")
}

/// A/V sync: the output's audio lasts as long as the input's, within one output video
/// frame, and (`offsets`) starts at the same offset from the video. Offsets are compared on
/// Matroska files only: GStreamer 1.22's `qtdemux` reads H.264 in MP4 as starting two frames
/// late (its decoding delay; FFmpeg reads the same files as starting at 0), which would
/// compare the demuxer, not the conversion.
fn assert_in_sync(input: &Path, output: &Path, out_fps: f64, offsets: bool) {
    let (vi, ai) = streams(input);
    let (vo, ao) = streams(output);
    let (ai, ao) = (ai.expect("input audio"), ao.expect("output audio"));
    let frame = (1e9 / out_fps) as i64;
    let d = (ao.duration() as i64 - ai.duration() as i64).abs();
    assert!(
        d <= frame,
        "audio {} ns in, {} ns out: {d} ns apart, more than a frame ({frame} ns)",
        ai.duration(),
        ao.duration()
    );
    if !offsets {
        return;
    }
    let offset_in = ai.first() as i64 - vi.first() as i64;
    let offset_out = ao.first() as i64 - vo.first() as i64;
    assert!(
        (offset_out - offset_in).abs() <= frame,
        "audio starts {offset_in} ns after the video in the input, {offset_out} ns in the output"
    );
}

#[test]
fn converts_with_audio_in_sync_at_an_odd_size() {
    if !have(&["x264enc", "mp4mux", "matroskamux", "avenc_aac"]) {
        return;
    }
    let d = dir("audio");
    let input = d.join("in.mkv");
    Clip {
        w: 322,
        h: 182,
        frames: 16,
        audio: true,
        mux: "matroskamux",
        ..Clip::small()
    }
    .make(&input);
    let output = d.join("out.mp4");
    let s = convert_ok(&input, &output, &[]);
    assert_eq!(
        (s["frames_in"].as_u64(), s["frames_out"].as_u64()),
        (Some(16), Some(32))
    );
    assert_eq!(s["output_framerate"], "60/1");
    assert!(s["backend"].as_str().unwrap().starts_with("cpu"), "{s}");
    assert_eq!(s["model"], model());
    assert_eq!(s["audio_streams"], 1);
    assert_eq!(s["output_bytes"], std::fs::metadata(&output).unwrap().len());
    assert!(s["output_duration"].as_f64().unwrap() > 0.5, "{s}");
    assert!(s["seconds"].as_f64().unwrap() > 0.0 && s["fps"].as_f64().unwrap() > 0.0);
    assert!(!d.join("out.mp4.part").exists());
    let (v, a) = streams(&output);
    assert_eq!(v.pts.len(), 32);
    assert_eq!(
        (v.field::<i32>("width"), v.field::<i32>("height")),
        (322, 182)
    );
    assert_eq!(
        v.field::<gst::Fraction>("framerate"),
        gst::Fraction::new(60, 1)
    );
    assert!(a.is_some());
    assert_in_sync(&input, &output, 60.0, false);
    // Matroska to Matroska: the AAC is copied, and the offsets compare exactly.
    let output = d.join("out.mkv");
    convert_ok(&input, &output, &[]);
    assert_in_sync(&input, &output, 60.0, true);
}

#[test]
fn factor_4_without_audio_into_matroska() {
    if !have(&["x264enc", "mp4mux", "matroskamux"]) {
        return;
    }
    let d = dir("factor4");
    let input = d.join("in.mp4");
    Clip::small().make(&input);
    let output = d.join("out.mkv");
    let s = convert_ok(&input, &output, &["--factor", "4"]);
    assert_eq!(
        (s["frames_in"].as_u64(), s["frames_out"].as_u64()),
        (Some(12), Some(48))
    );
    assert_eq!(
        (s["factor"].as_u64(), s["audio_streams"].as_u64()),
        (Some(4), Some(0))
    );
    let (v, a) = streams(&output);
    assert!(a.is_none());
    assert_eq!(v.pts.len(), 48);
    assert_eq!(
        v.field::<gst::Fraction>("framerate"),
        gst::Fraction::new(120, 1)
    );
}

#[test]
fn webm_gets_vp9_and_opus_in_sync() {
    if !have(&[
        "x264enc",
        "matroskamux",
        "avenc_aac",
        "vp8enc",
        "opusenc",
        "webmmux",
    ]) {
        return;
    }
    let d = dir("webm");
    let input = d.join("in.mkv");
    Clip {
        audio: true,
        frames: 15,
        mux: "matroskamux",
        ..Clip::small()
    }
    .make(&input);
    let output = d.join("out.webm");
    let s = convert_ok(&input, &output, &[]);
    assert_eq!(s["encoder"], "vp8enc");
    let (v, a) = streams(&output);
    assert_eq!(v.pts.len(), 30);
    assert!(a.is_some());
    // AAC does not go into WebM: the audio was encoded again, as Opus.
    let out = Command::new("gst-discoverer-1.0").arg(&output).output();
    if let Ok(out) = out {
        assert!(text(&out.stdout).contains("Opus"), "{}", text(&out.stdout));
    }
    assert_in_sync(&input, &output, 60.0, true);
}

#[test]
fn fps_targets_reach_the_exact_rate() {
    if !have(&["x264enc", "matroskamux", "videorate"]) {
        return;
    }
    let d = dir("fps");
    let input = d.join("in.mkv");
    Clip {
        frames: 15,
        mux: "matroskamux",
        ..Clip::small()
    }
    .make(&input);
    // 50 is no multiple of 30: the element's framerate (no factor), no videorate.
    let output = d.join("out50.mkv");
    let s = convert_ok(&input, &output, &["--fps", "50"]);
    assert_eq!(s["output_framerate"].as_str(), Some("50/1"));
    assert!(s["factor"].is_null(), "{s}");
    let (v, _) = streams(&output);
    assert_eq!(
        v.field::<gst::Fraction>("framerate"),
        gst::Fraction::new(50, 1)
    );
    // 15 frames of 1/30 s at 50 fps: the grid over 0.5 s, 25 frames, every one on it (26 when
    // Matroska's millisecond times make the last input end at 501 ms: its slot holds 500 ms).
    let n = s["frames_out"].as_u64().unwrap();
    assert!(n == 25 || n == 26, "{s}");
    assert_eq!(v.pts.len() as u64, n, "{:?}", v.pts);
    for (i, pts) in v.pts.iter().enumerate() {
        assert_eq!(*pts, i as u64 * 20_000_000, "frame {i}");
    }
    // 120 is 4 x 30: no resampling.
    let s = convert_ok(&input, &d.join("out120.mkv"), &["--fps", "120"]);
    assert_eq!(
        (s["factor"].as_u64(), s["frames_out"].as_u64()),
        (Some(4), Some(60))
    );
}

#[test]
fn pixel_aspect_colorimetry_and_rotation_are_kept() {
    if !have(&["x264enc", "mp4mux"]) {
        return;
    }
    let d = dir("props");
    let input = d.join("in.mp4");
    Clip {
        caps: "colorimetry=bt709,pixel-aspect-ratio=4/3",
        ..Clip::small()
    }
    .make(&input);
    let m = orientation::matrix("rotate-90", 64, 48).unwrap();
    assert_eq!(orientation::write_matrix(&input, m).unwrap(), 1);
    let output = d.join("out.mp4");
    convert_ok(&input, &output, &[]);
    let (v, _) = streams(&output);
    assert_eq!(
        v.field::<gst::Fraction>("pixel-aspect-ratio"),
        gst::Fraction::new(4, 3)
    );
    assert_eq!(v.field::<String>("colorimetry"), "bt709");
    let out = Command::new("gst-discoverer-1.0")
        .arg("-v")
        .arg(&output)
        .output()
        .expect("gst-discoverer-1.0 (gstreamer1.0-plugins-base-apps) runs");
    assert!(
        text(&out.stdout).contains("image orientation: rotate-90"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn variable_frame_rate_keeps_its_timing() {
    if !have(&["x264enc", "matroskamux"]) {
        return;
    }
    let d = dir("vfr");
    let input = d.join("in.mkv");
    // Frames 20 ms and 40 ms apart, in turn.
    let times: Vec<u64> = (0..12u64).map(|i| (i / 2) * 60 + (i % 2) * 20).collect();
    let t = times.clone();
    Clip {
        mux: "matroskamux",
        ..Clip::small()
    }
    .make_with(&input, move |caps| {
        let n = Mutex::new(0usize);
        caps.static_pad("src")
            .unwrap()
            .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                if let Some(gst::PadProbeData::Buffer(b)) = &mut info.data {
                    let mut i = n.lock().unwrap();
                    let b = b.make_mut();
                    b.set_pts(gst::ClockTime::from_mseconds(t[*i]));
                    b.set_duration(gst::ClockTime::NONE);
                    *i += 1;
                }
                gst::PadProbeReturn::Ok
            });
    });
    let output = d.join("out.mkv");
    convert_ok(&input, &output, &[]);
    let (v, _) = streams(&output);
    let ms: Vec<u64> = v.pts.iter().map(|p| (p + 500_000) / 1_000_000).collect();
    let mut want = Vec::new();
    for w in times.windows(2) {
        want.extend([w[0], (w[0] + w[1]) / 2]);
    }
    want.push(*times.last().unwrap());
    // The last frame's slot is its own duration, one frame of the container's 30 fps: a copy
    // of it half-way through (336.7 ms).
    want.push(337);
    assert_eq!(
        ms, want,
        "originals at their times, new frames half-way, a copy after the last"
    );
}

#[test]
fn progress_and_summary() {
    if !have(&["x264enc", "mp4mux"]) {
        return;
    }
    let d = dir("progress");
    let input = d.join("in.mp4");
    Clip {
        frames: 20,
        ..Clip::small()
    }
    .make(&input);
    let (i, o, m) = (input.to_str().unwrap(), d.join("out.mp4"), model());
    let o = o.to_str().unwrap();
    let base = [i, o, "--backend", "cpu", "--model", &m];
    // Not a terminal: plain lines at each tenth, the closing line on stdout.
    let out = convert(&base);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("factor 2 (60 fps), backend cpu"), "{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains(" frames (")).collect();
    assert!(lines.len() >= 2, "progress lines: {err}");
    assert!(
        lines
            .iter()
            .all(|l| l.contains("fps") && l.contains("elapsed") && l.contains("backend cpu"))
    );
    assert!(
        lines.last().unwrap().contains("40/40 frames (100%)"),
        "{err}"
    );
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(&format!("wrote {o}: 40 frames at 60/1 fps from 20")),
        "{stdout}"
    );
    // --quiet: nothing at all.
    let out = convert(&[&base[..], &["--quiet"]].concat());
    assert!(out.status.success());
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        (String::new(), String::new())
    );
    // --json --quiet: the object alone.
    let out = convert(&[&base[..], &["--quiet", "--json"]].concat());
    let v: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).unwrap();
    assert_eq!(v["frames_out"], 40);
    assert!(out.stderr.is_empty());
    // A terminal: the indicatif bar (through `script`, which gives the command a pty).
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping the terminal check: `script` (util-linux) is not installed");
        return;
    }
    let cmd = base
        .iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let out = Command::new("script")
        .args(["-qec", &format!("'{BIN}' {cmd}"), "/dev/null"])
        .output()
        .unwrap();
    let tty = text(&out.stdout);
    assert!(out.status.success(), "{tty}");
    assert!(
        tty.contains("/40 frames") && tty.contains("backend cpu"),
        "{tty}"
    );
    assert!(
        tty.contains("elapsed") && tty.contains(" left") && tty.contains("fps"),
        "{tty}"
    );
}

/// A failing run: its exit status and its one line.
fn fails(args: &[&str], envs: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    let last = lines.last().copied().unwrap_or("");
    assert!(last.starts_with("flavr-convert: "), "{err}");
    assert!(
        lines
            .iter()
            .filter(|l| !l.contains("warning:") && !l.contains(" -> "))
            .count()
            == 1,
        "one line: {err}"
    );
    (out.status.code().unwrap_or(-1), last.to_string())
}

#[test]
fn each_user_error_has_its_line_and_status() {
    if !have(&["x264enc", "mp4mux", "wavenc"]) {
        return;
    }
    let d = dir("errors");
    let input = d.join("in.mp4");
    Clip::small().make(&input);
    let (i, m) = (input.to_str().unwrap(), model());
    let out = d.join("out.mp4");
    let o = out.to_str().unwrap();
    let cpu = ["--backend", "cpu", "--model", m.as_str()];

    let (code, line) = fails(&["--factor", "3", i, o], &[]);
    assert_eq!(code, 2, "{line}");
    let (code, line) = fails(&[i, d.join("out.avi").to_str().unwrap()], &[]);
    assert_eq!(code, 2, "{line}");
    let (code, line) = fails(&[&[i, o, "--fps", "24"][..], &cpu].concat(), &[]);
    assert!(code == 2 && line.contains("not above"), "{code} {line}");

    let missing = d.join("nothing.mp4");
    let (code, line) = fails(&[&[missing.to_str().unwrap(), o][..], &cpu].concat(), &[]);
    assert!(code == 3 && line.contains("no such file"), "{code} {line}");

    let text_file = d.join("notes.mp4");
    std::fs::write(&text_file, "not a video at all\n".repeat(100)).unwrap();
    let (code, line) = fails(&[&[text_file.to_str().unwrap(), o][..], &cpu].concat(), &[]);
    assert!(code == 4 && line.contains("not a video"), "{code} {line}");
    let wav = d.join("tone.wav");
    let p = gst::parse::launch(&format!(
        "audiotestsrc num-buffers=10 ! wavenc ! filesink location={}",
        wav.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    run_to_end(&p);
    let (code, line) = fails(&[&[wav.to_str().unwrap(), o][..], &cpu].concat(), &[]);
    assert!(
        code == 4 && line.contains("no video stream"),
        "{code} {line}"
    );

    // No H.264 decoder: every one installed is ranked out, as if none were.
    let h264: gst::Caps = "video/x-h264".parse().unwrap();
    let ranks: Vec<String> =
        gst::ElementFactory::factories_with_type(gst::ElementFactoryType::DECODER, gst::Rank::NONE)
            .into_iter()
            .filter(|f| {
                f.static_pad_templates().iter().any(|t| {
                    t.direction() == gst::PadDirection::Sink && t.caps().can_intersect(&h264)
                })
            })
            .map(|f| format!("{}:0", f.name()))
            .collect();
    let (code, line) = fails(
        &[&[i, o][..], &cpu].concat(),
        &[("GST_PLUGIN_FEATURE_RANK", ranks.join(",").as_str())],
    );
    assert!(
        code == 5 && line.contains("H.264") && line.contains("gstreamer1.0-libav"),
        "{code} {line}"
    );

    let nowhere = d.join("no/such/folder/out.mp4");
    let (code, line) = fails(&[&[i, nowhere.to_str().unwrap()][..], &cpu].concat(), &[]);
    assert!(
        code == 6 && line.contains("does not exist"),
        "{code} {line}"
    );

    let (code, line) = fails(&[&[i, i][..], &cpu].concat(), &[]);
    assert!(code == 7 && line.contains("is INPUT"), "{code} {line}");
    assert!(input.exists());

    let bad = d.join("bad.safetensors");
    std::fs::write(&bad, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}       ").unwrap();
    let (code, line) = fails(
        &[i, o, "--backend", "cpu", "--model", bad.to_str().unwrap()],
        &[],
    );
    assert!(
        code == 9 && line.contains("cannot load model") && line.contains("bad.safetensors"),
        "{code} {line}"
    );

    let out_cuda = Command::new(BIN)
        .args([i, o, "--backend", "cuda", "--model", &m, "--quiet"])
        .output()
        .unwrap();
    if out_cuda.status.success() {
        eprintln!("skipped the no-GPU check: a usable GPU is present");
    } else {
        let (code, line) = fails(&[i, o, "--backend", "cuda", "--model", &m], &[]);
        assert!(code == 8 && line.contains("CUDA"), "{code} {line}");
    }
    // No failure leaves OUTPUT or its part file behind.
    assert!(!out.exists() || out_cuda.status.success());
    assert!(!d.join("out.mp4.part").exists());
}

/// Starts a long conversion and waits for its first progress line.
fn start_long(d: &Path, output: &Path) -> (std::process::Child, Arc<Mutex<String>>) {
    let input = d.join("long.mp4");
    if !input.exists() {
        Clip {
            frames: 600,
            audio: true,
            ..Clip::small()
        }
        .make(&input);
    }
    let mut child = Command::new(BIN)
        .args([input.to_str().unwrap(), output.to_str().unwrap()])
        .args(["--backend", "cpu", "--model", &model(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let l = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains(" frames (") {
                let _ = tx.send(());
            }
            l.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("a progress line");
    (child, log)
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn ctrl_c_finishes_a_playable_file() {
    if !have(&["x264enc", "mp4mux", "avenc_aac"]) {
        return;
    }
    let d = dir("sigint");
    let output = d.join("out.mp4");
    let (mut child, log) = start_long(&d, &output);
    let asked = Instant::now();
    signal(&child, "-INT");
    let mut stdout = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
    let status = child.wait().unwrap();
    let log = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("Ctrl-C: finishing OUTPUT"), "{log}");
    eprintln!(
        "stopped {:.1} s after Ctrl-C",
        asked.elapsed().as_secs_f64()
    );
    let s: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(s["stopped"], true);
    let frames = s["frames_out"].as_u64().unwrap();
    assert!(frames > 0 && frames < 1200, "{s}");
    let out = Command::new("gst-discoverer-1.0")
        .arg(&output)
        .output()
        .expect("gst-discoverer-1.0 (gstreamer1.0-plugins-base-apps) runs");
    let info = text(&out.stdout);
    let duration = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Duration: "))
        .unwrap_or_else(|| panic!("no duration: {info}"));
    assert!(
        duration != "0:00:00.000000000" && !duration.contains("99:99"),
        "{info}"
    );
    let (v, a) = streams(&output);
    assert_eq!(v.pts.len() as u64, frames);
    // The audio ends with the video: within qtdemux's two-frame reading shift of the video
    // (see assert_in_sync), a frame, and an AAC frame (23 ms).
    let a = a.expect("audio kept");
    assert!(
        a.end.abs_diff(v.end) < 150_000_000,
        "audio ends {} video {}",
        a.end,
        v.end
    );
}

#[test]
fn a_second_ctrl_c_aborts_and_sigterm_stops() {
    if !have(&["x264enc", "mp4mux", "avenc_aac"]) {
        return;
    }
    let d = dir("abort");
    let output = d.join("out.mp4");
    let (mut child, log) = start_long(&d, &output);
    signal(&child, "-INT");
    std::thread::sleep(Duration::from_millis(50));
    signal(&child, "-INT");
    let status = child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let log = log.lock().unwrap().clone();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(log.contains("aborted"), "{log}");
    assert!(!output.exists() && !d.join("out.mp4.part").exists());

    let (mut child, log) = start_long(&d, &output);
    signal(&child, "-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "{}", log.lock().unwrap());
    assert!(output.exists());
}
