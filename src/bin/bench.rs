//! `bench`: times the CUDA engine on the full-width FLAVR 2x network (synthetic weights unless
//! `--model` names a checkpoint) and checks reduced precisions against float32 on real frames.
//!
//! ```text
//! bench [--sizes 960x544,1280x720,1920x1080] [--precisions fp32,fp16,bf16] [--runs 20]
//!       [--warmup 3] [--device 0] [--model FILE] [--seed 1]
//!       [--frames FILE.rgb --frame-size WxH [--dump DIR]]   PSNR of fp16/bf16 against fp32
//!       [--write-synth FILE]                                the synthetic weights, safetensors
//!       [--profile]                          per-step times (launch by launch, an event after each)
//!       [--probe-fp8 WxH]       cuDNN's float8 3-D convolutions at the deep layers' shapes, then exit
//! ```
//! The engine's options come from the `FLAVR_CUDA_*` variables (see `cuda::options`).
//!
//! Timing: the network alone (window mean, input assembly, every layer, output conversion),
//! median of `--runs` after `--warmup`, CUDA events; and end to end as the element drives it
//! (upload and conversion of one new frame, network, download of the output), host clock.

use std::collections::HashMap;
use std::time::Instant;

use gstflavrinterp::backend::{FrameLayout, PixelFormat, Precision, YuvMatrix};
use gstflavrinterp::cuda::{self, Engine, EngineOptions};
use gstflavrinterp::model::{Flavr, ModelSpec};

struct Args {
    sizes: Vec<(usize, usize)>,
    precisions: Vec<Precision>,
    runs: usize,
    warmup: usize,
    device: u32,
    model: Option<String>,
    seed: u64,
    frames: Option<String>,
    frame_size: Option<(usize, usize)>,
    dump: Option<String>,
    write_synth: Option<String>,
    profile: bool,
    probe_fp8: Option<(usize, usize)>,
    options: EngineOptions,
}

fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s.split_once('x').ok_or(format!("size `{s}` is not WxH"))?;
    Ok((
        w.parse().map_err(|_| format!("bad width in `{s}`"))?,
        h.parse().map_err(|_| format!("bad height in `{s}`"))?,
    ))
}

fn parse_precision(s: &str) -> Result<Precision, String> {
    match s {
        "fp32" => Ok(Precision::Fp32),
        "fp16" => Ok(Precision::Fp16),
        "bf16" => Ok(Precision::Bf16),
        _ => Err(format!("unknown precision `{s}` (fp32, fp16, bf16)")),
    }
}

fn pname(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "fp32",
        Precision::Fp16 => "fp16",
        Precision::Bf16 => "bf16",
    }
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![(960, 544), (1280, 720), (1920, 1080)],
        precisions: vec![Precision::Fp32, Precision::Fp16, Precision::Bf16],
        runs: 20,
        warmup: 3,
        device: 0,
        model: None,
        seed: 1,
        frames: None,
        frame_size: None,
        dump: None,
        write_synth: None,
        profile: false,
        probe_fp8: None,
        options: EngineOptions::from_env().map_err(|e| e.to_string())?,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--sizes" => a.sizes = v()?.split(',').map(parse_size).collect::<Result<_, _>>()?,
            "--precisions" => {
                a.precisions = v()?
                    .split(',')
                    .map(parse_precision)
                    .collect::<Result<_, _>>()?
            }
            "--runs" => a.runs = v()?.parse().map_err(|_| "bad --runs")?,
            "--warmup" => a.warmup = v()?.parse().map_err(|_| "bad --warmup")?,
            "--device" => a.device = v()?.parse().map_err(|_| "bad --device")?,
            "--model" => a.model = Some(v()?),
            "--seed" => a.seed = v()?.parse().map_err(|_| "bad --seed")?,
            "--frames" => a.frames = Some(v()?),
            "--frame-size" => a.frame_size = Some(parse_size(&v()?)?),
            "--dump" => a.dump = Some(v()?),
            "--write-synth" => a.write_synth = Some(v()?),
            "--profile" => a.profile = true,
            "--probe-fp8" => a.probe_fp8 = Some(parse_size(&v()?)?),
            "-h" | "--help" => {
                println!(
                    "{}",
                    include_str!("bench.rs")
                        .lines()
                        .take(11)
                        .collect::<Vec<_>>()
                        .join("\n")
                );
                std::process::exit(0);
            }
            _ => return Err(format!("unknown argument `{k}`")),
        }
    }
    Ok(a)
}

fn rgb_layout(w: usize, h: usize) -> FrameLayout {
    FrameLayout::packed(PixelFormat::Rgb, w, h, YuvMatrix::BT709)
}

