//! The configure-time algorithm search: per convolution shape, cuDNN times its algorithms on
//! the plan's own buffers, and we choose among them (GEMM family, workspace under a cap,
//! float32 without TF32). Choices are cached by shape across configures.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::cudnn::sys;
use cudarc::driver::{CudaContext, CudaStream};

use super::backend::{ConvBufs, ConvEpilogue, ConvGeom, GraphChoice, GraphConv};
use super::plan_cache::{Choice, PlanCache};
use super::{Algo, Candidate, Conv, Dnn};
use crate::backend::Precision;
use crate::cuda::error::{CudaError, DriverContext, Result};
use crate::cuda::memory::{DevView, DeviceBuf, Dtype};
use crate::cuda::weights::ConvShape;

/// Per-layer record of the configure-time algorithm search (for logs and notes).
#[derive(Clone, Debug)]
pub struct ConvChoice {
    pub what: String,
    pub chosen: Candidate,
    /// The graph-API plan used instead, where it was faster (see [`Search::graph`]).
    pub graph: Option<GraphChoice>,
}

/// Graph-API engine configurations timed per convolution shape (heuristics' best ranked
/// first); the winners measured on an H200 were ranked 1st to 11th.
pub const GRAPH_TRIES: usize = 12;

/// One convolution for [`Search::graph`]: its cache key, shapes, epilogue and buffers.
pub(crate) struct GraphRequest<'a> {
    pub key: &'a str,
    pub geom: &'a ConvGeom,
    pub epi: ConvEpilogue,
    pub bufs: ConvBufs<'a>,
}

/// Algorithms chosen so far, by convolution shape (see [`shape_key`]).
#[derive(Default)]
pub(crate) struct AlgoCache(HashMap<String, Candidate>);

/// The cache key (and log name) of a convolution in `precision`.
pub(crate) fn shape_key(
    precision: Precision,
    x_dims: [usize; 5],
    y_dims: [usize; 5],
    s: &ConvShape,
) -> String {
    format!(
        "{precision:?} {x_dims:?} {y_dims:?} {:?} {:?} {:?} {}",
        s.taps, s.stride, s.pad, s.transposed
    )
}

/// Whether an algorithm computes the convolution as a (direct or implicit) GEMM: the same
/// products summed in float32. FFT and Winograd algorithms transform the data and round
/// differently (larger errors, unwelcome in the float32 exact mode); with channels-last data
/// the GEMM family was also the fastest wherever the search could choose freely (fp16/bf16 at
/// every size measured). The `all_algos` option lets the search use every algorithm.
pub fn gemm_family(a: Algo) -> bool {
    use sys::cudnnConvolutionBwdDataAlgo_t as B;
    use sys::cudnnConvolutionFwdAlgo_t as F;
    match a {
        Algo::Fwd(f) => matches!(
            f,
            F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM
                | F::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM
                | F::CUDNN_CONVOLUTION_FWD_ALGO_GEMM
                | F::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT
        ),
        Algo::BwdData(b) => matches!(
            b,
            B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 | B::CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
        ),
    }
}

/// The fastest successful candidate whose workspace fits `ws_cap`, whose algorithm is of the
/// GEMM family (see [`gemm_family`]) unless `all` algorithms may be used, and whose arithmetic
/// the precision allows (float32: FMA only, no TF32 tensor cores).
pub fn choose(
    precision: Precision,
    found: &[Candidate],
    ws_cap: usize,
    all: bool,
) -> Option<Candidate> {
    use sys::cudnnMathType_t::*;
    found
        .iter()
        .filter(|c| {
            c.status == sys::cudnnStatus_t::CUDNN_STATUS_SUCCESS
                && c.workspace <= ws_cap
                && (all || gemm_family(c.algo))
                && (precision != Precision::Fp32
                    || matches!(c.math, CUDNN_FMA_MATH | CUDNN_DEFAULT_MATH))
        })
        .min_by(|a, b| a.ms.total_cmp(&b.ms))
        .copied()
}

/// One configure's search. The search workspace is taken on first need, as large as the GPU
/// gives up to the cap (a quarter at a time less), and freed with the search.
pub(crate) struct Search<'a> {
    ctx: &'a Arc<CudaContext>,
    dnn: &'a Dnn,
    precision: Precision,
    cache: &'a mut AlgoCache,
    cap: usize,
    all_algos: bool,
    ws: Option<DeviceBuf>,
}

