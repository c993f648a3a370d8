//! The plan for a frame size ([`Engine::configure`]): the forward pass as a graph over arena
//! buffers, the arena, the cuDNN algorithm search (and the graph-API plans, with the fusions
//! they allow), the frame I/O and the outconv on our kernel where it applies. The plan is run
//! by [`super::engine`].

use cudarc::driver::{CudaStream, sys};

use super::arena::{self, align_up};
use super::cudnn::{self, ConvBufs, ConvEpilogue, ConvGeom, GraphConv, GraphRequest, Search};
use super::engine::{Engine, MemoryReport, Plan, epilogue_args};
use super::error::{DriverContext, Result};
use super::graph::{Epi, GraphOpts, Op, build_graph, lifetimes};
use super::io::Io;
use super::kernels::Kernels;
use super::launch::{self, Epilogue};
use super::memory::{self, DeviceBuf, Dtype};
use super::options::EngineOptions;
use super::params::{ACT_LRELU, ACT_RELU, FrameGeom};
use super::weights::Span;
use crate::backend::{FrameLayout, Precision};

/// Whether `e` is a bare ReLU of buffer `y` in place (a cuDNN epilogue can do it).
/// The slope of an in-place (Leaky)ReLU with nothing else but the bias right after conv output
/// `y` (0 for ReLU, 0.2 for LeakyReLU), which the conv's graph-API plan can do instead.
fn act_in_place(e: &Epi, y: usize) -> Option<f64> {
    let slope = match e.act {
        ACT_RELU => 0.0,
        ACT_LRELU => 0.2,
        _ => return None,
    };
    (e.x == y
        && e.out.buf == y
        && e.out.off == 0
        && e.out.stride == e.c
        && !e.gate
        && e.resid.is_none()
        && e.out2.is_none()
        && e.fold.is_none()
        && e.phases.is_none()
        && e.gc.is_none())
    .then_some(slope)
}

/// Whether convolutions are also timed as cuDNN graph-API plans (float16 and bfloat16).
fn graph_api_on(opts: &EngineOptions, precision: Precision) -> bool {
    opts.graph_api && precision != Precision::Fp32
}

/// Milliseconds of the epilogue `epi` on its own on `stream` (the mean of three runs after
/// one; it changes its output's contents).
fn time_epilogue(stream: &CudaStream, k: &Kernels, epi: &Epilogue<'_>) -> Result<f32> {
    let ctx = stream.context();
    let ev = || {
        ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .during("cuEventCreate")
    };
    let (start, end) = (ev()?, ev()?);
    launch::epilogue(stream, k, epi)?;
    start.record(stream).during("cuEventRecord")?;
    for _ in 0..3 {
        launch::epilogue(stream, k, epi)?;
    }
    end.record(stream).during("cuEventRecord")?;
    Ok(start.elapsed_ms(&end).during("cuEventElapsedTime")? / 3.0)
}

