//! Tests of the weight rearrangements: each rearranged convolution against the direct one.

use super::*;

/// Values in [-1, 1) from a xorshift generator seeded with `z`.
fn rng(mut z: u32) -> impl FnMut() -> f32 {
    move || {
        z ^= z << 13;
        z ^= z >> 17;
        z ^= z << 5;
        (z % 2000) as f32 / 1000.0 - 1.0
    }
}

#[test]
fn khwc_moves_channels_last_and_pads() {
    // [k=2, c=3, t=1, r=2, s=2], value encodes its PyTorch index.
    let shape = vec![2, 3, 1, 2, 2];
    let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
    let t = Tensor { shape, data };
    let out = to_khwc(&t, 3, 4);
    assert_eq!(out.len(), 3 * 4 * 4);
    for k in 0..3 {
        for tap in 0..4 {
            for c in 0..4 {
                let got = out[(k * 4 + tap) * 4 + c];
                let want = if k < 2 && c < 3 {
                    ((k * 3 + c) * 4 + tap) as f32
                } else {
                    0.0
                };
                assert_eq!(got, want, "k {k} tap {tap} c {c}");
            }
        }
    }
}

/// Direct stem convolution (k(3,7,7), s(1,2,2), p(1,3,3)) of x `[4, h, wd, 3]` at output
/// `[t, i, j, k]`.
fn stem_direct(w: &Tensor, x: &[f32], (h, wd): (usize, usize), [t, i, j, k]: [usize; 4]) -> f32 {
    let mut s = 0f32;
    for c in 0..3 {
        for dt in 0..3 {
            for ky in 0..7 {
                for kx in 0..7 {
                    let (tt, y, xx) = (
                        t as i64 + dt as i64 - 1,
                        2 * i as i64 + ky as i64 - 3,
                        2 * j as i64 + kx as i64 - 3,
                    );
                    let inside = (0..4).contains(&tt)
                        && (0..h as i64).contains(&y)
                        && (0..wd as i64).contains(&xx);
                    if !inside {
                        continue;
                    }
                    let v = x[((tt as usize * h + y as usize) * wd + xx as usize) * 3 + c];
                    s += w.data[(((k * 3 + c) * 3 + dt) * 7 + ky) * 7 + kx] * v;
                }
            }
        }
    }
    s
}

/// A 3x3x3 conv (padding 1) on `[t, h, w, c]` and its time-folded 2-D form on
/// `[h, w, t c]` (input channel `t_i * c + ci`, output channel `t_o * k + o`) agree.
#[test]
fn time_folded_conv_is_the_same_convolution() {
    let (t, h, wd, k0, c0) = (FOLD_FRAMES, 5, 6, 3, 2);
    let mut rnd = rng(777u32);
    let w = Tensor {
        shape: vec![k0, c0, 3, 3, 3],
        data: (0..k0 * c0 * 27).map(|_| rnd()).collect(),
    };
    let x: Vec<f32> = (0..t * h * wd * c0).map(|_| rnd()).collect();
    let f = time_fold(&w, t);
    assert_eq!(f.shape, vec![t * k0, t * c0, 1, 3, 3]);
    let at = |tt: i64, y: i64, xx: i64, c: usize| -> f32 {
        if tt < 0 || tt >= t as i64 || y < 0 || y >= h as i64 || xx < 0 || xx >= wd as i64 {
            return 0.0;
        }
        x[((tt as usize * h + y as usize) * wd + xx as usize) * c0 + c]
    };
    let mut worst = 0f32;
    for to in 0..t {
        for i in 0..h {
            for j in 0..wd {
                for o in 0..k0 {
                    let (mut d, mut g) = (0f32, 0f32);
                    for dy in 0..3 {
                        for dx in 0..3 {
                            let (y, xx) = (i as i64 + dy as i64 - 1, j as i64 + dx as i64 - 1);
                            for c in 0..c0 {
                                for dt in 0..3 {
                                    let tt = to as i64 + dt as i64 - 1;
                                    d += w.data[(((o * c0 + c) * 3 + dt) * 3 + dy) * 3 + dx]
                                        * at(tt, y, xx, c);
                                }
                                for ti in 0..t {
                                    let wi =
                                        (((to * k0 + o) * t * c0 + ti * c0 + c) * 3 + dy) * 3 + dx;
                                    g += f.data[wi] * at(ti as i64, y, xx, c);
                                }
                            }
                        }
                    }
                    worst = worst.max((d - g).abs());
                }
            }
        }
    }
    assert!(worst < 1e-5, "folded vs 3-D conv: {worst}");
}

