// SPDX-License-Identifier: MIT OR Apache-2.0
//! Opening what the element computes on: one backend (`devices` empty, as before), or one
//! engine per entry of `devices` behind the dispatcher ([`crate::dispatch`]), each with its own
//! backend instance (weights, and for CUDA its own context and stream), with the per-engine
//! fault switch `FLAVR_FAULT_ENGINE`.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use gst::subclass::prelude::*;

use super::BackendKind;
use super::imp::{CAT, FlavrInterp};
use super::net::Net;
use super::props::Settings;
use super::stream;
use crate::backend::cpu::CpuBackend;
use crate::backend::{Backend, BackendError, FrameLayout, SLOTS, SharedContext};
use crate::dispatch::{self, Devices, EngineDown, EngineFault};
use crate::error::Error;
use crate::model::Flavr;
use crate::window::Key;

/// The per-engine fault switch: `INDEX:start` or `INDEX:after:N`, comma-separated.
pub(super) const FAULT_ENV: &str = "FLAVR_FAULT_ENGINE";

/// What [`open`] started.
pub(super) struct Opened {
    pub net: Net,
    /// The backend's name, or the engines' ("cpu (2 threads) x3").
    pub name: String,
    pub engines: usize,
    /// The one backend pipelines windows ([`Backend::depth`] above 1).
    pub pipelined: bool,
    /// The engine runs in the pipeline's CUDA context (the `shared` given to [`open`]).
    pub shared: bool,
}

/// Opens the backend or the engines `settings` ask for and starts the thread(s) around them.
/// `shared`: the pipeline's CUDA context, for the one CUDA engine of `devices` empty.
pub(super) fn open(
    imp: &FlavrInterp,
    settings: &Settings,
    model: Arc<Flavr>,
    shared: Option<SharedContext>,
) -> Result<Opened, Error> {
    let devices = dispatch::parse_devices(&settings.devices).map_err(Error::Devices)?;
    let n = model.spec.n_out;
    if devices == Devices::Single {
        let (backend, shared) = open_backend(imp, settings, model, shared)?;
        check_outputs(&*backend, n)?;
        let name = backend.name();
        let pipelined = backend.depth() > 1;
        return Ok(Opened {
            net: Net::spawn(backend)?,
            name,
            engines: 1,
            pipelined,
            shared,
        });
    }
    let faults = match std::env::var(FAULT_ENV) {
        Ok(t) => dispatch::parse_faults(&t).map_err(Error::Devices)?,
        Err(_) => Vec::new(),
    };
    let fault = |i: usize| faults.iter().find(|f| f.0 == i).map(|f| f.1);
    let backends = open_many(imp, settings, &devices, model, &fault)?;
    let mut engines = Vec::with_capacity(backends.len());
    for (index, backend) in backends.into_iter().enumerate() {
        check_outputs(&*backend, n)?;
        let fault_after = match fault(index) {
            Some(EngineFault::After(n)) => Some(n),
            _ => None,
        };
        engines.push(BackendEngine {
            index,
            backend,
            slots: [None; SLOTS],
            used: [0; SLOTS],
            clock: 0,
            fault_after,
            runs: 0,
            scratch: Vec::new(),
        });
    }
    let name = names(&engines);
    let count = engines.len();
    let element = imp.obj().downgrade();
    let warn = Box::new(move |d: EngineDown| {
        if let Some(el) = element.upgrade() {
            gst::element_warning!(
                el,
                gst::ResourceError::Failed,
                (
                    "Engine {} ({}) failed and was taken out: {}; its {} window(s) are redone on \
                     the {} engine(s) left",
                    d.index,
                    d.name,
                    d.error,
                    d.redone,
                    d.left
                )
            );
        }
    });
    let depth = (settings.max_in_flight as usize).max(1);
    Ok(Opened {
        net: Net::spawn_many(engines, depth, warn)?,
        name,
        engines: count,
        pipelined: false,
        shared: false,
    })
}

fn check_outputs(backend: &dyn Backend, model: usize) -> Result<(), Error> {
    if backend.n_outputs() != model {
        return Err(Error::Outputs {
            backend: backend.n_outputs(),
            model,
        });
    }
    Ok(())
}

