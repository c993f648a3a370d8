//! CPU backend: the FLAVR network in float32, exactly as `docs/network.md` describes it, on the
//! `gemm` crate and rayon threads. It is the reference the GPU path is checked against, and
//! the backend on machines without a GPU.
//!
//! - [`conv`]: convolutions and transposed convolutions as GEMMs.
//! - [`ops`]: SE gating, activations, residual add, padding, time fold, normalisation.
//!
//! One window is one sample: activations are planar `[C, T, H, W]`. Skip connections are
//! written by the encoder straight into the tail of the buffer the decoder later fills at its
//! head, so the concatenations move no data; the time fold is a permutation of the
//! feature-fuse weights.

pub mod conv;
pub mod memory;
pub mod ops;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use conv::{Act, Conv, ConvTranspose, Dims};

use super::pixels::{self, FrameLayout};
use super::{Backend, BackendError, SLOTS};
use crate::model::spec::{SIZE_MULTIPLE, WINDOW};
use crate::model::{self, Flavr};

/// SE gate weights as `[C, C]` and `[C]`.
#[derive(Clone, Debug)]
struct Gate {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Gate {
    fn new(g: &model::Gate) -> Gate {
        Gate {
            weight: g.weight.data.clone(),
            bias: g.bias.data.clone(),
        }
    }

    fn apply(&self, sums: &[f64], count: usize) -> Vec<f32> {
        ops::se_gate(&self.weight, &self.bias, sums, count)
    }
}

#[derive(Clone, Debug)]
struct Block {
    conv1: Conv,
    conv2: Conv,
    gate: Gate,
    downsample: Option<Conv>,
}

#[derive(Clone, Debug)]
enum Up {
    Conv(Conv),
    Transposed(ConvTranspose),
}

impl Up {
    fn out_dims(&self, x: Dims) -> Result<Dims, String> {
        match self {
            Up::Conv(c) => c.out_dims(x),
            Up::Transposed(c) => c.out_dims(x),
        }
    }

    fn macs(&self, x: Dims) -> Result<f64, String> {
        match self {
            Up::Conv(c) => c.macs(x),
            Up::Transposed(c) => c.macs(x),
        }
    }

    fn run(&self, x: &[f32], xd: Dims, out: &mut [f32]) -> Result<Vec<f64>, String> {
        match self {
            Up::Conv(c) => c.run(x, xd, out, Act::None, true),
            Up::Transposed(c) => c.run(x, xd, out, Act::None, true),
        }
    }
}

#[derive(Clone, Debug)]
struct Stage {
    conv: Up,
    gate: Gate,
}

/// A [`Flavr`] prepared for the CPU: weights in GEMM form (phase-split transposed convs,
/// fold-permuted feature fuse). Build once, run on any size.
#[derive(Clone, Debug)]
pub struct CpuModel {
    spec: model::ModelSpec,
    stem: Conv,
    layers: Vec<[Block; 2]>,
    decoder: Vec<Stage>,
    fuse: Conv,
    outconv: Conv,
}

/// The error text of a window abandoned through [`Backend::set_cancel`].
pub const CANCELLED: &str = "window cancelled";

fn err(e: String) -> BackendError {
    BackendError::Failed(e)
}

impl CpuModel {
    pub fn new(m: &Flavr) -> Result<CpuModel, BackendError> {
        let conv3 = |c: &model::Conv, stride: usize| {
            Conv::new(&c.weight, c.bias.as_ref(), [1, 1, 1], stride)
        };
        let stem = Conv::new(&m.stem.weight, m.stem.bias.as_ref(), [1, 3, 3], 2).map_err(err)?;
        let mut layers = Vec::with_capacity(4);
        for layer in &m.layers {
            let mut blocks = Vec::with_capacity(2);
            for b in layer {
                blocks.push(Block {
                    conv1: conv3(&b.conv1, b.stride).map_err(err)?,
                    conv2: conv3(&b.conv2, 1).map_err(err)?,
                    gate: Gate::new(&b.gate),
                    downsample: match &b.downsample {
                        Some(w) => Some(Conv::new(w, None, [0, 0, 0], b.stride).map_err(err)?),
                        None => None,
                    },
                });
            }
            let [a, b]: [Block; 2] = blocks
                .try_into()
                .map_err(|_| err("a layer without two blocks".into()))?;
            layers.push([a, b]);
        }
        let mut decoder = Vec::with_capacity(5);
        for s in &m.decoder {
            let conv = if s.transposed {
                Up::Transposed(
                    ConvTranspose::new(&s.conv.weight, s.conv.bias.as_ref()).map_err(err)?,
                )
            } else {
                Up::Conv(conv3(&s.conv, 1).map_err(err)?)
            };
            decoder.push(Stage {
                conv,
                gate: Gate::new(&s.gate),
            });
        }
        let c4 = m.spec.decoder[4];
        let fs = &m.fuse.shape;
        if fs.len() != 4 || fs[1] != WINDOW * c4 || fs[2..] != [1, 1] {
            return Err(err(format!(
                "feature_fuse weight {fs:?} for {c4} decoder channels"
            )));
        }
        let fuse = Conv::pointwise(
            ops::fold_time_weights(&m.fuse.data, fs[0], c4, WINDOW),
            fs[0],
            WINDOW * c4,
        )
        .map_err(err)?;
        let outconv =
            Conv::new(&m.outconv.weight, m.outconv.bias.as_ref(), [0, 0, 0], 1).map_err(err)?;
        Ok(CpuModel {
            spec: m.spec.clone(),
            stem,
            layers,
            decoder,
            fuse,
            outconv,
        })
    }

