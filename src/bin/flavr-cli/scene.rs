// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavr-cli scene`: the scene-cut detector on raw frames, alone or inside the element.
//!
//! ```text
//! flavr-cli scene detect --input FRAMES.rgb --width W --height H [--threshold T]
//!     The detector of src/scene.rs over every pair of consecutive frames (raw rgb24, W x H,
//!     tightly packed): one line per pair (frame, diff, hist, typical, score, cut), then the
//!     frames that start a new shot.
//! flavr-cli scene element --input FRAMES.rgb --width W --height H [--every K] [--threshold T]
//!                         [--factor F] [--model CKPT] [--fps N/D] [--output OUT.rgb]
//!     Frames 0, K, 2K, ... through `appsrc ! flavrinterp backend=cpu ! appsink` (timestamps
//!     at K / fps); writes every output frame to OUT.rgb (rgb24) and prints each
//!     flavrinterp-scene-cut message (input frame, timestamp, score) and the frame counts.
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use gst::prelude::*;
use gst_video::prelude::*;
use gstflavrinterp::backend::PixelFormat;
use gstflavrinterp::scene::{DEFAULT_THRESHOLD, Detector, Reduced};

use crate::args::{Flags, positive};

pub(crate) const USAGE: &str = "
  flavr-cli scene detect --input FRAMES.rgb --width W --height H [--threshold T]
  flavr-cli scene element --input FRAMES.rgb --width W --height H [--every K] [--threshold T]
                          [--factor F] [--model CKPT] [--fps N/D] [--output OUT.rgb]";

struct Options {
    input: PathBuf,
    width: usize,
    height: usize,
    threshold: f64,
    every: usize,
    factor: u32,
    model: Option<String>,
    fps: gst::Fraction,
    output: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let (mut input, mut width, mut height) = (None, None, None);
        let mut o = Options {
            input: PathBuf::new(),
            width: 0,
            height: 0,
            threshold: DEFAULT_THRESHOLD,
            every: 1,
            factor: 2,
            model: None,
            fps: gst::Fraction::new(25, 1),
            output: None,
        };
        let mut it = Flags::new(args);
        while let Some(a) = it.next() {
            let v = it.value(a);
            let number = |v: String| positive(a, v);
            match a.as_str() {
                "--input" => input = Some(PathBuf::from(v?)),
                "--width" => width = Some(number(v?)?),
                "--height" => height = Some(number(v?)?),
                "--every" => o.every = number(v?)?,
                "--factor" => {
                    o.factor = u32::try_from(number(v?)?).map_err(|e| e.to_string())?;
                }
                "--threshold" => {
                    let v = v?;
                    o.threshold = v
                        .parse::<f64>()
                        .ok()
                        .filter(|t| (0.0..=1.0).contains(t))
                        .ok_or_else(|| format!("--threshold: `{v}` is not a number in 0..1"))?;
                }
                "--model" => o.model = Some(v?),
                "--output" => o.output = Some(PathBuf::from(v?)),
                "--fps" => {
                    let v = v?;
                    let (n, d) = v.split_once('/').unwrap_or((&v, "1"));
                    let (n, d) = (n.parse::<i32>(), d.parse::<i32>());
                    o.fps = match (n, d) {
                        (Ok(n), Ok(d)) if n > 0 && d > 0 => gst::Fraction::new(n, d),
                        _ => return Err(format!("--fps: `{v}` is not a positive fraction")),
                    };
                }
                other => return Err(format!("unknown option `{other}`\nusage:{USAGE}")),
            }
        }
        let need = |what: &str| format!("scene needs --{what}\nusage:{USAGE}");
        o.input = input.ok_or_else(|| need("input"))?;
        o.width = width.ok_or_else(|| need("width"))?;
        o.height = height.ok_or_else(|| need("height"))?;
        Ok(o)
    }

    fn frames(&self) -> Result<Vec<Vec<u8>>, String> {
        let data =
            std::fs::read(&self.input).map_err(|e| format!("{}: {e}", self.input.display()))?;
        let size = self.width * self.height * 3;
        if data.is_empty() || !data.len().is_multiple_of(size) {
            return Err(format!(
                "{}: {} bytes is not a whole number of {}x{} rgb24 frames",
                self.input.display(),
                data.len(),
                self.width,
                self.height
            ));
        }
        Ok(data.chunks_exact(size).map(<[u8]>::to_vec).collect())
    }
}

pub(crate) fn main(args: &[String]) -> Result<(), String> {
    match args.first().map(String::as_str) {
        Some("detect") => detect(&Options::parse(&args[1..])?),
        Some("element") => element(&Options::parse(&args[1..])?),
        _ => Err(format!("scene: expected detect or element\nusage:{USAGE}")),
    }
}

fn detect(o: &Options) -> Result<(), String> {
    let frames = o.frames()?;
    let mut d = Detector::new(o.threshold);
    let mut cuts = Vec::new();
    let mut busy = std::time::Duration::ZERO;
    println!("frame\tdiff\thist\ttypical\tscore\tcut");
    for (k, f) in frames.iter().enumerate() {
        let t0 = std::time::Instant::now();
        let r = Reduced::from_plane(PixelFormat::Rgb, f, o.width * 3, o.width, o.height)
            .map_err(|e| e.to_string())?;
        let m = d.push(r);
        busy += t0.elapsed();
        if let Some(m) = m {
            println!(
                "{k}\t{:.4}\t{:.4}\t{:.4}\t{:.4}\t{}",
                m.diff,
                m.hist,
                m.typical,
                m.score,
                u8::from(m.cut)
            );
            if m.cut {
                cuts.push(k);
            }
        }
    }
    println!(
        "# {} frames, threshold {}, cuts before frames {cuts:?}; {:.3} ms per {}x{} frame",
        frames.len(),
        o.threshold,
        busy.as_secs_f64() * 1e3 / frames.len() as f64,
        o.width,
        o.height
    );
    Ok(())
}

