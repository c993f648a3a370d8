//! A probe of cuDNN's float8 (e4m3) forward convolutions through the graph API, before the
//! engine relies on them: which operation graphs of 5-D (3-D convolution) tensors cuDNN offers
//! engines for, how fast the best of them runs against the same convolution in float16, and
//! whether its sums are those of the float16 convolution of the same values.
//!
//! Inputs and weights are random e4m3 values of magnitude below 2 (every e4m3 value is exact in
//! float16), so the float16 convolution of the same values is the reference: the probe reports
//! the largest difference between the two outputs relative to the largest output.
//!
//! Variants (x and w in e4m3, float32 accumulation in every one):
//! - `fp8->half`: the convolution writes float16 directly;
//! - `fp8*s+b->half`: the convolution's float32 result times a per-channel scale plus a bias,
//!   written as float16 (what the engine would run: the scales undo the inputs' and weights'
//!   quantisation, the bias is the layer's);
//! - `fp8*s->fp8`: times one scale, written as e4m3 (the pattern of cuDNN's own FP8 samples;
//!   timed only, its output is itself rounded to e4m3).

use std::sync::Arc;

use cudarc::cudnn::sys;
use cudarc::driver::{CudaContext, CudaStream, sys::CUevent_flags};
use half::f16;

use super::Dnn;
use super::backend::{
    Desc, OpGraph, UID_W, UID_X, UID_Y, conv_desc, conv_forward_op, engine_configs, engine_info,
    ndhwc, plan, pointwise, pointwise_op, tensor, variant_pack_of,
};
use crate::cuda::error::{DriverContext, Result, cudnn_check};
use crate::cuda::memory::{self, DeviceBuf, Dtype};

use sys::cudnnDataType_t as Dt;

/// One convolution to probe: `[n, c, d, h, w]` input, `k` output channels, a cubic kernel of
/// `taps` with "same" padding, stride 1.
#[derive(Clone, Debug)]
pub struct ProbeShape {
    pub name: String,
    pub x_dims: [usize; 5],
    pub k: usize,
    pub taps: usize,
}

/// What the probe found for one shape and variant.
#[derive(Clone, Debug)]
pub struct ProbeRow {
    pub shape: String,
    pub variant: &'static str,
    /// Engine configurations heuristics mode A offered / whose plan finalized and ran.
    pub offered: usize,
    pub ran: usize,
    /// The fastest configuration: median ms, cuDNN's global engine index, and whether its
    /// numerical notes pass the engine's filter (no down-converted inputs, no reduced-precision
    /// reduction, deterministic).
    pub best: Option<(f32, i64, bool)>,
    /// max |y - y_fp16| / max |y_fp16| of the fastest configuration's output.
    pub rel_err: Option<f64>,
    /// Why nothing ran, when nothing did.
    pub note: String,
}

const UID_S: i64 = 5;
const UID_B: i64 = 6;
const UID_ACC: i64 = 10;
const UID_SCALED: i64 = 11;

#[derive(Clone, Copy, PartialEq)]
enum Variant {
    Fp16,
    Fp8Half,
    Fp8ScaleBiasHalf,
    Fp8ScaleFp8,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Fp16 => "fp16",
            Variant::Fp8Half => "fp8->half",
            Variant::Fp8ScaleBiasHalf => "fp8*s+b->half",
            Variant::Fp8ScaleFp8 => "fp8*s->fp8",
        }
    }
}

