//! Our CUDA kernels: the sources of `kernels/` (built into the library with `include_str!`),
//! compiled once per GPU architecture with NVRTC when an engine opens, and their functions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use super::error::{CudaError, DriverContext, Result};
use super::params::Dtype;
use crate::backend::Precision;

/// The headers the kernel files `#include`.
const HEADERS: [(&str, &str); 2] = [
    ("common.cuh", include_str!("../../kernels/common.cuh")),
    ("params.cuh", include_str!("../../kernels/params.cuh")),
];

/// The kernel files, compiled as one NVRTC program in this order.
const UNITS: [(&str, &str); 6] = [
    (
        "elementwise.cu",
        include_str!("../../kernels/elementwise.cu"),
    ),
    ("se.cu", include_str!("../../kernels/se.cu")),
    ("pixels.cu", include_str!("../../kernels/pixels.cu")),
    ("check.cu", include_str!("../../kernels/check.cu")),
    ("outconv.cu", include_str!("../../kernels/outconv.cu")),
    ("scene.cu", include_str!("../../kernels/scene.cu")),
];

/// The whole program's text: the kernel files, each header expanded in place at its first
/// `#include "name"` (later ones are dropped, as an include guard would), with `#line` markers
/// so NVRTC's log names the real file and line.
pub fn program_source() -> Result<String> {
    let mut src = String::new();
    let mut done = Vec::new();
    for (name, text) in UNITS {
        append_source(&mut src, name, text, &mut done)?;
    }
    Ok(src)
}

fn append_source(
    src: &mut String,
    name: &str,
    text: &str,
    done: &mut Vec<&'static str>,
) -> Result<()> {
    src.push_str(&format!("#line 1 \"{name}\"\n"));
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.trim_start().strip_prefix("#include") else {
            src.push_str(line);
            src.push('\n');
            continue;
        };
        let want = rest.trim().trim_matches('"');
        let Some(&(header, body)) = HEADERS.iter().find(|(h, _)| *h == want) else {
            return Err(CudaError::Compile(format!(
                "{name}:{}: unknown header {want}",
                i + 1
            )));
        };
        if !done.contains(&header) {
            done.push(header);
            append_source(src, header, body, done)?;
        }
        src.push_str(&format!("#line {} \"{name}\"\n", i + 2));
    }
    Ok(())
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
    let ptx = compile_ptx_with_opts(program_source()?, opts)?.to_src();
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

/// Our kernels. The value of each is its index in [`KernelId::ALL`] and in the loaded table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelId {
    Epilogue,
    Epilogue1,
    ReflectPad,
    Pool,
    SeMean,
    SeGate,
    FrameToSlot,
    F32ToSlot,
    SlotSum,
    SlotSumFinal,
    WindowMean,
    Assemble,
    OutFrame,
    OutF32,
    RefConv,
    MaxDiff,
    OutConv,
    GateWeights,
    SceneSums,
}

impl KernelId {
    /// Every kernel, in the order of their values.
    pub const ALL: [KernelId; 19] = [
        KernelId::Epilogue,
        KernelId::Epilogue1,
        KernelId::ReflectPad,
        KernelId::Pool,
        KernelId::SeMean,
        KernelId::SeGate,
        KernelId::FrameToSlot,
        KernelId::F32ToSlot,
        KernelId::SlotSum,
        KernelId::SlotSumFinal,
        KernelId::WindowMean,
        KernelId::Assemble,
        KernelId::OutFrame,
        KernelId::OutF32,
        KernelId::RefConv,
        KernelId::MaxDiff,
        KernelId::OutConv,
        KernelId::GateWeights,
        KernelId::SceneSums,
    ];

    /// The kernel's name in kernels/*.cu, and whether it is a template instantiated per
    /// activation type (entry points `NAME_f32`, `NAME_f16`, `NAME_bf16`).
    const fn source(self) -> (&'static str, bool) {
        match self {
            KernelId::Epilogue => ("epilogue", true),
            KernelId::Epilogue1 => ("epilogue1", true),
            KernelId::ReflectPad => ("reflect_pad", true),
            KernelId::Pool => ("pool", true),
            KernelId::SeMean => ("se_mean", false),
            KernelId::SeGate => ("se_gate", false),
            KernelId::FrameToSlot => ("frame_to_slot", false),
            KernelId::F32ToSlot => ("f32_to_slot", false),
            KernelId::SlotSum => ("slot_sum", false),
            KernelId::SlotSumFinal => ("slot_sum_final", false),
            KernelId::WindowMean => ("window_mean", false),
            KernelId::Assemble => ("assemble", true),
            KernelId::OutFrame => ("out_frame", true),
            KernelId::OutF32 => ("out_f32", true),
            KernelId::RefConv => ("ref_conv", true),
            KernelId::MaxDiff => ("max_diff", true),
            KernelId::OutConv => ("outconv", true),
            KernelId::GateWeights => ("gate_weights", true),
            KernelId::SceneSums => ("scene_sums", false),
        }
    }

