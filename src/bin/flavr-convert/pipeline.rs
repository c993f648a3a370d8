// SPDX-License-Identifier: MIT OR Apache-2.0
//! The pipeline:
//!
//! ```text
//! uridecodebin ─video─ videoconvert ! queue ! flavrinterp (factor or framerate) ! videoconvert
//!              │       ! caps(4:2:0) ! ENCODER [! parser] ! MUXER ! filesink
//!              ├audio─ queue [! audioconvert ! audioresample ! AUDIO ENCODER] ! MUXER
//!              └subs── queue ! MUXER        (other streams: fakesink)
//! ```
//!
//! `flavrinterp` is started first, on its own, so that a bad model or a missing GPU is
//! reported before anything is decoded and so that the encoder can follow the backend it
//! opened (NVENC with CUDA). Audio the muxer takes as it is (AAC into MP4, Opus into WebM,
//! almost anything into Matroska) stops at the demuxer and is remuxed; other audio is decoded
//! and encoded again.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use gst::prelude::*;

use crate::container::{self, Container};
use crate::exit::{Code, Failure};
use crate::options::Options;
use crate::plugins::make;
use crate::rate::Plan;

/// What the streaming threads, the bus loop and the stop request share.
#[derive(Default)]
pub(crate) struct Shared {
    /// Frames into `flavrinterp`, and frames into the encoder.
    pub(crate) frames_in: AtomicU64,
    pub(crate) frames_out: AtomicU64,
    /// The end (pts + duration, ns) of the last frame into `flavrinterp`.
    pub(crate) video_end: AtomicU64,
    /// Set when a stop is asked for; audio then ends at `stop_at` (ns).
    pub(crate) stopping: AtomicBool,
    pub(crate) stop_at: AtomicU64,
    /// Entries of branches that end at once on a stop (subtitles, fakesinks).
    pub(crate) sparse_entries: Mutex<Vec<gst::Pad>>,
    /// A failure found in a streaming thread (linking a stream).
    pub(crate) failure: Mutex<Option<Failure>>,
    /// Streams left out, and why (printed unless --quiet, listed in the summary).
    pub(crate) notes: Mutex<Vec<String>>,
    pub(crate) video_linked: AtomicBool,
    pub(crate) audio_streams: AtomicU64,
    pub(crate) subtitle_streams: AtomicU64,
}

pub(crate) struct Converter {
    pub(crate) pipeline: gst::Pipeline,
    pub(crate) interp: gst::Element,
    pub(crate) shared: Arc<Shared>,
    /// The backend as known before the end (`cuda`, `cpu`); the end message names it fully.
    pub(crate) backend: String,
    /// Why `auto` fell back to the CPU, if it did.
    pub(crate) fallback: Option<String>,
    pub(crate) encoder: String,
}

/// Opens `flavrinterp` inside `pipeline` (READY to PAUSED: model and backend), returning it
/// and whether it runs on CUDA.
fn open_interp(
    pipeline: &gst::Pipeline,
    opts: &Options,
    plan: Plan,
) -> Result<(gst::Element, bool, Option<String>), Failure> {
    let interp = make("flavrinterp")?;
    interp.set_property("factor", plan.factor);
    if let Some(t) = plan.target {
        // Any rate: the element's own grid, no videorate after it.
        let (n, d) = (i32::try_from(t.num), i32::try_from(t.den));
        let (Ok(n), Ok(d)) = (n, d) else {
            return Err(Failure::usage(format!("--fps {t} is too large a fraction")));
        };
        interp.set_property("framerate", gst::Fraction::new(n, d));
    }
    if let Some(m) = &opts.model {
        interp.set_property("model-location", m.to_string_lossy().as_ref());
    }
    interp.set_property_from_str("backend", &opts.backend);
    interp.set_property("device-id", opts.device);
    interp.set_property_from_str("precision", &opts.precision);
    pipeline
        .add(&interp)
        .map_err(|e| Failure::failed(format!("cannot add flavrinterp: {e}")))?;
    pipeline
        .set_state(gst::State::Ready)
        .map_err(|e| Failure::failed(format!("cannot start the pipeline: {e}")))?;
    let started = interp.set_state(gst::State::Paused);
    let bus = pipeline.bus().expect("a pipeline has a bus");
    let mut fallback = None;
    let mut error = None;
    while let Some(msg) = bus.pop() {
        match msg.view() {
            gst::MessageView::Error(e) if error.is_none() => error = Some(e.error()),
            gst::MessageView::Warning(w)
                if w.error().matches(gst::LibraryError::Init)
                    && msg.src() == Some(interp.upcast_ref()) =>
            {
                fallback = Some(w.error().to_string());
            }
            _ => {}
        }
    }
    if let Err(e) = started {
        let err = error.map(|e| (e.to_string(), e));
        let text = err
            .as_ref()
            .map(|(t, _)| t.clone())
            .unwrap_or_else(|| format!("flavrinterp failed to start: {e}"));
        let model_error = err.as_ref().is_some_and(|(_, e)| {
            e.matches(gst::ResourceError::OpenRead)
                || e.matches(gst::ResourceError::Read)
                || e.matches(gst::LibraryError::Settings)
        });
        let gpu_error = err
            .as_ref()
            .is_some_and(|(_, e)| e.matches(gst::LibraryError::Init));
        let code = if model_error {
            Code::BadModel
        } else if gpu_error && opts.backend == "cuda" {
            Code::NoGpu
        } else {
            Code::Failed
        };
        return Err(Failure::new(code, text));
    }
    let gpu = opts.backend == "cuda" || (opts.backend == "auto" && fallback.is_none());
    Ok((interp, gpu, fallback))
}