fn names(engines: &[BackendEngine]) -> String {
    let names: Vec<String> = engines.iter().map(|e| e.backend.name()).collect();
    if names.iter().all(|n| *n == names[0]) {
        format!("{} x{}", names[0], names.len())
    } else {
        names.join(" + ")
    }
}

/// The one backend of `devices` empty: `backend` on `device-id`, in `shared` where given and
/// usable (then true).
fn open_backend(
    imp: &FlavrInterp,
    settings: &Settings,
    model: Arc<Flavr>,
    shared: Option<SharedContext>,
) -> Result<(Box<dyn Backend>, bool), Error> {
    let id = settings.device_id;
    if settings.backend != BackendKind::Cpu
        && let Some(shared) = shared
    {
        match open_cuda(settings, model.clone(), id, Some(shared)) {
            Ok(b) => return Ok((b, true)),
            Err(e) => gst::warning!(
                CAT,
                imp = imp,
                "cannot run in the pipeline's CUDA context ({e}): the engine opens its own, and \
                 frames in CUDA memory go through system memory"
            ),
        }
    }
    let cuda = |model: Arc<Flavr>| open_cuda(settings, model, id, None);
    let backend = match settings.backend {
        BackendKind::Cpu => open_cpu(model),
        BackendKind::Cuda => cuda(model),
        BackendKind::Auto => match cuda(model.clone()) {
            Ok(b) => Ok(b),
            Err(e) => {
                gst::element_imp_warning!(
                    imp,
                    gst::LibraryError::Init,
                    ("{}; using the CPU backend", e)
                );
                open_cpu(model)
            }
        },
    }?;
    Ok((backend, false))
}

fn open_cpu(model: Arc<Flavr>) -> Result<Box<dyn Backend>, Error> {
    Ok(Box::new(CpuBackend::new(model).map_err(Error::Cpu)?))
}

fn open_cuda(
    settings: &Settings,
    model: Arc<Flavr>,
    id: u32,
    shared: Option<SharedContext>,
) -> Result<Box<dyn Backend>, Error> {
    crate::cuda::EngineOptions::from_env()
        .map_err(Into::into)
        .and_then(|opts| crate::cuda::open_in(model, id, settings.precision.into(), opts, shared))
        .map_err(|source| Error::Cuda { device: id, source })
}