/// A smooth moving pattern with noise (never zeros: timings and checks on real-looking data).
fn test_frame(w: usize, h: usize, t: usize) -> Vec<u8> {
    let mut out = vec![0u8; 3 * w * h];
    let mut z: u32 = 0x1234_5678 ^ (t as u32).wrapping_mul(0x9E37_79B9);
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                z ^= z << 13;
                z ^= z >> 17;
                z ^= z << 5;
                let fx = (x as f32 - 2.0 * t as f32) * (0.013 + 0.004 * c as f32);
                let fy = y as f32 * (0.021 - 0.003 * c as f32);
                let v =
                    0.5 + 0.35 * (fx.sin() * fy.cos()) + 0.03 * ((z % 1000) as f32 / 1000.0 - 0.5);
                out[(y * w + x) * 3 + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    out
}

fn median(v: &mut [f32]) -> f32 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        f32::NAN
    } else {
        v[v.len() / 2]
    }
}

fn gib(b: usize) -> f64 {
    b as f64 / (1u64 << 30) as f64
}

fn device_used(e: &Engine) -> Option<usize> {
    e.context()
        .mem_get_info()
        .ok()
        .map(|(free, total)| total - free)
}

fn load_model(a: &Args) -> Result<Flavr, String> {
    match &a.model {
        Some(p) => Flavr::load_path(std::path::Path::new(p)).map_err(|e| e.to_string()),
        None => {
            cuda::synth::synthetic_model(&ModelSpec::released(1), a.seed).map_err(|e| e.to_string())
        }
    }
}

struct Row {
    size: (usize, usize),
    precision: Precision,
    ms: f32,
    tflops: f64,
    engine_gib: f64,
    device_gib: f64,
    e2e_ms: f32,
    configure_s: f64,
}

fn bench(a: &Args, model: &Flavr) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for &p in &a.precisions {
        let mut e =
            cuda::open_engine(model, a.device, p, a.options.clone()).map_err(|e| e.to_string())?;
        let base = device_used(&e).unwrap_or(0);
        for &(w, h) in &a.sizes {
            let layout = rgb_layout(w, h);
            let t0 = Instant::now();
            e.configure(&layout).map_err(|e| e.to_string())?;
            let configure_s = t0.elapsed().as_secs_f64();
            let frames: Vec<Vec<u8>> = (0..5).map(|t| test_frame(w, h, t)).collect();
            for (s, f) in frames.iter().take(4).enumerate() {
                e.load_frame(s, f).map_err(|e| e.to_string())?;
            }
            let window = [0, 1, 2, 3];
            let runs = if p == Precision::Fp32 {
                a.runs.div_ceil(4).max(3)
            } else {
                a.runs
            };
            e.time_network(window, a.warmup)
                .map_err(|e| e.to_string())?;
            let mut t = e.time_network(window, runs).map_err(|e| e.to_string())?;
            let ms = median(&mut t);
            // End to end as the element drives it: one new frame in, one window out.
            let mut out = vec![0u8; layout.size];
            let mut e2e = Vec::new();
            for r in 0..runs.min(10) {
                let slot = 4 + r % 2;
                let t0 = Instant::now();
                e.load_frame(slot, &frames[4]).map_err(|e| e.to_string())?;
                e.interpolate([1, 2, 3, slot], &mut [&mut out[..]])
                    .map_err(|e| e.to_string())?;
                e2e.push(t0.elapsed().as_secs_f32() * 1000.0);
            }
            if let Some(why) = e.capture_failure() {
                eprintln!("{w}x{h} {}: no CUDA graph replay: {why}", pname(p));
            }
            if a.profile {
                print_profile(&mut e, window, runs, (w, h), p)?;
            }
            let (hp, wp) = e.padded_size().unwrap_or((h, w));
            let flops = model.spec.flops(hp, wp);
            let mem = e.memory();
            let used = device_used(&e).unwrap_or(0).saturating_sub(base) + mem.weights;
            let row = Row {
                size: (w, h),
                precision: p,
                ms,
                tflops: flops / (ms as f64 * 1e-3) / 1e12,
                engine_gib: gib(mem.total()),
                device_gib: gib(used),
                e2e_ms: median(&mut e2e),
                configure_s,
            };
            eprintln!(
                "{}x{} {}: {:.2} ms, {:.1} TFLOP/s, engine {:.2} GiB (arena {:.2}, workspace {:.2}, io {:.2}, weights {:.2}; unshared activations {:.2}), configure {:.1} s",
                w,
                h,
                pname(p),
                ms,
                row.tflops,
                row.engine_gib,
                gib(mem.arena),
                gib(mem.workspace),
                gib(mem.io),
                gib(mem.weights),
                gib(mem.unshared),
                configure_s
            );
            if std::env::var_os("FLAVR_BENCH_VERBOSE").is_some() {
                for c in e.conv_choices() {
                    let graph = c.graph.map_or(String::new(), |g| {
                        format!(
                            " | graph API: engine {} (rank {} of {}, {} timed) {:.3} ms ws {} {:?}",
                            g.engine, g.rank, g.offered, g.tried, g.ms, g.workspace, g.epilogue
                        )
                    });
                    eprintln!(
                        "    {} -> {:?} {:.3} ms ws {} {:?}{graph}",
                        c.what, c.chosen.algo, c.chosen.ms, c.chosen.workspace, c.chosen.math
                    );
                }
            }
            rows.push(row);
        }
    }
    Ok(rows)
}