    /// Interpolated frames per window.
    pub fn n_out(&self) -> usize {
        self.spec.n_out
    }

    /// Runs one window. `frames` is `[3, 4, h, w]` RGB (any `h`, `w` >= 1); returns
    /// `[n_out, 3, h, w]`, not clamped. Pads right/bottom by edge replication to a multiple
    /// of 8, normalises by the per-channel mean of the padded window, crops the result back.
    pub fn forward(&self, frames: &[f32], h: usize, w: usize) -> Result<Vec<f32>, BackendError> {
        Ok(self.forward_timed(frames, h, w)?.0)
    }

    /// [`CpuModel::forward`], also returning the (wall) time and work of each step.
    pub fn forward_timed(
        &self,
        frames: &[f32],
        h: usize,
        w: usize,
    ) -> Result<(Vec<f32>, Vec<Step>), BackendError> {
        let t0 = Instant::now();
        self.forward_profiled(frames, h, w, &|| t0.elapsed().as_secs_f64())
    }

    /// [`CpuModel::forward`], timing each step with the clock `now` (seconds; a CPU-time
    /// clock, say, on a shared machine).
    pub fn forward_profiled(
        &self,
        frames: &[f32],
        h: usize,
        w: usize,
        now: &dyn Fn() -> f64,
    ) -> Result<(Vec<f32>, Vec<Step>), BackendError> {
        self.forward_with(frames, h, w, now, None)
    }

    /// [`CpuModel::forward`] that gives up between layers once `cancel` is raised (the error
    /// then says [`CANCELLED`]).
    pub fn forward_cancellable(
        &self,
        frames: &[f32],
        h: usize,
        w: usize,
        cancel: &AtomicBool,
    ) -> Result<Vec<f32>, BackendError> {
        let t0 = Instant::now();
        let now = || t0.elapsed().as_secs_f64();
        Ok(self.forward_with(frames, h, w, &now, Some(cancel))?.0)
    }

