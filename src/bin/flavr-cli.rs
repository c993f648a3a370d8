//! Command-line tools around the FLAVR model and the CPU backend.
//!
//! ```text
//! flavr-cli run --model CKPT --input IN.safetensors --output OUT.safetensors [--threads N]
//!     Reads tensor `input` [1, 3, 4, H, W] or [3, 4, H, W] (RGB in [0, 1]), runs the CPU
//!     forward pass, writes `output` [n, 3, H, W] (not clamped) as safetensors.
//! flavr-cli bench-cpu [--width 448] [--height 256] [--model CKPT | --random-full-width]
//!                     [--runs 3] [--gemm 2048] [--threads N] [--steps]
//!     Times the CPU forward pass (median after a warm-up) and the gemm crate's own rate on a
//!     large square product, and prints both and their ratio.
//! flavr-cli scene detect|element ...
//!     The scene-cut detector on raw rgb24 frames, alone or inside the element (see
//!     flavr-cli/scene.rs).
//! ```

#[path = "shared/args.rs"]
mod args;
#[path = "flavr-cli/scene.rs"]
mod scene;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use args::{Flags, positive};
use gstflavrinterp::backend::cpu::{CpuModel, Step};
use gstflavrinterp::model::checkpoint::{self, safetensors};
use gstflavrinterp::model::spec::SIZE_MULTIPLE;
use gstflavrinterp::model::synth::{self, SplitMix};
use gstflavrinterp::model::{Flavr, ModelSpec};

const USAGE: &str = "usage:
  flavr-cli run --model CKPT --input IN.safetensors --output OUT.safetensors [--threads N]
  flavr-cli bench-cpu [--width 448] [--height 256] [--model CKPT | --random-full-width]
                      [--runs 3] [--gemm 2048] [--threads N] [--steps]
  flavr-cli scene detect|element ... (flavr-cli scene help)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("run") => Options::parse(&args[1..]).and_then(|o| run(&o)),
        Some("bench-cpu") => Options::parse(&args[1..]).and_then(|o| bench(&o)),
        Some("scene") => scene::main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        _ => Err(format!("expected a subcommand\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flavr-cli: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Options {
    model: Option<PathBuf>,
    input: Option<PathBuf>,
    output: Option<PathBuf>,
    width: Option<usize>,
    height: Option<usize>,
    random_full_width: bool,
    runs: Option<usize>,
    gemm: Option<usize>,
    threads: Option<usize>,
    steps: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = Flags::new(args);
        while let Some(a) = it.next() {
            let mut value = || it.value(a);
            let number = |v: String| positive(a, v);
            match a.as_str() {
                "--model" => o.model = Some(value()?.into()),
                "--input" => o.input = Some(value()?.into()),
                "--output" => o.output = Some(value()?.into()),
                "--width" => o.width = Some(number(value()?)?),
                "--height" => o.height = Some(number(value()?)?),
                "--runs" => o.runs = Some(number(value()?)?),
                "--gemm" => o.gemm = Some(number(value()?)?),
                "--threads" => o.threads = Some(number(value()?)?),
                "--random-full-width" => o.random_full_width = true,
                "--steps" => o.steps = true,
                other => return Err(format!("unknown option `{other}`\n{USAGE}")),
            }
        }
        if let Some(n) = o.threads {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .map_err(|e| format!("cannot start {n} threads: {e}"))?;
        }
        Ok(o)
    }
}