/// What one conversion is made of.
pub(crate) struct Job<'a> {
    pub(crate) opts: &'a Options,
    pub(crate) uri: &'a str,
    pub(crate) plan: Plan,
    pub(crate) container: Container,
    /// The file the muxer writes (OUTPUT.part).
    pub(crate) part: &'a Path,
}

/// The elements, linked, with the decoder's streams linked as they appear.
pub(crate) fn build(job: &Job) -> Result<Converter, Failure> {
    let pipeline = gst::Pipeline::new();
    let built = assemble(&pipeline, job);
    if built.is_err() {
        // Elements go to NULL before they are dropped.
        let _ = pipeline.set_state(gst::State::Null);
    }
    built
}

fn assemble(pipeline: &gst::Pipeline, job: &Job) -> Result<Converter, Failure> {
    let Job {
        opts,
        uri,
        plan,
        container,
        part,
    } = *job;
    let pipeline = pipeline.clone();
    let (interp, gpu, fallback) = open_interp(&pipeline, opts, plan)?;
    let encoder_name = container.pick_video_encoder(opts.encoder.as_deref(), gpu)?;
    let encoder = make(&encoder_name)?;
    container::configure_encoder(&encoder, &encoder_name, opts.quality)?;

    let decode = make("uridecodebin")?;
    decode.set_property("uri", uri);
    let convert_in = make("videoconvert")?;
    let queue = make("queue")?;
    let convert_out = make("videoconvert")?;
    let format = make("capsfilter")?;
    if matches!(
        encoder_name.as_str(),
        "x264enc" | "x265enc" | "nvh264enc" | "nvcudah264enc" | "vp8enc" | "vp9enc"
    ) {
        // 8-bit 4:2:0: what players decode (x264 would pick 4:4:4 for RGB input).
        format.set_property(
            "caps",
            "video/x-raw, format=(string){ I420, NV12 }"
                .parse::<gst::Caps>()
                .expect("valid caps"),
        );
    }
    let mux = make(container.muxer())?;
    let sink = make("filesink")?;
    sink.set_property("location", part.to_string_lossy().as_ref());

    let mut chain = vec![convert_in.clone(), queue, interp.clone()];
    chain.extend([convert_out, format, encoder.clone()]);
    if let Some(p) = container::parser_for(&encoder) {
        chain.push(make(p)?);
    }
    let add = |e: &gst::Element| {
        if e.parent().is_none() {
            pipeline
                .add(e)
                .map_err(|err| Failure::failed(format!("cannot add {}: {err}", e.name())))
        } else {
            Ok(())
        }
    };
    for e in chain.iter().chain([&decode, &mux, &sink]) {
        add(e)?;
    }
    gst::Element::link_many(&chain)
        .map_err(|e| Failure::failed(format!("cannot link the video elements: {e}")))?;
    link_to_mux(chain.last().expect("not empty"), &mux, "video_%u")?;
    mux.link(&sink)
        .map_err(|e| Failure::failed(format!("cannot link {} to filesink: {e}", mux.name())))?;

    let shared = Arc::new(Shared::default());
    count_frames(&interp, &encoder, &shared);
    let weak = pipeline.downgrade();
    decode.connect("autoplug-continue", false, move |args| {
        // Stop decoding (false) where the muxer takes the stream as it is.
        let caps = args[2].get::<gst::Caps>().ok()?;
        let remux = caps
            .structure(0)
            .is_some_and(|s| !s.name().starts_with("video/"))
            && (container.takes("audio_%u", &caps) || container.takes("subtitle_%u", &caps))
            && caps.structure(0).is_none_or(|s| s.name() != "audio/x-raw");
        Some((!remux).to_value())
    });
    let s = shared.clone();
    let (mux_weak, convert_weak) = (mux.downgrade(), convert_in.downgrade());
    decode.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(mux), Some(convert)) =
            (weak.upgrade(), mux_weak.upgrade(), convert_weak.upgrade())
        else {
            return;
        };
        if let Err(f) = link_stream(&pipeline, pad, &convert, &mux, container, &s) {
            *s.failure.lock().unwrap() = Some(f);
            let msg =
                gst::message::Application::new(gst::Structure::new_empty("flavr-convert-failure"));
            let _ = pipeline.post_message(msg);
        }
    });
    let backend = if gpu {
        format!("cuda (GPU {}, {})", opts.device, opts.precision)
    } else {
        "cpu".to_string()
    };
    Ok(Converter {
        pipeline,
        interp,
        shared,
        backend,
        fallback,
        encoder: encoder_name,
    })
}