    fn forward_with(
        &self,
        frames: &[f32],
        h: usize,
        w: usize,
        now: &dyn Fn() -> f64,
        cancel: Option<&AtomicBool>,
    ) -> Result<(Vec<f32>, Vec<Step>), BackendError> {
        let mut clock = Clock::new(now);
        clock.cancel = cancel;
        if h == 0 || w == 0 {
            return Err(BackendError::Layout(format!("frame size {w}x{h}")));
        }
        let plane = h * w;
        if frames.len() != 3 * WINDOW * plane {
            return Err(BackendError::Layout(format!(
                "window of {} values for 3 x {WINDOW} frames of {w}x{h}",
                frames.len()
            )));
        }
        let hp = h.div_ceil(SIZE_MULTIPLE) * SIZE_MULTIPLE;
        let wp = w.div_ceil(SIZE_MULTIPLE) * SIZE_MULTIPLE;
        let mut x = vec![0.0f32; 3 * WINDOW * hp * wp];
        if (hp, wp) == (h, w) {
            x.copy_from_slice(frames);
        } else {
            ops::replicate_pad(frames, 3 * WINDOW, (h, w), (hp, wp), &mut x).map_err(err)?;
        }
        let mean: Vec<f32> = ops::channel_means(&x, 3)
            .iter()
            .map(|&m| m as f32)
            .collect();
        let neg: Vec<f32> = mean.iter().map(|m| -m).collect();
        ops::add_per_channel(&mut x, &neg);
        clock.lap("pad, normalise", 0.0).map_err(err)?;
        let y = self.network(&x, hp, wp, &mut clock).map_err(err)?;
        drop(x);
        // y: [3n, hp, wp] -> [n, 3, h, w] + mean.
        let n = self.spec.n_out;
        let mut out = vec![0.0f32; n * 3 * plane];
        for (ch, o) in out.chunks_mut(plane).enumerate() {
            let src = &y[ch * hp * wp..(ch + 1) * hp * wp];
            let m = mean[ch % 3];
            for (r, orow) in o.chunks_mut(w).enumerate() {
                for (d, &s) in orow.iter_mut().zip(&src[r * wp..r * wp + w]) {
                    *d = s + m;
                }
            }
        }
        clock.lap("add mean, crop", 0.0).map_err(err)?;
        Ok((out, clock.steps))
    }

