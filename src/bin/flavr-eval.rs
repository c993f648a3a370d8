// SPDX-License-Identifier: MIT OR Apache-2.0
//! Interpolation quality on real video, through the `flavrinterp` element itself.
//!
//! The protocol: decode a clip, keep its even frames (0, 2, 4, ...), rebuild every odd frame
//! that has a right neighbour (1, 3, ..., 2M - 1 for a clip of 2M + 1 or 2M + 2 frames) from
//! the even ones, and compare the rebuilt frames with the real ones.
//!
//! ```text
//! flavr-eval --clip CLIP [--method M]... [--model PATH] [--backend auto|cuda|cpu]
//!            [--precision fp16|fp32|bf16] [--device-id N] [--frames N]
//!            [--convert exact|videoconvert] [--write-even OUT.rgb] [--per-frame OUT.csv]
//!            [--png OUT.png [--crop-frame K] [--crop X,Y,W,H | --crop-size W,H]]
//! ```
//!
//! Methods (`--method`, repeatable, default `dup`, `blend`; any of them may be written
//! `LABEL=METHOD` to name its row):
//! - `dup`: the previous even frame;
//! - `blend`: the rounded average of the two neighbouring even frames, `(a + b + 1) >> 1`;
//! - `ours`: the even frames (timestamps at twice the clip's frame duration) through
//!   `appsrc ! flavrinterp factor=2 [model-location=--model] ! appsink` (without `--model`: the
//!   model built into the plugin); the outputs at odd positions are the rebuilt
//!   frames. Checks that `2n - 1` frames come out and that the originals come back bit-exact;
//! - `file:PATH`: frame `k` of another tool's output (at the clip's frame rate, made from the
//!   even frames) is the rebuilt frame `k`. `PATH` is a video GStreamer decodes, or raw `rgb24`
//!   frames of the clip's size when it ends in `.rgb`.
//!
//! Metrics, per rebuilt frame, then the mean over frames:
//! - PSNR over all R, G, B samples, peak 255: `10 log10(255^2 / MSE)`; the table shows the mean
//!   of the per-frame PSNRs (this reproduces our FFmpeg-measured baselines; the PSNR of the
//!   mean MSE is about 3 dB lower on bigbuckbunny);
//! - SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, C1 = (0.01 * 255)^2,
//!   C2 = (0.03 * 255)^2, population statistics, mean over the positions where the window fits
//!   in the frame ("valid"), computed per R, G, B channel and averaged.
//!
//! RGB: with `--convert exact` (default) the decoder's 4:2:0 frames are converted here with the
//! exact BT.601/709/2020 formula of the caps colorimetry (untagged video: BT.601 limited range,
//! as FFmpeg), each chroma sample covering its 2x2 pixels, rounded to nearest. `videoconvert`
//! uses GStreamer's `videoconvert` instead, whose fast 8-bit path is up to 6 levels off the exact
//! formula here and moves PSNR by +0.05 dB.
//!
//! `--frames N` keeps the first `N` rebuilt frames (`ours` then pushes only the `N + 2` even
//! frames they need; the windows of those frames are the ones of a full run). `--png` writes a
//! crop of one rebuilt frame: truth | blend | each method other than dup and blend.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use gst::prelude::*;
use gst_video::prelude::*;
use rayon::prelude::*;

const USAGE: &str = "usage:
  flavr-eval --clip CLIP [--method M]... [--model PATH (default: the embedded model)] [--backend auto|cuda|cpu]
             [--precision fp16|fp32|bf16] [--device-id N] [--frames N]
             [--convert exact|videoconvert] [--write-even OUT.rgb] [--per-frame OUT.csv]
             [--png OUT.png [--crop-frame K] [--crop X,Y,W,H | --crop-size W,H]]
  methods: dup, blend, ours, file:PATH (a video, or raw rgb24 frames if PATH ends in .rgb);
           LABEL=METHOD names the row (e.g. minterpolate=file:mi.mkv). Default: dup, blend.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = Options::parse(&args).and_then(|o| {
        gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
        gstflavrinterp::plugin_register_static()
            .map_err(|e| format!("cannot register flavrinterp: {e}"))?;
        evaluate(&o)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flavr-eval: {e}");
            ExitCode::FAILURE
        }
    }
}

// ------------------------------------------------------------------------------------------
// Options