fn load_model(path: &Path) -> Result<Flavr, String> {
    Flavr::load_path(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// FLOP of one window at `h` x `w` (the network runs on the size padded to a multiple of 8).
fn window_flops(spec: &ModelSpec, h: usize, w: usize) -> f64 {
    let pad = |n: usize| n.div_ceil(SIZE_MULTIPLE) * SIZE_MULTIPLE;
    spec.flops(pad(h), pad(w))
}

fn run(o: &Options) -> Result<(), String> {
    let need = |p: &Option<PathBuf>, what: &str| {
        p.clone()
            .ok_or_else(|| format!("run needs --{what}\n{USAGE}"))
    };
    let (model_path, input, output) = (
        need(&o.model, "model")?,
        need(&o.input, "input")?,
        need(&o.output, "output")?,
    );
    let model = load_model(&model_path)?;
    let mut ck = checkpoint::open_path(&input).map_err(|e| format!("{}: {e}", input.display()))?;
    let x = ck
        .read_f32("input")
        .map_err(|e| format!("{}: {e}", input.display()))?;
    let (h, w) = match x.shape.as_slice() {
        [1, 3, 4, h, w] | [3, 4, h, w] if *h > 0 && *w > 0 => (*h, *w),
        s => {
            return Err(format!(
                "{}: tensor `input` has shape {s:?}, expected [1, 3, 4, H, W] or [3, 4, H, W]",
                input.display()
            ));
        }
    };
    let prepared = CpuModel::new(&model).map_err(|e| e.to_string())?;
    let t0 = Instant::now();
    let y = prepared.forward(&x.data, h, w).map_err(|e| e.to_string())?;
    let secs = t0.elapsed().as_secs_f64();
    let n = model.spec.n_out;
    safetensors::write(
        &output,
        &[("output", &[n, 3, h, w], &y)],
        &[("producer", "flavr-cli run (cpu, fp32)")],
    )
    .map_err(|e| format!("{}: {e}", output.display()))?;
    let flops = window_flops(&model.spec, h, w);
    println!(
        "{w}x{h}, {n} output frame(s): {:.1} ms ({:.1} GFLOP/s, {} threads) -> {}",
        secs * 1e3,
        flops / secs / 1e9,
        rayon::current_num_threads(),
        output.display()
    );
    Ok(())
}

/// Smooth frames with some texture, in [0, 1]: `[3, 4, h, w]`.
fn test_frames(h: usize, w: usize) -> Vec<f32> {
    let mut rng = SplitMix::new(12345);
    let mut x = vec![0.0f32; 12 * h * w];
    for c in 0..3 {
        for t in 0..4 {
            for y in 0..h {
                for xx in 0..w {
                    let xs = xx as f32 + 1.5 * t as f32;
                    let v = 0.5
                        + 0.2 * (0.05 * xs + 0.3 * c as f32).sin()
                        + 0.2 * (0.07 * y as f32 + 0.02 * xs).cos()
                        + 0.05 * rng.symmetric(1.0);
                    x[((c * 4 + t) * h + y) * w + xx] = v.clamp(0.0, 1.0);
                }
            }
        }
    }
    x
}

/// CPU time of this process so far, in seconds (Linux: the sum over its threads of
/// `/proc/self/task/*/schedstat`), or `None` where that is not available. On a shared machine
/// the CPU time a run took says how fast it would be alone, when the wall time cannot.
fn cpu_seconds() -> Option<f64> {
    let mut ns = 0u64;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path().join("schedstat");
        let text = std::fs::read_to_string(path).ok()?;
        ns += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(ns as f64 * 1e-9)
}

/// Wall and CPU seconds of `f`.
fn timed<R>(f: impl FnOnce() -> R) -> (R, f64, Option<f64>) {
    let c0 = cpu_seconds();
    let t0 = Instant::now();
    let r = f();
    let wall = t0.elapsed().as_secs_f64();
    let cpu = c0.zip(cpu_seconds()).map(|(a, b)| b - a);
    (r, wall, cpu)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn bench(o: &Options) -> Result<(), String> {
    let (w, h) = (o.width.unwrap_or(448), o.height.unwrap_or(256));
    let runs = o.runs.unwrap_or(3);
    let model = match (&o.model, o.random_full_width) {
        (Some(_), true) => return Err("give either --model or --random-full-width".into()),
        (Some(p), false) => load_model(p)?,
        (None, _) => {
            synth::synthetic_model(&ModelSpec::released(1), 1).map_err(|e| e.to_string())?
        }
    };
    let what = match &o.model {
        Some(p) => p.display().to_string(),
        None => "released 2x shape, synthetic weights (seed 1)".into(),
    };
    let threads = rayon::current_num_threads();
    println!(
        "model: {what} ({} parameters, {} output frame(s))",
        model.spec.params(),
        model.spec.n_out
    );
    println!("threads: {threads}");
    let prepared = CpuModel::new(&model).map_err(|e| e.to_string())?;
    let x = test_frames(h, w);
    let flops = window_flops(&model.spec, h, w);

    let size = o.gemm.unwrap_or(2048);
    let mut gemm = Gemm::new(size);

    // Warm-up (page faults, thread-local scratch), then timed runs, each followed by a gemm
    // run so that both see the same machine load.
    prepared.forward(&x, h, w).map_err(|e| e.to_string())?;
    gemm.run();
    let mut fwd_wall = Vec::with_capacity(runs);
    let mut fwd_cpu = Vec::with_capacity(runs);
    let mut gemm_wall = Vec::with_capacity(runs);
    let mut gemm_cpu = Vec::with_capacity(runs);
    let mut steps: Vec<Vec<Step>> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let cpu_clock = || cpu_seconds().unwrap_or(0.0) / threads as f64;
        let (r, wall, cpu) = timed(|| {
            if o.steps {
                prepared.forward_profiled(&x, h, w, &cpu_clock)
            } else {
                prepared.forward_timed(&x, h, w)
            }
        });
        steps.push(r.map_err(|e| e.to_string())?.1);
        fwd_wall.push(wall);
        fwd_cpu.extend(cpu);
        for _ in 0..2 {
            let ((), wall, cpu) = timed(|| gemm.run());
            gemm_wall.push(wall);
            gemm_cpu.extend(cpu);
        }
    }
    let (lo, hi) = (
        fwd_wall.iter().cloned().fold(f64::MAX, f64::min),
        fwd_wall.iter().cloned().fold(0.0, f64::max),
    );
    let t = median(&mut fwd_wall.clone());
    let n = model.spec.n_out;
    let net_gflops = flops / t / 1e9;
    println!(
        "forward {w}x{h}: {:.1} ms per window (median of {runs}, min {:.1}, max {:.1}), \
         {:.1} ms per interpolated frame, {:.1} GFLOP per window, {net_gflops:.1} GFLOP/s",
        t * 1e3,
        lo * 1e3,
        hi * 1e3,
        t * 1e3 / n as f64,
        flops / 1e9,
    );
    if o.steps {
        // The run with the median time; its steps are timed by CPU time / threads.
        let i = fwd_wall.iter().position(|&v| v == t).unwrap_or(0);
        println!("  steps (CPU time / {threads} threads):");
        println!(
            "  {:<26} {:>9} {:>8} {:>9}",
            "step", "ms", "GFLOP", "GFLOP/s"
        );
        for s in &steps[i] {
            let rate = if s.flops > 0.0 {
                format!("{:.1}", s.flops / s.seconds / 1e9)
            } else {
                "-".into()
            };
            println!(
                "  {:<26} {:>9.1} {:>8.2} {:>9}",
                s.name,
                s.seconds * 1e3,
                s.flops / 1e9,
                rate
            );
        }
    }
    let gemm_flops = 2.0 * (size as f64).powi(3);
    let gemm_gflops = gemm_flops / median(&mut gemm_wall) / 1e9;
    println!(
        "gemm crate {size}x{size}x{size} f32, {threads} threads: {gemm_gflops:.1} GFLOP/s \
         (median of {})",
        gemm_wall.len()
    );
    println!(
        "ratio forward / gemm (wall time): {:.2}",
        net_gflops / gemm_gflops
    );
    if fwd_cpu.len() == runs && gemm_cpu.len() == gemm_wall.len() {
        // Rates as if the process had its threads' cores to itself: FLOP per CPU-second,
        // times the thread count. Robust to other work on a shared machine.
        let f = flops / (median(&mut fwd_cpu) / threads as f64) / 1e9;
        let g = gemm_flops / (median(&mut gemm_cpu) / threads as f64) / 1e9;
        println!(
            "by CPU time: forward {f:.1} GFLOP/s, gemm {g:.1} GFLOP/s, ratio {:.2}",
            f / g
        );
    }
    Ok(())
}

/// The gemm crate on a square f32 product `n^3`, all threads.
struct Gemm {
    n: usize,
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl Gemm {
    fn new(n: usize) -> Gemm {
        let mut rng = SplitMix::new(7);
        let a = (0..n * n).map(|_| rng.symmetric(1.0)).collect();
        let b = (0..n * n).map(|_| rng.symmetric(1.0)).collect();
        Gemm {
            n,
            a,
            b,
            c: vec![0.0; n * n],
        }
    }

    fn run(&mut self) {
        let n = self.n;
        // SAFETY: a, b, c are n x n row-major matrices; c aliases neither input.
        unsafe {
            gemm::gemm(
                n,
                n,
                n,
                self.c.as_mut_ptr(),
                1,
                n as isize,
                false,
                self.a.as_ptr(),
                1,
                n as isize,
                self.b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(0),
            );
        }
    }
}
