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
use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;
use gst_base::subclass::base_transform::GenerateOutputSuccess;
use gst_base::subclass::prelude::*;

use super::caps;
use super::scene_cut::{self, SceneCut};
use super::{BackendKind, PrecisionKind};
use crate::backend::cpu::CpuBackend;
use crate::backend::{self, Backend};
use crate::error::Error;
use crate::model::Flavr;
use crate::window::{FrameIn, Key, Plan, Restart, Step, Window};

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "flavrinterp",
        gst::DebugColorFlags::empty(),
        Some("FLAVR frame interpolation"),
    )
});

const DEFAULT_FACTOR: u32 = 2;
const DEFAULT_MODEL_LOCATION: &str = "";
const DEFAULT_BACKEND: BackendKind = BackendKind::Auto;
const DEFAULT_DEVICE_ID: u32 = 0;
const DEFAULT_PRECISION: PrecisionKind = PrecisionKind::Fp16;
const DEFAULT_SCENE_THRESHOLD: f64 = crate::scene::DEFAULT_THRESHOLD;

#[derive(Debug, Clone)]
struct Settings {
    factor: u32,
    model_location: String,
    backend: BackendKind,
    device_id: u32,
    precision: PrecisionKind,
    scene_threshold: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            factor: DEFAULT_FACTOR,
            model_location: DEFAULT_MODEL_LOCATION.into(),
            backend: DEFAULT_BACKEND,
            device_id: DEFAULT_DEVICE_ID,
            precision: DEFAULT_PRECISION,
            scene_threshold: DEFAULT_SCENE_THRESHOLD,
        }
    }
}

/// One negotiated stream: the input format and the frames in flight.
struct Stream {
    incaps: gst::Caps,
    info: gst_video::VideoInfo,
    window: Window,
    /// Frames the window refers to: input buffers and new frames.
    frames: HashMap<Key, gst::Buffer>,
    /// Frames ready to go downstream, in order.
    queue: VecDeque<gst::Buffer>,
    /// Where model outputs that the plan does not keep are written.
    scratch: Vec<u8>,
}

struct State {
    backend: Box<dyn Backend>,
    backend_name: String,
    plan: Plan,
    stream: Option<Stream>,
    frames_in: u64,
    frames_out: u64,
    /// Time spent converting and interpolating.
    busy: Duration,
    first_input: Option<Instant>,
}

/// What other threads read (queries), kept apart from the state that inference holds.
#[derive(Debug, Default, Clone, Copy)]
struct Shared {
    latency_frames: u64,
    max_held_inputs: u64,
    /// Input frame duration from the caps, or the last interval seen for variable rates.
    frame_duration: Option<u64>,
    caps_frame_duration: bool,
    last_pts: Option<u64>,
}

#[derive(Default)]
pub struct FlavrInterp {
    settings: Mutex<Settings>,
    state: Mutex<Option<State>>,
    shared: Mutex<Shared>,
    /// Between start() and stop(): properties that need a reload are refused.
    running: AtomicBool,
    /// Scene-cut detection of the negotiated stream (set in set_caps).
    scene: Mutex<Option<SceneCut>>,
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

/// Hands an input frame's bytes to the backend, copied to the caps layout first when the
/// buffer carries a VideoMeta with other strides or offsets.
fn load_frame(
    backend: &mut dyn Backend,
    info: &gst_video::VideoInfo,
    buf: &gst::Buffer,
    slot: usize,
) -> Result<(), Error> {
    let other_layout = buf
        .meta::<gst_video::VideoMeta>()
        .is_some_and(|m| m.offset() != info.offset() || m.stride() != info.stride());
    if other_layout {
        let src = gst_video::VideoFrameRef::from_buffer_ref_readable(buf.as_ref(), info)
            .map_err(|e| Error::Buffer(format!("cannot map input frame: {e}")))?;
        let mut out = gst::Buffer::with_size(info.size())
            .map_err(|e| Error::Buffer(format!("cannot allocate a frame: {e}")))?;
        {
            let out = out
                .get_mut()
                .ok_or_else(|| Error::Buffer("new buffer is shared".into()))?;
            let mut dst = gst_video::VideoFrameRef::from_buffer_ref_writable(out, info)
                .map_err(|e| Error::Buffer(format!("cannot map a frame for writing: {e}")))?;
            src.copy(&mut dst)
                .map_err(|e| Error::Buffer(format!("cannot copy input frame: {e}")))?;
        }
        let map = out
            .map_readable()
            .map_err(|e| Error::Buffer(format!("cannot map frame: {e}")))?;
        backend.load_frame(slot, &map)?;
        return Ok(());
    }
    let map = buf
        .map_readable()
        .map_err(|e| Error::Buffer(format!("cannot map input buffer: {e}")))?;
    if map.len() < info.size() {
        return Err(Error::Buffer(format!(
            "input buffer of {} bytes is smaller than a {}x{} {} frame ({} bytes)",
            map.len(),
            info.width(),
            info.height(),
            info.format().to_str(),
            info.size()
        )));
    }
    backend.load_frame(slot, &map)?;
    Ok(())
}

impl State {
    /// Carries out the window's steps; pushed frames land in the stream's queue.
    fn run_steps(&mut self, steps: Vec<Step>) -> Result<(), Error> {
        let t0 = Instant::now();
        let result = self.run_steps_inner(steps);
        self.busy += t0.elapsed();
        result
    }

