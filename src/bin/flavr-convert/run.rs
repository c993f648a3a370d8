// SPDX-License-Identifier: MIT OR Apache-2.0
//! One conversion: the checks, the pipeline, the bus loop with progress and stop requests,
//! and the finished file.

use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::time::Instant;

use gst::prelude::*;

use crate::container::Container;
use crate::exit::{Code, Failure};
use crate::options::Options;
use crate::output::{self, Part};
use crate::pipeline::{self, Converter};
use crate::plugins;
use crate::probe::{self, Input};
use crate::progress::Progress;
use crate::rate::{Plan, Rate};
use crate::summary::Summary;
use crate::{orientation, signals};

/// Converts; the summary, and the signal that stopped the run early, if one did.
pub(crate) fn run(opts: &Options) -> Result<(Summary, Option<i32>), Failure> {
    let container = Container::from_path(&opts.output)?;
    probe::check_readable(&opts.input)?;
    output::check_not_input(&opts.input, &opts.output)?;
    let part = Part::create(&opts.output)?;
    let part_path = part.path().to_path_buf();
    let requests = signals::install(move |sig| {
        let _ = std::fs::remove_file(&part_path);
        eprintln!(
            "flavr-convert: aborted by a second {}; OUTPUT was not written",
            signals::name(sig)
        );
        std::process::exit(i32::from(signals::status(sig)));
    })?;
    let input = probe::probe(&opts.input)?;
    let plan = Plan::new(opts.rate, input.rate).map_err(Failure::usage)?;
    let conv = pipeline::build(&pipeline::Job {
        opts,
        uri: &input.uri,
        plan,
        container,
        part: part.path(),
    })?;
    let model = match &opts.model {
        Some(m) => m.display().to_string(),
        None => "embedded".to_string(),
    };
    let out_rate = input.rate.map(|r| plan.output_rate(r));
    let mut progress = Progress::new(opts.quiet, total_frames(&input, plan), &conv.backend);
    if let Some(why) = &conv.fallback {
        progress.note(&format!("warning: {why}"));
    }
    progress.note(&describe(opts, &input, plan, out_rate, &conv, &model));
    if let (Some(r), Some(t)) = (input.rate, plan.target) {
        progress.note(&format!(
            "--fps: flavrinterp framerate={}/{}; each frame is made at most {:.1} ms (1/16 of \
             an input interval) from its time",
            t.num,
            t.den,
            plan.max_timing_error(r) * 1e3
        ));
    }
    if let Some(o) = &input.orientation
        && matches!(container, Container::Mkv | Container::Webm)
    {
        progress.note(&format!(
            "the input's rotation ({o}) is not kept: GStreamer's Matroska muxer stores none \
             (an .mp4 or .mov OUTPUT keeps it)"
        ));
    }

    let start = Instant::now();
    let ended = bus_loop(&conv, &requests, &mut progress);
    let _ = conv.pipeline.set_state(gst::State::Null);
    progress.finish();
    let (stats, stopped) = ended?;
    let notes = conv.shared.notes.lock().unwrap().clone();
    for n in &notes {
        progress.note(n);
    }
    if let Some(o) = &input.orientation
        && matches!(container, Container::Mp4 | Container::Mov)
        && let Some(m) = orientation::matrix(o, input.width, input.height)
    {
        orientation::write_matrix(part.path(), m).map_err(|e| {
            Failure::new(
                Code::OutputUnwritable,
                format!(
                    "cannot write the rotation into {}: {e}",
                    part.path().display()
                ),
            )
        })?;
    }
    part.commit()?;
    let frames_out = conv.shared.frames_out.load(Ordering::SeqCst);
    let summary = Summary {
        input: opts.input.display().to_string(),
        output: opts.output.display().to_string(),
        frames_in: conv.shared.frames_in.load(Ordering::SeqCst),
        frames_out,
        seconds: start.elapsed().as_secs_f64(),
        backend: stats
            .as_ref()
            .and_then(|s| s.get::<String>("backend").ok())
            .unwrap_or(conv.backend.clone()),
        model,
        factor: plan.factor(),
        rate: out_rate
            .map(|r| format!("{}/{}", r.num, r.den))
            .unwrap_or_else(|| "variable".into()),
        encoder: conv.encoder.clone(),
        output_bytes: std::fs::metadata(&opts.output)
            .map(|m| m.len())
            .unwrap_or(0),
        output_seconds: probe::duration(&opts.output).map(|d| d.nseconds() as f64 / 1e9),
        audio_streams: conv.shared.audio_streams.load(Ordering::SeqCst),
        subtitle_streams: conv.shared.subtitle_streams.load(Ordering::SeqCst),
        stopped_by: stopped.map(|s| signals::name(s).to_string()),
        notes,
    };
    Ok((summary, stopped))
}