fn link_to_mux(src: &gst::Element, mux: &gst::Element, template: &str) -> Result<(), Failure> {
    let pad = mux
        .request_pad_simple(template)
        .ok_or_else(|| Failure::failed(format!("{} gives no {template} pad", mux.name())))?;
    let src_pad = src.static_pad("src").expect("elements here have a src pad");
    src_pad.link(&pad).map(|_| ()).map_err(|e| {
        Failure::failed(format!(
            "cannot link {} to {}: {e:?} ({})",
            src.name(),
            mux.name(),
            src_pad.query_caps(None)
        ))
    })
}

/// Counts frames into the element (and where the last one ends) and into the encoder;
/// refuses frames into the element once a stop is asked for.
fn count_frames(interp: &gst::Element, encoder: &gst::Element, shared: &Arc<Shared>) {
    let s = shared.clone();
    interp
        .static_pad("sink")
        .expect("flavrinterp has a sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if s.stopping.load(Ordering::SeqCst) {
                // Refused (EOS) so the upstream queue stops at once and the EOS of the stop
                // takes the pad's stream lock right after the frame being computed.
                info.flow_res = Err(gst::FlowError::Eos);
                return gst::PadProbeReturn::Handled;
            }
            if let Some(b) = info.buffer() {
                s.frames_in.fetch_add(1, Ordering::Relaxed);
                if let Some(pts) = b.pts() {
                    let end = pts + b.duration().unwrap_or(gst::ClockTime::ZERO);
                    s.video_end.fetch_max(end.nseconds(), Ordering::Relaxed);
                }
            }
            gst::PadProbeReturn::Ok
        });
    let s = shared.clone();
    encoder
        .static_pad("sink")
        .expect("encoders have a sink pad")
        .add_probe(gst::PadProbeType::BUFFER, move |_, _| {
            s.frames_out.fetch_add(1, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        });
}

/// Links a stream of the decoder: the first video stream to the video chain, audio to a
/// remux or re-encode branch, subtitles to the muxer where it takes them; everything else
/// to a fakesink, with a note.
fn link_stream(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    convert: &gst::Element,
    mux: &gst::Element,
    container: Container,
    shared: &Arc<Shared>,
) -> Result<(), Failure> {
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let name = caps
        .structure(0)
        .map(|s| s.name().to_string())
        .unwrap_or_default();
    let note = |text: String| shared.notes.lock().unwrap().push(text);
    if name.starts_with("video/") || name.starts_with("image/") {
        if !shared.video_linked.swap(true, Ordering::SeqCst) {
            let sink = convert
                .static_pad("sink")
                .expect("videoconvert has a sink pad");
            return pad.link(&sink).map(|_| ()).map_err(|e| {
                Failure::failed(format!("cannot link the decoded video ({caps}): {e:?}"))
            });
        }
        note("a second video stream is left out: flavr-convert converts the first".into());
        return discard(pipeline, pad, shared);
    }
    if name.starts_with("audio/") {
        shared.audio_streams.fetch_add(1, Ordering::Relaxed);
        let mut branch = vec![make("queue")?];
        if name == "audio/x-raw" {
            branch.extend([
                make("audioconvert")?,
                make("audioresample")?,
                make(container.pick_audio_encoder()?)?,
            ]);
        }
        let entry = attach(pipeline, &branch, mux, "audio_%u")?;
        let exit = branch.last().and_then(|e| e.static_pad("src"));
        stop_audio_with_video(pad, &entry, exit.as_ref(), shared);
        return pad
            .link(&entry)
            .map(|_| ())
            .map_err(|e| Failure::failed(format!("cannot link the audio ({caps}): {e:?}")));
    }
    if container.takes("subtitle_%u", &caps) {
        shared.subtitle_streams.fetch_add(1, Ordering::Relaxed);
        let entry = attach(pipeline, &[make("queue")?], mux, "subtitle_%u")?;
        shared.sparse_entries.lock().unwrap().push(entry.clone());
        return pad
            .link(&entry)
            .map(|_| ())
            .map_err(|e| Failure::failed(format!("cannot link the subtitles ({caps}): {e:?}")));
    }
    let what = gst_pbutils::pb_utils_get_codec_description(&caps);
    note(format!(
        "a stream of {what} is left out: GStreamer's {} takes no {caps}",
        container.muxer()
    ));
    discard(pipeline, pad, shared)
}