    /// The network on a normalised `[3, 4, hp, wp]` window (sizes multiples of 8); returns
    /// `[3n, hp, wp]` before the mean is added back.
    fn network(
        &self,
        x: &[f32],
        hp: usize,
        wp: usize,
        clock: &mut Clock<'_>,
    ) -> Result<Vec<f32>, String> {
        let s = &self.spec;
        let xd = Dims::new(3, WINDOW, hp, wp);
        // Encoder shapes: x0 [stem, 4, H/2, W/2], x1, x2 [.., H/4, W/4], x3, x4 [.., H/8, W/8].
        let x0d = self.stem.out_dims(xd)?;
        let x1d = layer_out(&self.layers[0], x0d)?;
        let x2d = layer_out(&self.layers[1], x1d)?;
        let x3d = layer_out(&self.layers[2], x2d)?;
        let x4d = layer_out(&self.layers[3], x3d)?;
        // The concatenation buffers: decoder stage output at the head, skip at the tail:
        // cat1 = [d0 | x3] (d1's input), cat2 = [d1 | x2], cat3 = [d2 | x1], cat4 = [d3 | x0].
        let skips = [x3d, x2d, x1d, x0d];
        let mut heads = [Dims::new(0, 0, 0, 0); 5];
        let mut cat_d = [Dims::new(0, 0, 0, 0); 4];
        let mut prev = x4d;
        for d in 0..4 {
            heads[d] = self.decoder[d].conv.out_dims(prev)?;
            let skip = skips[d];
            if (heads[d].t, heads[d].h, heads[d].w) != (skip.t, skip.h, skip.w) {
                return Err(format!(
                    "decoder stage {d} makes {:?}, its skip is {skip:?}",
                    heads[d]
                ));
            }
            cat_d[d] = Dims {
                c: heads[d].c + skip.c,
                ..skip
            };
            prev = cat_d[d];
        }
        heads[4] = self.decoder[4].conv.out_dims(prev)?;
        let yd = heads[4]; // [c4, 4, hp, wp]
        if yd.c != s.decoder[4] || (yd.t, yd.h, yd.w) != (WINDOW, hp, wp) {
            return Err(format!("the decoder makes {yd:?} from a {hp}x{wp} window"));
        }
        let mut cat: Vec<Option<Vec<f32>>> =
            cat_d.iter().map(|d| Some(vec![0.0f32; d.len()])).collect();
        let missing = || "concatenation buffer already released".to_string();

        // Encoder; each layer's output goes to the tail of its concatenation buffer.
        {
            let (c1, rest) = cat.split_at_mut(1);
            let (c2, rest) = rest.split_at_mut(1);
            let (c3, c4) = rest.split_at_mut(1);
            let [Some(c1), Some(c2), Some(c3), Some(c4)] =
                [&mut c1[0], &mut c2[0], &mut c3[0], &mut c4[0]]
            else {
                return Err(missing());
            };
            let x0 = &mut c4[heads[3].len()..];
            self.stem.run(x, xd, x0, Act::Relu, false)?;
            clock.lap("stem", self.stem.macs(xd)?)?;
            let x0 = &c4[heads[3].len()..];
            let x1 = &mut c3[heads[2].len()..];
            run_layer(&self.layers[0], x0, x0d, x1)?;
            clock.lap("layer1", layer_macs(&self.layers[0], x0d)?)?;
            let x1 = &c3[heads[2].len()..];
            let x2 = &mut c2[heads[1].len()..];
            run_layer(&self.layers[1], x1, x1d, x2)?;
            clock.lap("layer2", layer_macs(&self.layers[1], x1d)?)?;
            let x2 = &c2[heads[1].len()..];
            let x3 = &mut c1[heads[0].len()..];
            run_layer(&self.layers[2], x2, x2d, x3)?;
            clock.lap("layer3", layer_macs(&self.layers[2], x2d)?)?;
        }
        let mut x4 = vec![0.0f32; x4d.len()];
        let cat1 = cat[0].as_mut().ok_or_else(missing)?;
        run_layer(&self.layers[3], &cat1[heads[0].len()..], x3d, &mut x4)?;
        clock.lap("layer4", layer_macs(&self.layers[3], x3d)?)?;

        // Decoder: each stage writes the head of the next concatenation buffer.
        stage(&self.decoder[0], &x4, x4d, &mut cat1[..heads[0].len()])?;
        clock.lap("d0", self.decoder[0].conv.macs(x4d)?)?;
        drop(x4);
        let mut y = vec![0.0f32; yd.len()];
        for d in 1..5 {
            let input = cat[d - 1].take().ok_or_else(missing)?;
            let out = if d < 4 {
                &mut cat[d].as_mut().ok_or_else(missing)?[..heads[d].len()]
            } else {
                &mut y[..]
            };
            stage(&self.decoder[d], &input, cat_d[d - 1], out)?;
            clock.lap(format!("d{d}"), self.decoder[d].conv.macs(cat_d[d - 1])?)?;
        }
        drop(cat);

        // Fold time into channels (by the fuse weights' order), fuse, then the output conv.
        let fd = Dims::new(yd.c * yd.t, 1, hp, wp);
        let fod = self.fuse.out_dims(fd)?;
        let mut f = vec![0.0f32; fod.len()];
        self.fuse.run(&y, fd, &mut f, Act::LeakyRelu, false)?;
        clock.lap("feature_fuse", self.fuse.macs(fd)?)?;
        drop(y);
        let p = 3;
        let pd = Dims::new(fod.c, 1, hp + 2 * p, wp + 2 * p);
        let mut fp = vec![0.0f32; pd.len()];
        ops::reflection_pad(&f, fod.c, hp, wp, p, &mut fp)?;
        drop(f);
        let od = self.outconv.out_dims(pd)?;
        if (od.h, od.w) != (hp, wp) || od.c != 3 * s.n_out {
            return Err(format!("output conv makes {od:?} from a {hp}x{wp} frame"));
        }
        let mut o = vec![0.0f32; od.len()];
        self.outconv.run(&fp, pd, &mut o, Act::None, false)?;
        clock.lap("reflection pad, outconv", self.outconv.macs(pd)?)?;
        Ok(o)
    }
}

/// Output shape of a layer (two blocks).
fn layer_out(blocks: &[Block; 2], x: Dims) -> Result<Dims, String> {
    block_out(&blocks[1], block_out(&blocks[0], x)?)
}

/// Multiply-adds of a layer's convolutions.
fn layer_macs(blocks: &[Block; 2], x: Dims) -> Result<f64, String> {
    let mut m = 0.0;
    let mut xd = x;
    for b in blocks {
        let y1 = b.conv1.out_dims(xd)?;
        m += b.conv1.macs(xd)? + b.conv2.macs(y1)?;
        if let Some(ds) = &b.downsample {
            m += ds.macs(xd)?;
        }
        xd = block_out(b, xd)?;
    }
    Ok(m)
}

/// Time and work of one step of a forward pass.
#[derive(Clone, Debug)]
pub struct Step {
    pub name: String,
    pub seconds: f64,
    /// Floating-point operations of the step's convolutions (2 per multiply-add).
    pub flops: f64,
}

struct Clock<'a> {
    now: &'a dyn Fn() -> f64,
    last: f64,
    steps: Vec<Step>,
    /// Raised by the element to abandon the window: checked at every lap.
    cancel: Option<&'a AtomicBool>,
}

