//! The CPU backend's operations against naive direct loops (float64) on small random tensors:
//! convolutions with strides and padding (3D and 2D), the transposed convolution, reflection
//! and replication padding, the time fold and SE gating. Sizes are chosen so the output is
//! cut into several chunks, some in the middle of a row, and each test runs on 1 and 3 threads.

use gstflavrinterp::backend::cpu::conv::{Act, Conv, ConvTranspose, Dims};
use gstflavrinterp::backend::cpu::ops;
use gstflavrinterp::model::Tensor;
use gstflavrinterp::model::synth::SplitMix;

fn rand_vec(n: usize, rng: &mut SplitMix) -> Vec<f32> {
    (0..n).map(|_| rng.symmetric(1.0)).collect()
}

fn rand_tensor(shape: &[usize], rng: &mut SplitMix) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape.to_vec(), rand_vec(n, rng)).unwrap()
}

fn on_threads(f: impl Fn() + Send + Sync) {
    for threads in [1, 3] {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(&f);
    }
}

fn max_err(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y).abs())
        .fold(0.0, f64::max)
}

/// Direct Conv3d: weight [co, ci, kt, kh, kw], time stride 1, spatial stride `s`, zero padding.
fn naive_conv(
    x: &[f32],
    d: Dims,
    w: &Tensor,
    bias: Option<&Tensor>,
    pad: [usize; 3],
    s: usize,
) -> (Vec<f64>, Dims) {
    let (co_n, ci_n) = (w.shape[0], w.shape[1]);
    let k: [usize; 3] = if w.shape.len() == 5 {
        [w.shape[2], w.shape[3], w.shape[4]]
    } else {
        [1, w.shape[2], w.shape[3]]
    };
    let to = d.t + 2 * pad[0] - k[0] + 1;
    let ho = (d.h + 2 * pad[1] - k[1]) / s + 1;
    let wo = (d.w + 2 * pad[2] - k[2]) / s + 1;
    let od = Dims::new(co_n, to, ho, wo);
    let mut out = vec![0.0f64; od.len()];
    for co in 0..co_n {
        for t in 0..to {
            for y in 0..ho {
                for xo in 0..wo {
                    let mut acc = bias.map_or(0.0, |b| b.data[co] as f64);
                    for ci in 0..ci_n {
                        for kt in 0..k[0] {
                            for kh in 0..k[1] {
                                for kw in 0..k[2] {
                                    let it = (t + kt) as isize - pad[0] as isize;
                                    let ih = (y * s + kh) as isize - pad[1] as isize;
                                    let iw = (xo * s + kw) as isize - pad[2] as isize;
                                    if it < 0
                                        || ih < 0
                                        || iw < 0
                                        || it >= d.t as isize
                                        || ih >= d.h as isize
                                        || iw >= d.w as isize
                                    {
                                        continue;
                                    }
                                    let xv = x[((ci * d.t + it as usize) * d.h + ih as usize)
                                        * d.w
                                        + iw as usize];
                                    let wv = w.data
                                        [(((co * ci_n + ci) * k[0] + kt) * k[1] + kh) * k[2] + kw];
                                    acc += xv as f64 * wv as f64;
                                }
                            }
                        }
                    }
                    out[((co * to + t) * ho + y) * wo + xo] = acc;
                }
            }
        }
    }
    (out, od)
}

/// (cin, cout, kernel, pad, stride, input [t, h, w])
type Case = (usize, usize, [usize; 3], [usize; 3], usize, [usize; 3]);

