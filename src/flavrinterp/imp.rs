// SPDX-License-Identifier: MIT OR Apache-2.0
/**
 * SECTION:element-flavrinterp
 *
 * Raises the frame rate of raw video by 2, 4 or 8 with the FLAVR network: between every two
 * input frames it puts `factor - 1` new ones, made from a window of four input frames. Every
 * input frame is pushed unchanged (the same buffer memory), exactly once; nothing is dropped at
 * either end of the stream.
 *
 * ## Example launch line
 * ```text
 * gst-launch-1.0 videotestsrc pattern=ball num-buffers=60 ! \
 *     video/x-raw,format=RGB,width=320,height=240,framerate=30/1 ! \
 *     flavrinterp factor=2 model-location=FLAVR_2x.pth ! videoconvert ! autovideosink
 * ```
 */
use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;

use super::caps;
use super::cuda_mem;
use super::cuda_path::{self, CudaState};
use super::net::Net;
use super::props::Settings;
use super::qos::Gate;
use super::rate_caps;
use super::scene_cut::{self, SceneCut};
use super::stream::{self, Stream};
use crate::backend;
use crate::error::Error;
use crate::model::Flavr;
use crate::window::{FrameIn, Plan, Restart, Window};

#[path = "imp_bookkeeping.rs"]
mod bookkeeping;
#[path = "imp_cuda.rs"]
mod cuda;
#[path = "imp_output.rs"]
mod output;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "flavrinterp",
        gst::DebugColorFlags::empty(),
        Some("FLAVR frame interpolation"),
    )
});

struct State {
    net: Arc<Net>,
    backend_name: String,
    plan: Plan,
    /// Windows the streaming thread lets the network thread fall behind by.
    max_in_flight: usize,
    /// Frames of latency for the windows in flight: `max_in_flight`, plus one where the
    /// backend pipelines (a job's window may start while the window before it computes).
    latency_in_flight: u64,
    stream: Option<Stream>,
    /// Frames made and not yet handed to the base class, in order.
    queue: VecDeque<gst::Buffer>,
    /// The segment plays backwards: frames pass through.
    reverse: bool,
    frames_in: u64,
    /// Frames handed downstream (flushed ones are not counted).
    frames_out: u64,
    first_input: Option<Instant>,
}

/// What other threads read (queries), kept apart from the state that inference holds.
#[derive(Debug, Default, Clone, Copy)]
struct Shared {
    /// Input frames of latency: those the window waits for and the windows in flight.
    latency_frames: u64,
    max_held_inputs: u64,
    /// Input frame duration from the caps, or the last interval seen for variable rates.
    frame_duration: Option<u64>,
    caps_frame_duration: bool,
    last_pts: Option<u64>,
}

/// Warnings posted once.
#[derive(Default)]
struct Warned {
    /// The caps last refused (the pad checks a CAPS event several times).
    refused_caps: Option<String>,
    reverse: bool,
    /// Scene-cut detection was left out for CUDA memory, no GPU reducing it (said once).
    scene_cuda: bool,
}

#[derive(Default)]
pub struct FlavrInterp {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    /// The network thread, reachable without the state lock (FLUSH_START, stop).
    net: Mutex<Option<Arc<Net>>>,
    shared: Mutex<Shared>,
    warned: Mutex<Warned>,
    /// Between start() and stop(): properties that need a reload are refused.
    running: AtomicBool,
    /// Scene-cut detection of the negotiated stream (set in set_caps). Its own lock, never
    /// taken while holding `state`.
    scene: Mutex<Option<SceneCut>>,
    /// The `qos` property and its state (cheap frames for late windows).
    qos: Arc<Gate>,
    /// GStreamer's CUDA memory: the pipeline's context and whether the engine runs in it.
    cuda: Mutex<CudaState>,
}