impl<'a> Clock<'a> {
    fn new(now: &'a dyn Fn() -> f64) -> Clock<'a> {
        Clock {
            now,
            last: now(),
            steps: Vec::new(),
            cancel: None,
        }
    }

    /// Ends a step begun at the previous lap; an error when the window was cancelled.
    fn lap(&mut self, name: impl Into<String>, macs: f64) -> Result<(), String> {
        let now = (self.now)();
        self.steps.push(Step {
            name: name.into(),
            seconds: now - self.last,
            flops: 2.0 * macs,
        });
        self.last = now;
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(CANCELLED.into());
        }
        Ok(())
    }
}

/// Output shape of a block.
fn block_out(b: &Block, x: Dims) -> Result<Dims, String> {
    b.conv2.out_dims(b.conv1.out_dims(x)?)
}

/// One residual block: `relu(SE(conv2(relu(conv1(x)))) + shortcut(x))` into `out`.
fn run_block(b: &Block, x: &[f32], xd: Dims, out: &mut [f32]) -> Result<Dims, String> {
    let y1d = b.conv1.out_dims(xd)?;
    let mut y1 = vec![0.0f32; y1d.len()];
    b.conv1.run(x, xd, &mut y1, Act::Relu, false)?;
    let y2d = b.conv2.out_dims(y1d)?;
    let mut y2 = vec![0.0f32; y2d.len()];
    let sums = b.conv2.run(&y1, y1d, &mut y2, Act::None, true)?;
    drop(y1);
    let g = b.gate.apply(&sums, y2d.plane());
    if out.len() != y2d.len() {
        return Err(format!("block output buffer of {} for {y2d:?}", out.len()));
    }
    match &b.downsample {
        Some(ds) => {
            let sd = ds.out_dims(xd)?;
            if sd != y2d {
                return Err(format!(
                    "shortcut {sd:?} does not match the block output {y2d:?}"
                ));
            }
            let mut short = vec![0.0f32; sd.len()];
            ds.run(x, xd, &mut short, Act::None, false)?;
            ops::gate_add_relu(&y2, y2d, &g, &short, out);
        }
        None => {
            if xd != y2d {
                return Err(format!(
                    "identity shortcut {xd:?} for a block output {y2d:?}"
                ));
            }
            ops::gate_add_relu(&y2, y2d, &g, x, out);
        }
    }
    Ok(y2d)
}

/// Two blocks; the second writes into `out`.
fn run_layer(blocks: &[Block; 2], x: &[f32], xd: Dims, out: &mut [f32]) -> Result<Dims, String> {
    let md = block_out(&blocks[0], xd)?;
    let mut mid = vec![0.0f32; md.len()];
    run_block(&blocks[0], x, xd, &mut mid)?;
    run_block(&blocks[1], &mid, md, out)
}

/// A decoder stage: `lrelu(SE(conv(x)))` into `out`.
fn stage(s: &Stage, x: &[f32], xd: Dims, out: &mut [f32]) -> Result<Dims, String> {
    let od = s.conv.out_dims(xd)?;
    if out.len() != od.len() {
        return Err(format!("decoder output buffer of {} for {od:?}", out.len()));
    }
    let sums = s.conv.run(x, xd, out)?;
    let g = s.gate.apply(&sums, od.plane());
    ops::gate_act(out, od, &g, Act::LeakyRelu);
    Ok(od)
}

/// Runs the network on one window, `frames` = `[3, 4, h, w]` RGB in [0, 1]; returns
/// `[n_out, 3, h, w]` (not clamped). Sizes need not be multiples of 8.
pub fn try_forward(
    model: &Flavr,
    frames: &[f32],
    h: usize,
    w: usize,
) -> Result<Vec<f32>, BackendError> {
    CpuModel::new(model)?.forward(frames, h, w)
}