fn graph(dnn: &Dnn, s: &ProbeShape, v: Variant) -> Result<OpGraph> {
    let f32t = Dt::CUDNN_DATA_FLOAT;
    let in_t = if v == Variant::Fp16 {
        Dt::CUDNN_DATA_HALF
    } else {
        Dt::CUDNN_DATA_FP8_E4M3
    };
    let out_t = if v == Variant::Fp8ScaleFp8 {
        Dt::CUDNN_DATA_FP8_E4M3
    } else {
        Dt::CUDNN_DATA_HALF
    };
    let [n, c, d, h, w] = s.x_dims;
    let t = s.taps;
    let w_dims = [s.k, c, t, t, t];
    let y_dims = [n, s.k, d, h, w];
    let x = tensor(UID_X, in_t, s.x_dims, ndhwc(s.x_dims), false)?;
    let wt = tensor(UID_W, in_t, w_dims, ndhwc(w_dims), false)?;
    let y = tensor(UID_Y, out_t, y_dims, ndhwc(y_dims), false)?;
    let direct = matches!(v, Variant::Fp16 | Variant::Fp8Half);
    let acc = if direct {
        None
    } else {
        Some(tensor(UID_ACC, f32t, y_dims, ndhwc(y_dims), true)?)
    };
    let cd = conv_desc([t / 2; 3], [1; 3])?;
    let conv = conv_forward_op(&x, &wt, acc.as_ref().unwrap_or(&y), &cd)?;
    let mut ops = vec![conv];
    let mut parts = vec![x, wt, cd];
    if let Some(acc) = acc {
        let k = s.k;
        let mul = pointwise(sys::cudnnPointwiseMode_t::CUDNN_POINTWISE_MUL, None)?;
        if v == Variant::Fp8ScaleBiasHalf {
            let sc = tensor(UID_S, f32t, [1, k, 1, 1, 1], [k, 1, 1, 1, 1], false)?;
            let b = tensor(UID_B, f32t, [1, k, 1, 1, 1], [k, 1, 1, 1, 1], false)?;
            let scaled = tensor(UID_SCALED, f32t, y_dims, ndhwc(y_dims), true)?;
            let add = pointwise(sys::cudnnPointwiseMode_t::CUDNN_POINTWISE_ADD, None)?;
            ops.push(pointwise_op(&mul, &acc, Some(&sc), &scaled)?);
            ops.push(pointwise_op(&add, &scaled, Some(&b), &y)?);
            parts.extend([sc, b, scaled, add]);
        } else {
            let sc = tensor(UID_S, f32t, [1, 1, 1, 1, 1], [1, 1, 1, 1, 1], false)?;
            ops.push(pointwise_op(&mul, &acc, Some(&sc), &y)?);
            parts.push(sc);
        }
        parts.extend([acc, mul]);
    }
    parts.push(y);
    OpGraph::new(dnn, ops, parts)
}

/// e4m3 (bias 7, no infinities; 0x7f/0xff are NaN) to f32.
fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> 3) & 0x0f) as i32;
    let m = (b & 7) as f32;
    let v = if e == 0 {
        m / 8.0 * 2f32.powi(-6)
    } else {
        (1.0 + m / 8.0) * 2f32.powi(e - 7)
    };
    sign * v
}

/// `n` random e4m3 bytes of magnitude below 2 (exponent field <= 7), xorshift from `seed`.
fn random_e4m3(n: usize, seed: u64) -> Vec<u8> {
    let mut z = seed | 1;
    (0..n)
        .map(|_| {
            z ^= z << 13;
            z ^= z >> 7;
            z ^= z << 17;
            ((z >> 24) as u8 & 0x3f) | ((z >> 40) as u8 & 0x80)
        })
        .collect()
}

/// The buffers of one shape: x and w in e4m3 and in float16 (the same values), y in float16
/// (room for any variant's output), the per-channel scales (ones), the bias (zeros), a scalar
/// scale (one) and the workspace.
struct Bufs {
    x8: DeviceBuf,
    w8: DeviceBuf,
    x16: DeviceBuf,
    w16: DeviceBuf,
    y: DeviceBuf,
    scale: DeviceBuf,
    bias: DeviceBuf,
    ws: DeviceBuf,
}