#[test]
fn conv3d_matches_direct_loops() {
    on_threads(|| {
        let mut rng = SplitMix::new(1);
        let cases: [Case; 7] = [
            (3, 5, [3, 3, 3], [1, 1, 1], 1, [4, 9, 41]),
            (4, 6, [3, 3, 3], [1, 1, 1], 2, [4, 12, 38]),
            (3, 4, [3, 7, 7], [1, 3, 3], 2, [4, 16, 24]),
            (5, 7, [1, 1, 1], [0, 0, 0], 2, [4, 10, 14]),
            (6, 3, [1, 1, 1], [0, 0, 0], 1, [3, 13, 29]),
            (2, 3, [2, 4, 5], [0, 2, 1], 3, [3, 11, 17]),
            (4, 3, [1, 7, 7], [0, 0, 0], 1, [1, 14, 15]),
        ];
        for (i, &(cin, cout, k, pad, s, [t, h, w])) in cases.iter().enumerate() {
            let wt = rand_tensor(&[cout, cin, k[0], k[1], k[2]], &mut rng);
            let bias = rand_tensor(&[cout], &mut rng);
            let d = Dims::new(cin, t, h, w);
            let x = rand_vec(d.len(), &mut rng);
            for use_bias in [false, true] {
                let b = use_bias.then_some(&bias);
                let conv = Conv::new(&wt, b, pad, s).unwrap();
                let (expect, od) = naive_conv(&x, d, &wt, b, pad, s);
                assert_eq!(conv.out_dims(d).unwrap(), od);
                let mut out = vec![f32::NAN; od.len()];
                let sums = conv.run(&x, d, &mut out, Act::None, true).unwrap();
                let err = max_err(&out, &expect);
                assert!(err < 1e-4, "case {i}: {err}");
                for (c, s) in sums.iter().enumerate() {
                    let e: f64 = expect[c * od.plane()..(c + 1) * od.plane()].iter().sum();
                    assert!((s - e).abs() < 1e-3, "case {i} sum {c}: {s} vs {e}");
                }
                // Activations applied in the same pass.
                conv.run(&x, d, &mut out, Act::Relu, false).unwrap();
                let relu: Vec<f64> = expect.iter().map(|v| v.max(0.0)).collect();
                assert!(max_err(&out, &relu) < 1e-4);
                conv.run(&x, d, &mut out, Act::LeakyRelu, false).unwrap();
                let lrelu: Vec<f64> = expect
                    .iter()
                    .map(|&v| if v < 0.0 { 0.2 * v } else { v })
                    .collect();
                assert!(max_err(&out, &lrelu) < 1e-4);
            }
        }
    });
}

#[test]
fn conv2d_is_a_3d_conv_with_one_time_step() {
    let mut rng = SplitMix::new(2);
    let w4 = rand_tensor(&[3, 4, 7, 7], &mut rng);
    let b = rand_tensor(&[3], &mut rng);
    let d = Dims::new(4, 1, 15, 20);
    let x = rand_vec(d.len(), &mut rng);
    let conv = Conv::new(&w4, Some(&b), [0, 0, 0], 1).unwrap();
    let (expect, od) = naive_conv(&x, d, &w4, Some(&b), [0, 0, 0], 1);
    assert_eq!(od, Dims::new(3, 1, 9, 14));
    let mut out = vec![0.0; od.len()];
    conv.run(&x, d, &mut out, Act::None, false).unwrap();
    assert!(max_err(&out, &expect) < 1e-4);
}