impl Engine {
    /// Plans buffers and algorithms for frames of `layout`.
    pub fn configure(&mut self, layout: &FrameLayout) -> Result<()> {
        let geom = FrameGeom::new(layout)?;
        self.ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        self.stream.synchronize().during("cuStreamSynchronize")?;
        self.copy.synchronize().during("cuStreamSynchronize")?;
        self.down.synchronize().during("cuStreamSynchronize")?;
        // Release the old plan (and the windows in flight) before allocating the new one.
        self.plan = None;
        let (wp, hp) = geom.padded();
        let gopts = GraphOpts {
            convt_cudnn: self.opts.convt_cudnn,
            time_fold: self.opts.time_fold,
            // Only where the bias + LeakyReLU left can go into the conv's graph-API plan.
            gate_fold: self.opts.gate_fold && graph_api_on(&self.opts, self.precision),
        };
        let g = build_graph(&self.net, &self.spec, hp, wp, gopts);
        let lts = lifetimes(&g);
        let mut arena_plan = arena::plan_arena(&lts);
        if !self.opts.arena_reuse {
            // Diagnosis: every buffer its own bytes.
            let mut at = 0;
            for (o, l) in arena_plan.offsets.iter_mut().zip(&lts) {
                *o = at;
                at += align_up(l.bytes);
            }
            arena_plan.size = at;
        }
        let arena = DeviceBuf::new(&self.ctx, arena_plan.size, "activation arena (cuMemAlloc)")?;
        // Defined, finite contents for the algorithm search (0x3C3C: about 1.06 in f16).
        memory::memset(arena.view(Dtype::U8), 0x3c, &self.stream)?;
        let act = self.k.act;
        let bufs: Vec<Span> = arena_plan
            .offsets
            .iter()
            .zip(&g.bufs)
            .map(|(&off, &bytes)| Span { off, bytes })
            .collect();
        let buf = |i: usize| arena.slice(bufs[i].off, bufs[i].bytes, act);
        let mut convs = Vec::with_capacity(g.convs.len());
        for c in &g.convs {
            let s = c.w.shape;
            convs.push(cudnn::Conv::new(
                self.precision,
                s.transposed,
                c.x_dims,
                s.filter_dims(),
                c.y_dims,
                s.pad,
                s.stride,
            )?);
        }
        // Algorithm search, once per distinct shape (cached across configures).
        let mut search = Search::new(
            &self.ctx,
            &self.dnn,
            self.precision,
            &mut self.found,
            self.opts.workspace_cap,
            self.opts.all_algos,
        );
        let mut choices = Vec::new();
        let mut graphs: Vec<Option<GraphConv>> = (0..g.convs.len()).map(|_| None).collect();
        let mut skip = vec![false; g.ops.len()];
        let graph_api = graph_api_on(&self.opts, self.precision);
        for (oi, op) in g.ops.iter().enumerate() {
            let Op::Conv { i, x, y, y_off } = *op else {
                continue;
            };
            let step = &g.convs[i];
            let key = cudnn::shape_key(self.precision, step.x_dims, step.y_dims, &step.w.shape);
            let w = self.wbuf.slice(step.w.w.off, step.w.w.bytes, act)?;
            let (xv, yv) = (buf(x)?, buf(y)?.from(y_off)?);
            let mut choice = search.choose(key.clone(), &mut convs[i], xv, w, yv)?;
            let s = step.w.shape;
            if graph_api && !s.transposed {
                let geom = ConvGeom {
                    dt: cudnn::data_type(self.precision),
                    dtype: act,
                    x_dims: step.x_dims,
                    w_dims: s.filter_dims(),
                    y_dims: step.y_dims,
                    pad: s.pad,
                    stride: s.stride,
                };
                let bufs = ConvBufs {
                    x: xv,
                    w,
                    y: yv,
                    bias: None,
                    ws: None,
                };
                let legacy = choice.chosen.ms;
                let plain = GraphRequest {
                    key: &key,
                    geom: &geom,
                    epi: ConvEpilogue::default(),
                    bufs,
                };
                let mut gc =
                    search.graph(&self.stream, &mut self.plans, plain, |ms| ms < legacy)?;
                // An in-place (Leaky)ReLU right after this conv (the encoder blocks' conv1, the
                // last decoder stage with its gate folded) fused into the plan, where the fused
                // plan takes no longer than the conv alone and the pass it saves (that pass
                // reads and writes the whole output).
                if let Some(Op::Epi(e)) = g.ops.get(oi + 1)
                    && let Some(slope) = act_in_place(e, y)
                    && y_off == 0
                    && e.bias == step.w.bias
                {
                    let epi = ConvEpilogue {
                        bias: e.bias.is_some(),
                        relu_slope: Some(slope),
                    };
                    let bias = e
                        .bias
                        .map(|b| self.wbuf.slice(b.off, b.bytes, Dtype::F32))
                        .transpose()?;
                    let relu = epilogue_args(&self.wbuf, e, &buf, None)?;
                    let pass = time_epilogue(&self.stream, &self.k, &relu)?;
                    let alone = gc.as_ref().map_or(legacy, |g| g.choice.ms) + pass;
                    let fkey = if slope == 0.0 {
                        format!("{key} relu {}", epi.bias)
                    } else {
                        format!("{key} relu{slope} {}", epi.bias)
                    };
                    let req = GraphRequest {
                        key: &fkey,
                        geom: &geom,
                        epi,
                        bufs: ConvBufs { bias, ..bufs },
                    };
                    let fused =
                        search.graph(&self.stream, &mut self.plans, req, |ms| ms <= alone)?;
                    if fused.is_some() {
                        skip[oi + 1] = true;
                        gc = fused;
                    }
                }
                choice.graph = gc.as_ref().map(|g| g.choice);
                graphs[i] = gc;
            }
            choices.push(choice);
        }
        drop(search);
        self.plans.save();
        let ws_bytes = choices
            .iter()
            .map(|c| c.graph.map_or(c.chosen.workspace, |g| g.workspace))
            .max()
            .unwrap_or(0);
        let ws = if ws_bytes > 0 {
            Some(DeviceBuf::new(
                &self.ctx,
                ws_bytes,
                "cuDNN workspace (cuMemAlloc)",
            )?)
        } else {
            None
        };
        let io = Io::new(
            &self.ctx,
            &self.copy,
            layout.size,
            hp * wp,
            g.cmax,
            self.spec.n_out,
        )?;
        let mem = MemoryReport {
            weights: self.wbuf.bytes(),
            arena: arena.bytes(),
            workspace: ws.as_ref().map_or(0, |b| b.bytes()),
            io: io.device_bytes(),
            unshared: g.bufs.iter().map(|&b| align_up(b)).sum(),
        };
        // The outconv (the conv that writes the network's result) on our kernel where it applies.
        let own_out = g
            .ops
            .iter()
            .find_map(|op| match *op {
                Op::Conv { i, y, .. } if y == g.y => Some(i),
                _ => None,
            })
            .filter(|&i| {
                let c = &g.convs[i];
                self.opts.own_outconv
                    && c.w.shape.taps == [1, 4, 4]
                    && launch::outconv_applies(act, c.y_dims[1], c.x_dims[1])
            });
        self.plan = Some(Plan {
            captured: None,
            capture_failed: None,
            layout: layout.clone(),
            geom,
            hp,
            wp,
            conv_w: g.convs.iter().map(|c| c.w).collect(),
            conv_dims: g.convs.iter().map(|c| (c.x_dims, c.y_dims)).collect(),
            own_out,
            xin: g.xin,
            y: g.y,
            ops: g.ops,
            skip,
            convs,
            graphs,
            bufs,
            ws,
            io,
            mem,
            choices,
            act,
            arena,
        });
        Ok(())
    }
}