impl Bufs {
    fn new(ctx: &Arc<CudaContext>, stream: &CudaStream, s: &ProbeShape, ws: usize) -> Result<Bufs> {
        let [_, c, ..] = s.x_dims;
        let nx: usize = s.x_dims.iter().product();
        let nw = s.k * c * s.taps.pow(3);
        let ny = nx / c * s.k;
        let x8 = random_e4m3(nx, 0x9e37_79b9_7f4a_7c15);
        let w8 = random_e4m3(nw, 0xd1b5_4a32_d192_ed03);
        let to16 =
            |v: &[u8]| -> Vec<f16> { v.iter().map(|&b| f16::from_f32(e4m3_to_f32(b))).collect() };
        let (x16, w16) = (to16(&x8), to16(&w8));
        let b = Bufs {
            x8: DeviceBuf::new(ctx, nx, "probe x8")?,
            w8: DeviceBuf::new(ctx, nw, "probe w8")?,
            x16: DeviceBuf::new(ctx, nx * 2, "probe x16")?,
            w16: DeviceBuf::new(ctx, nw * 2, "probe w16")?,
            y: DeviceBuf::new(ctx, ny * 2, "probe y")?,
            scale: DeviceBuf::new(ctx, s.k * 4, "probe scale")?,
            bias: DeviceBuf::new(ctx, s.k * 4, "probe bias")?,
            ws: DeviceBuf::new(ctx, ws, "probe workspace")?,
        };
        let ones = vec![1.0f32; s.k];
        // SAFETY: the host vectors live until the stream is synchronised below.
        unsafe {
            memory::copy_to_device(b.x8.view(Dtype::U8), &x8, stream)?;
            memory::copy_to_device(b.w8.view(Dtype::U8), &w8, stream)?;
            memory::copy_to_device(b.x16.view(Dtype::F16), &x16, stream)?;
            memory::copy_to_device(b.w16.view(Dtype::F16), &w16, stream)?;
            memory::copy_to_device(b.scale.view(Dtype::F32), &ones, stream)?;
        }
        memory::memset(b.bias.view(Dtype::U8), 0, stream)?;
        stream.synchronize().during("cuStreamSynchronize")?;
        Ok(b)
    }

    fn pack(&self, v: Variant) -> (Vec<i64>, Vec<u64>) {
        let p = |b: &DeviceBuf| b.view(Dtype::U8).device_ptr();
        let (x, w) = if v == Variant::Fp16 {
            (p(&self.x16), p(&self.w16))
        } else {
            (p(&self.x8), p(&self.w8))
        };
        let mut uids = vec![UID_X, UID_W, UID_Y];
        let mut ptrs = vec![x, w, p(&self.y)];
        match v {
            Variant::Fp8ScaleBiasHalf => {
                uids.extend([UID_S, UID_B]);
                ptrs.extend([p(&self.scale), p(&self.bias)]);
            }
            Variant::Fp8ScaleFp8 => {
                uids.push(UID_S);
                ptrs.push(p(&self.scale));
            }
            _ => {}
        }
        (uids, ptrs)
    }

    fn read_y(&self, stream: &CudaStream, n: usize) -> Result<Vec<f16>> {
        let mut out = vec![f16::ZERO; n];
        // SAFETY: `out` is not touched until the stream is synchronised.
        unsafe { memory::copy_to_host(&mut out, self.y.view(Dtype::F16), stream)? };
        stream.synchronize().during("cuStreamSynchronize")?;
        Ok(out)
    }
}

