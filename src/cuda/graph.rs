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
#[path = "graph_tests.rs"]
mod tests;