/// One backend per engine of `devices`. `backend=cuda` fails when one does not open;
/// `auto` leaves it out with a warning, and takes one CPU engine when none opens.
fn open_many(
    imp: &FlavrInterp,
    settings: &Settings,
    devices: &Devices,
    model: Arc<Flavr>,
    fault: &dyn Fn(usize) -> Option<EngineFault>,
) -> Result<Vec<Box<dyn Backend>>, Error> {
    let injected = |i: usize| -> Result<(), BackendError> {
        match fault(i) {
            Some(EngineFault::Start) => Err(BackendError::Failed(format!(
                "engine {i}: fault injected by {FAULT_ENV}={i}:start"
            ))),
            _ => Ok(()),
        }
    };
    let cpu = |i: usize| -> Result<Box<dyn Backend>, Error> {
        injected(i).map_err(Error::Cpu)?;
        open_cpu(model.clone())
    };
    let text = &settings.devices;
    let ids = match (devices, settings.backend) {
        (Devices::Cpu(_), BackendKind::Cuda) => {
            return Err(Error::Devices(format!(
                "devices=\"{text}\" asks for CPU engines but backend=cuda: give GPU ids, or set \
                 backend=cpu"
            )));
        }
        (Devices::Cpu(n), _) => return (0..*n).map(cpu).collect(),
        (Devices::All, BackendKind::Cpu) => {
            return Err(Error::Devices(
                "devices=\"all\" means every GPU, but backend=cpu: use devices=cpu:N for N CPU \
                 engines"
                    .into(),
            ));
        }
        (Devices::List(ids), BackendKind::Cpu) => return (0..ids.len()).map(cpu).collect(),
        (Devices::List(ids), _) => ids.clone(),
        (Devices::All, _) => match crate::cuda::device_count() {
            Ok(0) => Vec::new(),
            Ok(n) => (0..n as u32).collect(),
            Err(source) if settings.backend == BackendKind::Cuda => {
                return Err(Error::Cuda { device: 0, source });
            }
            Err(e) => {
                gst::element_imp_warning!(
                    imp,
                    gst::LibraryError::Init,
                    ("devices=all: {}; using the CPU backend", e)
                );
                Vec::new()
            }
        },
        (Devices::Single, _) => {
            return Err(Error::Devices(
                "devices is empty: one engine, not several".into(),
            ));
        }
    };
    if ids.is_empty() && settings.backend == BackendKind::Cuda {
        return Err(Error::Devices(
            "devices=\"all\": the driver sees no GPU".into(),
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let opened = injected(i)
            .map_err(|source| Error::Cuda { device: id, source })
            .and_then(|_| open_cuda(settings, model.clone(), id, None));
        match opened {
            Ok(b) => out.push(b),
            Err(e) if settings.backend == BackendKind::Auto => {
                gst::element_imp_warning!(
                    imp,
                    gst::LibraryError::Init,
                    ("engine {}: {}; left out", i, e)
                );
            }
            Err(e) => return Err(e),
        }
    }
    if out.is_empty() {
        gst::element_imp_warning!(
            imp,
            gst::LibraryError::Init,
            (
                "no CUDA engine of devices=\"{}\" opened; using one CPU engine",
                text
            )
        );
        out.push(cpu(0)?);
    }
    Ok(out)
}

/// One backend as a dispatcher engine: keeps the frames it loaded in its slots (least
/// recently used goes first) and loads what a window lacks.
pub(super) struct BackendEngine {
    index: usize,
    backend: Box<dyn Backend>,
    slots: [Option<Key>; SLOTS],
    used: [u64; SLOTS],
    clock: u64,
    /// `FLAVR_FAULT_ENGINE=INDEX:after:N`: windows after the Nth fail.
    fault_after: Option<u64>,
    runs: u64,
    scratch: Vec<u8>,
}

impl BackendEngine {
    /// Plans for a new frame layout; the loaded frames are gone.
    pub fn configure(&mut self, layout: &FrameLayout) -> Result<(), BackendError> {
        dispatch::Engine::forget(self);
        self.backend.configure(layout)
    }

    /// The slot for a frame not loaded: an empty one, else the least recently used one not in
    /// `keep`.
    fn victim(&self, keep: &[Key; 4]) -> usize {
        if let Some(s) = self.slots.iter().position(Option::is_none) {
            return s;
        }
        (0..SLOTS)
            .filter(|&s| !self.slots[s].is_some_and(|k| keep.contains(&k)))
            .min_by_key(|&s| self.used[s])
            .unwrap_or(0)
    }
}

impl dispatch::Engine for BackendEngine {
    type Frame = gst::Buffer;
    type Ctx = gst_video::VideoInfo;
    type Error = Error;

    fn name(&self) -> String {
        self.backend.name()
    }

    fn forget(&mut self) {
        self.slots = [None; SLOTS];
    }

    fn blend(
        info: &gst_video::VideoInfo,
        a: &gst::Buffer,
        b: &gst::Buffer,
        k: u64,
        factor: u64,
    ) -> Result<gst::Buffer, Error> {
        super::cheap::blend(info, a, b, k, factor)
    }

    fn run(
        &mut self,
        info: &gst_video::VideoInfo,
        window: [(Key, &gst::Buffer); 4],
        outputs: &[(usize, Key)],
        cancel: &Arc<AtomicBool>,
    ) -> Result<Vec<(Key, gst::Buffer)>, Error> {
        if let Some(n) = self.fault_after.filter(|&n| self.runs >= n) {
            return Err(Error::Backend(BackendError::Failed(format!(
                "fault injected by {FAULT_ENV}={}:after:{n}",
                self.index
            ))));
        }
        self.backend.set_cancel(Some(cancel.clone()));
        self.clock += 1;
        let keys = window.map(|(k, _)| k);
        let mut at = [0usize; 4];
        for (n, (key, buf)) in window.into_iter().enumerate() {
            let slot = match self.slots.iter().position(|s| *s == Some(key)) {
                Some(s) => s,
                None => {
                    let s = self.victim(&keys);
                    self.slots[s] = None;
                    stream::load_frame(&mut *self.backend, info, buf, s)?;
                    self.slots[s] = Some(key);
                    s
                }
            };
            self.used[slot] = self.clock;
            at[n] = slot;
        }
        let made = stream::network(
            &mut *self.backend,
            info.size(),
            at,
            outputs.to_vec(),
            &mut self.scratch,
        )?;
        self.runs += 1;
        Ok(made)
    }
}