    fn run_steps_inner(&mut self, steps: Vec<Step>) -> Result<(), Error> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(Error::Buffer("no stream configured".into()));
        };
        let backend = self.backend.as_mut();
        let missing = |key: &Key| {
            Error::Window(crate::window::WindowError::Internal(format!(
                "frame {key:?} is not held"
            )))
        };
        for step in steps {
            match step {
                Step::Load { key, slot } => {
                    let buf = stream.frames.get(&key).ok_or_else(|| missing(&key))?;
                    load_frame(backend, &stream.info, buf, slot)?;
                }
                Step::Run { window, outputs } => {
                    let size = stream.info.size();
                    let n = backend.n_outputs();
                    let mut mapped: Vec<Option<gst::MappedBuffer<gst::buffer::Writable>>> =
                        (0..n).map(|_| None).collect();
                    for &(idx, _) in &outputs {
                        let slot = mapped.get_mut(idx).ok_or_else(|| {
                            Error::Buffer(format!("model output {idx} of {n} requested"))
                        })?;
                        // Zeroed, so row padding the backend does not write is not garbage.
                        let buf = gst::Buffer::from_mut_slice(vec![0u8; size]);
                        *slot = Some(buf.into_mapped_buffer_writable().map_err(|_| {
                            Error::Buffer("cannot map a new frame for writing".into())
                        })?);
                    }
                    let unused = mapped.iter().filter(|m| m.is_none()).count();
                    stream.scratch.resize(unused * size, 0);
                    {
                        let mut chunks = stream.scratch.chunks_mut(size.max(1));
                        let mut slices: Vec<&mut [u8]> = Vec::with_capacity(n);
                        for m in mapped.iter_mut() {
                            match m {
                                Some(m) => slices.push(m.as_mut_slice()),
                                None => slices.push(chunks.next().ok_or_else(|| {
                                    Error::Buffer("scratch space too small".into())
                                })?),
                            }
                        }
                        backend.interpolate(window, &mut slices)?;
                    }
                    for (idx, key) in outputs {
                        if let Some(m) = mapped.get_mut(idx).and_then(Option::take) {
                            stream.frames.insert(key, m.into_buffer());
                        }
                    }
                }
                Step::Emit {
                    key,
                    pts,
                    duration,
                    original: _,
                } => {
                    let mut buf = stream
                        .frames
                        .get(&key)
                        .cloned()
                        .ok_or_else(|| missing(&key))?;
                    {
                        // The buffer is shared (the window holds it too), so this copies the
                        // buffer's metadata, never its memory.
                        let b = buf.make_mut();
                        b.set_pts(gst::ClockTime::from_nseconds(pts));
                        b.set_duration(duration.map(gst::ClockTime::from_nseconds));
                        b.set_offset(self.frames_out);
                        b.set_offset_end(self.frames_out + 1);
                    }
                    self.frames_out += 1;
                    stream.queue.push_back(buf);
                }
                Step::EmitCopy {
                    key: _,
                    source,
                    pts,
                    duration,
                } => {
                    let mut buf = stream
                        .frames
                        .get(&source)
                        .ok_or_else(|| missing(&source))?
                        .copy();
                    {
                        let b = buf.make_mut();
                        b.set_pts(gst::ClockTime::from_nseconds(pts));
                        b.set_duration(duration.map(gst::ClockTime::from_nseconds));
                        b.set_offset(self.frames_out);
                        b.set_offset_end(self.frames_out + 1);
                        b.unset_flags(gst::BufferFlags::DISCONT | gst::BufferFlags::RESYNC);
                    }
                    self.frames_out += 1;
                    stream.queue.push_back(buf);
                }
                Step::Release { key } => {
                    stream.frames.remove(&key);
                }
            }
        }
        Ok(())
    }
}

