//! The forward pass as data: the graph IR (convolutions, SE gates, epilogues, the pad) over a
//! table of activation buffers, built for one padded frame size before anything is allocated,
//! and the buffers' lifetimes for the arena planner. Pure Rust: no GPU is needed to build or
//! test a plan.
//!
//! Layout: every activation is channels-last `[t, h, w, c]` (batch 1).

use super::arena::Lifetime;
use super::params::{ACT_LRELU, ACT_RELU, Fold};
use super::weights::{BlockW, ConvW, GateW, NetWeights, Span, elem_bytes};

/// One step of the forward pass. Buffers are indices into the plan's buffer table.
#[derive(Clone, Debug)]
pub(super) enum Op {
    /// y = conv_i(x) (cuDNN), written `y_off` elements into y.
    Conv {
        i: usize,
        x: usize,
        y: usize,
        y_off: usize,
    },
    /// SE gate of x (+ conv bias) into the gate scratch vector. `phases`: x holds the four
    /// sub-pixel phases of a transposed conv's output of `rows` rows, `(t, h, w)` their grid,
    /// as `[t][h + 1][w + 1][4][c]`. `post_lrelu`: x is LeakyReLU(0.2) of the conv's output
    /// (bias included), and the gate pools the pre-activation (the inverse of x).
    Gate {
        x: usize,
        rows: usize,
        c: usize,
        bias: Option<Span>,
        gate: GateW,
        phases: Option<(usize, usize, usize)>,
        post_lrelu: bool,
    },
    /// The gate scratch vector folded into a filter: `out[i] = w[i] * gate[i % c]` over the `n`
    /// elements of the filter `w` (weights), into `out` (the weights' spare filter the next
    /// conv reads).
    GateWeights {
        w: Span,
        out: Span,
        n: usize,
        c: usize,
    },
    /// out = act((x + bias) * gate + resid), optionally twice.
    Epi(Epi),
    /// Reflection pad 3 with LeakyReLU of x [h, w, c] (`phased`: in sub-pixel phase layout)
    /// into y, in 2x2 space-to-depth form.
    Pad {
        x: usize,
        y: usize,
        h: usize,
        w: usize,
        c: usize,
        phased: bool,
    },
}

/// An epilogue step: out = act((x + bias) * gate + resid) over `rows` x `c`, written to `out`
/// and optionally to `out2` (see `EpiParams` in kernels/params.cuh).
#[derive(Clone, Copy, Debug)]
pub(super) struct Epi {
    pub x: usize,
    pub rows: usize,
    pub c: usize,
    /// float32 `[c]` in the weights.
    pub bias: Option<Span>,
    /// Scale by the gate scratch vector (made by the `Gate` step just before).
    pub gate: bool,
    pub resid: Option<usize>,
    pub act: i32,
    pub out: Dst,
    pub out2: Option<Dst>,
    /// x is `[p, t, c]` (time folded into channels), and which of resid, out, out2 are too.
    pub fold: Option<Fold>,
    /// x is the four sub-pixel phases of grid `(t, h, w)`, gathered into output order.
    pub phases: Option<(usize, usize, usize)>,
    /// Period of the bias and gate channels, when it is not `c` (the in-place pass over all
    /// four phases at once).
    pub gc: Option<usize>,
}

impl Epi {
    /// act(x) over `dims` into `out`: no bias, gate, residual, second output, fold or phases.
    fn new(x: usize, dims: &[usize; 5], act: i32, out: Dst) -> Epi {
        Epi {
            x,
            rows: rows(dims),
            c: dims[1],
            bias: None,
            gate: false,
            resid: None,
            act,
            out,
            out2: None,
            fold: None,
            phases: None,
            gc: None,
        }
    }
}

/// Where an epilogue writes: buffer, row stride and channel offset (elements).
#[derive(Clone, Copy, Debug)]
pub(super) struct Dst {
    pub buf: usize,
    pub stride: usize,
    pub off: usize,
}

impl Op {
    /// Buffers the step reads.
    pub(super) fn reads(&self) -> Vec<usize> {
        match self {
            Op::Conv { x, .. } | Op::Gate { x, .. } | Op::Pad { x, .. } => vec![*x],
            Op::GateWeights { .. } => Vec::new(),
            Op::Epi(e) => {
                let mut v = vec![e.x];
                v.extend(e.resid);
                v
            }
        }
    }

    /// Buffers the step writes (a gate goes to the gate scratch vector, not to a buffer).
    pub(super) fn writes(&self) -> Vec<usize> {
        match self {
            Op::Conv { y, .. } | Op::Pad { y, .. } => vec![*y],
            Op::Gate { .. } | Op::GateWeights { .. } => Vec::new(),
            Op::Epi(e) => {
                let mut v = vec![e.out.buf];
                v.extend(e.out2.map(|d| d.buf));
                v
            }
        }
    }

    /// Every buffer the step touches.
    pub(super) fn buffers(&self) -> Vec<usize> {
        let mut v = self.reads();
        v.extend(self.writes());
        v
    }
}