#[test]
fn space_to_depth_stem_is_the_same_convolution() {
    let (h, wd, k0) = (8, 12, 2);
    let mut rnd = rng(12345u32);
    let w = Tensor {
        shape: vec![k0, 3, 3, 7, 7],
        data: (0..k0 * 3 * 3 * 49).map(|_| rnd()).collect(),
    };
    let x: Vec<f32> = (0..4 * h * wd * 3).map(|_| rnd()).collect();
    let s2d = stem_s2d(&w);
    let fold = stem_fold(&s2d);
    // Space-to-depth input as kernels/pixels.cu `assemble` writes it.
    let (bh, bw) = (h / 2 + 3, wd / 2 + 3);
    let mut xs = vec![0f32; 4 * bh * bw * 12];
    for t in 0..4 {
        for by in 0..bh {
            for bx in 0..bw {
                for py in 0..2 {
                    for px in 0..2 {
                        let (y, xx) = (2 * by as i64 - 4 + py, 2 * bx as i64 - 4 + px);
                        if y < 0 || y >= h as i64 || xx < 0 || xx >= wd as i64 {
                            continue;
                        }
                        let (y, xx, ch) = (y as usize, xx as usize, (py * 2 + px) as usize * 3);
                        for c in 0..3 {
                            xs[((t * bh + by) * bw + bx) * 12 + ch + c] =
                                x[((t * h + y) * wd + xx) * 3 + c];
                        }
                    }
                }
            }
        }
    }
    for t in 0..4 {
        for i in 0..h / 2 {
            for j in 0..wd / 2 {
                for k in 0..k0 {
                    let mut s = 0f32;
                    for dt in 0..3 {
                        let tt = t as i64 + dt as i64 - 1;
                        if !(0..4).contains(&tt) {
                            continue;
                        }
                        for by in 0..4 {
                            for bx in 0..4 {
                                for ci in 0..12 {
                                    let v =
                                        xs[((tt as usize * bh + i + by) * bw + j + bx) * 12 + ci];
                                    s += s2d.data[(((k * 12 + ci) * 3 + dt) * 4 + by) * 4 + bx] * v;
                                }
                            }
                        }
                    }
                    let d = stem_direct(&w, &x, (h, wd), [t, i, j, k]);
                    assert!((s - d).abs() < 1e-4, "t {t} i {i} j {j} k {k}: {s} vs {d}");
                    // The time-folded 2-D form: input channel ti * 12 + c.
                    let mut f = 0f32;
                    for by in 0..4 {
                        for bx in 0..4 {
                            for ti in 0..4 {
                                for c in 0..12 {
                                    let v = xs[((ti * bh + i + by) * bw + j + bx) * 12 + c];
                                    let wi = (((t * k0 + k) * 48 + ti * 12 + c) * 4 + by) * 4 + bx;
                                    f += fold.data[wi] * v;
                                }
                            }
                        }
                    }
                    assert!(
                        (f - d).abs() < 1e-4,
                        "folded t {t} i {i} j {j} k {k}: {f} vs {d}"
                    );
                }
            }
        }
    }
}

#[test]
fn block_outconv_is_the_same_convolution() {
    let (n3, c0, h, wd) = (3, 2, 6, 8);
    let mut rnd = rng(999u32);
    let w = Tensor {
        shape: vec![n3, c0, 7, 7],
        data: (0..n3 * c0 * 49).map(|_| rnd()).collect(),
    };
    // A padded map [h + 6, w + 6, c0] (any values).
    let (ph, pw) = (h + 6, wd + 6);
    let f: Vec<f32> = (0..ph * pw * c0).map(|_| rnd()).collect();
    let s = outconv_s2d(&w);
    for y in 0..h {
        for x in 0..wd {
            for o in 0..n3 {
                let mut d = 0f32;
                for ci in 0..c0 {
                    for ky in 0..7 {
                        for kx in 0..7 {
                            d += w.data[((o * c0 + ci) * 7 + ky) * 7 + kx]
                                * f[((y + ky) * pw + x + kx) * c0 + ci];
                        }
                    }
                }
                let (i, j, a, b) = (y / 2, x / 2, y % 2, x % 2);
                let oc = (a * 2 + b) * n3 + o;
                let mut g = 0f32;
                for by in 0..4 {
                    for bx in 0..4 {
                        for py in 0..2 {
                            for px in 0..2 {
                                for ci in 0..c0 {
                                    let v =
                                        f[((2 * (i + by) + py) * pw + 2 * (j + bx) + px) * c0 + ci];
                                    g += s.data[(oc * 4 * c0 + (py * 2 + px) * c0 + ci) * 16
                                        + by * 4
                                        + bx]
                                        * v;
                                }
                            }
                        }
                    }
                }
                assert!((g - d).abs() < 1e-4, "y {y} x {x} o {o}: {g} vs {d}");
            }
        }
    }
}