/// Direct ConvTranspose3d (3,4,4)/(1,2,2)/(1,1,1) by its definition: every input element
/// scatters `x * w[ci, co, kt, kh, kw]` to output (t - 1 + kt, 2h - 1 + kh, 2w - 1 + kw).
fn naive_conv_transpose(x: &[f32], d: Dims, w: &Tensor, b: &Tensor) -> Vec<f64> {
    let (ci_n, co_n) = (w.shape[0], w.shape[1]);
    let (to, ho, wo) = (d.t, 2 * d.h, 2 * d.w);
    let mut out = vec![0.0f64; co_n * to * ho * wo];
    for co in 0..co_n {
        for v in &mut out[co * to * ho * wo..(co + 1) * to * ho * wo] {
            *v = b.data[co] as f64;
        }
    }
    for ci in 0..ci_n {
        for t in 0..d.t {
            for y in 0..d.h {
                for xi in 0..d.w {
                    let xv = x[((ci * d.t + t) * d.h + y) * d.w + xi] as f64;
                    for co in 0..co_n {
                        for kt in 0..3 {
                            for kh in 0..4 {
                                for kw in 0..4 {
                                    let ot = (t + kt) as isize - 1;
                                    let oh = (2 * y + kh) as isize - 1;
                                    let ow = (2 * xi + kw) as isize - 1;
                                    if ot < 0
                                        || oh < 0
                                        || ow < 0
                                        || ot >= to as isize
                                        || oh >= ho as isize
                                        || ow >= wo as isize
                                    {
                                        continue;
                                    }
                                    let wv =
                                        w.data[(((ci * co_n + co) * 3 + kt) * 4 + kh) * 4 + kw];
                                    out[((co * to + ot as usize) * ho + oh as usize) * wo
                                        + ow as usize] += xv * wv as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    out
}

#[test]
fn conv_transpose_matches_direct_loops() {
    on_threads(|| {
        let mut rng = SplitMix::new(3);
        for (cin, cout, t, h, w) in [
            (3, 4, 4, 5, 7),
            (6, 2, 2, 9, 33),
            (2, 3, 1, 1, 1),
            (5, 5, 4, 8, 48),
        ] {
            let wt = rand_tensor(&[cin, cout, 3, 4, 4], &mut rng);
            let b = rand_tensor(&[cout], &mut rng);
            let d = Dims::new(cin, t, h, w);
            let x = rand_vec(d.len(), &mut rng);
            let conv = ConvTranspose::new(&wt, Some(&b)).unwrap();
            let od = conv.out_dims(d).unwrap();
            assert_eq!(od, Dims::new(cout, t, 2 * h, 2 * w));
            let mut out = vec![f32::NAN; od.len()];
            let sums = conv.run(&x, d, &mut out, Act::None, true).unwrap();
            let expect = naive_conv_transpose(&x, d, &wt, &b);
            let err = max_err(&out, &expect);
            assert!(err < 1e-4, "{cin}->{cout} {t}x{h}x{w}: {err}");
            for (c, s) in sums.iter().enumerate() {
                let e: f64 = expect[c * od.plane()..(c + 1) * od.plane()].iter().sum();
                assert!((s - e).abs() < 1e-3);
            }
        }
    });
}

#[test]
fn reflection_pad_matches_torch_semantics() {
    let mut rng = SplitMix::new(4);
    let (planes, h, w, p) = (3, 5, 8, 3);
    let x = rand_vec(planes * h * w, &mut rng);
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let mut out = vec![f32::NAN; planes * hp * wp];
    ops::reflection_pad(&x, planes, h, w, p, &mut out).unwrap();
    // ReflectionPad2d: index -i maps to i, n - 1 + i maps to n - 1 - i.
    let reflect = |i: isize, n: isize| -> usize {
        let mut i = i;
        if i < 0 {
            i = -i;
        }
        if i >= n {
            i = 2 * (n - 1) - i;
        }
        i as usize
    };
    for c in 0..planes {
        for y in 0..hp {
            for xo in 0..wp {
                let sy = reflect(y as isize - p as isize, h as isize);
                let sx = reflect(xo as isize - p as isize, w as isize);
                assert_eq!(out[(c * hp + y) * wp + xo], x[(c * h + sy) * w + sx]);
            }
        }
    }
    // Explicit small example: [1 2 3 4] padded by 3 is [4 3 2 1 2 3 4 3 2 1].
    let src: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let mut row = vec![0.0; 100];
    ops::reflection_pad(&src, 1, 4, 4, 3, &mut row).unwrap();
    assert_eq!(
        &row[3 * 10..4 * 10],
        &[4.0, 3.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 2.0, 1.0]
    );
    let mut big = vec![0.0; planes * (h + 10) * (w + 10)];
    assert!(ops::reflection_pad(&x, planes, h, w, 5, &mut big).is_err());
    assert!(ops::reflection_pad(&x, planes, h, w, p, &mut out[1..]).is_err());
}

#[test]
fn replicate_pad_repeats_the_last_row_and_column() {
    let x: Vec<f32> = (0..6).map(|v| v as f32).collect(); // 2 planes of 1x3
    let mut out = vec![f32::NAN; 20];
    ops::replicate_pad(&x, 2, (1, 3), (2, 5), &mut out).unwrap();
    assert_eq!(
        out,
        vec![
            0.0, 1.0, 2.0, 2.0, 2.0, 0.0, 1.0, 2.0, 2.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 3.0, 4.0,
            5.0, 5.0, 5.0
        ]
    );
    assert!(ops::replicate_pad(&x, 2, (1, 3), (1, 2), &mut out).is_err());
}

#[test]
fn time_fold_by_weight_permutation() {
    on_threads(|| {
        let mut rng = SplitMix::new(5);
        let (c, t, h, w, cout) = (5, 4, 6, 70, 3);
        let d = Dims::new(c, t, h, w);
        let y = rand_vec(d.len(), &mut rng);
        let wt = rand_vec(cout * t * c, &mut rng); // [cout, t * c] on folded channels
        // Naive fold: folded channel c * t_idx + c_idx (i.e. C*t + c) = time t_idx, channel c_idx.
        let mut folded = vec![0.0f32; d.len()];
        for ti in 0..t {
            for ci in 0..c {
                let src = &y[(ci * t + ti) * h * w..][..h * w];
                folded[(c * ti + ci) * h * w..][..h * w].copy_from_slice(src);
            }
        }
        let mut expect = vec![0.0f64; cout * h * w];
        for o in 0..cout {
            for k in 0..t * c {
                for p in 0..h * w {
                    expect[o * h * w + p] +=
                        wt[o * t * c + k] as f64 * folded[k * h * w + p] as f64;
                }
            }
        }
        let conv = Conv::pointwise(ops::fold_time_weights(&wt, cout, c, t), cout, c * t).unwrap();
        let fd = Dims::new(c * t, 1, h, w);
        let mut out = vec![0.0; cout * h * w];
        conv.run(&y, fd, &mut out, Act::None, false).unwrap();
        assert!(max_err(&out, &expect) < 1e-4);
    });
}

#[test]
fn se_gate_and_residual() {
    let mut rng = SplitMix::new(6);
    let d = Dims::new(4, 2, 3, 5);
    let y = rand_vec(d.len(), &mut rng);
    let short = rand_vec(d.len(), &mut rng);
    let w = rand_vec(16, &mut rng);
    let b = rand_vec(4, &mut rng);
    let sums = ops::channel_sums(&y, d);
    let g = ops::se_gate(&w, &b, &sums, d.plane());
    for o in 0..4 {
        let mut z = b[o] as f64;
        for i in 0..4 {
            let mean: f64 = y[i * d.plane()..(i + 1) * d.plane()]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>()
                / d.plane() as f64;
            z += w[o * 4 + i] as f64 * mean;
        }
        let expect = 1.0 / (1.0 + (-z).exp());
        assert!((g[o] as f64 - expect).abs() < 1e-6);
    }
    let mut out = vec![0.0; d.len()];
    ops::gate_add_relu(&y, d, &g, &short, &mut out);
    let mut gated = y.clone();
    ops::gate_act(&mut gated, d, &g, Act::LeakyRelu);
    for i in 0..d.len() {
        let c = i / d.plane();
        let v = g[c] * y[i];
        assert_eq!(out[i], (v + short[i]).max(0.0));
        assert_eq!(gated[i], if v < 0.0 { 0.2 * v } else { v });
    }
}

#[test]
fn bad_shapes_are_errors() {
    let mut rng = SplitMix::new(7);
    let w = rand_tensor(&[2, 3, 3, 3, 3], &mut rng);
    let conv = Conv::new(&w, None, [1, 1, 1], 1).unwrap();
    let d = Dims::new(3, 2, 4, 4);
    let x = rand_vec(d.len(), &mut rng);
    let mut out = vec![0.0; 2 * 2 * 4 * 4];
    assert!(
        conv.run(&x, Dims::new(4, 2, 4, 4), &mut out, Act::None, false)
            .is_err()
    );
    assert!(conv.run(&x[1..], d, &mut out, Act::None, false).is_err());
    assert!(conv.run(&x, d, &mut out[1..], Act::None, false).is_err());
    assert!(Conv::new(&w, Some(&rand_tensor(&[3], &mut rng)), [1, 1, 1], 1).is_err());
    assert!(ConvTranspose::new(&w, None).is_err());
}