/// Adds `branch` (linked in order) to the pipeline, links its end to a new `template` pad
/// of the muxer, starts it, and returns its entry pad.
fn attach(
    pipeline: &gst::Pipeline,
    branch: &[gst::Element],
    mux: &gst::Element,
    template: &str,
) -> Result<gst::Pad, Failure> {
    pipeline
        .add_many(branch)
        .map_err(|e| Failure::failed(format!("cannot add a branch: {e}")))?;
    gst::Element::link_many(branch)
        .map_err(|e| Failure::failed(format!("cannot link a branch: {e}")))?;
    link_to_mux(branch.last().expect("not empty"), mux, template)?;
    for e in branch {
        e.sync_state_with_parent()
            .map_err(|err| Failure::failed(format!("cannot start {}: {err}", e.name())))?;
    }
    Ok(branch[0].static_pad("sink").expect("queue has a sink pad"))
}

/// A fakesink for a stream that is not converted.
fn discard(pipeline: &gst::Pipeline, pad: &gst::Pad, shared: &Arc<Shared>) -> Result<(), Failure> {
    let sink = make("fakesink")?;
    sink.set_property("sync", false);
    sink.set_property("async", false);
    pipeline
        .add(&sink)
        .map_err(|e| Failure::failed(format!("cannot add a fakesink: {e}")))?;
    sink.sync_state_with_parent()
        .map_err(|e| Failure::failed(format!("cannot start a fakesink: {e}")))?;
    let entry = sink.static_pad("sink").expect("fakesink has a sink pad");
    shared.sparse_entries.lock().unwrap().push(entry.clone());
    pad.link(&entry)
        .map(|_| ())
        .map_err(|e| Failure::failed(format!("cannot link a fakesink: {e:?}")))
}

/// On a stop, ends the audio branch at the first buffer at or after the end of the last
/// video frame taken, and drops what its queue held past that point, so that audio and
/// video end together.
fn stop_audio_with_video(
    pad: &gst::Pad,
    entry: &gst::Pad,
    exit: Option<&gst::Pad>,
    shared: &Arc<Shared>,
) {
    if let Some(exit) = exit {
        let s = shared.clone();
        exit.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let late = s.stopping.load(Ordering::SeqCst)
                && info
                    .buffer()
                    .and_then(|b| b.pts())
                    .is_some_and(|pts| pts.nseconds() >= s.stop_at.load(Ordering::SeqCst));
            if late {
                gst::PadProbeReturn::Drop
            } else {
                gst::PadProbeReturn::Ok
            }
        });
    }
    let (s, entry) = (shared.clone(), entry.clone());
    let sent = AtomicBool::new(false);
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        if s.stopping.load(Ordering::SeqCst)
            && let Some(pts) = info.buffer().and_then(|b| b.pts())
            && pts.nseconds() >= s.stop_at.load(Ordering::SeqCst)
            && !sent.swap(true, Ordering::SeqCst)
        {
            // This buffer and all later ones are refused (EOS) by the ended branch.
            entry.send_event(gst::event::Eos::new());
        }
        gst::PadProbeReturn::Ok
    });
}

/// Ends the conversion at the frames taken so far: EOS into `flavrinterp` (which finishes
/// its window), audio at the same time, sparse streams at once. Blocks while the element
/// computes its current frame: call it off the bus thread.
pub(crate) fn stop(interp: &gst::Element, s: &Shared) {
    {
        s.stop_at
            .store(s.video_end.load(Ordering::SeqCst), Ordering::SeqCst);
        s.stopping.store(true, Ordering::SeqCst);
        for pad in s.sparse_entries.lock().unwrap().iter() {
            pad.send_event(gst::event::Eos::new());
        }
        if let Some(pad) = interp.static_pad("sink") {
            pad.send_event(gst::event::Eos::new());
        }
    }
}