/// A convolution of the plan: its weights and the cuDNN shapes.
pub(super) struct ConvStep {
    pub w: ConvW,
    pub x_dims: [usize; 5],
    pub y_dims: [usize; 5],
}

/// Reflection padding before the outconv (its 7x7 taps).
pub(super) const OUTCONV_PAD: usize = 3;

/// The forward pass as data, before any allocation.
pub(super) struct Graph {
    /// Bytes of each buffer.
    pub bufs: Vec<usize>,
    pub ops: Vec<Op>,
    pub convs: Vec<ConvStep>,
    /// Network input (space-to-depth with time in channels, `[hp/2 + 3, wp/2 + 3, 48]`) and
    /// outconv output `[hp/2, wp/2, kout]` (2x2 blocks of pixels).
    pub xin: usize,
    pub y: usize,
    /// Widest SE gate.
    pub cmax: usize,
}

struct Builder<'a> {
    net: &'a NetWeights,
    esz: usize,
    g: Graph,
}

impl Builder<'_> {
    fn buf(&mut self, elems: usize) -> usize {
        self.g.bufs.push(elems * self.esz);
        self.g.bufs.len() - 1
    }

    fn conv(&mut self, w: ConvW, x: usize, x_dims: [usize; 5]) -> (usize, [usize; 5]) {
        let s = w.shape;
        let [_, _, d, h, wd] = x_dims;
        let y_dims = if s.transposed {
            [1, s.cout(), d, h * 2, wd * 2]
        } else {
            let o = |n: usize, i: usize| (n + 2 * s.pad[i] - s.taps[i]) / s.stride[i] + 1;
            [1, s.cout(), o(d, 0), o(h, 1), o(wd, 2)]
        };
        let y = self.buf(y_dims.iter().product());
        self.g.convs.push(ConvStep { w, x_dims, y_dims });
        self.g.ops.push(Op::Conv {
            i: self.g.convs.len() - 1,
            x,
            y,
            y_off: 0,
        });
        (y, y_dims)
    }

    /// A transposed conv as its four sub-pixel phases in one conv (weights::convt_phases) into
    /// one buffer `[t][h + 1][w + 1][4][c]`. Returns it and the phase grid (t, h, w).
    fn convt_phases(
        &mut self,
        phases: ConvW,
        x: usize,
        x_dims: [usize; 5],
    ) -> (usize, (usize, usize, usize)) {
        let [_, _, t, h, w] = x_dims;
        let (y, _) = self.conv(phases, x, x_dims);
        (y, (t, h, w))
    }

    fn gate(&mut self, x: usize, dims: [usize; 5], bias: Option<Span>, gate: GateW) {
        self.g.cmax = self.g.cmax.max(gate.c);
        self.g.ops.push(Op::Gate {
            x,
            rows: rows(&dims),
            c: dims[1],
            bias,
            gate,
            phases: None,
            post_lrelu: false,
        });
    }

    fn epi(&mut self, e: Epi) {
        self.g.ops.push(Op::Epi(e));
    }

    /// The first layer's two blocks with time folded into channels: `x` is the block input
    /// `[h, w, t, c]` of logical dims `dims` (`[1, c, t, h, w]`); each conv is a 2-D conv over
    /// `[h, w, t c]` (`convs[i]`: conv1 and conv2 of block i). The elementwise steps see the
    /// folded buffers as `[h w t, c]` rows (the same for a per-channel pass), but for the last:
    /// it unfolds into a new `[t, h, w, c]` buffer, the next layer's input, and writes the skip
    /// (`(buf, stride, off)`), folded where `skip_folded`. Returns that buffer.
    fn folded_layer(
        &mut self,
        pair: &[BlockW; 2],
        convs: [[ConvW; 2]; 2],
        x: usize,
        dims: [usize; 5],
        skip: (usize, usize, usize),
        skip_folded: bool,
    ) -> usize {
        let [_, c, t, h, w] = dims;
        let fdims = [1, t * c, 1, h, w];
        let mut cur = x;
        for (bi, (blk, [c1, c2])) in pair.iter().zip(convs).enumerate() {
            let (t1, _) = self.conv(c1, cur, fdims);
            // Bias (repeated per frame) + ReLU over [h w, t c]: a bare conv epilogue, which
            // the engine may fuse into the conv.
            self.epi(Epi {
                bias: c1.bias,
                ..Epi::new(t1, &fdims, ACT_RELU, inplace(t1, t * c))
            });
            let (t2, _) = self.conv(c2, t1, fdims);
            self.gate(t2, dims, blk.conv2.bias, blk.gate);
            let last = bi == 1;
            let (out, out2, fold) = if last {
                let (buf, stride, off) = skip;
                let y = self.buf(dims.iter().product());
                let fold = Fold {
                    resid: true,
                    out2: skip_folded,
                    ..Fold::unfold(t, h * w)
                };
                (inplace(y, c), Some(Dst { buf, stride, off }), Some(fold))
            } else {
                (inplace(t2, c), None, None)
            };
            self.epi(Epi {
                bias: blk.conv2.bias,
                gate: true,
                resid: Some(cur),
                out2,
                fold,
                ..Epi::new(t2, &dims, ACT_RELU, out)
            });
            cur = out.buf;
        }
        cur
    }
}

