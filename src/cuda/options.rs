//! Options of the CUDA engine: tuning and diagnosis switches, given to
//! [`Engine::open`](super::Engine::open), [`open`](super::open) and
//! [`open_engine`](super::open_engine). The defaults are what the element runs with.
//!
//! The engine reads no environment. At the edges (the element's backend opening, the `bench`
//! binary, the GPU tests) [`EngineOptions::from_env`] reads these variables, so that the
//! diagnosis runs of `tools/device/bench_run.sh` can switch them without a rebuild:
//!
//! | variable | field | default | effect |
//! | --- | --- | --- | --- |
//! | `FLAVR_CUDA_CONVT=cudnn` (or `phases`) | [`convt_cudnn`](EngineOptions::convt_cudnn) | phases | transposed convolutions through cuDNN's backward-data instead of four sub-pixel phase convolutions (for comparison) |
//! | `FLAVR_CUDA_VERIFY` (set) | [`verify`](EngineOptions::verify) | off | every forward convolution checked against a direct one, the largest difference printed (slow) |
//! | `FLAVR_CUDA_WORKSPACE_MB=N` | [`workspace_cap`](EngineOptions::workspace_cap) | 512 MiB | largest cuDNN workspace an algorithm may use |
//! | `FLAVR_CUDA_NO_REUSE` (set) | [`arena_reuse`](EngineOptions::arena_reuse) `= false` | reuse | every activation buffer its own bytes, no sharing by liveness |
//! | `FLAVR_CUDA_ALL_ALGOS` (set) | [`all_algos`](EngineOptions::all_algos) | GEMM family | the algorithm search may choose FFT and Winograd algorithms too |
//! | `FLAVR_CUDA_GRAPH=0` (or `1`) | [`graph_api`](EngineOptions::graph_api) | on | float16/bfloat16 convolutions may run as cuDNN graph-API plans, timed at configure, where faster than the legacy algorithm |
//! | `FLAVR_CUDA_CAPTURE=0` (or `1`) | [`capture`](EngineOptions::capture) | on | the network of a window (everything after the window's upload, up to the outconv) is captured once per configured layout as a CUDA graph and replayed for every window, which saves the gaps between its ~150 launches; off, or where capture fails (logged once), the launches are issued one by one |
//! | `FLAVR_CUDA_FOLD=0` (or `1`) | [`time_fold`](EngineOptions::time_fold) | on | the first layer's four 3x3x3 convolutions run as 2-D 3x3 convolutions over the four frames stacked in channels (64 x 4 = 256, zero weights across distant frames), which cuDNN runs faster than the 3-D form at 1080p (notes/perf.md v12) |
//! | `FLAVR_CUDA_OUTCONV=0` (or `1`) | [`own_outconv`](EngineOptions::own_outconv) | on | in float16 and bfloat16, the outconv of a model with one output frame runs on our tensor-core kernel (kernels/outconv.cu) instead of cuDNN, which runs its 16 output channels slowly (notes/perf.md v13) |
//! | `FLAVR_CUDA_GATEFOLD=0` (or `1`) | [`gate_fold`](EngineOptions::gate_fold) | on | in float16 and bfloat16 with the graph API, the last decoder stage's SE gate is folded into feature_fuse's filter for each window (a LeakyReLU commutes with a positive gate), so that stage's epilogue is bias + LeakyReLU alone, which its conv's graph-API plan runs where that is no slower (notes/perf.md v16) |
//! | `FLAVR_CUDA_FAULT=start` (or `after:N`) | [`fault`](EngineOptions::fault) | none | fault injection, for tests of the element's error paths: opening the engine fails as if the GPU were unusable (before the device is touched), or every window after the first `N` fails as if the GPU had fallen off the bus |
//! | `FLAVR_CUDA_PLAN_CACHE=PATH` (or `off`) | [`plan_cache`](EngineOptions::plan_cache) | `$XDG_CACHE_HOME/gst-flavr/cudnn-plans.tsv` (else `~/.cache/...`) from the environment; none in `Default` | where the graph-API tuning results are kept between runs |
//!
//! "(set)": any value turns the switch on, as `FLAVR_CUDA_VERIFY=1`.

use std::ffi::OsString;
use std::path::PathBuf;

use super::error::{CudaError, Result};

/// Largest cuDNN workspace an algorithm may use by default (bytes). Faster algorithms that
/// need more are passed over, so that peak memory stays low.
pub const DEFAULT_WORKSPACE_CAP: usize = 512 << 20;

/// A failure the engine makes on purpose ([`EngineOptions::fault`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Opening fails: the GPU unusable at start.
    Start,
    /// The first `N` windows run, every later one fails: the GPU lost in mid-stream.
    After(u64),
}