impl FlavrInterp {
    fn open_backend(
        &self,
        settings: &Settings,
        model: Arc<Flavr>,
    ) -> Result<Box<dyn Backend>, Error> {
        let cpu = |model: Arc<Flavr>| -> Result<Box<dyn Backend>, Error> {
            Ok(Box::new(CpuBackend::new(model).map_err(Error::Cpu)?))
        };
        let cuda = |model: Arc<Flavr>| {
            crate::cuda::EngineOptions::from_env()
                .map_err(Into::into)
                .and_then(|opts| {
                    crate::cuda::open(model, settings.device_id, settings.precision.into(), opts)
                })
                .map_err(|source| Error::Cuda {
                    device: settings.device_id,
                    source,
                })
        };
        match settings.backend {
            BackendKind::Cpu => cpu(model),
            BackendKind::Cuda => cuda(model),
            BackendKind::Auto => match cuda(model.clone()) {
                Ok(b) => Ok(b),
                Err(e) => {
                    gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Init,
                        ("{}; using the CPU backend", e)
                    );
                    cpu(model)
                }
            },
        }
    }

    /// Posts an error for an element error and returns the flow error to give back.
    fn fail(&self, e: &Error) -> gst::FlowError {
        gst::error!(CAT, imp = self, "{e}");
        self.obj().post_error_message(e.to_error_msg());
        gst::FlowError::Error
    }

    /// Ends the current run: makes every frame still missing and pushes everything queued.
    fn drain(&self, why: &str) -> Result<gst::FlowSuccess, gst::FlowError> {
        let drained: Result<Vec<gst::Buffer>, Error> = {
            let mut guard = self.state.lock().unwrap();
            let Some(state) = guard.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let Some(stream) = state.stream.as_mut() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            if !stream.window.is_empty() {
                gst::debug!(CAT, imp = self, "draining ({why})");
            }
            stream
                .window
                .drain()
                .map_err(Error::from)
                .and_then(|steps| state.run_steps(steps))
                .map(|()| match state.stream.as_mut() {
                    Some(s) => s.queue.drain(..).collect(),
                    None => Vec::new(),
                })
        };
        // Errors are posted and buffers pushed without the state lock held.
        let buffers = drained.map_err(|e| self.fail(&e))?;
        let srcpad = self.obj().src_pad().clone();
        for buf in buffers {
            if let Err(e) = srcpad.push(buf) {
                gst::debug!(CAT, imp = self, "push while draining ({why}): {e:?}");
                return Err(e);
            }
        }
        Ok(gst::FlowSuccess::Ok)
    }

    fn flush(&self) {
        let mut guard = self.state.lock().unwrap();
        if let Some(stream) = guard.as_mut().and_then(|s| s.stream.as_mut()) {
            stream.window.flush();
            stream.frames.clear();
            stream.queue.clear();
        }
        if let Some(scene) = self.scene.lock().unwrap().as_mut() {
            scene.reset();
        }
        self.shared.lock().unwrap().last_pts = None;
    }

    fn post_stats(&self) {
        let msg = {
            let guard = self.state.lock().unwrap();
            let Some(state) = guard.as_ref() else {
                return;
            };
            let secs = state.busy.as_secs_f64();
            let fps = if secs > 0.0 {
                state.frames_out as f64 / secs
            } else {
                0.0
            };
            let wall = state
                .first_input
                .map(|t| t.elapsed().as_secs_f64())
                .unwrap_or(0.0);
            let summary = format!(
                "flavrinterp: {} frames in, {} out, backend {}, {:.2} fps out ({:.2} s computing, \
                 {:.2} s since the first frame)",
                state.frames_in, state.frames_out, state.backend_name, fps, secs, wall
            );
            gst::info!(CAT, imp = self, "{summary}");
            let s = gst::Structure::builder("flavrinterp-stats")
                .field("frames-in", state.frames_in)
                .field("frames-out", state.frames_out)
                .field("backend", state.backend_name.as_str())
                .field("factor", state.plan.factor() as u32)
                .field("compute-seconds", secs)
                .field("fps", fps)
                .field("summary", summary.as_str())
                .build();
            gst::message::Element::builder(s).src(&*self.obj()).build()
        };
        let _ = self.obj().post_message(msg);
    }

    /// Latency the window adds: the input frames it waits for.
    fn added_latency(&self) -> gst::ClockTime {
        let shared = *self.shared.lock().unwrap();
        let ns = shared
            .frame_duration
            .unwrap_or(0)
            .saturating_mul(shared.latency_frames);
        gst::ClockTime::from_nseconds(ns)
    }

    /// Called for every CAPS event before the pad checks it: a reason in words when the caps
    /// will be refused. A warning, not an error: upstream may still renegotiate; if it does not,
    /// its not-negotiated error follows this message.
    fn check_pushed_caps(&self, caps: &gst::CapsRef) {
        let factor = self.settings.lock().unwrap().factor;
        if let Some(reason) = caps::caps_problem(caps, factor) {
            gst::warning!(CAT, imp = self, "refusing {caps}: {reason}");
            gst::element_imp_warning!(
                self,
                gst::CoreError::Negotiation,
                ("Cannot take these caps: {}", reason),
                ["caps: {}", caps]
            );
        }
    }

    fn refuse(&self, what: &str) {
        gst::element_imp_warning!(
            self,
            gst::CoreError::StateChange,
            (
                "Not changing {} while the element is running: set it in the NULL or READY state",
                what
            )
        );
    }
}