/// [`try_forward`] for callers that have checked their input.
///
/// # Panics
/// When `frames` does not hold `3 * 4 * h * w` values, `h` or `w` is 0, or the model's
/// weights do not fit together.
pub fn forward(model: &Flavr, frames: &[f32], h: usize, w: usize) -> Vec<f32> {
    try_forward(model, frames, h, w).unwrap_or_else(|e| panic!("cpu forward: {e}"))
}

/// The CPU [`Backend`]: frame slots hold planar RGB float frames; `interpolate` runs
/// [`CpuModel::forward`] and writes the results back in the configured pixel layout.
pub struct CpuBackend {
    model: CpuModel,
    layout: Option<FrameLayout>,
    slots: Vec<Option<Vec<f32>>>,
    cancel: Option<Arc<AtomicBool>>,
}

impl CpuBackend {
    /// Prepares the weights; fails only when the model's tensors do not fit together.
    pub fn new(model: Arc<Flavr>) -> Result<CpuBackend, BackendError> {
        Ok(CpuBackend {
            model: CpuModel::new(&model)?,
            layout: None,
            slots: vec![None; SLOTS],
            cancel: None,
        })
    }
}

fn configured(layout: &Option<FrameLayout>) -> Result<&FrameLayout, BackendError> {
    layout
        .as_ref()
        .ok_or_else(|| BackendError::Failed("backend used before configure()".into()))
}

impl Backend for CpuBackend {
    fn name(&self) -> String {
        format!("cpu ({} threads)", rayon::current_num_threads())
    }

    fn n_outputs(&self) -> usize {
        self.model.n_out()
    }

    fn set_cancel(&mut self, cancel: Option<Arc<AtomicBool>>) {
        self.cancel = cancel;
    }

    fn configure(&mut self, layout: &FrameLayout) -> Result<(), BackendError> {
        pixels::check_layout(layout)?;
        // Free the old size's slots first: they are not needed for the new one.
        self.layout = None;
        self.slots.iter_mut().for_each(|s| *s = None);
        let needed = self.model.needed_bytes(layout).map_err(err)?;
        memory::check(needed, memory::headroom().as_ref(), layout)?;
        self.layout = Some(layout.clone());
        Ok(())
    }

    fn load_frame(&mut self, slot: usize, frame: &[u8]) -> Result<(), BackendError> {
        if slot >= SLOTS {
            return Err(BackendError::Failed(format!("slot {slot} of {SLOTS}")));
        }
        let layout = configured(&self.layout)?;
        let mut rgb = self.slots[slot].take().unwrap_or_default();
        rgb.resize(3 * layout.width * layout.height, 0.0);
        pixels::to_planar_rgb(layout, frame, &mut rgb)?;
        self.slots[slot] = Some(rgb);
        Ok(())
    }

    fn interpolate(
        &mut self,
        window: [usize; 4],
        outputs: &mut [&mut [u8]],
    ) -> Result<(), BackendError> {
        let layout = configured(&self.layout)?;
        let (h, w) = (layout.height, layout.width);
        let plane = h * w;
        let n = self.model.n_out();
        if outputs.len() != n {
            return Err(BackendError::Failed(format!(
                "{} output buffers for a model that makes {n} frames",
                outputs.len()
            )));
        }
        // [3, 4, h, w] from four [3, h, w] slots.
        let mut frames = vec![0.0f32; 3 * WINDOW * plane];
        for (t, &slot) in window.iter().enumerate() {
            let rgb = self
                .slots
                .get(slot)
                .and_then(|s| s.as_ref())
                .ok_or_else(|| BackendError::Failed(format!("slot {slot} holds no frame")))?;
            for c in 0..3 {
                frames[(c * WINDOW + t) * plane..][..plane]
                    .copy_from_slice(&rgb[c * plane..(c + 1) * plane]);
            }
        }
        let y = match &self.cancel {
            Some(c) => self.model.forward_cancellable(&frames, h, w, c)?,
            None => self.model.forward(&frames, h, w)?,
        };
        for (k, out) in outputs.iter_mut().enumerate() {
            pixels::from_planar_rgb(layout, &y[k * 3 * plane..(k + 1) * 3 * plane], out)?;
        }
        Ok(())
    }
}
