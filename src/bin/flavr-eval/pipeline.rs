// SPDX-License-Identifier: MIT OR Apache-2.0
//! Running a GStreamer pipeline to its end, with the bus's errors as the run's error.

use gst::prelude::*;

/// What the bus said while a pipeline ran.
#[derive(Default)]
pub(crate) struct BusLog {
    pub(crate) stats: Option<gst::Structure>,
}

impl BusLog {
    /// Takes the pending bus messages: an error ends the run with its text; warnings are
    /// printed; the element's statistics are kept.
    pub(crate) fn drain(&mut self, pipeline: &gst::Pipeline) -> Result<(), String> {
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
pub(crate) fn start(pipeline: &gst::Pipeline, log: &mut BusLog) -> Result<(), String> {
    if pipeline.set_state(gst::State::Playing).is_ok() {
        return Ok(());
    }
    let why = log.drain(pipeline).err();
    let _ = pipeline.set_state(gst::State::Null);
    Err(why.unwrap_or_else(|| "the pipeline does not start (no error message)".into()))
}

/// Hands every sample of appsink `sink` to `each` until EOS, then stops `pipeline` (also on an
/// error, which unblocks an appsrc feeder).
pub(crate) fn pull_to_eos(
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
pub(crate) fn run_to_eos(
    pipeline: &gst::Pipeline,
    sink: &gst::Element,
    log: &mut BusLog,
    each: impl FnMut(gst::Sample) -> Result<(), String>,
) -> Result<(), String> {
    start(pipeline, log)?;
    pull_to_eos(pipeline, sink, log, each)
}

/// An `appsink` that hands samples over as they come (no clock sync).
pub(crate) fn appsink() -> Result<gst::Element, String> {
    let sink = make("appsink")?;
    sink.set_property("sync", false);
    Ok(sink)
}

/// A pipeline of `elements`, linked in this order.
pub(crate) fn chain(elements: &[&gst::Element]) -> Result<gst::Pipeline, String> {
    let pipeline = gst::Pipeline::new();
    pipeline
        .add_many(elements.iter().copied())
        .map_err(|e| e.to_string())?;
    gst::Element::link_many(elements.iter().copied()).map_err(|e| e.to_string())?;
    Ok(pipeline)
}

pub(crate) fn make(factory: &str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element `{factory}` is not installed"))
}