    /// The entry point's name for activations of `precision`.
    pub fn symbol(self, precision: Precision) -> String {
        match self.source() {
            (name, true) => format!("{name}_{}", dtype_suffix(precision)),
            (name, false) => name.to_string(),
        }
    }
}

// ALL lists each kernel at its own value, so `Kernels::get` indexes the right function.
const _: () = {
    let mut i = 0;
    while i < KernelId::ALL.len() {
        assert!(KernelId::ALL[i] as usize == i);
        i += 1;
    }
};

/// The loaded functions, those templated on the activation type already picked for the
/// engine's precision.
pub struct Kernels {
    _module: Arc<CudaModule>,
    /// The activation type the templated kernels were picked for.
    pub act: Dtype,
    /// Indexed by [`KernelId`].
    fns: Vec<CudaFunction>,
}

impl Kernels {
    /// Compiles (once per architecture) and loads every kernel, for activations of
    /// `precision`.
    pub fn load(ctx: &Arc<CudaContext>, precision: Precision) -> Result<Kernels> {
        let (major, minor) = ctx.compute_capability().during("cuDeviceGetAttribute")?;
        let ptx = compile(major, minor)?;
        let module = ctx
            .load_module(Ptx::from_src(ptx))
            .during("cuModuleLoadData")?;
        let fns = KernelId::ALL
            .iter()
            .map(|id| {
                let name = id.symbol(precision);
                module.load_function(&name).map_err(|e| {
                    CudaError::Compile(format!(
                        "kernel {name} missing from the module: {}",
                        super::error::driver_text(&e)
                    ))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Kernels {
            _module: module,
            act: Dtype::act(precision),
            fns,
        })
    }

    /// The function of kernel `id`.
    pub fn get(&self, id: KernelId) -> &CudaFunction {
        &self.fns[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every header is expanded once, before the first file that needs it, and no `#include`
    /// reaches NVRTC (which has no files to include).
    #[test]
    fn program_expands_each_header_once() {
        let src = program_source().expect("program");
        assert!(!src.contains("#include"));
        for (h, body) in HEADERS {
            assert_eq!(src.matches(&format!("#line 1 \"{h}\"")).count(), 1, "{h}");
            let first = body.lines().next().expect("header text");
            assert_eq!(src.matches(first).count(), 1, "{h}");
        }
        // params.cuh is inside common.cuh, both before the first kernel.
        let at = |m: &str| src.find(m).unwrap_or_else(|| panic!("{m}"));
        assert!(at("#line 1 \"common.cuh\"") < at("#line 1 \"params.cuh\""));
        assert!(at("struct EpiParams") < at("epilogue_t"));
        for (name, _) in UNITS {
            assert!(src.contains(&format!("#line 1 \"{name}\"")), "{name}");
        }
    }

    /// Compiles the kernels when NVRTC is on this machine (no GPU needed); says so otherwise.
    /// Every kernel id has its entry point in every precision.
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
            for id in KernelId::ALL {
                let name = id.symbol(p);
                assert!(ptx.contains(&format!(".entry {name}(")), "{name} missing");
            }
        }
    }

    #[test]
    fn kernel_symbols_name_the_sources() {
        assert_eq!(KernelId::Epilogue.symbol(Precision::Fp16), "epilogue_f16");
        assert_eq!(KernelId::MaxDiff.symbol(Precision::Bf16), "max_diff_bf16");
        assert_eq!(KernelId::SlotSum.symbol(Precision::Bf16), "slot_sum");
        let src = program_source().expect("program");
        for id in KernelId::ALL {
            let (name, templated) = id.source();
            let entry = if templated {
                format!("INSTANTIATE3({name},")
            } else {
                format!("__global__ void {name}(")
            };
            assert!(src.contains(&entry), "{id:?}: no `{entry}` in kernels/");
        }
    }
}