fn element(o: &Options) -> Result<(), String> {
    gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
    gstflavrinterp::plugin_register_static()
        .map_err(|e| format!("cannot register flavrinterp: {e}"))?;
    let all = o.frames()?;
    let frames: Vec<&Vec<u8>> = all.iter().step_by(o.every).collect();
    let rate = gst::Fraction::new(o.fps.numer(), o.fps.denom() * o.every as i32);
    let info =
        gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, o.width as u32, o.height as u32)
            .fps(rate)
            .build()
            .map_err(|e| e.to_string())?;
    let frame_ns = |i: u64| {
        gst::ClockTime::from_nseconds(i * 1_000_000_000 * rate.denom() as u64 / rate.numer() as u64)
    };
    let desc = format!(
        "appsrc name=src format=time block=true max-bytes={} ! flavrinterp name=f backend=cpu \
         factor={} scene-threshold={} ! appsink name=sink sync=false",
        2 * info.size(),
        o.factor,
        o.threshold
    );
    let pipeline = gst::parse::launch(&desc)
        .map_err(|e| format!("{desc}: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline".to_string())?;
    let by_name = |n: &str| pipeline.by_name(n).ok_or(format!("no element {n}"));
    let (src, interp, sink) = (by_name("src")?, by_name("f")?, by_name("sink")?);
    src.set_property("caps", info.to_caps().map_err(|e| e.to_string())?);
    if let Some(m) = &o.model {
        interp.set_property("model-location", m);
    }
    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let count = Arc::new(Mutex::new(0usize));
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start: {e}"))?;
    let bus = pipeline.bus().ok_or("no bus")?;
    let result = std::thread::scope(|scope| -> Result<Vec<String>, String> {
        scope.spawn(|| {
            for (i, f) in frames.iter().enumerate() {
                let mut b = gst::Buffer::from_mut_slice(padded(f, &info, o.width));
                if let Some(b) = b.get_mut() {
                    b.set_pts(frame_ns(i as u64));
                    b.set_duration(frame_ns(i as u64 + 1) - frame_ns(i as u64));
                }
                if src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&b]) != gst::FlowReturn::Ok
                {
                    return;
                }
            }
            let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
        });
        let mut cuts = Vec::new();
        loop {
            use gst::MessageType as T;
            while let Some(msg) = bus.pop_filtered(&[T::Error, T::Element]) {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        return Err(format!("pipeline error: {} ({:?})", e.error(), e.debug()));
                    }
                    gst::MessageView::Element(e) => {
                        if let Some(s) = e
                            .structure()
                            .filter(|s| s.name() == "flavrinterp-scene-cut")
                        {
                            cuts.push(format!(
                                "scene cut before input frame {} (clip frame {}), timestamp {}, score {:.3}",
                                s.get::<u64>("frame").unwrap_or(0),
                                s.get::<u64>("frame").unwrap_or(0) * o.every as u64,
                                s.get::<Option<gst::ClockTime>>("timestamp")
                                    .ok()
                                    .flatten()
                                    .map_or("none".into(), |t| t.to_string()),
                                s.get::<f64>("score").unwrap_or(f64::NAN)
                            ));
                        }
                    }
                    _ => {}
                }
            }
            let timeout = 100_000_000u64;
            match sink.emit_by_name::<Option<gst::Sample>>("try-pull-sample", &[&timeout]) {
                Some(sample) => {
                    let buf = sample.buffer().ok_or("a sample without a buffer")?;
                    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info)
                        .map_err(|e| format!("cannot map an output frame: {e}"))?;
                    let stride = frame.plane_stride()[0] as usize;
                    let data = frame.plane_data(0).map_err(|e| e.to_string())?;
                    let mut out = out.lock().unwrap();
                    for y in 0..o.height {
                        out.extend_from_slice(&data[y * stride..y * stride + o.width * 3]);
                    }
                    *count.lock().unwrap() += 1;
                }
                None if sink.property::<bool>("eos") => break,
                None => {}
            }
        }
        Ok(cuts)
    });
    let _ = pipeline.set_state(gst::State::Null);
    let cuts = result?;
    for c in &cuts {
        println!("{c}");
    }
    let n = *count.lock().unwrap();
    println!(
        "# {} frames in, {n} out (factor {}, threshold {}), {} scene cut(s)",
        frames.len(),
        o.factor,
        o.threshold,
        cuts.len()
    );
    if let Some(path) = &o.output {
        let mut f = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
        f.write_all(&out.lock().unwrap())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// A tightly packed rgb24 frame in the row layout of `info` (rows padded to 4 bytes).
fn padded(frame: &[u8], info: &gst_video::VideoInfo, width: usize) -> Vec<u8> {
    let stride = info.stride()[0] as usize;
    let mut v = vec![0u8; info.size()];
    for (y, row) in frame.chunks_exact(width * 3).enumerate() {
        v[y * stride..y * stride + width * 3].copy_from_slice(row);
    }
    v
}