/// Prints the time of every step of the network (`Engine::profile`) as a table.
fn print_profile(
    e: &mut Engine,
    window: [usize; 4],
    runs: usize,
    (w, h): (usize, usize),
    p: Precision,
) -> Result<(), String> {
    let steps = e.profile(window, runs).map_err(|e| e.to_string())?;
    let total: f32 = steps.iter().map(|s| s.ms).sum();
    println!(
        "profile {w}x{h} {}: {} steps, {total:.2} ms launched one by one (median per step of {runs} runs)",
        pname(p),
        steps.len()
    );
    println!("| step | ms | share | TFLOP/s | GB/s |");
    println!("|---|---|---|---|---|");
    let (mut conv_ms, mut conv_flop) = (0f32, 0f64);
    for s in &steps {
        let secs = s.ms as f64 * 1e-3;
        let tflops = if s.flop > 0.0 {
            conv_ms += s.ms;
            conv_flop += s.flop;
            format!("{:.0}", s.flop / secs / 1e12)
        } else {
            String::new()
        };
        let gbs = if s.bytes > 0.0 {
            format!("{:.0}", s.bytes / secs / 1e9)
        } else {
            String::new()
        };
        println!(
            "| {} | {:.3} | {:.1}% | {tflops} | {gbs} |",
            s.label,
            s.ms,
            100.0 * s.ms / total
        );
    }
    println!(
        "| all convolutions | {conv_ms:.2} | {:.1}% | {:.0} | |",
        100.0 * conv_ms / total,
        conv_flop / (conv_ms as f64 * 1e-3) / 1e12
    );
    println!(
        "| everything else | {:.2} | {:.1}% | | |",
        total - conv_ms,
        100.0 * (total - conv_ms) / total
    );
    Ok(())
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    let mse: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| ((x - y) as f64).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (1.0 / mse).log10()
}

/// PSNR of each reduced precision against fp32 on real frames (RGB file of WxH frames).
fn real_frames(a: &Args, model: &Flavr, file: &str, (w, h): (usize, usize)) -> Result<(), String> {
    let data = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
    let fsize = 3 * w * h;
    let frames: Vec<&[u8]> = data.chunks_exact(fsize).collect();
    if frames.len() < 4 {
        return Err(format!(
            "{file}: {} frames of {w}x{h}, need at least 4",
            frames.len()
        ));
    }
    let layout = rgb_layout(w, h);
    // Per precision, per window: the float output and the 8-bit output.
    type Outputs = Vec<(Vec<f32>, Vec<u8>)>;
    let mut outs: HashMap<&'static str, Outputs> = HashMap::new();
    for p in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
        let mut e =
            cuda::open_engine(model, a.device, p, a.options.clone()).map_err(|e| e.to_string())?;
        e.configure(&layout).map_err(|e| e.to_string())?;
        let mut v = Vec::new();
        for i in 0..frames.len() - 3 {
            for t in 0..4 {
                e.load_frame(t, frames[i + t]).map_err(|e| e.to_string())?;
            }
            let f = e.interpolate_f32([0, 1, 2, 3]).map_err(|e| e.to_string())?;
            let mut bytes = vec![0u8; fsize];
            e.interpolate([0, 1, 2, 3], &mut [&mut bytes[..]])
                .map_err(|e| e.to_string())?;
            if let (Some(dir), true) = (&a.dump, i < 2) {
                let path = format!("{dir}/ours_{}_{i}.f32", pname(p));
                let raw: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
                std::fs::write(&path, raw).map_err(|e| format!("{path}: {e}"))?;
            }
            v.push((f, bytes));
        }
        outs.insert(pname(p), v);
    }
    let r = &outs["fp32"];
    for p in ["fp16", "bf16"] {
        let o = &outs[p];
        let mut worst_f = f64::INFINITY;
        let mut worst_b = f64::INFINITY;
        for (i, ((fa, ba), (fb, bb))) in o.iter().zip(r).enumerate() {
            let ca: Vec<f32> = fa.iter().map(|x| x.clamp(0.0, 1.0)).collect();
            let cb: Vec<f32> = fb.iter().map(|x| x.clamp(0.0, 1.0)).collect();
            let pf = psnr(&ca, &cb);
            let ua: Vec<f32> = ba.iter().map(|&x| x as f32 / 255.0).collect();
            let ub: Vec<f32> = bb.iter().map(|&x| x as f32 / 255.0).collect();
            let pb = psnr(&ua, &ub);
            worst_f = worst_f.min(pf);
            worst_b = worst_b.min(pb);
            eprintln!(
                "window {i}: {p} vs fp32 PSNR {pf:.2} dB (float, clamped), {pb:.2} dB (8-bit)"
            );
        }
        println!(
            "psnr {p} vs fp32 on {} windows of {file} ({w}x{h}): min {worst_f:.2} dB float, {worst_b:.2} dB 8-bit",
            o.len()
        );
    }
    Ok(())
}

