//! Tests of the forward-pass graph: plans, buffer lifetimes and the arena they fit in.

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