#[derive(Clone, Debug, PartialEq)]
enum Kind {
    Dup,
    Blend,
    Ours,
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
struct Method {
    label: String,
    kind: Kind,
}

impl Method {
    fn parse(s: &str) -> Result<Method, String> {
        // `LABEL=METHOD`, unless the `=` is inside a file path.
        let (label, spec) = match s.split_once('=') {
            Some((l, m)) if !l.is_empty() && !l.starts_with("file:") => (Some(l), m),
            _ => (None, s),
        };
        let kind = match spec {
            "dup" => Kind::Dup,
            "blend" => Kind::Blend,
            "ours" => Kind::Ours,
            f if f.starts_with("file:") && f.len() > 5 => Kind::File(PathBuf::from(&f[5..])),
            _ => {
                return Err(format!(
                    "unknown method `{spec}` (dup, blend, ours, file:PATH)"
                ));
            }
        };
        Ok(Method {
            label: label.unwrap_or(spec).to_string(),
            kind,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Convert {
    Exact,
    VideoConvert,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Rect {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

#[derive(Debug)]
struct Options {
    clip: PathBuf,
    methods: Vec<Method>,
    model: Option<PathBuf>,
    backend: String,
    precision: String,
    device_id: u32,
    frames: Option<usize>,
    convert: Convert,
    write_even: Option<PathBuf>,
    per_frame: Option<PathBuf>,
    png: Option<PathBuf>,
    crop_frame: Option<usize>,
    crop: Option<Rect>,
    crop_size: (usize, usize),
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut clip = None;
        let mut o = Options {
            clip: PathBuf::new(),
            methods: Vec::new(),
            model: None,
            backend: "auto".into(),
            precision: "fp16".into(),
            device_id: 0,
            frames: None,
            convert: Convert::Exact,
            write_even: None,
            per_frame: None,
            png: None,
            crop_frame: None,
            crop: None,
            crop_size: (320, 240),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let mut value = || {
                it.next()
                    .cloned()
                    .ok_or_else(|| format!("{a} needs a value"))
            };
            let numbers = |v: &str, n: usize| -> Result<Vec<usize>, String> {
                let parts: Vec<Option<usize>> =
                    v.split(',').map(|p| p.trim().parse().ok()).collect();
                match parts.iter().copied().collect::<Option<Vec<usize>>>() {
                    Some(p) if p.len() == n => Ok(p),
                    _ => Err(format!("{a}: `{v}` is not {n} comma-separated numbers")),
                }
            };
            match a.as_str() {
                "--clip" => clip = Some(PathBuf::from(value()?)),
                "--method" => o.methods.push(Method::parse(&value()?)?),
                "--model" => o.model = Some(value()?.into()),
                "--backend" => o.backend = one_of(a, value()?, &["auto", "cuda", "cpu"])?,
                "--precision" => o.precision = one_of(a, value()?, &["fp16", "fp32", "bf16"])?,
                "--device-id" => o.device_id = numbers(&value()?, 1)?[0] as u32,
                "--frames" => match numbers(&value()?, 1)?[0] {
                    0 => return Err("--frames must be at least 1".into()),
                    n => o.frames = Some(n),
                },
                "--convert" => {
                    o.convert = match one_of(a, value()?, &["exact", "videoconvert"])?.as_str() {
                        "exact" => Convert::Exact,
                        _ => Convert::VideoConvert,
                    }
                }
                "--write-even" => o.write_even = Some(value()?.into()),
                "--per-frame" => o.per_frame = Some(value()?.into()),
                "--png" => o.png = Some(value()?.into()),
                "--crop-frame" => o.crop_frame = Some(numbers(&value()?, 1)?[0]),
                "--crop" => {
                    let v = numbers(&value()?, 4)?;
                    o.crop = Some(Rect {
                        x: v[0],
                        y: v[1],
                        w: v[2],
                        h: v[3],
                    });
                }
                "--crop-size" => {
                    let v = numbers(&value()?, 2)?;
                    o.crop_size = (v[0], v[1]);
                }
                other => return Err(format!("unknown option `{other}`\n{USAGE}")),
            }
        }
        o.clip = clip.ok_or_else(|| format!("--clip is required\n{USAGE}"))?;
        if o.methods.is_empty() {
            o.methods = vec![Method::parse("dup")?, Method::parse("blend")?];
        }
        if let Some(k) = o.crop_frame
            && k.is_multiple_of(2)
        {
            return Err(format!(
                "--crop-frame {k}: the rebuilt frames are the odd ones"
            ));
        }
        Ok(o)
    }
}

fn one_of(opt: &str, v: String, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!("{opt}: `{v}` is not one of {}", allowed.join(", ")))
    }
}

// ------------------------------------------------------------------------------------------
// Video: decoding to packed RGB

/// Decoded frames, each packed RGB (`width * 3` bytes a row, no padding).
struct Video {
    width: usize,
    height: usize,
    fps: gst::Fraction,
    frames: Vec<Vec<u8>>,
    /// How the frames were made RGB, for the report.
    rgb_from: String,
}

/// YUV to RGB with the exact formula (no integer approximation).
#[derive(Clone, Copy, Debug, PartialEq)]
struct YuvMatrix {
    kr: f64,
    kb: f64,
    full_range: bool,
}

impl YuvMatrix {
    const BT601_LIMITED: YuvMatrix = YuvMatrix {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };

    /// The matrix and range the caps name; what the caps leave out is BT.601 limited range,
    /// as FFmpeg does for untagged video (GStreamer would guess BT.709 for HD sizes).
    fn from_caps(s: &gst::StructureRef) -> Result<(YuvMatrix, String), String> {
        let Ok(text) = s.get::<&str>("colorimetry") else {
            return Ok((
                Self::BT601_LIMITED,
                "untagged: BT.601 limited range".to_string(),
            ));
        };
        let c = text
            .parse::<gst_video::VideoColorimetry>()
            .map_err(|_| format!("the decoder's caps have an unknown colorimetry `{text}`"))?;
        let (kr, kb) = match c.matrix() {
            gst_video::VideoColorMatrix::Unknown => (0.299, 0.114),
            m => m
                .kr_kb()
                .map_err(|_| format!("colorimetry `{text}` has no YUV matrix"))?,
        };
        let full_range = c.range() == gst_video::VideoColorRange::Range0_255;
        let range = if full_range { "full" } else { "limited" };
        Ok((
            YuvMatrix { kr, kb, full_range },
            format!("colorimetry {text}: Kr {kr}, Kb {kb}, {range} range"),
        ))
    }

    /// One pixel; rounded to nearest, clamped to 0..255.
    fn rgb(&self, y: u8, u: u8, v: u8) -> [u8; 3] {
        let (y, u, v) = (f64::from(y), f64::from(u), f64::from(v));
        let (y, cb, cr) = if self.full_range {
            (y, u - 128.0, v - 128.0)
        } else {
            (
                (y - 16.0) * 255.0 / 219.0,
                (u - 128.0) * 255.0 / 224.0,
                (v - 128.0) * 255.0 / 224.0,
            )
        };
        let (kr, kb) = (self.kr, self.kb);
        let r = y + 2.0 * (1.0 - kr) * cr;
        let b = y + 2.0 * (1.0 - kb) * cb;
        let g = (y - kr * r - kb * b) / (1.0 - kr - kb);
        let q = |x: f64| (x + 0.5).floor().clamp(0.0, 255.0) as u8;
        [q(r), q(g), q(b)]
    }
}

/// Packed RGB of a mapped video frame: RGB copied row by row, I420 converted with `m`.
fn packed_rgb(
    frame: &gst_video::VideoFrameRef<&gst::BufferRef>,
    m: &YuvMatrix,
) -> Result<Vec<u8>, String> {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let plane = |i: u32| {
        frame
            .plane_data(i)
            .map_err(|e| format!("cannot read plane {i} of a decoded frame: {e}"))
    };
    let stride = |i: usize| frame.plane_stride()[i] as usize;
    let mut out = vec![0u8; w * h * 3];
    match frame.format() {
        gst_video::VideoFormat::Rgb => {
            let p = plane(0)?;
            for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
                row.copy_from_slice(&p[y * stride(0)..y * stride(0) + w * 3]);
            }
        }
        gst_video::VideoFormat::I420 => {
            let (py, pu, pv) = (plane(0)?, plane(1)?, plane(2)?);
            for (y, row) in out.chunks_exact_mut(w * 3).enumerate() {
                let (ry, rc) = (y * stride(0), (y / 2) * stride(1));
                let rv = (y / 2) * stride(2);
                for (x, px) in row.chunks_exact_mut(3).enumerate() {
                    px.copy_from_slice(&m.rgb(py[ry + x], pu[rc + x / 2], pv[rv + x / 2]));
                }
            }
        }
        f => return Err(format!("unexpected decoded format {f:?}")),
    }
    Ok(out)
}

/// What the bus said while a pipeline ran.
#[derive(Default)]
struct BusLog {
    stats: Option<gst::Structure>,
}

impl BusLog {
    /// Takes the pending bus messages: an error ends the run with its text; warnings are
    /// printed; the element's statistics are kept.
    fn drain(&mut self, pipeline: &gst::Pipeline) -> Result<(), String> {
        let Some(bus) = pipeline.bus() else {
            return Ok(());
        };
        use gst::MessageType as T;
        while let Some(msg) = bus.pop_filtered(&[T::Error, T::Warning, T::Element]) {
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let from = msg.src().map(|s| s.path_string().to_string());
                    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    return Err(format!(
                        "pipeline error from {}: {}{debug}",
                        from.as_deref().unwrap_or("?"),
                        e.error()
                    ));
                }
                gst::MessageView::Warning(w) => eprintln!("warning: {}", w.error()),
                gst::MessageView::Element(e) => {
                    if let Some(s) = e.structure()
                        && s.name() == "flavrinterp-stats"
                    {
                        self.stats = Some(s.to_owned());
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Sets `pipeline` playing; on failure, stops it and returns the error its bus names.
fn start(pipeline: &gst::Pipeline, log: &mut BusLog) -> Result<(), String> {
    if pipeline.set_state(gst::State::Playing).is_ok() {
        return Ok(());
    }
    let why = log.drain(pipeline).err();
    let _ = pipeline.set_state(gst::State::Null);
    Err(why.unwrap_or_else(|| "the pipeline does not start (no error message)".into()))
}

/// Hands every sample of appsink `sink` to `each` until EOS, then stops `pipeline` (also on an
/// error, which unblocks an appsrc feeder).
fn pull_to_eos(
    pipeline: &gst::Pipeline,
    sink: &gst::Element,
    log: &mut BusLog,
    mut each: impl FnMut(gst::Sample) -> Result<(), String>,
) -> Result<(), String> {
    let result = (|| {
        loop {
            log.drain(pipeline)?;
            let timeout = 100_000_000u64; // 100 ms, then look at the bus again
            match sink.emit_by_name::<Option<gst::Sample>>("try-pull-sample", &[&timeout]) {
                Some(sample) => each(sample)?,
                None if sink.property::<bool>("eos") => break,
                None => {}
            }
        }
        log.drain(pipeline)
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// [`start`], then [`pull_to_eos`].
fn run_to_eos(
    pipeline: &gst::Pipeline,
    sink: &gst::Element,
    log: &mut BusLog,
    each: impl FnMut(gst::Sample) -> Result<(), String>,
) -> Result<(), String> {
    start(pipeline, log)?;
    pull_to_eos(pipeline, sink, log, each)
}

fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element `{factory}` is not installed"))
}

/// Decodes a video file to packed RGB (see the module doc for `convert`).
fn decode(path: &Path, convert: Convert) -> Result<Video, String> {
    if !path.is_file() {
        return Err(format!("{}: no such file", path.display()));
    }
    let pipeline = gst::Pipeline::new();
    let src = make("filesrc")?;
    src.set_property("location", path.to_string_lossy().as_ref());
    let decodebin = make("decodebin")?;
    let conv = make("videoconvert")?;
    let sink = make("appsink")?;
    let caps = match convert {
        // I420 passes through from 4:2:0 decoders; RGB-family decodes become RGB losslessly.
        Convert::Exact => "video/x-raw,format={I420,RGB}",
        Convert::VideoConvert => "video/x-raw,format=RGB",
    };
    sink.set_property(
        "caps",
        caps.parse::<gst::Caps>().map_err(|e| e.to_string())?,
    );
    sink.set_property("sync", false);
    pipeline
        .add_many([&src, &decodebin, &conv, &sink])
        .map_err(|e| e.to_string())?;
    src.link(&decodebin).map_err(|e| e.to_string())?;
    gst::Element::link_many([&conv, &sink]).map_err(|e| e.to_string())?;
    let conv_weak = conv.downgrade();
    decodebin.connect_pad_added(move |_, pad| {
        let is_video = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
            .unwrap_or(false);
        if let (true, Some(conv)) = (is_video, conv_weak.upgrade())
            && let Some(sinkpad) = conv.static_pad("sink")
            && !sinkpad.is_linked()
        {
            let _ = pad.link(&sinkpad);
        }
    });

    let mut frames = Vec::new();
    let mut first: Option<(usize, usize, gst::Fraction, String)> = None;
    let mut matrix = YuvMatrix::BT601_LIMITED;
    let mut log = BusLog::default();
    run_to_eos(&pipeline, &sink, &mut log, |sample| {
        let caps = sample.caps().ok_or("a decoded sample without caps")?;
        let info = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
        let (w, h) = (info.width() as usize, info.height() as usize);
        match &first {
            None => {
                let s = caps.structure(0).ok_or("empty caps")?;
                let rgb_from = match info.format() {
                    gst_video::VideoFormat::I420 => {
                        let (m, how) = YuvMatrix::from_caps(s)?;
                        matrix = m;
                        format!("I420 -> RGB here, exact formula, {how}, chroma per 2x2")
                    }
                    _ if convert == Convert::VideoConvert => "videoconvert to RGB".to_string(),
                    f => format!("{f:?} -> RGB by videoconvert"),
                };
                first = Some((w, h, info.fps(), rgb_from));
            }
            Some((fw, fh, ..)) if (*fw, *fh) != (w, h) => {
                return Err(format!("the size changes from {fw}x{fh} to {w}x{h}"));
            }
            _ => {}
        }
        let buffer = sample.buffer().ok_or("a decoded sample without a buffer")?;
        let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &info)
            .map_err(|_| "cannot map a decoded frame".to_string())?;
        frames.push(packed_rgb(&frame, &matrix)?);
        Ok(())
    })
    .map_err(|e| format!("{}: {e}", path.display()))?;
    let (width, height, fps, rgb_from) =
        first.ok_or_else(|| format!("{}: no video frame decoded", path.display()))?;
    Ok(Video {
        width,
        height,
        fps,
        frames,
        rgb_from,
    })
}

/// Raw `rgb24` frames of `w` x `h`.
fn read_raw_rgb(path: &Path, w: usize, h: usize) -> Result<Vec<Vec<u8>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let size = w * h * 3;
    if data.is_empty() || !data.len().is_multiple_of(size) {
        return Err(format!(
            "{}: {} bytes is not a whole number of {w}x{h} rgb24 frames",
            path.display(),
            data.len()
        ));
    }
    Ok(data.chunks_exact(size).map(<[u8]>::to_vec).collect())
}

// ------------------------------------------------------------------------------------------
// Methods

/// `(a + b + 1) >> 1` per sample.
fn blend(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| ((u16::from(x) + u16::from(y) + 1) >> 1) as u8)
        .collect()
}

/// Settings of the element for `ours`.
struct ElementSettings<'a> {
    /// `None`: the model built into the plugin (`model-location` empty).
    model: Option<&'a Path>,
    backend: &'a str,
    precision: &'a str,
    device_id: u32,
}

/// What `ours` gives back.
struct OursRun {
    /// Output frames 1, 3, 5, ... (the new ones).
    rebuilt: Vec<Vec<u8>>,
    summary: String,
}

/// Pushes `even` (packed RGB, `w` x `h`, one every `frame_ns * 2`) through
/// `appsrc ! flavrinterp factor=2 ! appsink`; checks the output count and the originals.
fn run_ours(
    even: &[Vec<u8>],
    w: usize,
    h: usize,
    fps: gst::Fraction,
    s: &ElementSettings,
) -> Result<OursRun, String> {
    if even.is_empty() {
        return Err("no input frame for `ours`".into());
    }
    let rate = gst::Fraction::new(fps.numer(), fps.denom() * 2);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(rate)
        .build()
        .map_err(|e| format!("cannot describe {w}x{h} RGB: {e}"))?;
    let stride = info.stride()[0] as usize;
    // Duration of one even frame: 2 / fps seconds.
    let pts = |i: usize| -> Result<gst::ClockTime, String> {
        (i as u64)
            .mul_div_floor(
                2 * gst::ClockTime::SECOND.nseconds() * fps.denom() as u64,
                fps.numer() as u64,
            )
            .map(gst::ClockTime::from_nseconds)
            .ok_or_else(|| format!("bad frame rate {fps}"))
    };

    let pipeline = gst::Pipeline::new();
    let src = make("appsrc")?;
    src.set_property("caps", info.to_caps().map_err(|e| e.to_string())?);
    src.set_property_from_str("format", "time");
    src.set_property("block", true);
    src.set_property("max-bytes", (2 * info.size()) as u64);
    let interp = make("flavrinterp")?;
    interp.set_property("factor", 2u32);
    let location = s.model.map(|m| m.to_string_lossy().to_string());
    interp.set_property("model-location", location.unwrap_or_default());
    interp.set_property_from_str("backend", s.backend);
    interp.set_property_from_str("precision", s.precision);
    interp.set_property("device-id", s.device_id);
    let sink = make("appsink")?;
    sink.set_property("sync", false);
    pipeline
        .add_many([&src, &interp, &sink])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([&src, &interp, &sink]).map_err(|e| e.to_string())?;

    let expected = 2 * even.len() - 1;
    let mut rebuilt = Vec::with_capacity(even.len());
    let mut count = 0usize;
    let mut log = BusLog::default();
    let t0 = Instant::now();
    // Started before the feeder: an appsrc that never starts would block it for good.
    start(&pipeline, &mut log)?;
    let result = std::thread::scope(|scope| {
        let pusher = scope.spawn(|| -> Result<(), String> {
            for (i, frame) in even.iter().enumerate() {
                let mut data = vec![0u8; info.size()];
                for (y, row) in frame.chunks_exact(w * 3).enumerate() {
                    data[y * stride..y * stride + w * 3].copy_from_slice(row);
                }
                let mut buffer = gst::Buffer::from_mut_slice(data);
                {
                    let b = buffer.get_mut().ok_or("a new buffer is not writable")?;
                    b.set_pts(pts(i)?);
                    b.set_duration(pts(i + 1)? - pts(i)?);
                }
                let ret = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
                if ret != gst::FlowReturn::Ok {
                    return Ok(()); // the pipeline stopped: its bus says why
                }
            }
            let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
            Ok(())
        });
        let pulled = pull_to_eos(&pipeline, &sink, &mut log, |sample| {
            let k = count;
            count += 1;
            if k >= expected {
                return Ok(()); // counted below
            }
            let caps = sample.caps().ok_or("an output sample without caps")?;
            let oinfo = gst_video::VideoInfo::from_caps(caps).map_err(|e| e.to_string())?;
            if (oinfo.width() as usize, oinfo.height() as usize) != (w, h)
                || oinfo.format() != gst_video::VideoFormat::Rgb
            {
                return Err(format!("unexpected output caps {caps}"));
            }
            let buffer = sample.buffer().ok_or("an output sample without a buffer")?;
            let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buffer, &oinfo)
                .map_err(|_| "cannot map an output frame".to_string())?;
            let rgb = packed_rgb(&frame, &YuvMatrix::BT601_LIMITED)?;
            if k.is_multiple_of(2) {
                if rgb != even[k / 2] {
                    return Err(format!(
                        "output frame {k} is not input frame {} bit for bit",
                        k / 2
                    ));
                }
            } else {
                rebuilt.push(rgb);
            }
            Ok(())
        });
        let pushed = pusher
            .join()
            .unwrap_or_else(|_| Err("the appsrc thread panicked".into()));
        pulled.and(pushed)
    });
    result?;
    if count != expected {
        return Err(format!(
            "flavrinterp gave {count} frames for {} inputs, expected {expected}",
            even.len()
        ));
    }
    let wall = t0.elapsed().as_secs_f64();
    let summary = match &log.stats {
        Some(st) => format!(
            "{} ({:.1} s in the pipeline)",
            st.get::<&str>("summary").unwrap_or("no summary"),
            wall
        ),
        None => format!("no flavrinterp-stats message ({wall:.1} s in the pipeline)"),
    };
    Ok(OursRun { rebuilt, summary })
}

// ------------------------------------------------------------------------------------------
// Metrics

/// PSNR in dB over all samples, peak 255 (infinite for identical frames).
fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i64::from(x) - i64::from(y);
            (d * d) as u64
        })
        .sum();
    let mse = se as f64 / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

const SSIM_WIN: usize = 11;

fn gaussian_window() -> [f64; SSIM_WIN] {
    let sigma = 1.5f64;
    let c = (SSIM_WIN / 2) as f64;
    let mut g = [0.0; SSIM_WIN];
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - c;
        *v = (-d * d / (2.0 * sigma * sigma)).exp();
    }
    let sum: f64 = g.iter().sum();
    g.map(|v| v / sum)
}

/// SSIM of one channel `c` of packed RGB frames (see the module doc).
fn ssim_channel(a: &[u8], b: &[u8], w: usize, h: usize, c: usize) -> f64 {
    let g = gaussian_window();
    let (ow, oh) = (w - SSIM_WIN + 1, h - SSIM_WIN + 1);
    // Horizontal pass: 5 sums (x, y, xx, yy, xy) for each row and output column.
    let mut hs = vec![[0.0f64; 5]; h * ow];
    for y in 0..h {
        let row = |img: &[u8], x: usize| f64::from(img[(y * w + x) * 3 + c]);
        for x in 0..ow {
            let mut s = [0.0f64; 5];
            for (i, &gi) in g.iter().enumerate() {
                let (p, q) = (row(a, x + i), row(b, x + i));
                s[0] += gi * p;
                s[1] += gi * q;
                s[2] += gi * p * p;
                s[3] += gi * q * q;
                s[4] += gi * p * q;
            }
            hs[y * ow + x] = s;
        }
    }
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0f64;
    for y in 0..oh {
        for x in 0..ow {
            let mut s = [0.0f64; 5];
            for (i, &gi) in g.iter().enumerate() {
                let v = &hs[(y + i) * ow + x];
                for k in 0..5 {
                    s[k] += gi * v[k];
                }
            }
            let (mx, my) = (s[0], s[1]);
            let (vx, vy, cxy) = (s[2] - mx * mx, s[3] - my * my, s[4] - mx * my);
            total += ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
    }
    total / (ow * oh) as f64
}

/// SSIM of packed RGB frames: the mean over R, G, B.
fn ssim(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    (0..3).map(|c| ssim_channel(a, b, w, h, c)).sum::<f64>() / 3.0
}

// ------------------------------------------------------------------------------------------
// Pictures

/// Encodes packed RGB as PNG with GStreamer's `pngenc`.
fn write_png(path: &Path, rgb: &[u8], w: usize, h: usize) -> Result<(), String> {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, w as u32, h as u32)
        .fps(gst::Fraction::new(1, 1))
        .build()
        .map_err(|e| e.to_string())?;
    let stride = info.stride()[0] as usize;
    let mut data = vec![0u8; info.size()];
    for (y, row) in rgb.chunks_exact(w * 3).enumerate() {
        data[y * stride..y * stride + w * 3].copy_from_slice(row);
    }
    let pipeline = gst::Pipeline::new();
    let src = make("appsrc")?;
    src.set_property("caps", info.to_caps().map_err(|e| e.to_string())?);
    src.set_property_from_str("format", "time");
    let enc = make("pngenc")?;
    let sink = make("appsink")?;
    sink.set_property("sync", false);
    pipeline
        .add_many([&src, &enc, &sink])
        .map_err(|e| e.to_string())?;
    gst::Element::link_many([&src, &enc, &sink]).map_err(|e| e.to_string())?;
    let mut buffer = gst::Buffer::from_mut_slice(data);
    if let Some(b) = buffer.get_mut() {
        b.set_pts(gst::ClockTime::ZERO);
        b.set_duration(gst::ClockTime::SECOND);
    }
    let mut log = BusLog::default();
    start(&pipeline, &mut log)?;
    let _ = src.emit_by_name::<gst::FlowReturn>("push-buffer", &[&buffer]);
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let mut png = None;
    pull_to_eos(&pipeline, &sink, &mut log, |sample| {
        let b = sample.buffer().ok_or("pngenc gave no buffer")?;
        let map = b.map_readable().map_err(|e| e.to_string())?;
        png = Some(map.as_slice().to_vec());
        Ok(())
    })?;
    let png = png.ok_or("pngenc gave no picture")?;
    std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
}

/// The `r` region of each frame, side by side, 4 white pixels apart.
fn side_by_side(frames: &[&[u8]], w: usize, r: Rect) -> (Vec<u8>, usize) {
    let gap = 4;
    let total = frames.len() * r.w + (frames.len() - 1) * gap;
    let mut out = vec![255u8; total * r.h * 3];
    for (i, f) in frames.iter().enumerate() {
        let x0 = i * (r.w + gap);
        for y in 0..r.h {
            let s = ((r.y + y) * w + r.x) * 3;
            let d = (y * total + x0) * 3;
            out[d..d + r.w * 3].copy_from_slice(&f[s..s + r.w * 3]);
        }
    }
    (out, total)
}

/// The `cw` x `ch` window (on an 8-pixel grid) with the largest error between `a` and `b`.
fn worst_window(a: &[u8], b: &[u8], w: usize, h: usize, cw: usize, ch: usize) -> Rect {
    // Summed-area table of the squared error (all channels).
    let mut sat = vec![0u64; (w + 1) * (h + 1)];
    for y in 0..h {
        let mut row = 0u64;
        for x in 0..w {
            for c in 0..3 {
                let i = (y * w + x) * 3 + c;
                let d = i64::from(a[i]) - i64::from(b[i]);
                row += (d * d) as u64;
            }
            sat[(y + 1) * (w + 1) + x + 1] = sat[y * (w + 1) + x + 1] + row;
        }
    }
    let sum = |x: usize, y: usize| {
        let at = |xx: usize, yy: usize| sat[yy * (w + 1) + xx];
        at(x + cw, y + ch) + at(x, y) - at(x + cw, y) - at(x, y + ch)
    };
    let mut best = (0u64, 0usize, 0usize);
    for y in (0..=h - ch).step_by(8) {
        for x in (0..=w - cw).step_by(8) {
            let s = sum(x, y);
            if s > best.0 {
                best = (s, x, y);
            }
        }
    }
    Rect {
        x: best.1,
        y: best.2,
        w: cw,
        h: ch,
    }
}

// ------------------------------------------------------------------------------------------
// The evaluation

struct Row {
    label: String,
    /// (frame index, PSNR, SSIM) per rebuilt frame.
    per_frame: Vec<(usize, f64, f64)>,
    note: Option<String>,
}

fn evaluate(o: &Options) -> Result<(), String> {
    let t0 = Instant::now();
    let clip = decode(&o.clip, o.convert)?;
    let (w, h, n) = (clip.width, clip.height, clip.frames.len());
    if w < SSIM_WIN || h < SSIM_WIN {
        return Err(format!("{w}x{h} is too small for the 11x11 SSIM window"));
    }
    if n < 3 {
        return Err(format!(
            "{}: {n} frames, at least 3 needed",
            o.clip.display()
        ));
    }
    // Rebuilt frames 1, 3, ..., 2m - 1; even frames 0, 2, ..., 2m.
    let m_all = (n - 1) / 2;
    let m = o.frames.map_or(m_all, |f| f.min(m_all));
    let even: Vec<Vec<u8>> = (0..=m_all).map(|i| clip.frames[2 * i].clone()).collect();
    let targets: Vec<usize> = (0..m).map(|j| 2 * j + 1).collect();
    println!(
        "clip: {}: {n} frames, {w}x{h}, {} fps; RGB: {} ({:.1} s)",
        o.clip.display(),
        clip.fps,
        clip.rgb_from,
        t0.elapsed().as_secs_f64()
    );
    println!(
        "kept: {} even frames (0..{}), rebuilt: {m} odd frames (1..{}){}",
        m_all + 1,
        2 * m_all,
        2 * m - 1,
        if m < m_all {
            format!(" of {m_all} (--frames)")
        } else {
            String::new()
        }
    );
    if let Some(path) = &o.write_even {
        let bytes: Vec<u8> = even.concat();
        std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        println!(
            "wrote {} even frames as raw rgb24 {w}x{h} to {} (rate {}/{})",
            even.len(),
            path.display(),
            clip.fps.numer(),
            clip.fps.denom() * 2
        );
    }

    // The frame for the picture: given, or the one blend does worst on.
    let crop_frame = match (&o.png, o.crop_frame) {
        (None, _) => None,
        (Some(_), Some(k)) if k < 2 * m => Some(k),
        (Some(_), Some(k)) => {
            return Err(format!(
                "--crop-frame {k} is not among the rebuilt frames 1..{}",
                2 * m - 1
            ));
        }
        (Some(_), None) => targets
            .par_iter()
            .map(|&k| {
                let b = blend(&clip.frames[k - 1], &clip.frames[k + 1]);
                (psnr(&b, &clip.frames[k]), k)
            })
            .min_by(|a, b| a.0.total_cmp(&b.0))
            .map(|(_, k)| k),
    };
    let mut pictures: Vec<(String, Vec<u8>)> = Vec::new();

    let mut rows = Vec::new();
    for method in &o.methods {
        let t = Instant::now();
        let mut note = None;
        // rebuilt(k) for the frames the method has.
        let owned: Vec<Vec<u8>>;
        let get: Box<dyn Fn(usize) -> Option<Vec<u8>> + Sync> = match &method.kind {
            Kind::Dup => Box::new(|k: usize| Some(clip.frames[k - 1].clone())),
            Kind::Blend => {
                Box::new(|k: usize| Some(blend(&clip.frames[k - 1], &clip.frames[k + 1])))
            }
            Kind::Ours => {
                let settings = ElementSettings {
                    model: o.model.as_deref(),
                    backend: &o.backend,
                    precision: &o.precision,
                    device_id: o.device_id,
                };
                // Rebuilt frame 2j + 1 uses even frames j - 1 .. j + 2.
                let run = run_ours(&even[..(m + 2).min(m_all + 1)], w, h, clip.fps, &settings)?;
                note = Some(format!("originals bit-exact; {}", run.summary));
                owned = run.rebuilt;
                Box::new(|k: usize| owned.get(k / 2).cloned())
            }
            Kind::File(path) => {
                let frames = if path.extension().is_some_and(|e| e == "rgb") {
                    read_raw_rgb(path, w, h)?
                } else {
                    let v = decode(path, o.convert)?;
                    if (v.width, v.height) != (w, h) {
                        return Err(format!(
                            "{}: {}x{}, the clip is {w}x{h}",
                            path.display(),
                            v.width,
                            v.height
                        ));
                    }
                    v.frames
                };
                let orig = (0..frames.len().min(2 * m_all + 1))
                    .step_by(2)
                    .map(|k| max_abs_diff(&frames[k], &clip.frames[k]))
                    .max()
                    .unwrap_or(0);
                note = Some(format!(
                    "{} frames; its even frames differ from the originals by at most {orig}",
                    frames.len()
                ));
                owned = frames;
                Box::new(|k: usize| owned.get(k).cloned())
            }
        };
        let per_frame: Vec<(usize, f64, f64)> = targets
            .par_iter()
            .filter_map(|&k| {
                get(k).map(|r| {
                    let truth = &clip.frames[k];
                    (k, psnr(&r, truth), ssim(&r, truth, w, h))
                })
            })
            .collect();
        if per_frame.len() < targets.len() {
            eprintln!(
                "note: {}: {} of the {} rebuilt frames are there; its mean is over those \
                 (--frames {} gives every row the same frames)",
                method.label,
                per_frame.len(),
                targets.len(),
                per_frame.len()
            );
        }
        if let Some(k) = crop_frame
            && !matches!(method.kind, Kind::Dup | Kind::Blend)
            && let Some(f) = get(k)
        {
            pictures.push((method.label.clone(), f));
        }
        eprintln!(
            "{}: {:.1} s{}",
            method.label,
            t.elapsed().as_secs_f64(),
            note.as_deref()
                .map(|n| format!("; {n}"))
                .unwrap_or_default()
        );
        rows.push(Row {
            label: method.label.clone(),
            per_frame,
            note,
        });
    }

    println!();
    println!(
        "{:<16} {:>6} {:>10} {:>8}",
        "method", "frames", "PSNR (dB)", "SSIM"
    );
    for r in &rows {
        let k = r.per_frame.len().max(1) as f64;
        let p: f64 = r.per_frame.iter().map(|v| v.1).sum::<f64>() / k;
        let s: f64 = r.per_frame.iter().map(|v| v.2).sum::<f64>() / k;
        println!(
            "{:<16} {:>6} {:>10.3} {:>8.4}",
            r.label,
            r.per_frame.len(),
            p,
            s
        );
    }
    for r in &rows {
        if let Some(n) = &r.note {
            println!("  {}: {n}", r.label);
        }
    }

    if let Some(path) = &o.per_frame {
        let mut csv = String::from("method,frame,psnr,ssim\n");
        for r in &rows {
            for (k, p, s) in &r.per_frame {
                let _ = writeln!(csv, "{},{k},{p:.4},{s:.6}", r.label);
            }
        }
        std::fs::write(path, csv).map_err(|e| format!("{}: {e}", path.display()))?;
    }

    if let (Some(path), Some(k)) = (&o.png, crop_frame) {
        let truth = &clip.frames[k];
        let blended = blend(&clip.frames[k - 1], &clip.frames[k + 1]);
        let rect = match o.crop {
            Some(r) => r,
            None => {
                let (cw, ch) = (o.crop_size.0.min(w), o.crop_size.1.min(h));
                worst_window(&blended, truth, w, h, cw, ch)
            }
        };
        if rect.w == 0 || rect.h == 0 || rect.x + rect.w > w || rect.y + rect.h > h {
            return Err(format!("--crop {rect:?} is not inside the {w}x{h} frame"));
        }
        let mut panels: Vec<(&str, &[u8])> = vec![("truth", truth), ("blend", &blended)];
        for (label, f) in &pictures {
            panels.push((label, f));
        }
        let frames: Vec<&[u8]> = panels.iter().map(|p| p.1).collect();
        let (img, total) = side_by_side(&frames, w, rect);
        write_png(path, &img, total, rect.h)?;
        let names: Vec<&str> = panels.iter().map(|p| p.0).collect();
        println!(
            "picture: {}: frame {k}, crop x={} y={} {}x{}, left to right: {}",
            path.display(),
            rect.x,
            rect.y,
            rect.w,
            rect.h,
            names.join(" | ")
        );
    }
    Ok(())
}

fn max_abs_diff(a: &[u8], b: &[u8]) -> u8 {
    a.iter()
        .zip(b)
        .map(|(&x, &y)| x.abs_diff(y))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn init() {
        static INIT: std::sync::Once = std::sync::Once::new();
        INIT.call_once(|| {
            gst::init().unwrap();
            gstflavrinterp::plugin_register_static().unwrap();
        });
    }

    /// A smooth pattern and a noisy copy (LCG noise in -8..=8), as tools/eval's Python
    /// reference makes them for the constants below.
    fn synth(w: usize, h: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut s = seed;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let base = (x * x / 7 + y * 5 + c * 40 + x * y / 11) % 256;
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = ((s >> 33) % 17) as i64 - 8;
                    a.push(base as u8);
                    b.push((base as i64 + noise).clamp(0, 255) as u8);
                }
            }
        }
        (a, b)
    }

    #[test]
    fn psnr_and_ssim_match_the_torch_reference() {
        // tools/eval/ref_metrics.py's psnr/ssim (torch conv2d, float64) on synth(w, h, seed).
        for (w, h, seed, p, s) in [
            (37, 23, 1, 34.209905855774, 0.949204943416),
            (64, 48, 7, 34.356267538033, 0.976013251797),
        ] {
            let (a, b) = synth(w, h, seed);
            assert!((psnr(&a, &b) - p).abs() < 1e-9, "{w}x{h}: {}", psnr(&a, &b));
            assert!(
                (ssim(&a, &b, w, h) - s).abs() < 1e-9,
                "{w}x{h}: {}",
                ssim(&a, &b, w, h)
            );
            assert_eq!(ssim(&a, &a, w, h), 1.0);
        }
        let a = vec![10u8; 12 * 12 * 3];
        let b = vec![11u8; 12 * 12 * 3];
        assert!((psnr(&a, &b) - 10.0 * 65025f64.log10()).abs() < 1e-12);
        assert_eq!(psnr(&a, &a), f64::INFINITY);
    }

    #[test]
    fn yuv_to_rgb_is_the_exact_formula() {
        let bt709_full = YuvMatrix {
            kr: 0.2126,
            kb: 0.0722,
            full_range: true,
        };
        // Values of the float formula in numpy (round half up, clamp).
        for (yuv, bt601l, bt709f) in [
            ((81, 90, 240), [254, 0, 0], [255, 36, 10]),
            ((145, 54, 34), [0, 255, 1], [0, 203, 8]),
            ((41, 240, 110), [0, 0, 255], [13, 28, 249]),
            ((200, 100, 180), [255, 183, 158], [255, 181, 148]),
        ] {
            let (y, u, v) = yuv;
            assert_eq!(YuvMatrix::BT601_LIMITED.rgb(y, u, v), bt601l, "{yuv:?}");
            assert_eq!(bt709_full.rgb(y, u, v), bt709f, "{yuv:?}");
        }
        assert_eq!(YuvMatrix::BT601_LIMITED.rgb(235, 128, 128), [255; 3]);
        assert_eq!(YuvMatrix::BT601_LIMITED.rgb(16, 128, 128), [0; 3]);
    }

    #[test]
    fn matrix_follows_the_caps_and_defaults_to_bt601_limited() {
        init();
        let s = |c: &str| c.parse::<gst::Caps>().unwrap();
        let m = |c: &gst::Caps| YuvMatrix::from_caps(c.structure(0).unwrap()).unwrap().0;
        let untagged = s("video/x-raw,format=I420,width=1280,height=720");
        assert_eq!(m(&untagged), YuvMatrix::BT601_LIMITED);
        let hd = m(&s("video/x-raw,format=I420,colorimetry=bt709"));
        assert_eq!((hd.kr, hd.kb, hd.full_range), (0.2126, 0.0722, false));
        let jpeg = m(&s("video/x-raw,format=I420,colorimetry=1:4:0:0"));
        assert_eq!((jpeg.kr, jpeg.kb, jpeg.full_range), (0.299, 0.114, true));
        let bad = s("video/x-raw,format=I420,colorimetry=nonsense");
        assert!(YuvMatrix::from_caps(bad.structure(0).unwrap()).is_err());
    }

    #[test]
    fn blend_rounds_half_up() {
        assert_eq!(
            blend(&[1, 0, 254, 7], &[2, 255, 255, 7]),
            vec![2, 128, 255, 7]
        );
    }

    #[test]
    fn methods_parse_with_labels_and_paths() {
        let m = Method::parse("minterpolate=file:/a=b.mkv").unwrap();
        assert_eq!(m.label, "minterpolate");
        assert_eq!(m.kind, Kind::File("/a=b.mkv".into()));
        let m = Method::parse("file:/x=y.rgb").unwrap();
        assert_eq!(
            (m.label.as_str(), m.kind),
            ("file:/x=y.rgb", Kind::File("/x=y.rgb".into()))
        );
        assert_eq!(Method::parse("ours").unwrap().kind, Kind::Ours);
        assert!(Method::parse("bogus").unwrap_err().contains("bogus"));
        assert!(Method::parse("file:").is_err());
    }

    #[test]
    fn worst_window_finds_the_planted_error() {
        let (w, h) = (96, 64);
        let a = vec![100u8; w * h * 3];
        let mut b = a.clone();
        for y in 40..56 {
            for x in 16..40 {
                b[(y * w + x) * 3 + 1] = 0;
            }
        }
        assert_eq!(
            worst_window(&a, &b, w, h, 24, 16),
            Rect {
                x: 16,
                y: 40,
                w: 24,
                h: 16
            }
        );
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name)
    }

    #[test]
    fn ours_rebuilds_the_odd_frames_and_checks_the_originals() {
        init();
        let (w, h) = (40, 24);
        let even: Vec<Vec<u8>> = (0..5).map(|i| synth(w, h, i).1).collect();
        let model = fixture("flavr2x_w8.safetensors");
        let s = ElementSettings {
            model: Some(&model),
            backend: "cpu",
            precision: "fp32",
            device_id: 0,
        };
        let run = run_ours(&even, w, h, gst::Fraction::new(25, 1), &s).unwrap();
        assert_eq!(run.rebuilt.len(), 4);
        assert!(run.rebuilt.iter().all(|f| f.len() == w * h * 3));
        assert!(
            run.summary.contains("5 frames in, 9 out"),
            "{}",
            run.summary
        );
        // A missing model: the element's start error, named.
        let missing = fixture("no-such-model.safetensors");
        let err = run_ours(
            &even,
            w,
            h,
            gst::Fraction::new(25, 1),
            &ElementSettings {
                model: Some(&missing),
                ..s
            },
        )
        .err()
        .unwrap();
        assert!(err.contains("no-such-model"), "{err}");
    }
}