fn rows(dims: &[usize; 5]) -> usize {
    dims[0] * dims[2] * dims[3] * dims[4]
}

fn inplace(buf: usize, c: usize) -> Dst {
    Dst {
        buf,
        stride: c,
        off: 0,
    }
}

/// How the forward pass is laid out (the engine's options; every form computes the same).
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct GraphOpts {
    /// Transposed convs through cuDNN instead of four sub-pixel phase convs.
    pub convt_cudnn: bool,
    /// The first layer's convs as time-folded 2-D convs (`BlockW::folded`), its activations
    /// `[h, w, t, c]`, where the weights have them.
    pub time_fold: bool,
    /// The last decoder stage's SE gate folded into feature_fuse's filter (`Op::GateWeights`),
    /// where that stage runs as four sub-pixel phases: its epilogue is then bias + LeakyReLU
    /// alone, in place, which the engine may fuse into the conv. The gate g > 0 (a sigmoid) and
    /// LeakyReLU is positively homogeneous, so LeakyReLU(g y) = g LeakyReLU(y), and the fuse
    /// of g LeakyReLU(y) is the fuse with its input channels scaled by g, of LeakyReLU(y).
    pub gate_fold: bool,
}

/// Plans the forward pass for a padded frame size.
pub(super) fn build_graph(
    net: &NetWeights,
    spec: &crate::model::ModelSpec,
    hp: usize,
    wp: usize,
    opts: GraphOpts,
) -> Graph {
    let convt_cudnn = opts.convt_cudnn;
    let mut b = Builder {
        net,
        esz: elem_bytes(net.precision),
        g: Graph {
            bufs: Vec::new(),
            ops: Vec::new(),
            convs: Vec::new(),
            xin: 0,
            y: 0,
            cmax: 0,
        },
    };
    // Stem: a 2-D conv on the space-to-depth input with time in channels (weights::stem_fold),
    // then bias + ReLU while unfolding time into x0 [4, h/2, w/2, c] and its copy in cat3.
    let xin_dims = [1, b.net.cin, 1, hp / 2 + 3, wp / 2 + 3];
    let xin = b.buf(xin_dims.iter().product());
    b.g.xin = xin;
    // Concatenation buffers [decoder output d_k, skip]: the skips are written into them by the
    // encoder, the decoder outputs later; nothing is copied.
    let cat_c = [
        spec.decoder[0] + spec.widths[2],
        spec.decoder[1] + spec.widths[1],
        spec.decoder[2] + spec.widths[0],
        spec.decoder[3] + spec.stem,
    ];
    let px = |s: usize| 4 * (hp / s) * (wp / s);
    let (s0, _) = b.conv(net.stem, xin, xin_dims);
    let x0_dims = [1, spec.stem, 4, hp / 2, wp / 2];
    let p2 = (hp / 2) * (wp / 2);
    // The first layer time-folded: its input stays in the stem's [h, w, t, c] (in place).
    let folded = net.blocks[0].map(|b| b.folded);
    let folded = match folded {
        [Some(a), Some(b)] if opts.time_fold => Some([a, b]),
        _ => None,
    };
    let x0 = match folded {
        Some(_) => s0,
        None => b.buf(x0_dims.iter().product()),
    };
    let cat3 = b.buf(px(2) * cat_c[3]);
    b.epi(Epi {
        bias: net.stem_bias,
        out2: Some(Dst {
            buf: cat3,
            stride: cat_c[3],
            off: spec.decoder[3],
        }),
        fold: Some(Fold {
            out: folded.is_some(),
            ..Fold::unfold(4, p2)
        }),
        ..Epi::new(s0, &x0_dims, ACT_RELU, inplace(x0, spec.stem))
    });
    let cat2 = b.buf(px(2) * cat_c[2]);
    let cat1 = b.buf(px(4) * cat_c[1]);
    let cat0 = b.buf(px(8) * cat_c[0]);
    let skips = [
        (cat2, cat_c[2], spec.decoder[2]),
        (cat1, cat_c[1], spec.decoder[1]),
        (cat0, cat_c[0], spec.decoder[0]),
    ];
    let (mut cur, mut cur_dims) = (x0, x0_dims);
    // d3 time-folded too (its input cat2, the first layer's skip beside d2's output, kept as
    // [h, w, t, c]), where the first layer is.
    let d3_folded = folded.and(net.dec.get(3).and_then(|d| d.folded));
    if let Some(convs) = folded {
        cur = b.folded_layer(
            &net.blocks[0],
            convs,
            cur,
            x0_dims,
            skips[0],
            d3_folded.is_some(),
        );
    }
    for (l, pair) in net.blocks.iter().enumerate() {
        if l == 0 && folded.is_some() {
            continue;
        }
        for (bi, blk) in pair.iter().enumerate() {
            let (t1, t1_dims) = b.conv(blk.conv1, cur, cur_dims);
            let c = t1_dims[1];
            b.epi(Epi {
                bias: blk.conv1.bias,
                ..Epi::new(t1, &t1_dims, ACT_RELU, inplace(t1, c))
            });
            let (t2, t2_dims) = b.conv(blk.conv2, t1, t1_dims);
            let resid = match blk.ds {
                Some(ds) => b.conv(ds, cur, cur_dims).0,
                None => cur,
            };
            b.gate(t2, t2_dims, blk.conv2.bias, blk.gate);
            let skip = (bi == 1 && l < 3).then(|| {
                let (buf, stride, off) = skips[l];
                Dst { buf, stride, off }
            });
            b.epi(Epi {
                bias: blk.conv2.bias,
                gate: true,
                resid: Some(resid),
                out2: skip,
                ..Epi::new(t2, &t2_dims, ACT_RELU, inplace(t2, c))
            });
            (cur, cur_dims) = (t2, t2_dims);
        }
    }
    // Decoder: stage k reads cat_{k-1} (x4 for d0) and writes its output into cat_k[.., :d_k].
    // Transposed stages run as four sub-pixel phase convs unless `convt_cudnn`.
    let mut input = (cur, cur_dims);
    // Whether the last stage's output is left in sub-pixel phase layout (fuse and pad read it
    // so).
    let mut phased_out = false;
    let cats = [cat0, cat1, cat2, cat3];
    let last = net.dec.len() - 1;
    // Whether the last stage's gate goes into the fuse's filter (`GraphOpts::gate_fold`).
    let mut gate_folded = false;
    for (d, stage) in net.dec.iter().enumerate() {
        let bias = stage.conv.bias;
        let (raw, raw_dims, phases) = match stage.phases {
            Some(ph) if !convt_cudnn => {
                let (y, (t, h, w)) = b.convt_phases(ph, input.0, input.1);
                let c = ph.shape.cout() / 4;
                b.g.cmax = b.g.cmax.max(stage.gate.c);
                gate_folded = d == last && opts.gate_fold;
                if gate_folded {
                    // bias + LeakyReLU in place over the four phases (the bias repeated per
                    // phase, as the phase conv's own), then the gate of the pre-activation.
                    let dims = [1, 4 * c, t, h + 1, w + 1];
                    b.epi(Epi {
                        bias: ph.bias,
                        ..Epi::new(y, &dims, ACT_LRELU, inplace(y, 4 * c))
                    });
                }
                b.g.ops.push(Op::Gate {
                    x: y,
                    rows: t * 4 * h * w,
                    c,
                    bias: if gate_folded { None } else { bias },
                    gate: stage.gate,
                    phases: Some((t, h, w)),
                    post_lrelu: gate_folded,
                });
                (y, [1, c, t, 2 * h, 2 * w], Some((t, h, w)))
            }
            _ => match d3_folded.filter(|_| d == 3) {
                Some(conv) => {
                    // On [h, w, t c]: the output [h, w, t, c], its logical dims unfolded.
                    let [_, ci, t, h, w] = input.1;
                    let (raw, _) = b.conv(conv, input.0, [1, t * ci, 1, h, w]);
                    let dims = [1, conv.shape.k / t, t, h, w];
                    b.gate(raw, dims, bias, stage.gate);
                    (raw, dims, None)
                }
                None => {
                    let (raw, raw_dims) = b.conv(stage.conv, input.0, input.1);
                    b.gate(raw, raw_dims, bias, stage.gate);
                    (raw, raw_dims, None)
                }
            },
        };
        let c = raw_dims[1];
        if d < 4 {
            let out = Dst {
                buf: cats[d],
                stride: cat_c[d],
                off: 0,
            };
            // With d3 folded, d2 writes its output into cat2 folded, and d3's output (folded)
            // is unfolded into cat3.
            let [_, _, t, h, w] = raw_dims;
            let fold = match d {
                2 if d3_folded.is_some() => Some(Fold {
                    x: false,
                    out: true,
                    ..Fold::unfold(t, h * w)
                }),
                3 if d3_folded.is_some() => Some(Fold::unfold(t, h * w)),
                _ => None,
            };
            b.epi(Epi {
                bias,
                gate: true,
                phases,
                fold,
                ..Epi::new(raw, &raw_dims, ACT_LRELU, out)
            });
            let mut dims = raw_dims;
            dims[1] = cat_c[d];
            input = (cats[d], dims);
        } else {
            // In place; over phases, all four at once (4c channels sharing c gates) and their
            // spare row and column too (nothing reads them).
            let (dims, gc) = match phases {
                Some((t, h, w)) => ([1, 4 * c, t, h + 1, w + 1], Some(c)),
                None => (raw_dims, None),
            };
            if !gate_folded {
                b.epi(Epi {
                    bias,
                    gate: true,
                    gc,
                    ..Epi::new(raw, &dims, ACT_LRELU, inplace(raw, dims[1]))
                });
            }
            input = (raw, dims);
            phased_out = phases.is_some();
        }
    }
    // Time fold + feature_fuse as one (4, 1, 1) conv, then pad (with the LeakyReLU), outconv.
    // On phases [4 t, h/2 + 1, w/2 + 1, 4 phases x c] the fuse is block-diagonal over phases
    // (weights::fuse_phases), its output [h/2 + 1, w/2 + 1, 4 phases x f], which the pad
    // gathers.
    let fuse = match (phased_out, gate_folded) {
        (true, true) => {
            let w = net.fuse_phases;
            let c = net.dec[last].gate.c;
            b.g.ops.push(Op::GateWeights {
                w: w.w,
                out: net.fuse_gated,
                n: w.shape.k * w.shape.c * w.shape.taps.iter().product::<usize>(),
                c,
            });
            ConvW {
                w: net.fuse_gated,
                ..w
            }
        }
        (true, false) => net.fuse_phases,
        _ => net.fuse,
    };
    let (f, _) = b.conv(fuse, input.0, input.1);
    let fc = net.fuse.shape.cout();
    // The padded map in space-to-depth form for the per-2x2-block outconv (weights::outconv_s2d).
    let pad_dims = [1, 4 * fc, 1, hp / 2 + 3, wp / 2 + 3];
    let padded = b.buf(pad_dims.iter().product());
    b.g.ops.push(Op::Pad {
        x: f,
        y: padded,
        h: hp,
        w: wp,
        c: fc,
        phased: phased_out,
    });
    let (y, _) = b.conv(net.out, padded, pad_dims);
    b.g.y = y;
    b.g
}