fn write_synth(model: &Flavr, path: &str) -> Result<(), String> {
    // safetensors of the weights the engine got, for tools/bench to check its twin generator.
    let named = model.named_tensors();
    let tensors: Vec<(&str, &[usize], &[f32])> = named
        .iter()
        .map(|(name, t)| (name.as_str(), t.shape.as_slice(), t.data.as_slice()))
        .collect();
    gstflavrinterp::model::checkpoint::safetensors::write(std::path::Path::new(path), &tensors, &[])
        .map_err(|e| format!("{path}: {e}"))
}

/// `--probe-fp8`: one line per shape and variant (see `cuda::probe_fp8`).
fn probe_fp8(a: &Args, (w, h): (usize, usize)) -> Result<(), String> {
    let shapes = cuda::network_shapes(w, h);
    let rows =
        cuda::probe_fp8(a.device, &shapes, a.runs.max(1), 1 << 30).map_err(|e| e.to_string())?;
    println!(
        "{:>18} {:>14} {:>7} {:>4} {:>9} {:>7} {:>6} {:>9}  note",
        "shape", "variant", "offered", "ran", "ms", "engine", "notes", "rel err"
    );
    for r in &rows {
        let (ms, engine, ok) = match r.best {
            Some((ms, e, ok)) => (
                format!("{ms:.3}"),
                e.to_string(),
                if ok { "ok" } else { "other" },
            ),
            None => ("-".into(), "-".into(), "-"),
        };
        let err = r.rel_err.map_or("-".into(), |e| format!("{e:.2e}"));
        println!(
            "{:>18} {:>14} {:>7} {:>4} {:>9} {:>7} {:>6} {:>9}  {}",
            r.shape, r.variant, r.offered, r.ran, ms, engine, ok, err, r.note
        );
    }
    Ok(())
}

fn run() -> Result<(), String> {
    let a = parse_args()?;
    if let Some(size) = a.probe_fp8 {
        return probe_fp8(&a, size);
    }
    let model = load_model(&a)?;
    if let Some(p) = &a.write_synth {
        return write_synth(&model, p);
    }
    if let Some(f) = &a.frames {
        let size = a.frame_size.ok_or("--frames needs --frame-size WxH")?;
        real_frames(&a, &model, f, size)?;
    }
    if a.runs == 0 {
        return Ok(());
    }
    let rows = bench(&a, &model)?;
    println!(
        "{:>10} {:>5} {:>9} {:>8} {:>10} {:>10} {:>9} {:>7} {:>8}",
        "size",
        "prec",
        "ms/frame",
        "TFLOP/s",
        "engineGiB",
        "deviceGiB",
        "e2e ms",
        "net/e2e",
        "config s"
    );
    for r in &rows {
        println!(
            "{:>10} {:>5} {:>9.2} {:>8.1} {:>10.2} {:>10.2} {:>9.2} {:>7.3} {:>8.1}",
            format!("{}x{}", r.size.0, r.size.1),
            pname(r.precision),
            r.ms,
            r.tflops,
            r.engine_gib,
            r.device_gib,
            r.e2e_ms,
            r.ms / r.e2e_ms,
            r.configure_s
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("bench: {e}");
        std::process::exit(1);
    }
}
