//! Our CUDA kernels: the sources of `kernels/` (built into the library with `include_str!`),
//! compiled once per GPU architecture with NVRTC when an engine opens, and their functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use super::error::{CudaError, DriverContext, Result};
use crate::backend::Precision;

/// `common.cuh` first, then every kernel file: one NVRTC program.
const SOURCES: [(&str, &str); 5] = [
    ("common.cuh", include_str!("../../kernels/common.cuh")),
    (
        "elementwise.cu",
        include_str!("../../kernels/elementwise.cu"),
    ),
    ("se.cu", include_str!("../../kernels/se.cu")),
    ("pixels.cu", include_str!("../../kernels/pixels.cu")),
    ("check.cu", include_str!("../../kernels/check.cu")),
];

/// The whole program's text, with `#line` markers so NVRTC's log names the real file and line.
pub fn program_source() -> String {
    let mut src = String::new();
    for (name, text) in SOURCES {
        src.push_str(&format!("#line 1 \"{name}\"\n"));
        src.push_str(text);
        src.push('\n');
    }
    src
}

/// Compiles the kernels for compute capability `major.minor` (virtual architecture, so the
/// driver finishes the job for the exact chip). Cached per architecture for the process.
pub fn compile(major: i32, minor: i32) -> Result<String> {
    static CACHE: OnceLock<Mutex<HashMap<(i32, i32), String>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
    let mut guard = cache
        .lock()
        .map_err(|_| CudaError::Compile("kernel cache poisoned by an earlier panic".into()))?;
    if let Some(ptx) = guard.get(&(major, minor)) {
        return Ok(ptx.clone());
    }
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
        return Err(CudaError::NoNvrtc);
    }
    let opts = CompileOptions {
        options: vec![
            format!("--gpu-architecture=compute_{major}{minor}"),
            "--std=c++17".into(),
        ],
        name: Some("flavr_kernels.cu".into()),
        // No FMA contraction: the pixel arithmetic must round exactly as the CPU reference's.
        fmad: Some(false),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(program_source(), opts)?.to_src();
    guard.insert((major, minor), ptx.clone());
    Ok(ptx)
}

/// Suffix of a kernel instantiated per storage type.
pub fn dtype_suffix(p: Precision) -> &'static str {
    match p {
        Precision::Fp32 => "f32",
        Precision::Fp16 => "f16",
        Precision::Bf16 => "bf16",
    }
}

/// The loaded functions, those templated on the activation type already picked for the
/// engine's precision.
pub struct Kernels {
    _module: Arc<CudaModule>,
    pub epilogue: CudaFunction,
    pub epilogue1: CudaFunction,
    pub reflect_pad: CudaFunction,
    pub pool: CudaFunction,
    pub se_mean: CudaFunction,
    pub se_gate: CudaFunction,
    pub frame_to_slot: CudaFunction,
    pub f32_to_slot: CudaFunction,
    pub slot_sum: CudaFunction,
    pub slot_sum_final: CudaFunction,
    pub window_mean: CudaFunction,
    pub assemble: CudaFunction,
    pub out_frame: CudaFunction,
    pub out_f32: CudaFunction,
    pub ref_conv: CudaFunction,
    pub max_diff: CudaFunction,
}

impl Kernels {
    pub fn load(ctx: &Arc<CudaContext>, precision: Precision) -> Result<Kernels> {
        let (major, minor) = ctx.compute_capability().during("cuDeviceGetAttribute")?;
        let ptx = compile(major, minor)?;
        let module = ctx
            .load_module(Ptx::from_src(ptx))
            .during("cuModuleLoadData")?;
        let sfx = dtype_suffix(precision);
        let f = |name: &str| -> Result<CudaFunction> {
            module.load_function(name).map_err(|e| {
                CudaError::Compile(format!(
                    "kernel {name} missing from the module: {}",
                    super::error::driver_text(&e)
                ))
            })
        };
        let t = |name: &str| f(&format!("{name}_{sfx}"));
        Ok(Kernels {
            epilogue: t("epilogue")?,
            epilogue1: t("epilogue1")?,
            reflect_pad: t("reflect_pad")?,
            pool: t("pool")?,
            se_mean: f("se_mean")?,
            se_gate: f("se_gate")?,
            frame_to_slot: f("frame_to_slot")?,
            f32_to_slot: f("f32_to_slot")?,
            slot_sum: f("slot_sum")?,
            slot_sum_final: f("slot_sum_final")?,
            window_mean: f("window_mean")?,
            assemble: t("assemble")?,
            out_frame: t("out_frame")?,
            out_f32: t("out_f32")?,
            ref_conv: t("ref_conv")?,
            max_diff: t("max_diff")?,
            _module: module,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compiles the kernels when NVRTC is on this machine (no GPU needed); says so otherwise.
    #[test]
    fn kernels_compile_with_nvrtc() {
        // SAFETY: only probes whether the shared library can be opened.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            eprintln!("skipped: NVRTC not found (set LD_LIBRARY_PATH to its folder)");
            return;
        }
        let ptx = match compile(9, 0) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        for p in [Precision::Fp32, Precision::Fp16, Precision::Bf16] {
            let s = dtype_suffix(p);
            for k in [
                "epilogue",
                "epilogue1",
                "reflect_pad",
                "pool",
                "assemble",
                "out_frame",
            ] {
                assert!(ptx.contains(&format!(".entry {k}_{s}(")), "{k}_{s} missing");
            }
        }
        for k in [
            "se_mean",
            "se_gate",
            "frame_to_slot",
            "slot_sum",
            "window_mean",
        ] {
            assert!(ptx.contains(&format!(".entry {k}(")), "{k} missing");
        }
    }
}