/// Lifetimes of the graph's buffers: from the first step that touches each to the last; the
/// input is live from the start, the output until the end (the output kernels read it).
pub(super) fn lifetimes(g: &Graph) -> Vec<Lifetime> {
    let mut lt: Vec<Option<(usize, usize)>> = vec![None; g.bufs.len()];
    for (i, op) in g.ops.iter().enumerate() {
        for b in op.buffers() {
            lt[b] = Some(match lt[b] {
                Some((f, l)) => (f.min(i), l.max(i)),
                None => (i, i),
            });
        }
    }
    let end = g.ops.len();
    g.bufs
        .iter()
        .enumerate()
        .map(|(i, &bytes)| {
            let (mut first, mut last) = lt[i].unwrap_or((0, 0));
            if i == g.xin {
                first = 0;
            }
            if i == g.y {
                last = end;
            }
            Lifetime { bytes, first, last }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Precision;
    use crate::cuda::arena::plan_arena;
    use crate::model::ModelSpec;

    fn fake_net(spec: &ModelSpec, p: Precision) -> NetWeights {
        let model = crate::cuda::synth::synthetic_model(spec, 1).expect("synthetic model");
        NetWeights::pack(&model, p)
    }

    /// A narrow shape of base width `w`.
    fn narrow(w: usize, n_out: usize) -> ModelSpec {
        ModelSpec {
            stem: w,
            widths: [w, 2 * w, 4 * w, 8 * w],
            decoder: [4 * w, 2 * w, w, w, w],
            fuse: w,
            ..ModelSpec::released(n_out)
        }
    }

    /// Narrow 2x and 4x shapes (the 4x one with encoder biases), in two precisions.
    fn narrow_nets() -> Vec<(ModelSpec, NetWeights)> {
        let mut nets = Vec::new();
        for spec in [narrow(8, 1), narrow(12, 3)] {
            assert_eq!(spec.encoder_bias, spec.n_out > 1);
            for p in [Precision::Fp32, Precision::Fp16] {
                nets.push((spec.clone(), fake_net(&spec, p)));
            }
        }
        nets
    }

    /// Padded sizes (multiples of 8) the graph tests run at.
    const SIZES: [(usize, usize); 3] = [(8, 8), (24, 40), (48, 64)];

    #[test]
    fn plan_of_full_width_1080p_fits_far_below_pytorch() {
        let spec = ModelSpec::released(1);
        let net = fake_net(&spec, Precision::Fp16);
        for convt_cudnn in [false, true] {
            let opts = GraphOpts {
                convt_cudnn,
                time_fold: true,
                gate_fold: true,
            };
            let g = build_graph(&net, &spec, 1080, 1920, opts);
            let lts = lifetimes(&g);
            let plan = plan_arena(&lts);
            let unshared: usize = g.bufs.iter().sum();
            // The d4 output alone is 1.06 GB in fp16 (as four sub-pixel phases with a spare row
            // and column each, slightly more).
            let d4 = if convt_cudnn {
                64 * 4 * 1080 * 1920 * 2
            } else {
                4 * 64 * 4 * 541 * 961 * 2
            };
            assert!(g.bufs.contains(&d4));
            assert!(plan.size < 2_300_000_000, "arena {} bytes", plan.size);
            assert!(
                plan.size < unshared / 2,
                "arena {} vs unshared {unshared}",
                plan.size
            );
            // The last conv (outconv per 2x2 block) makes the half-resolution block grid.
            assert_eq!(
                g.convs.last().map(|c| c.y_dims),
                Some([1, net.kout, 1, 540, 960])
            );
            check_arena(&g);
        }
    }

    /// What has been written into a buffer so far: byte ranges written whole, and channel
    /// ranges written in every row of a buffer of `stride` channels per row.
    #[derive(Clone, Default)]
    struct Cover {
        bytes: Vec<(usize, usize)>,
        channels: Vec<(usize, usize)>,
        stride: usize,
    }

    fn covers(mut ranges: Vec<(usize, usize)>, end: usize) -> bool {
        ranges.sort_unstable();
        let mut at = 0;
        for (lo, hi) in ranges {
            if lo > at {
                return false;
            }
            at = at.max(hi);
        }
        at >= end
    }

    impl Cover {
        fn complete(&self, bytes: usize) -> bool {
            covers(self.bytes.clone(), bytes)
                || (self.stride > 0 && covers(self.channels.clone(), self.stride))
        }
    }

    /// Elements of a buffer, checking that its bytes are a whole number of elements.
    fn elems(g: &Graph, b: usize, esz: usize) -> usize {
        assert_eq!(g.bufs[b] % esz, 0, "buffer {b}");
        g.bufs[b] / esz
    }

    /// Every buffer a step reads has been written whole by earlier steps (the input by the
    /// input assembly), every step stays inside its buffers, and every gated epilogue follows
    /// the gate of its own input.
    fn check_dataflow(g: &Graph, esz: usize, what: &str) {
        let mut cover = vec![Cover::default(); g.bufs.len()];
        cover[g.xin].bytes.push((0, g.bufs[g.xin]));
        let mut gate_of: Option<usize> = None;
        for (i, op) in g.ops.iter().enumerate() {
            for b in op.reads() {
                assert!(
                    cover[b].complete(g.bufs[b]),
                    "{what}: step {i} {op:?} reads buffer {b} before it is written whole"
                );
            }
            match *op {
                Op::Conv { i: ci, x, y, y_off } => {
                    let c = &g.convs[ci];
                    let xn: usize = c.x_dims.iter().product();
                    let yn: usize = c.y_dims.iter().product();
                    assert_eq!(xn, elems(g, x, esz), "{what}: step {i} input size");
                    assert!(
                        (y_off + yn) * esz <= g.bufs[y],
                        "{what}: step {i} writes past its output"
                    );
                    cover[y].bytes.push((y_off * esz, (y_off + yn) * esz));
                }
                Op::Gate {
                    x,
                    rows,
                    c,
                    phases,
                    gate,
                    ..
                } => {
                    let n = match phases {
                        Some((t, h, w)) => {
                            assert_eq!(rows, t * 4 * h * w, "{what}: step {i} phase rows");
                            4 * t * (h + 1) * (w + 1) * c
                        }
                        None => rows * c,
                    };
                    assert_eq!(n, elems(g, x, esz), "{what}: step {i} gate input size");
                    assert_eq!(gate.c, c, "{what}: step {i} gate width");
                    assert!(c <= g.cmax, "{what}: step {i} gate wider than the scratch");
                    gate_of = Some(x);
                }
                Op::Epi(Epi {
                    x,
                    rows,
                    c,
                    gate,
                    resid,
                    out,
                    out2,
                    fold,
                    phases,
                    gc,
                    ..
                }) => {
                    if let Some(f) = fold {
                        assert_eq!(f.t * f.p, rows, "{what}: step {i} fold");
                    }
                    let xrows = match (fold.is_some_and(|f| f.x), phases) {
                        (false, Some((t, h, w))) => {
                            assert_eq!(rows, t * 4 * h * w, "{what}: step {i} phase rows");
                            4 * t * (h + 1) * (w + 1)
                        }
                        (_, None) => rows,
                        _ => panic!("{what}: step {i} folds and gathers phases at once"),
                    };
                    assert!(xrows * c <= elems(g, x, esz), "{what}: step {i} input size");
                    if let Some(r) = resid {
                        assert!(rows * c <= elems(g, r, esz), "{what}: step {i} residual");
                    }
                    if gate {
                        assert_eq!(gate_of, Some(x), "{what}: step {i} uses another's gate");
                    }
                    if let Some(gc) = gc {
                        assert!(c % gc == 0, "{what}: step {i} bias/gate period");
                        assert!(gc <= g.cmax, "{what}: step {i} gate wider than the scratch");
                    }
                    for d in std::iter::once(out).chain(out2) {
                        assert!(d.off + c <= d.stride, "{what}: step {i} channels");
                        assert_eq!(
                            rows * d.stride,
                            elems(g, d.buf, esz),
                            "{what}: step {i} output rows"
                        );
                        let cv = &mut cover[d.buf];
                        if d.off == 0 && d.stride == c {
                            cv.bytes.push((0, g.bufs[d.buf]));
                        } else {
                            assert!(cv.stride == 0 || cv.stride == d.stride, "{what}: step {i}");
                            cv.stride = d.stride;
                            cv.channels.push((d.off, d.off + c));
                        }
                    }
                }
                Op::GateWeights { w, out, n, c } => {
                    assert!(gate_of.is_some(), "{what}: step {i} folds no gate");
                    assert!(c > 0 && c <= g.cmax && n % c == 0, "{what}: step {i} gate");
                    assert_eq!(w.bytes, out.bytes, "{what}: step {i} filter sizes");
                    assert_eq!(n * esz, w.bytes, "{what}: step {i} filter elements");
                    let next = g.ops[i + 1..].iter().find_map(|op| match *op {
                        Op::Conv { i, .. } => Some(g.convs[i].w.w),
                        _ => None,
                    });
                    assert_eq!(next, Some(out), "{what}: step {i} the next conv's filter");
                }
                Op::Pad {
                    x,
                    y,
                    h,
                    w,
                    c,
                    phased,
                } => {
                    let xn = if phased {
                        4 * (h / 2 + 1) * (w / 2 + 1) * c
                    } else {
                        h * w * c
                    };
                    assert_eq!(xn, elems(g, x, esz), "{what}: step {i} pad input");
                    let yn = (h + 6) / 2 * ((w + 6) / 2) * 4 * c;
                    assert_eq!(yn, elems(g, y, esz), "{what}: step {i} pad output");
                    cover[y].bytes.push((0, g.bufs[y]));
                }
            }
        }
        assert!(
            cover[g.y].complete(g.bufs[g.y]),
            "{what}: the output is not written whole"
        );
    }

    /// Lifetimes contain every step that touches a buffer (the input from the start, the
    /// output to the end), and buffers live at the same time never share arena bytes.
    fn check_arena(g: &Graph) {
        let lts = lifetimes(g);
        for (i, op) in g.ops.iter().enumerate() {
            for b in op.buffers() {
                assert!(lts[b].first <= i && i <= lts[b].last, "step {i} buffer {b}");
            }
        }
        assert_eq!(lts[g.xin].first, 0);
        assert_eq!(lts[g.y].last, g.ops.len());
        let plan = plan_arena(&lts);
        for (a, la) in lts.iter().enumerate() {
            let oa = plan.offsets[a];
            assert!(oa + la.bytes <= plan.size, "buffer {a} past the arena");
            for (b, lb) in lts.iter().enumerate().skip(a + 1) {
                let ob = plan.offsets[b];
                let live = la.first <= lb.last && lb.first <= la.last;
                let apart = oa + la.bytes <= ob || ob + lb.bytes <= oa;
                assert!(!live || apart, "buffers {a} and {b} share bytes while live");
            }
        }
    }

    #[test]
    fn every_read_was_written_and_live_buffers_are_apart() {
        for (spec, net) in narrow_nets() {
            let esz = elem_bytes(net.precision);
            for (hp, wp) in SIZES {
                for (convt_cudnn, time_fold, gate_fold) in [
                    (false, false, false),
                    (true, false, false),
                    (false, true, false),
                    (false, true, true),
                    (true, true, true),
                ] {
                    let opts = GraphOpts {
                        convt_cudnn,
                        time_fold,
                        gate_fold,
                    };
                    let g = build_graph(&net, &spec, hp, wp, opts);
                    let what = format!(
                        "n_out {} {:?} {hp}x{wp} {opts:?}",
                        spec.n_out, net.precision
                    );
                    check_dataflow(&g, esz, &what);
                    check_arena(&g);
                }
            }
        }
    }

    #[test]
    fn first_layer_runs_time_folded_where_asked() {
        for (spec, net) in narrow_nets() {
            let c = spec.widths[0];
            let folded_convs = |g: &Graph| {
                g.convs
                    .iter()
                    .filter(|s| s.w.shape.taps == [1, 3, 3])
                    .map(|s| (s.w.shape.k, s.w.shape.c, s.x_dims, s.y_dims))
                    .collect::<Vec<_>>()
            };
            let plain = build_graph(&net, &spec, 24, 40, GraphOpts::default());
            assert!(folded_convs(&plain).is_empty());
            let opts = GraphOpts {
                time_fold: true,
                ..GraphOpts::default()
            };
            let g = build_graph(&net, &spec, 24, 40, opts);
            let dims = [1, 4 * c, 1, 12, 20];
            // The first layer's four convs, then d3 (2c channels in: d2's output and the skip).
            let d3 = (4 * c, 8 * c, [1, 8 * c, 1, 12, 20], dims);
            let mut want = vec![(4 * c, 4 * c, dims, dims); 4];
            want.push(d3);
            assert_eq!(folded_convs(&g), want);
            // Same number of convs: the 3-D convs are replaced.
            assert_eq!(g.convs.len(), plain.convs.len());
            // The stem keeps its output folded in place; the layer's last epilogue unfolds its
            // output (its residual folded too) but writes the skip folded; d2 writes into the
            // folded cat2 from its phases; d3 unfolds into cat3.
            let folds: Vec<Fold> = g
                .ops
                .iter()
                .filter_map(|op| match op {
                    Op::Epi(e) => e.fold,
                    _ => None,
                })
                .collect();
            let unfold = Fold::unfold(4, 12 * 20);
            assert_eq!(
                folds,
                vec![
                    Fold {
                        out: true,
                        ..unfold
                    },
                    Fold {
                        resid: true,
                        out2: true,
                        ..unfold
                    },
                    Fold {
                        x: false,
                        out: true,
                        ..unfold
                    },
                    unfold,
                ]
            );
        }
    }

    #[test]
    fn transposed_stages_run_as_phases_unless_asked() {
        for (spec, net) in narrow_nets() {
            let n_transposed = net.dec.iter().filter(|d| d.phases.is_some()).count();
            assert!(n_transposed > 0);
            let phased = build_graph(&net, &spec, 24, 40, GraphOpts::default());
            let cudnn = build_graph(
                &net,
                &spec,
                24,
                40,
                GraphOpts {
                    convt_cudnn: true,
                    ..GraphOpts::default()
                },
            );
            let count = |g: &Graph| g.convs.iter().filter(|c| c.w.shape.transposed).count();
            assert_eq!(count(&phased), 0);
            assert_eq!(count(&cudnn), n_transposed);
            // Each transposed stage becomes one conv with four phases' outputs.
            assert_eq!(phased.convs.len(), cudnn.convs.len());
            let pad_phased = |g: &Graph| {
                g.ops
                    .iter()
                    .any(|op| matches!(op, Op::Pad { phased: true, .. }))
            };
            // The last stage is transposed: its output stays in phase layout for the pad.
            assert!(crate::model::spec::DECODER_TRANSPOSED[4]);
            assert!(pad_phased(&phased));
            assert!(!pad_phased(&cudnn));
        }
    }

    /// With `gate_fold`, the last stage (four phases) has an ungated bias + LeakyReLU in place
    /// right after its conv, then the gate of the pre-activation (no bias: the epilogue added
    /// it), then the gate folded into the fuse's spare filter, which the fuse reads; the rest
    /// of the plan is the same. Without it (or through cuDNN's transposed convs) nothing changes.
    #[test]
    fn last_gate_folds_into_the_fuse_where_asked() {
        for (spec, net) in narrow_nets() {
            let c = spec.decoder[4];
            let plain = build_graph(&net, &spec, 24, 40, GraphOpts::default());
            let on = GraphOpts {
                gate_fold: true,
                ..GraphOpts::default()
            };
            let folded = build_graph(&net, &spec, 24, 40, on);
            let cudnn = GraphOpts {
                convt_cudnn: true,
                ..on
            };
            let via_cudnn = build_graph(&net, &spec, 24, 40, cudnn);
            let n_gw = |g: &Graph| {
                g.ops
                    .iter()
                    .filter(|op| matches!(op, Op::GateWeights { .. }))
                    .count()
            };
            assert_eq!(n_gw(&plain), 0);
            assert_eq!(n_gw(&via_cudnn), 0);
            assert_eq!(n_gw(&folded), 1);
            assert_eq!(folded.ops.len(), plain.ops.len() + 1);
            assert_eq!(folded.convs.len(), plain.convs.len());
            // The d4 conv is the third conv from the end (d4, fuse, outconv).
            let n = folded.convs.len();
            let at = |g: &Graph, ci: usize| {
                g.ops
                    .iter()
                    .position(|op| matches!(*op, Op::Conv { i, .. } if i == ci))
                    .expect("conv step")
            };
            let d4 = at(&folded, n - 3);
            let Op::Conv { y, .. } = folded.ops[d4] else {
                unreachable!()
            };
            let ph = net.dec[4].phases.expect("phases");
            match &folded.ops[d4 + 1..d4 + 4] {
                [
                    Op::Epi(e),
                    Op::Gate {
                        x,
                        bias: None,
                        post_lrelu: true,
                        c: gc,
                        ..
                    },
                    Op::GateWeights {
                        w,
                        out,
                        n: nw,
                        c: wc,
                    },
                ] => {
                    assert!(e.x == y && e.out.buf == y && !e.gate && e.gc.is_none());
                    assert_eq!((e.act, e.c, e.bias), (ACT_LRELU, 4 * c, ph.bias));
                    assert_eq!((*x, *gc, *wc), (y, c, c));
                    assert_eq!((*w, *out), (net.fuse_phases.w, net.fuse_gated));
                    assert_eq!(*nw * elem_bytes(net.precision), w.bytes);
                }
                other => panic!("after d4: {other:?}"),
            }
            assert_eq!(at(&folded, n - 2), d4 + 4, "the fuse after the folded gate");
            assert_eq!(folded.convs[n - 2].w.w, net.fuse_gated);
            assert_eq!(plain.convs[n - 2].w.w, net.fuse_phases.w);
            // The phase conv's bias is the stage's, repeated per phase.
            assert_eq!(ph.bias.map(|b| b.bytes), Some(4 * c * 4));
        }
    }
}