/// The expected number of output frames, when the input's duration and rate are known.
fn total_frames(input: &Input, plan: Plan) -> Option<u64> {
    let n = input.frames_estimate()?;
    match plan.target {
        // Every input fills its slot: new frames after it, copies after the last.
        None => Some(n * u64::from(plan.factor)),
        // The target's grid over the n input frames: ceil(n * target / input).
        Some(t) => {
            let input = input.rate?;
            let num = u128::from(n) * u128::from(t.num) * u128::from(input.den);
            let den = u128::from(t.den) * u128::from(input.num);
            u64::try_from(num.div_ceil(den.max(1))).ok()
        }
    }
}

fn describe(
    opts: &Options,
    input: &Input,
    plan: Plan,
    out_rate: Option<Rate>,
    conv: &Converter,
    model: &str,
) -> String {
    let rate = |r: Option<Rate>| {
        r.map(|r| format!("{r} fps"))
            .unwrap_or("variable rate".into())
    };
    let duration = input
        .duration
        .map(|d| format!(", {:.2} s", d.nseconds() as f64 / 1e9))
        .unwrap_or_default();
    format!(
        "{} ({}x{} {}, {}{duration}) -> {}: {} ({}), backend {}, model {model}, encoder {}",
        opts.input.display(),
        input.width,
        input.height,
        input.video_codec,
        rate(input.rate),
        opts.output.display(),
        match plan.factor() {
            Some(f) => format!("factor {f}"),
            None => "any rate".to_string(),
        },
        rate(out_rate),
        conv.backend,
        conv.encoder,
    )
}

/// Runs the pipeline to its end; the element's end-of-stream statistics and the signal that
/// asked for a stop, if any.
fn bus_loop(
    conv: &Converter,
    requests: &Receiver<i32>,
    progress: &mut Progress,
) -> Result<(Option<gst::Structure>, Option<i32>), Failure> {
    let bus = conv.pipeline.bus().expect("a pipeline has a bus");
    // A failure to start is posted on the bus: read below.
    let _ = conv.pipeline.set_state(gst::State::Playing);
    let shared = &conv.shared;
    let mut stats = None;
    let mut stopped = None;
    let mut missing: Option<Failure> = None;
    loop {
        if stopped.is_none()
            && let Ok(sig) = requests.try_recv()
        {
            stopped = Some(sig);
            if shared.frames_in.load(Ordering::SeqCst) == 0 {
                return Err(Failure::new(
                    Code::Interrupted,
                    format!(
                        "stopped by {} before the first frame: OUTPUT was not written",
                        signals::name(sig)
                    ),
                ));
            }
            progress.note(&format!(
                "{}: finishing OUTPUT with the frames done so far (press it again to abort)",
                signals::name(sig)
            ));
            let (interp, shared) = (conv.interp.clone(), shared.clone());
            std::thread::spawn(move || pipeline::stop(&interp, &shared));
        }
        progress.update(shared.frames_out.load(Ordering::Relaxed));
        if let Some(f) = shared.failure.lock().unwrap().take() {
            return Err(f);
        }
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                return Err(missing.unwrap_or_else(|| runtime_failure(e)));
            }
            gst::MessageView::Warning(w) => {
                progress.note(&format!("warning: {}", w.error()));
            }
            gst::MessageView::Element(e) => {
                if gst_pbutils::MissingPluginMessage::is(&msg) {
                    if let Ok(m) = gst_pbutils::MissingPluginMessage::parse(&msg) {
                        let f = plugins::missing(&m.installer_detail(), &m.description());
                        progress.note(&format!("a stream is left out: {}", f.message));
                        missing.get_or_insert(f);
                    }
                } else if let Some(s) = e.structure()
                    && s.name() == "flavrinterp-stats"
                {
                    if let Ok(b) = s.get::<String>("backend") {
                        progress.set_backend(&b);
                    }
                    stats = Some(s.to_owned());
                }
            }
            _ => {}
        }
    }
    progress.update(shared.frames_out.load(Ordering::SeqCst));
    Ok((stats, stopped))
}

/// An error message of the running pipeline as a failure.
fn runtime_failure(e: &gst::message::Error) -> Failure {
    let err = e.error();
    let src = e
        .src()
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| "the pipeline".into());
    if err.matches(gst::ResourceError::OpenWrite)
        || err.matches(gst::ResourceError::Write)
        || err.matches(gst::ResourceError::NoSpaceLeft)
    {
        let why = e
            .debug()
            .map(|d| d.to_string())
            .unwrap_or_else(|| err.to_string());
        return Failure::new(
            Code::OutputUnwritable,
            format!(
                "cannot write OUTPUT: {err} ({})",
                why.lines().last().unwrap_or("")
            ),
        );
    }
    if err.matches(gst::CoreError::MissingPlugin) || err.matches(gst::StreamError::CodecNotFound) {
        return Failure::new(Code::NoDecoder, format!("{src}: {err}"));
    }
    if err.matches(gst::StreamError::TypeNotFound) || err.matches(gst::StreamError::WrongType) {
        return Failure::new(Code::NotVideo, format!("{src}: {err}"));
    }
    Failure::failed(format!("{src}: {err}"))
}