impl Fault {
    /// `start` or `after:N`.
    pub fn parse(s: &str) -> Option<Fault> {
        match s {
            "start" => Some(Fault::Start),
            _ => s
                .strip_prefix("after:")
                .and_then(|n| n.parse().ok())
                .map(Fault::After),
        }
    }
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Start => write!(f, "FLAVR_CUDA_FAULT=start"),
            Fault::After(n) => write!(f, "FLAVR_CUDA_FAULT=after:{n}"),
        }
    }
}

/// How the engine is built and checked; see the [module documentation](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// Transposed convolutions through cuDNN's backward-data instead of sub-pixel phases.
    pub convt_cudnn: bool,
    /// Check every forward convolution against a direct convolution (prints; slow).
    pub verify: bool,
    /// Largest cuDNN workspace an algorithm may use, in bytes.
    pub workspace_cap: usize,
    /// Share activation bytes between buffers whose lifetimes do not overlap.
    pub arena_reuse: bool,
    /// Let the algorithm search use every cuDNN algorithm, not only the GEMM family.
    pub all_algos: bool,
    /// Time cuDNN graph-API plans too (float16/bfloat16) and use them where faster.
    pub graph_api: bool,
    /// The file that keeps graph-API tuning results between runs (None: memory only).
    pub plan_cache: Option<PathBuf>,
    /// Replay the network of a window as one captured CUDA graph.
    pub capture: bool,
    /// Run the first layer's convolutions time-folded (see the module documentation).
    pub time_fold: bool,
    /// Run the outconv on our own kernel where it applies (see the module documentation).
    pub own_outconv: bool,
    /// Fold the last decoder stage's SE gate into feature_fuse's filter (float16 and bfloat16
    /// with the graph API; see the module documentation).
    pub gate_fold: bool,
    /// Fail on purpose (tests): at open, or after some windows.
    pub fault: Option<Fault>,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions {
            convt_cudnn: false,
            verify: false,
            workspace_cap: DEFAULT_WORKSPACE_CAP,
            arena_reuse: true,
            all_algos: false,
            graph_api: true,
            plan_cache: None,
            capture: true,
            time_fold: true,
            own_outconv: true,
            gate_fold: true,
            fault: None,
        }
    }
}

impl EngineOptions {
    /// The defaults, changed by the `FLAVR_CUDA_*` variables of the module documentation. A
    /// value that cannot be read is an error naming the variable.
    pub fn from_env() -> Result<EngineOptions> {
        EngineOptions::from_vars(|name| std::env::var_os(name))
    }