#[test]
fn subpixel_phases_are_the_transposed_convolution() {
    let (ci, co, t, h, w) = (3, 2, 4, 3, 5);
    let mut rnd = rng(4242u32);
    let wt = Tensor {
        shape: vec![ci, co, 3, 4, 4],
        data: (0..ci * co * 48).map(|_| rnd()).collect(),
    };
    let x: Vec<f32> = (0..ci * t * h * w).map(|_| rnd()).collect(); // [c, t, h, w]
    let xi = |c: usize, tt: i64, y: i64, xx: i64| {
        if tt < 0 || tt >= t as i64 || y < 0 || y >= h as i64 || xx < 0 || xx >= w as i64 {
            0.0
        } else {
            x[((c * t + tt as usize) * h + y as usize) * w + xx as usize]
        }
    };
    // Direct ConvTranspose3d: out[o, T, Y, X] += x[c, t', i', j'] * W[c, o, kt, ky, kx]
    // where T = t' - 1 + kt, Y = 2 i' - 1 + ky, X = 2 j' - 1 + kx.
    let (oh, ow) = (2 * h, 2 * w);
    let mut direct = vec![0f32; co * t * oh * ow];
    for c in 0..ci {
        for tp in 0..t {
            for ip in 0..h {
                for jp in 0..w {
                    for o in 0..co {
                        for kt in 0..3 {
                            for ky in 0..4 {
                                for kx in 0..4 {
                                    let tt = tp as i64 - 1 + kt as i64;
                                    let yy = 2 * ip as i64 - 1 + ky as i64;
                                    let xx = 2 * jp as i64 - 1 + kx as i64;
                                    if tt < 0
                                        || tt >= t as i64
                                        || yy < 0
                                        || yy >= oh as i64
                                        || xx < 0
                                        || xx >= ow as i64
                                    {
                                        continue;
                                    }
                                    direct[((o * t + tt as usize) * oh + yy as usize) * ow
                                        + xx as usize] += xi(c, tp as i64, ip as i64, jp as i64)
                                        * wt.data[(((c * co + o) * 3 + kt) * 4 + ky) * 4 + kx];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for a in 0..2 {
        for b in 0..2 {
            let ph = convt_phase(&wt, a, b);
            for o in 0..co {
                for tt in 0..t {
                    for i in 0..h {
                        for j in 0..w {
                            // Forward conv, padding 1, at output (i + a, j + b).
                            let mut s = 0f32;
                            for c in 0..ci {
                                for kt in 0..3 {
                                    for ty in 0..2 {
                                        for tx in 0..2 {
                                            let v = xi(
                                                c,
                                                tt as i64 - 1 + kt as i64,
                                                (i + a) as i64 - 1 + ty as i64,
                                                (j + b) as i64 - 1 + tx as i64,
                                            );
                                            s += v * ph.data
                                                [(((o * ci + c) * 3 + kt) * 2 + ty) * 2 + tx];
                                        }
                                    }
                                }
                            }
                            let d = direct[((o * t + tt) * oh + 2 * i + a) * ow + 2 * j + b];
                            assert!(
                                (s - d).abs() < 1e-4,
                                "phase {a}{b} o {o} t {tt} i {i} j {j}: {s} vs {d}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The merged phase conv, run directly on channels-last `[t][h][w][ci]` input and read back
/// through the kernels' gather (`phase_elem` in kernels/elementwise.cu), is the transposed
/// convolution.
#[test]
fn merged_phases_in_the_gather_layout_are_the_transposed_convolution() {
    let (ci, co, t, h, w) = (3, 2, 2, 3, 4);
    let mut rnd = rng(99);
    let wt = Tensor {
        shape: vec![ci, co, 3, 4, 4],
        data: (0..ci * co * 48).map(|_| rnd()).collect(),
    };
    let x: Vec<f32> = (0..t * h * w * ci).map(|_| rnd()).collect(); // [t, h, w, c]
    let xi = |tt: i64, y: i64, xx: i64, c: usize| {
        let inside = (0..t as i64).contains(&tt)
            && (0..h as i64).contains(&y)
            && (0..w as i64).contains(&xx);
        if inside {
            x[((tt as usize * h + y as usize) * w + xx as usize) * ci + c]
        } else {
            0.0
        }
    };
    let m = convt_phases(&wt);
    assert_eq!(m.shape, vec![4 * co, ci, 3, 2, 2]);
    let k = to_khwc(&m, 4 * co, ci); // [4co, 3, 2, 2, ci]
    // Forward conv k(3,2,2), padding 1, output grid [t, h + 1, w + 1, 4co].
    let (gh, gw, kc) = (h + 1, w + 1, 4 * co);
    let mut y = vec![0f32; t * gh * gw * kc];
    for tt in 0..t {
        for gy in 0..gh {
            for gx in 0..gw {
                for o in 0..kc {
                    let mut s = 0f32;
                    for kt in 0..3 {
                        for ty in 0..2 {
                            for tx in 0..2 {
                                for c in 0..ci {
                                    s += k[(((o * 3 + kt) * 2 + ty) * 2 + tx) * ci + c]
                                        * xi(
                                            tt as i64 + kt as i64 - 1,
                                            gy as i64 + ty as i64 - 1,
                                            gx as i64 + tx as i64 - 1,
                                            c,
                                        );
                                }
                            }
                        }
                    }
                    y[((tt * gh + gy) * gw + gx) * kc + o] = s;
                }
            }
        }
    }
    // Direct ConvTranspose3d k(3,4,4) s(1,2,2) p(1,1,1).
    for o in 0..co {
        for tt in 0..t {
            for yy in 0..2 * h {
                for xx in 0..2 * w {
                    let mut d = 0f32;
                    for c in 0..ci {
                        for tp in 0..t {
                            for ip in 0..h {
                                for jp in 0..w {
                                    let kt = tt as i64 - tp as i64 + 1;
                                    let ky = yy as i64 - 2 * ip as i64 + 1;
                                    let kx = xx as i64 - 2 * jp as i64 + 1;
                                    if (0..3).contains(&kt)
                                        && (0..4).contains(&ky)
                                        && (0..4).contains(&kx)
                                    {
                                        d += xi(tp as i64, ip as i64, jp as i64, c)
                                            * wt.data[(((c * co + o) * 3 + kt as usize) * 4
                                                + ky as usize)
                                                * 4
                                                + kx as usize];
                                    }
                                }
                            }
                        }
                    }
                    // phase_elem: cell (t, Y/2 + a, X/2 + b), phase a*2 + b.
                    let (a, b) = (yy % 2, xx % 2);
                    let cell = (tt * gh + yy / 2 + a) * gw + xx / 2 + b;
                    let g = y[(cell * 4 + a * 2 + b) * co + o];
                    assert!(
                        (g - d).abs() < 1e-4,
                        "o {o} t {tt} y {yy} x {xx}: {g} vs {d}"
                    );
                }
            }
        }
    }
}

/// The block-diagonal fuse over four phases is feature_fuse applied to each phase.
#[test]
fn fuse_over_phases_is_the_fuse_of_each_phase() {
    let (f, c, n) = (3, 2, 5);
    let mut rnd = rng(7);
    let fuse = Tensor {
        shape: vec![f, 4 * c, 1, 1],
        data: (0..f * 4 * c).map(|_| rnd()).collect(),
    };
    let x: Vec<f32> = (0..4 * n * 4 * c).map(|_| rnd()).collect(); // [t, n, 4 phases, c]
    let wb = fuse_phases(&fuse, c); // [4f, 4, 1, 1, 4c]
    for px in 0..n {
        for p in 0..4 {
            for o in 0..f {
                let mut got = 0f32;
                for t in 0..4 {
                    for q in 0..4 * c {
                        got += wb[((p * f + o) * 4 + t) * 4 * c + q] * x[(t * n + px) * 4 * c + q];
                    }
                }
                let mut want = 0f32;
                for t in 0..4 {
                    for ci in 0..c {
                        want +=
                            fuse.data[o * 4 * c + t * c + ci] * x[((t * n + px) * 4 + p) * c + ci];
                    }
                }
                assert!(
                    (got - want).abs() < 1e-5,
                    "px {px} p {p} o {o}: {got} vs {want}"
                );
            }
        }
    }
}