fn load_model(settings: &Settings) -> Result<(Flavr, String), Error> {
    if settings.model_location.is_empty() {
        let m = Flavr::load_default().map_err(Error::LoadEmbedded)?;
        return Ok((m, "(embedded)".into()));
    }
    let path = &settings.model_location;
    let m = Flavr::load_path(Path::new(path)).map_err(|source| Error::Load {
        path: path.clone(),
        source,
    })?;
    Ok((m, path.clone()))
}

#[glib::object_subclass]
impl ObjectSubclass for FlavrInterp {
    const NAME: &'static str = "GstFlavrInterp";
    type Type = super::FlavrInterp;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for FlavrInterp {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> =
            LazyLock::new(|| [super::props::specs(), vec![super::qos::spec()]].concat());
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let running = self.running.load(Ordering::SeqCst);
        let name = pspec.name();
        if name == "qos" {
            // Can change at any time; the base class's own QoS stays off (it would drop).
            self.qos.set(value.get().expect("type checked upstream"));
            return;
        }
        if name == "scene-threshold" {
            // Can change while playing; out of 0..1 is refused and the old value kept.
            let v: f64 = value.get().expect("type checked upstream");
            let mut settings = self.settings.lock().unwrap();
            if !(0.0..=1.0).contains(&v) {
                let old = settings.scene_threshold;
                drop(settings);
                gst::element_imp_warning!(
                    self,
                    gst::LibraryError::Settings,
                    (
                        "scene-threshold {} is out of range: use 0 (off) to 1 (keeping {})",
                        v,
                        old
                    )
                );
                return;
            }
            settings.scene_threshold = v;
            gst::debug!(CAT, imp = self, "scene-threshold set to {v}");
            return;
        }
        let changed = self.settings.lock().unwrap().set(name, value, running);
        if running && changed {
            gst::warning!(CAT, imp = self, "refusing to change {name} while running");
            self.refuse(name);
        } else if changed {
            gst::debug!(CAT, imp = self, "{name} set");
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        if pspec.name() == "qos" {
            return self.qos.enabled().to_value();
        }
        self.settings.lock().unwrap().get(pspec.name())
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        // The base class's own QoS (which drops late input buffers) stays off: the element
        // overrides its `qos` property (see qos.rs) and makes cheap frames instead.
        obj.set_gap_aware(true);
        // Sees CAPS events before the pad refuses them, so a refusal comes with a reason.
        obj.sink_pad()
            .add_probe(gst::PadProbeType::EVENT_DOWNSTREAM, |pad, info| {
                if let Some(gst::PadProbeData::Event(ev)) = &info.data
                    && let gst::EventView::Caps(c) = ev.view()
                    && let Some(el) = pad
                        .parent()
                        .and_then(|p| p.downcast::<super::FlavrInterp>().ok())
                {
                    el.imp().check_pushed_caps(c.caps());
                }
                gst::PadProbeReturn::Ok
            });
    }
}

impl GstObjectImpl for FlavrInterp {}

impl ElementImpl for FlavrInterp {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static ELEMENT_METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "FLAVR frame interpolation",
                "Filter/Effect/Video",
                "Raises the frame rate by 2, 4 or 8 with the FLAVR network; input frames pass \
                 unchanged",
                "gst-flavr contributors",
            )
        });
        Some(&*ELEMENT_METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static PAD_TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = caps::template();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid template"),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .expect("valid template"),
            ]
        });
        PAD_TEMPLATES.as_ref()
    }

    fn set_context(&self, context: &gst::Context) {
        // During our own gst_cuda_ensure_element_context the lookup reads the context from
        // the slot it passed, not from our state: fill that slot first (see cuda_mem::ensure).
        cuda_mem::fill_ensuring(self.obj().upcast_ref(), context);
        self.take_cuda_context(context);
        self.parent_set_context(context)
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        if transition == gst::StateChange::PausedToReady
            && let Some(net) = self.net.lock().unwrap().as_ref()
        {
            // Before the pads are deactivated (which waits for the streaming thread): the
            // window being computed is abandoned and the streaming thread let go.
            net.flush_start();
        }
        self.parent_change_state(transition)
    }
}