impl<'a> Search<'a> {
    pub fn new(
        ctx: &'a Arc<CudaContext>,
        dnn: &'a Dnn,
        precision: Precision,
        cache: &'a mut AlgoCache,
        workspace_cap: usize,
        all_algos: bool,
    ) -> Search<'a> {
        Search {
            ctx,
            dnn,
            precision,
            cache,
            cap: workspace_cap,
            all_algos,
            ws: None,
        }
    }

    /// Sets `conv`'s algorithm: the cached choice for `key`, or the best of a search timed on
    /// `x`, `w`, `y` (buffers of the convolution's shapes; `y` is overwritten).
    pub fn choose(
        &mut self,
        key: String,
        conv: &mut Conv,
        x: DevView<'_>,
        w: DevView<'_>,
        y: DevView<'_>,
    ) -> Result<ConvChoice> {
        let p = self.precision;
        if let Some(c) = self.cache.0.get(&key) {
            conv.use_candidate(p, *c)?;
            return Ok(ConvChoice {
                what: key,
                chosen: *c,
                graph: None,
            });
        }
        self.take_workspace()?;
        let ws = match &self.ws {
            Some(b) => b.slice(0, self.cap, Dtype::U8)?,
            None => return Err(CudaError::Internal("no search workspace".into())),
        };
        let found = conv.find(self.dnn, p, x, w, y, ws)?;
        let c = match choose(p, &found, self.cap, self.all_algos) {
            Some(c) => c,
            None => {
                // Nothing fits the cap (float32 NDHWC may need an explicit-GEMM workspace):
                // search again with what the GPU has to spare.
                let (free, _) = self.ctx.mem_get_info().during("cuMemGetInfo")?;
                let big = (free / 2).min(8 << 30);
                let buf = DeviceBuf::new(self.ctx, big, "cuDNN search workspace")?;
                let again = conv.find(self.dnn, p, x, w, y, buf.slice(0, big, Dtype::U8)?)?;
                choose(p, &again, big, self.all_algos).ok_or_else(|| {
                    CudaError::Unsupported(format!(
                        "cuDNN has no usable algorithm for convolution {key}: {again:?}"
                    ))
                })?
            }
        };
        conv.use_candidate(p, c)?;
        self.cache.0.insert(key.clone(), c);
        Ok(ConvChoice {
            what: key,
            chosen: c,
            graph: None,
        })
    }

    /// A graph-API plan for `r` (its workspace is the search's own), kept when `keep(ms)`
    /// holds for its time: the plan cache's earlier choice rebuilt (when it is still the same
    /// engine), else the fastest of the first [`GRAPH_TRIES`] configurations, timed. The
    /// choice, or that none was kept, goes into the plan cache.
    pub fn graph(
        &mut self,
        stream: &CudaStream,
        plans: &mut PlanCache,
        r: GraphRequest<'_>,
        keep: impl Fn(f32) -> bool,
    ) -> Result<Option<GraphConv>> {
        let GraphRequest {
            key,
            geom,
            epi,
            bufs: b,
        } = r;
        let cached: Option<Choice> = plans.get(key);
        if cached == Some(None) {
            return Ok(None);
        }
        self.take_workspace()?;
        let ws = match &self.ws {
            Some(w) => Some(w.slice(0, self.cap, Dtype::U8)?),
            None => None,
        };
        let b = ConvBufs { ws, ..b };
        if let Some(Some((rank, engine))) = cached {
            let g = GraphConv::tune(self.dnn, stream, geom, epi, &b, 1, Some(rank))?;
            if let Some(g) = g.filter(|g| g.choice.engine == engine) {
                return Ok(Some(g));
            }
        }
        let g = GraphConv::tune(self.dnn, stream, geom, epi, &b, GRAPH_TRIES, None)?
            .filter(|g| keep(g.choice.ms));
        plans.insert(key, g.as_ref().map(|g| (g.choice.rank, g.choice.engine)));
        Ok(g)
    }

    /// Takes the search workspace on first use: what the GPU can give, up to the cap.
    fn take_workspace(&mut self) -> Result<()> {
        if self.ws.is_none() {
            loop {
                match DeviceBuf::new(self.ctx, self.cap.max(1), "cuDNN search workspace") {
                    Ok(b) => {
                        self.ws = Some(b);
                        break;
                    }
                    Err(CudaError::OutOfMemory(_)) if self.cap > (1 << 20) => self.cap /= 4,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}