#[glib::object_subclass]
impl ObjectSubclass for FlavrInterp {
    const NAME: &'static str = "GstFlavrInterp";
    type Type = super::FlavrInterp;
    type ParentType = gst_base::BaseTransform;
}

impl ObjectImpl for FlavrInterp {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecUInt::builder("factor")
                    .nick("Factor")
                    .blurb(
                        "Frame-rate multiplier: 2, 4 or 8 (factor - 1 new frames between every \
                         two input frames). Cannot change while running.",
                    )
                    .minimum(2)
                    .maximum(8)
                    .default_value(Settings::default().factor)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecString::builder("model-location")
                    .nick("Model location")
                    .blurb(
                        "FLAVR checkpoint: a released FLAVR_2x/4x/8x.pth (PyTorch zip or legacy) \
                         or a .safetensors file. Empty: the model built into the plugin (our own 2x model). \
                         Cannot change while running.",
                    )
                    .default_value(Some(DEFAULT_MODEL_LOCATION))
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default("backend", Settings::default().backend)
                    .nick("Backend")
                    .blurb("Inference backend. Cannot change while running.")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("device-id")
                    .nick("Device ID")
                    .blurb("CUDA device to run on (backend=cuda or auto)")
                    .default_value(Settings::default().device_id)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder_with_default(
                    "precision",
                    Settings::default().precision,
                )
                .nick("Precision")
                .blurb("Arithmetic of the CUDA backend (the CPU backend always uses fp32)")
                .mutable_ready()
                .build(),
                glib::ParamSpecDouble::builder("scene-threshold")
                    .nick("Scene-cut threshold")
                    .blurb(
                        "Score (0 to 1) from which two input frames belong to different shots: \
                         nothing is interpolated across a cut, the new frames there are copies \
                         of the nearer original, and a flavrinterp-scene-cut message is posted. \
                         Lower finds more cuts; 0 turns detection off.",
                    )
                    .minimum(f64::MIN)
                    .maximum(f64::MAX)
                    .default_value(DEFAULT_SCENE_THRESHOLD)
                    .mutable_playing()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let running = self.running.load(Ordering::SeqCst);
        let mut settings = self.settings.lock().unwrap();
        let name = pspec.name();
        let changed = match name {
            "factor" => {
                let v: u32 = value.get().expect("type checked upstream");
                if !matches!(v, 2 | 4 | 8) {
                    drop(settings);
                    gst::element_imp_warning!(
                        self,
                        gst::LibraryError::Settings,
                        (
                            "factor {} is not supported: use 2, 4 or 8 (keeping the old value)",
                            v
                        )
                    );
                    return;
                }
                let changed = v != settings.factor;
                if !running {
                    settings.factor = v;
                }
                changed
            }
            "model-location" => {
                let v: Option<String> = value.get().expect("type checked upstream");
                let v = v.unwrap_or_default();
                let changed = v != settings.model_location;
                if !running {
                    settings.model_location = v;
                }
                changed
            }
            "backend" => {
                let v: BackendKind = value.get().expect("type checked upstream");
                let changed = v != settings.backend;
                if !running {
                    settings.backend = v;
                }
                changed
            }
            "device-id" => {
                let v: u32 = value.get().expect("type checked upstream");
                let changed = v != settings.device_id;
                if !running {
                    settings.device_id = v;
                }
                changed
            }
            "precision" => {
                let v: PrecisionKind = value.get().expect("type checked upstream");
                let changed = v != settings.precision;
                if !running {
                    settings.precision = v;
                }
                changed
            }
            "scene-threshold" => {
                let v: f64 = value.get().expect("type checked upstream");
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
            _ => unimplemented!(),
        };
        drop(settings);
        if running && changed {
            gst::warning!(CAT, imp = self, "refusing to change {name} while running");
            self.refuse(name);
        } else if changed {
            gst::debug!(CAT, imp = self, "{name} set");
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = self.settings.lock().unwrap();
        match pspec.name() {
            "factor" => settings.factor.to_value(),
            "model-location" => settings.model_location.to_value(),
            "backend" => settings.backend.to_value(),
            "device-id" => settings.device_id.to_value(),
            "precision" => settings.precision.to_value(),
            "scene-threshold" => settings.scene_threshold.to_value(),
            _ => unimplemented!(),
        }
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        // Every frame is needed (dropping an original would break the stream's promise).
        obj.set_qos(false);
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
}

impl BaseTransformImpl for FlavrInterp {
    const MODE: gst_base::subclass::BaseTransformMode =
        gst_base::subclass::BaseTransformMode::NeverInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = self.settings.lock().unwrap().clone();
        let (model, source) = load_model(&settings).map_err(|e| e.to_error_msg())?;
        let n = model.spec.n_out;
        let plan = Plan::new(settings.factor, n).map_err(|e| {
            gst::error_msg!(gst::LibraryError::Settings, ("model {}: {}", source, e))
        })?;
        let backend = self
            .open_backend(&settings, Arc::new(model))
            .map_err(|e| e.to_error_msg())?;
        if backend.n_outputs() != n {
            return Err(Error::Outputs {
                backend: backend.n_outputs(),
                model: n,
            }
            .to_error_msg());
        }
        let backend_name = backend.name();
        gst::info!(
            CAT,
            imp = self,
            "model {source} ({n} output(s) per window), {plan}, backend {backend_name}"
        );
        *self.shared.lock().unwrap() = Shared {
            latency_frames: plan.latency_frames(),
            max_held_inputs: plan.max_held_inputs(),
            ..Shared::default()
        };
        *self.state.lock().unwrap() = Some(State {
            backend,
            backend_name,
            plan,
            stream: None,
            frames_in: 0,
            frames_out: 0,
            busy: Duration::ZERO,
            first_input: None,
        });
        self.running.store(true, Ordering::SeqCst);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        *self.state.lock().unwrap() = None;
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
        let factor = self.settings.lock().unwrap().factor;
        let up = direction == gst::PadDirection::Sink;
        let out = caps::transform(caps, factor, up)?;
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
        let factor = self.settings.lock().unwrap().factor;
        if let Some(reason) = caps::caps_problem(incaps, factor) {
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
        let pending = {
            let guard = self.state.lock().unwrap();
            let Some(state) = guard.as_ref() else {
                return Err(gst::loggable_error!(CAT, "caps set before start"));
            };
            match &state.stream {
                Some(s) if s.incaps == *incaps => return Ok(()),
                Some(s) => !s.window.is_empty(),
                None => false,
            }
        };
        if pending {
            // A new format mid-stream: the old window ends here, with the old caps.
            let _ = self.drain("caps change");
        }
        *self.scene.lock().unwrap() = Some(SceneCut::new(&info, layout.format));
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::loggable_error!(CAT, "caps set before start"));
        };
        if let Err(e) = state.backend.configure(&layout) {
            let e = Error::Backend(e);
            drop(guard);
            let _ = self.fail(&e);
            return Err(gst::loggable_error!(CAT, "{e}"));
        }
        let fd = caps::frame_duration(info.fps());
        let window = Window::new(state.plan.clone(), backend::SLOTS, fd);
        state.stream = Some(Stream {
            incaps: incaps.clone(),
            info,
            window,
            frames: HashMap::new(),
            queue: VecDeque::new(),
            scratch: Vec::new(),
        });
        let latency_frames = state.plan.latency_frames();
        drop(guard);
        gst::info!(CAT, imp = self, "in {incaps}, out {outcaps}");
        let changed = {
            let mut shared = self.shared.lock().unwrap();
            let old = shared.frame_duration;
            shared.frame_duration = fd;
            shared.caps_frame_duration = fd.is_some();
            shared.latency_frames = latency_frames;
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
        let ret = BaseTransformImplExt::parent_query(self, direction, query);
        if ret
            && direction == gst::PadDirection::Src
            && let gst::QueryViewMut::Latency(q) = query.view_mut()
        {
            let (live, min, max) = q.result();
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

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => self.flush(),
            gst::EventView::Eos(_) => {
                let _ = self.drain("EOS");
                self.post_stats();
            }
            gst::EventView::Gap(_) => {
                let _ = self.drain("gap");
            }
            gst::EventView::Segment(_) => {
                let _ = self.drain("new segment");
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn propose_allocation(
        &self,
        decide_query: Option<&gst::query::Allocation>,
        query: &mut gst::query::Allocation,
    ) -> Result<(), gst::LoggableError> {
        self.parent_propose_allocation(decide_query, query)?;
        // Upstream's pool must cover the input frames the window holds.
        let held = self.shared.lock().unwrap().max_held_inputs as u32;
        let (caps, _) = query.get_owned();
        let Some(info) = caps.and_then(|c| gst_video::VideoInfo::from_caps(&c).ok()) else {
            return Ok(());
        };
        let pools: Vec<_> = query.allocation_pools().collect();
        if pools.is_empty() {
            query.add_allocation_pool(None::<&gst::BufferPool>, info.size() as u32, held, 0);
        } else {
            for (i, (pool, size, min, max)) in pools.into_iter().enumerate() {
                let min = min + held;
                let max = if max != 0 && max < min { min } else { max };
                query.set_nth_allocation_pool(i as u32, pool.as_ref(), size, min, max);
            }
        }
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
        let mut frame = FrameIn {
            pts: buf.pts().map(gst::ClockTime::nseconds),
            duration: buf.duration().map(gst::ClockTime::nseconds),
            discont: flags.contains(gst::BufferFlags::DISCONT),
            cut: false,
        };
        // Scene cuts: this frame against the previous one, before the window sees it.
        let measure = {
            let threshold = self.settings.lock().unwrap().scene_threshold;
            let restart = flags.intersects(gst::BufferFlags::DISCONT | gst::BufferFlags::GAP);
            match self.scene.lock().unwrap().as_mut() {
                Some(scene) => scene.measure(&buf, threshold, restart),
                None => Ok(None),
            }
        };
        let measure = measure.map_err(|e| self.fail(&e))?;
        frame.cut = measure.is_some_and(|m| m.cut);
        if let Some(pts) = frame.pts {
            let mut shared = self.shared.lock().unwrap();
            if !shared.caps_frame_duration
                && let Some(last) = shared.last_pts
                && pts > last
            {
                shared.frame_duration = Some(pts - last);
            }
            shared.last_pts = Some(pts);
        }
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
        let pushed = if flags.contains(gst::BufferFlags::GAP) {
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
        let pts = buf.pts();
        stream.frames.insert(pushed.key, buf);
        let frame_number = state.frames_in;
        state.frames_in += 1;
        if let Err(e) = state.run_steps(pushed.steps) {
            drop(guard);
            return Err(self.fail(&e));
        }
        drop(guard);
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
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut() else {
            return Err(gst::FlowError::Flushing);
        };
        match state.stream.as_mut().and_then(|s| s.queue.pop_front()) {
            Some(buf) => Ok(GenerateOutputSuccess::Buffer(buf)),
            None => Ok(GenerateOutputSuccess::NoOutput),
        }
    }
}