    /// [`from_env`](Self::from_env) over any source of variables.
    fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Result<EngineOptions> {
        let bad = |name: &str, v: &OsString, expected: &str| {
            CudaError::Option(format!("{name}={} is not {expected}", v.to_string_lossy()))
        };
        let mut o = EngineOptions::default();
        if let Some(v) = var("FLAVR_CUDA_CONVT") {
            o.convt_cudnn = match v.to_str() {
                Some("cudnn") => true,
                Some("phases") => false,
                _ => return Err(bad("FLAVR_CUDA_CONVT", &v, "`cudnn` or `phases`")),
            };
        }
        if let Some(v) = var("FLAVR_CUDA_WORKSPACE_MB") {
            o.workspace_cap = v
                .to_str()
                .and_then(|s| s.parse::<usize>().ok())
                .and_then(|mb| mb.checked_mul(1 << 20))
                .ok_or_else(|| bad("FLAVR_CUDA_WORKSPACE_MB", &v, "a number of MiB"))?;
        }
        o.verify = var("FLAVR_CUDA_VERIFY").is_some();
        o.arena_reuse = var("FLAVR_CUDA_NO_REUSE").is_none();
        o.all_algos = var("FLAVR_CUDA_ALL_ALGOS").is_some();
        // A `0` / `1` switch, unchanged when unset.
        let switch = |name: &str, on: &mut bool| -> Result<()> {
            if let Some(v) = var(name) {
                *on = match v.to_str() {
                    Some("1") => true,
                    Some("0") => false,
                    _ => return Err(bad(name, &v, "`0` or `1`")),
                };
            }
            Ok(())
        };
        switch("FLAVR_CUDA_GRAPH", &mut o.graph_api)?;
        switch("FLAVR_CUDA_CAPTURE", &mut o.capture)?;
        switch("FLAVR_CUDA_FOLD", &mut o.time_fold)?;
        switch("FLAVR_CUDA_OUTCONV", &mut o.own_outconv)?;
        switch("FLAVR_CUDA_GATEFOLD", &mut o.gate_fold)?;
        if let Some(v) = var("FLAVR_CUDA_FAULT") {
            o.fault = Some(
                v.to_str()
                    .and_then(Fault::parse)
                    .ok_or_else(|| bad("FLAVR_CUDA_FAULT", &v, "`start` or `after:N`"))?,
            );
        }
        o.plan_cache = match var("FLAVR_CUDA_PLAN_CACHE") {
            Some(v) if v == "off" => None,
            Some(v) if !v.is_empty() => Some(PathBuf::from(v)),
            _ => var("XDG_CACHE_HOME")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .or_else(|| var("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .map(|d| d.join("gst-flavr").join("cudnn-plans.tsv")),
        };
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<EngineOptions> {
        EngineOptions::from_vars(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn no_variables_give_the_defaults() {
        let o = with(&[]).expect("defaults");
        assert_eq!(o, EngineOptions::default());
        assert!(!o.convt_cudnn && !o.verify && o.arena_reuse && !o.all_algos && o.graph_api);
        assert!(o.capture && o.time_fold && o.own_outconv && o.gate_fold);
        assert_eq!(o.workspace_cap, 512 << 20);
    }

    #[test]
    fn each_variable_sets_its_field() {
        let o = with(&[
            ("FLAVR_CUDA_CONVT", "cudnn"),
            ("FLAVR_CUDA_VERIFY", "1"),
            ("FLAVR_CUDA_WORKSPACE_MB", "64"),
            ("FLAVR_CUDA_NO_REUSE", "1"),
            ("FLAVR_CUDA_ALL_ALGOS", "1"),
            ("FLAVR_CUDA_GRAPH", "0"),
            ("FLAVR_CUDA_PLAN_CACHE", "/tmp/p.tsv"),
            ("FLAVR_CUDA_CAPTURE", "0"),
            ("FLAVR_CUDA_FOLD", "0"),
            ("FLAVR_CUDA_OUTCONV", "0"),
            ("FLAVR_CUDA_GATEFOLD", "0"),
            ("FLAVR_CUDA_FAULT", "after:12"),
        ])
        .expect("options");
        assert_eq!(
            o,
            EngineOptions {
                convt_cudnn: true,
                verify: true,
                workspace_cap: 64 << 20,
                arena_reuse: false,
                all_algos: true,
                graph_api: false,
                plan_cache: Some(PathBuf::from("/tmp/p.tsv")),
                capture: false,
                time_fold: false,
                own_outconv: false,
                gate_fold: false,
                fault: Some(Fault::After(12)),
            }
        );
        assert_eq!(
            with(&[("FLAVR_CUDA_FAULT", "start")]).unwrap().fault,
            Some(Fault::Start)
        );
        // The plan cache: off, or under the cache home.
        assert_eq!(
            with(&[("FLAVR_CUDA_PLAN_CACHE", "off")])
                .unwrap()
                .plan_cache,
            None
        );
        assert_eq!(
            with(&[("HOME", "/h")]).unwrap().plan_cache,
            Some(PathBuf::from("/h/.cache/gst-flavr/cudnn-plans.tsv"))
        );
        assert_eq!(
            with(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")])
                .unwrap()
                .plan_cache,
            Some(PathBuf::from("/x/gst-flavr/cudnn-plans.tsv"))
        );
        let o = with(&[
            ("FLAVR_CUDA_CONVT", "phases"),
            ("FLAVR_CUDA_WORKSPACE_MB", "0"),
        ])
        .expect("options");
        assert!(!o.convt_cudnn);
        assert_eq!(o.workspace_cap, 0);
    }

    #[test]
    fn unreadable_values_are_errors_naming_the_variable() {
        for (name, value) in [
            ("FLAVR_CUDA_CONVT", "cuDNN!"),
            ("FLAVR_CUDA_WORKSPACE_MB", "lots"),
            ("FLAVR_CUDA_WORKSPACE_MB", "-1"),
            ("FLAVR_CUDA_WORKSPACE_MB", "99999999999999999999"),
            ("FLAVR_CUDA_GRAPH", "yes"),
            ("FLAVR_CUDA_CAPTURE", "on"),
            ("FLAVR_CUDA_FOLD", "2"),
            ("FLAVR_CUDA_GATEFOLD", "true"),
            ("FLAVR_CUDA_FAULT", "after"),
            ("FLAVR_CUDA_FAULT", "after:x"),
            ("FLAVR_CUDA_FAULT", "now"),
        ] {
            let err = with(&[(name, value)]).expect_err(value).to_string();
            assert!(err.contains(name) && err.contains(value), "{err}");
        }
    }
}