/// Probes every variant on every shape on GPU `device_id`; `runs` timed runs per
/// configuration after one warm-up, `ws_cap` bytes of workspace at most.
pub fn probe_fp8(
    device_id: u32,
    shapes: &[ProbeShape],
    runs: usize,
    ws_cap: usize,
) -> Result<Vec<ProbeRow>> {
    let ctx = CudaContext::new(device_id as usize).during("cuCtxCreate")?;
    let stream = ctx.new_stream().during("cuStreamCreate")?;
    let dnn = Dnn::new(&stream)?;
    let ev = || {
        ctx.new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .during("cuEventCreate")
    };
    let (start, end) = (ev()?, ev()?);
    let mut rows = Vec::new();
    for s in shapes {
        let bufs = Bufs::new(&ctx, &stream, s, ws_cap)?;
        let ny = s.x_dims.iter().product::<usize>() / s.x_dims[1] * s.k;
        let mut reference: Option<Vec<f16>> = None;
        for v in [
            Variant::Fp16,
            Variant::Fp8Half,
            Variant::Fp8ScaleBiasHalf,
            Variant::Fp8ScaleFp8,
        ] {
            let mut row = ProbeRow {
                shape: s.name.clone(),
                variant: v.name(),
                offered: 0,
                ran: 0,
                best: None,
                rel_err: None,
                note: String::new(),
            };
            let cfgs = graph(&dnn, s, v).and_then(|g| Ok((engine_configs(&g)?, g)));
            let (cfgs, _g) = match cfgs {
                Ok(c) => c,
                Err(e) => {
                    row.note = format!("no graph: {e}");
                    rows.push(row);
                    continue;
                }
            };
            row.offered = cfgs.len();
            let (uids, ptrs) = bufs.pack(v);
            let vp = variant_pack_of(&uids, &ptrs, bufs.ws.view(Dtype::U8).device_ptr())?;
            let mut best: Option<(f32, i64, bool, Desc)> = None;
            for cfg in &cfgs {
                let Ok((engine, notes_ok)) = engine_info(cfg) else {
                    continue;
                };
                let (p, ws) = match plan(&dnn, cfg) {
                    Ok(p) => p,
                    Err(e) => {
                        row.note = format!("plan: {e}");
                        continue;
                    }
                };
                if ws > ws_cap {
                    row.note = format!("workspace {ws} over the cap");
                    continue;
                }
                let run = || {
                    // SAFETY: the buffers hold the graph's tensors in its types and sizes and
                    // the workspace is at least the plan's need.
                    cudnn_check(
                        unsafe { sys::cudnnBackendExecute(dnn.handle(), p.0, vp.0) },
                        "cudnnBackendExecute",
                    )
                };
                if let Err(e) = run() {
                    row.note = format!("execute: {e}");
                    continue;
                }
                let mut ms = Vec::with_capacity(runs);
                for _ in 0..runs {
                    start.record(&stream).during("cuEventRecord")?;
                    run()?;
                    end.record(&stream).during("cuEventRecord")?;
                    ms.push(start.elapsed_ms(&end).during("cuEventElapsedTime")?);
                }
                ms.sort_by(f32::total_cmp);
                let med = ms[ms.len() / 2];
                row.ran += 1;
                if best.as_ref().is_none_or(|b| med < b.0) {
                    best = Some((med, engine, notes_ok, p));
                }
            }
            if let Some((ms, engine, ok, p)) = best {
                row.best = Some((ms, engine, ok));
                if v != Variant::Fp8ScaleFp8 {
                    // SAFETY: as for the timed runs.
                    cudnn_check(
                        unsafe { sys::cudnnBackendExecute(dnn.handle(), p.0, vp.0) },
                        "cudnnBackendExecute",
                    )?;
                    let y = bufs.read_y(&stream, ny)?;
                    match &reference {
                        None => reference = Some(y),
                        Some(r) => row.rel_err = Some(rel_err(&y, r)),
                    }
                }
            }
            rows.push(row);
        }
    }
    stream.synchronize().during("cuStreamSynchronize")?;
    Ok(rows)
}

fn rel_err(y: &[f16], r: &[f16]) -> f64 {
    let scale = r
        .iter()
        .map(|v| v.to_f64().abs())
        .fold(0.0, f64::max)
        .max(f64::MIN_POSITIVE);
    let d = y
        .iter()
        .zip(r)
        .map(|(a, b)| (a.to_f64() - b.to_f64()).abs())
        .fold(0.0, f64::max);
    d / scale
}

/// The encoder's 3x3x3 convolution shapes of the full-width network at `w` x `h` over four
/// frames: layer1 at /2, layer2 at /4, layer3 and layer4 at /8 (layer4 does not downsample).
pub fn network_shapes(w: usize, h: usize) -> Vec<ProbeShape> {
    let at = |name: &str, c: usize, div: usize| ProbeShape {
        name: format!("{name} {w}x{h}"),
        x_dims: [1, c, 4, h.div_ceil(div), w.div_ceil(div)],
        k: c,
        taps: 3,
    };
    vec![
        at("layer1", 64, 2),
        at("layer2", 128, 4),
        at("layer3", 256, 8),
        at("layer4", 512, 8),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e4m3_decodes_its_grid() {
        assert_eq!(e4m3_to_f32(0x00), 0.0);
        assert_eq!(e4m3_to_f32(0x38), 1.0); // e = 7, m = 0
        assert_eq!(e4m3_to_f32(0xb8), -1.0);
        assert_eq!(e4m3_to_f32(0x3f), 1.875); // the largest value random_e4m3 draws
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9)); // smallest subnormal
        assert_eq!(e4m3_to_f32(0x7e), 448.0); // the largest finite value
        assert!(random_e4m3(1000, 7).iter().all(|&b| b & 0x7f <= 0x3f));
    }

    #[test]
    fn shapes_round_up() {
        let s = network_shapes(1920, 1080);
        assert_eq!(s[3].x_dims, [1, 512, 4, 135, 240]);
        assert_eq!(s[0].x_dims, [1, 64, 4, 540, 960]);
    }
}