impl BaseTransformImpl for FlavrInterp {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        if !matches!(settings.factor, 2 | 4 | 8) {
            return Err(gst::error_msg!(
                gst::LibraryError::Settings,
                ("factor {} is not supported: use 2, 4 or 8", settings.factor)
            ));
        }
        let target = rate_caps::target(settings.framerate)
            .map_err(|e| gst::error_msg!(gst::LibraryError::Settings, ("{}", e)))?;
        let (model, source) = load_model(&settings).map_err(|e| e.to_error_msg())?;
        let n = model.spec.n_out;
        if let Some(t) = target {
            // Any rate is made on the model's grid of eighths: the model must make factor 8.
            Window::with_rate(n, backend::SLOTS, None, t).map_err(|e| {
                gst::error_msg!(gst::LibraryError::Settings, ("model {}: {}", source, e))
            })?;
        }
        let plan = Plan::new(settings.factor, n).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("model {}: {}", source, e))
        })?;
        let shared = self.cuda_context(&settings);
        let opened = super::engines::open(self, &settings, Arc::new(model), shared)
            .map_err(|e| e.to_error_msg())?;
        self.cuda.lock().unwrap().active = opened.shared;
        if opened.shared {
            gst::info!(
                CAT,
                imp = self,
                "the engine runs in the pipeline's CUDA context"
            );
        }
        let backend_name = opened.name;
        // Per engine: N engines have N times the windows in flight (and the latency).
        let max_in_flight = settings.max_in_flight as usize * opened.engines;
        let latency_in_flight = max_in_flight as u64 + u64::from(opened.pipelined);
        gst::info!(
            CAT,
            imp = self,
            "model {source} ({n} output(s) per window), {plan}, backend {backend_name}, \
             {max_in_flight} window(s) in flight{}",
            if opened.pipelined {
                " (the backend pipelines: one more frame of latency)"
            } else {
                ""
            }
        );
        let net = Arc::new(opened.net);
        *self.shared.lock().unwrap() = Shared {
            latency_frames: plan.latency_frames() + latency_in_flight,
            // One more: the last original pushed, which cheap frames blend.
            max_held_inputs: plan.max_held_inputs() + 1,
            ..Shared::default()
        };
        *self.warned.lock().unwrap() = Warned::default();
        self.qos.reset();
        *self.net.lock().unwrap() = Some(net.clone());
        *self.state.lock().unwrap() = Some(State {
            net,
            backend_name,
            plan,
            max_in_flight,
            latency_in_flight,
            stream: None,
            queue: VecDeque::new(),
            reverse: false,
            frames_in: 0,
            frames_out: 0,
            first_input: None,
        });
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // The network thread is abandoned, not joined: it ends after its current layer.
        *self.state.lock().unwrap() = None;
        *self.net.lock().unwrap() = None;
        // Its GPU reducer holds the engine's CUDA context.
        *self.scene.lock().unwrap() = None;
        self.cuda.lock().unwrap().active = false;
        self.running.store(false, Ordering::SeqCst);
        gst::debug!(CAT, imp = self, "stopped");
        Ok(())
    }

    fn transform_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        filter: Option<&gst::Caps>,
    ) -> Option<gst::Caps> {
        let (factor, target) = rate_caps::settings(&self.settings.lock().unwrap());
        let up = direction == gst::PadDirection::Sink;
        let out = rate_caps::transform(caps, factor, target, up)?;
        let out = cuda_path::memory_variants(&out, self.offers_cuda_memory());
        gst::trace!(
            CAT,
            imp = self,
            "transformed {caps} to {out} ({direction:?})"
        );
        match filter {
            Some(f) => Some(f.intersect_with_mode(&out, gst::CapsIntersectMode::First)),
            None => Some(out),
        }
    }

    fn fixate_caps(
        &self,
        direction: gst::PadDirection,
        caps: &gst::Caps,
        othercaps: gst::Caps,
    ) -> gst::Caps {
        let factor = self.settings.lock().unwrap().factor;
        let up = direction == gst::PadDirection::Sink;
        // Prefer what the fixed side transforms to.
        let transformed = self.transform_caps(direction, caps, None);
        let other = caps::fixate(caps, othercaps, transformed.as_ref(), factor, up);
        gst::debug!(CAT, imp = self, "fixated to {other} ({direction:?})");
        other
    }

    fn set_caps(&self, incaps: &gst::Caps, outcaps: &gst::Caps) -> Result<(), gst::LoggableError> {
        let (factor, target) = rate_caps::settings(&self.settings.lock().unwrap());
        let rate = rate_caps::mode(incaps, outcaps, factor, target).map_err(|e| {
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{}", e));
            gst::loggable_error!(CAT, "{e}")
        })?;
        let cuda = self.cuda.lock().unwrap().active;
        if let Some(reason) = caps::caps_problem(incaps, factor, cuda)
            .or_else(|| cuda_path::cuda_caps_problem(outcaps, cuda))
        {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("Cannot take these caps: {}", reason)
            );
            return Err(gst::loggable_error!(CAT, "refused caps {incaps}: {reason}"));
        }
        let info = gst_video::VideoInfo::from_caps(incaps)
            .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {incaps}"))?;
        let layout = caps::layout_from_info(&info).map_err(|e| {
            let _ = self.fail(&e);
            gst::loggable_error!(CAT, "{e}")
        })?;
        // Same input: a renegotiation downstream; keep the window.
        let (pending, net) = {
            let guard = self.state.lock().unwrap();
            let Some(state) = guard.as_ref() else {
                return Err(gst::loggable_error!(CAT, "caps set before start"));
            };
            match &state.stream {
                Some(s) if s.incaps == *incaps && s.window.rate() == rate => return Ok(()),
                // Even with an empty window: windows in flight still read the old layout.
                Some(_) => (true, state.net.clone()),
                None => (false, state.net.clone()),
            }
        };
        // A new format mid-stream: the old window ends here, with the old caps.
        if pending && !self.drain_for_event("caps change", None) {
            return Err(gst::loggable_error!(
                CAT,
                "frames of the old caps were lost"
            ));
        }
        if let Err(e) = net.configure(&layout) {
            let e = Error::Backend(e);
            let _ = self.fail(&e);
            return Err(gst::loggable_error!(CAT, "{e}"));
        }
        // Box sums on the backend's GPU where it has them, else on the CPU.
        let sums = net
            .scene_sums()
            .inspect(|s| gst::debug!(CAT, imp = self, "scene-cut detection on {}", s.name()))
            .inspect_err(|e| gst::debug!(CAT, imp = self, "scene-cut detection: {e}"))
            .ok();
        *self.scene.lock().unwrap() = Some(SceneCut::new(&info, layout.format, sums));
        self.qos.new_stream();
        let fd = caps::frame_duration(info.fps());
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::loggable_error!(CAT, "caps set before start"));
        };
        let window = match rate_caps::window(&state.plan, fd, rate) {
            Ok(w) => w,
            Err(e) => {
                drop(guard);
                gst::element_imp_error!(self, gst::CoreError::Negotiation, ("{}", e));
                return Err(gst::loggable_error!(CAT, "{e}"));
            }
        };
        let latency_frames = window.plan().latency_frames() + state.latency_in_flight;
        let max_held_inputs = window.max_held_inputs();
        state.stream = Some(Stream {
            incaps: incaps.clone(),
            info,
            window,
            frame_duration: fd,
        });
        drop(guard);
        self.warned.lock().unwrap().refused_caps = None;
        gst::info!(CAT, imp = self, "in {incaps}, out {outcaps}");
        let changed = {
            let mut shared = self.shared.lock().unwrap();
            let old = shared.frame_duration;
            shared.frame_duration = fd;
            shared.caps_frame_duration = fd.is_some();
            shared.latency_frames = latency_frames;
            shared.max_held_inputs = max_held_inputs;
            shared.last_pts = None;
            old != fd
        };
        if changed {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
        Ok(())
    }

    fn query(&self, direction: gst::PadDirection, query: &mut gst::QueryRef) -> bool {
        if let gst::QueryViewMut::Context(_) = query.view_mut() {
            let ctx = self.cuda.lock().unwrap().ctx.clone();
            if let Some(ctx) = ctx
                && cuda_mem::answer_query(self.obj().upcast_ref(), query, &ctx)
            {
                return true;
            }
        }
        if direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Convert(q) = query.view_mut()
            && super::queries::convert_out(self.obj().src_pad().current_caps(), q)
        {
            return true;
        }
        let ret = BaseTransformImplExt::parent_query(self, direction, query);
        if ret
            && direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            let (live, min, max) = q.result();
            self.qos.set_live(live);
            let add = self.added_latency();
            gst::debug!(
                CAT,
                imp = self,
                "latency: upstream {min} - {max:?}, window adds {add}"
            );
            q.set(live, min + add, max.map(|m| m + add));
        }
        ret
    }

    fn src_event(&self, event: gst::Event) -> bool {
        self.qos.observe(&event);
        self.parent_src_event(event)
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        let drained = match event.view() {
            gst::EventView::FlushStart(_) => {
                // Not serialized: the streaming thread may be waiting for a window.
                if let Some(net) = self.net.lock().unwrap().as_ref() {
                    net.flush_start();
                }
                true
            }
            gst::EventView::FlushStop(_) => {
                self.flush_stop();
                true
            }
            gst::EventView::Eos(_) => {
                let ok = self.drain_for_event("EOS", None);
                self.post_stats();
                ok
            }
            gst::EventView::Gap(g) => self.drain_for_event("gap", Some(g.get().0.nseconds())),
            gst::EventView::SegmentDone(_) => self.drain_for_event("segment done", None),
            gst::EventView::Segment(s) => {
                let ok = self.drain_for_event("new segment", None);
                self.segment(s.segment());
                ok
            }
            _ => true,
        };
        let forwarded = self.parent_sink_event(event);
        drained && forwarded
    }

    fn decide_allocation(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.parent_decide_allocation(query)?;
        let dev = self.device_io(query)?;
        if let Some(net) = self.net.lock().unwrap().as_ref() {
            net.set_device_io(dev);
        }
        Ok(())
    }

    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.parent_propose_allocation(decide_query, query)?;
        // Upstream's pool must cover the input frames the window holds.
        let held = self.shared.lock().unwrap().max_held_inputs as u32;
        super::queries::ask_for_held(query, held);
        gst::debug!(CAT, imp = self, "asked upstream for {held} more buffers");
        Ok(())
    }

    fn submit_input_buffer(
        &self,
        is_discont: bool,
        inbuf: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        // The parent renegotiates if needed and stashes the buffer (QoS is off: it never drops).
        self.parent_submit_input_buffer(is_discont, inbuf)?;
        let Some(buf) = self.take_queued_buffer() else {
            return Ok(gst::FlowSuccess::Ok);
        };
        // The base class keeps `is_discont` set until it has pushed something, so the buffer's
        // own flag is what says where a run ends.
        let flags = buf.flags();
        let gap = flags.contains(gst::BufferFlags::GAP);
        let mut frame = FrameIn {
            pts: buf.pts().map(gst::ClockTime::nseconds),
            // A zero duration says nothing: the caps frame duration applies.
            duration: buf
                .duration()
                .map(gst::ClockTime::nseconds)
                .filter(|d| *d > 0),
            discont: flags.contains(gst::BufferFlags::DISCONT),
            cut: false,
        };
        // Before the state's lock (the CUDA state's lock is never taken under it).
        let in_cuda = self.in_cuda_memory(&buf);
        // Scene cuts: this frame against the previous one, before the window sees it.
        let measure = {
            let mut threshold = self.settings.lock().unwrap().scene_threshold;
            let mut scene = self.scene.lock().unwrap();
            if threshold > 0.0 && in_cuda && !scene.as_ref().is_some_and(SceneCut::reads_device) {
                // Without the GPU, measuring would copy every frame to the host: not done.
                if !std::mem::replace(&mut self.warned.lock().unwrap().scene_cuda, true) {
                    gst::info!(
                        CAT,
                        imp = self,
                        "scene-cut detection is off for input in CUDA memory (no GPU reduction)"
                    );
                }
                threshold = 0.0;
            }
            let restart = flags.intersects(gst::BufferFlags::DISCONT | gst::BufferFlags::GAP);
            match scene.as_mut() {
                Some(scene) => scene.measure(&buf, threshold, restart, in_cuda),
                None => Ok(None),
            }
        };
        let measure = measure.map_err(|e| self.fail(&e))?;
        frame.cut = measure.is_some_and(|m| m.cut);
        self.note_pts(frame.pts);
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        state.first_input.get_or_insert_with(Instant::now);
        let Some(stream) = state.stream.as_mut() else {
            drop(guard);
            gst::element_imp_error!(self, gst::CoreError::Negotiation, ("Buffer before caps"));
            return Err(gst::FlowError::NotNegotiated);
        };
        // CUDA memory is checked against its own pitched layout where it is read (mapping it
        // here would copy it to the host).
        if !gap
            && !in_cuda
            && let Err(e) = stream::check_size(&stream.info, &buf)
        {
            drop(guard);
            return Err(self.fail(&e));
        }
        if state.reverse {
            // Backwards: no interpolation; each frame lasts its whole interval.
            let mut buf = buf;
            if frame.duration.is_none()
                && let Some(d) = stream.frame_duration
            {
                buf.make_mut()
                    .set_duration(gst::ClockTime::from_nseconds(d));
            }
            state.frames_in += 1;
            state.queue.push_back(buf);
            return Ok(gst::FlowSuccess::Ok);
        }
        let pushed = if gap {
            stream.window.push_gap(frame)
        } else {
            stream.window.push(frame)
        };
        let pushed = match pushed {
            Ok(p) => p,
            Err(e) => {
                drop(guard);
                return Err(self.fail(&e.into()));
            }
        };
        match pushed.restart {
            Some(Restart::Backwards) => gst::warning!(
                CAT,
                imp = self,
                "timestamp {:?} does not move forward: not interpolating across it",
                buf.pts()
            ),
            Some(r) => gst::debug!(CAT, imp = self, "new run ({r:?})"),
            None => {}
        }
        if let Some(pts) = pushed.derived_pts {
            gst::debug!(CAT, imp = self, "buffer without timestamp gets {pts} ns");
        }
        let info = stream.info.clone();
        let ticks = stream.window.plan().factor();
        let frame_number = state.frames_in;
        state.frames_in += 1;
        let (net, max) = (state.net.clone(), state.max_in_flight);
        drop(guard);
        let pts = buf.pts();
        let qos = self.job_qos(ticks, &pushed.steps);
        net.submit(&info, vec![(pushed.key, buf)], pushed.steps, Some(qos));
        if let Some(m) = measure.filter(|_| pushed.cut) {
            gst::info!(
                CAT,
                imp = self,
                "scene cut before {pts:?} (frame {frame_number}): score {:.3}",
                m.score
            );
            let msg = scene_cut::message(&*self.obj(), pts, frame_number, &m);
            let _ = self.obj().post_message(msg);
        }
        self.collect(&net, max)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let buf = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Err(gst::FlowError::Flushing);
            };
            state.queue.pop_front()
        };
        match buf {
            Some(buf) => Ok(GenerateOutputSuccess::Buffer(self.stamp(buf))),
            None => Ok(GenerateOutputSuccess::NoOutput),
        }
    }
}
