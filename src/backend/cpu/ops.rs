//! The network's element-wise and data-movement operations on planar `[C, T, H, W]` float32
//! activations: SE gating, activations, the residual add, padding, the time fold and the
//! input normalisation. Bias and the activation right after a conv are applied by the conv
//! itself (see [`super::conv`]); concatenation is done by writing into the two halves of one
//! buffer.

use rayon::prelude::*;

use super::conv::{Act, Dims};

/// Planes at least this large are processed one per rayon task; smaller ones in groups.
const PAR_PLANE: usize = 1 << 14;

fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// SE gate from the channel sums of its input: `g = sigmoid(W * (sums / count) + b)`, with
/// `W` `[C, C]` (row = output channel) and `b` `[C]`.
pub fn se_gate(weight: &[f32], bias: &[f32], sums: &[f64], count: usize) -> Vec<f32> {
    let c = bias.len();
    let mean: Vec<f64> = sums.iter().map(|s| s / count as f64).collect();
    (0..c)
        .map(|o| {
            let row = &weight[o * c..(o + 1) * c];
            let z = row
                .iter()
                .zip(&mean)
                .map(|(&w, &m)| w as f64 * m)
                .sum::<f64>()
                + bias[o] as f64;
            sigmoid(z) as f32
        })
        .collect()
}

/// Per-channel sums of an activation, in f64.
pub fn channel_sums(x: &[f32], d: Dims) -> Vec<f64> {
    x.par_chunks(d.plane().max(1))
        .map(|p| p.iter().map(|&v| v as f64).sum())
        .collect()
}

/// In place: `x[c] = act(g[c] * x[c])` (SE gating followed by an activation).
pub fn gate_act(x: &mut [f32], d: Dims, g: &[f32], act: Act) {
    let plane = d.plane().max(1);
    x.par_chunks_mut(plane)
        .zip(g)
        .with_min_len(min_len(plane))
        .for_each(|(p, &g)| {
            for v in p {
                *v = act.apply(g * *v);
            }
        });
}

/// The end of a residual block: `out[c] = relu(g[c] * y[c] + shortcut[c])`.
pub fn gate_add_relu(y: &[f32], d: Dims, g: &[f32], shortcut: &[f32], out: &mut [f32]) {
    let plane = d.plane().max(1);
    out.par_chunks_mut(plane)
        .zip(y.par_chunks(plane))
        .zip(shortcut.par_chunks(plane))
        .zip(g)
        .with_min_len(min_len(plane))
        .for_each(|(((o, y), s), &g)| {
            for ((o, &y), &s) in o.iter_mut().zip(y).zip(s) {
                *o = (g * y + s).max(0.0);
            }
        });
}

/// In place: `x = act(x)`.
pub fn act_inplace(x: &mut [f32], act: Act) {
    x.par_chunks_mut(PAR_PLANE).for_each(|p| {
        for v in p {
            *v = act.apply(*v);
        }
    });
}

fn min_len(plane: usize) -> usize {
    PAR_PLANE.div_ceil(plane).max(1)
}

/// Reflection padding of `p` pixels on every side of each `h x w` plane of `x` (like
/// `torch.nn.ReflectionPad2d`: the edge pixel is not repeated). Needs `p < h` and `p < w`.
pub fn reflection_pad(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    p: usize,
) -> Result<Vec<f32>, String> {
    if p >= h || p >= w {
        return Err(format!("reflection padding {p} of a {h}x{w} plane"));
    }
    if x.len() != planes * h * w {
        return Err(format!(
            "reflection pad: {} elements for {planes} planes of {h}x{w}",
            x.len()
        ));
    }
    let (hp, wp) = (h + 2 * p, w + 2 * p);
    let mut out = vec![0.0f32; planes * hp * wp];
    let reflect = |i: isize, n: usize| -> usize {
        let n = n as isize;
        let r = if i < 0 {
            -i
        } else if i >= n {
            2 * (n - 1) - i
        } else {
            i
        };
        r as usize
    };
    out.par_chunks_mut(hp * wp)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, src)| {
            for y in 0..hp {
                let sy = reflect(y as isize - p as isize, h);
                let srow = &src[sy * w..(sy + 1) * w];
                let orow = &mut o[y * wp..(y + 1) * wp];
                orow[p..p + w].copy_from_slice(srow);
                for k in 0..p {
                    orow[k] = srow[p - k];
                    orow[p + w + k] = srow[w - 2 - k];
                }
            }
        });
    Ok(out)
}

/// Edge-replication padding of each `h x w` plane to `hp x wp` (right and bottom).
pub fn replicate_pad(
    x: &[f32],
    planes: usize,
    h: usize,
    w: usize,
    hp: usize,
    wp: usize,
) -> Vec<f32> {
    let mut out = vec![0.0f32; planes * hp * wp];
    out.par_chunks_mut(hp * wp)
        .zip(x.par_chunks(h * w))
        .for_each(|(o, src)| {
            for y in 0..hp {
                let srow = &src[y.min(h - 1) * w..][..w];
                let orow = &mut o[y * wp..(y + 1) * wp];
                orow[..w].copy_from_slice(srow);
                orow[w..].fill(srow[w - 1]);
            }
        });
    out
}

/// Reorders the columns of a 1x1 conv weight that reads time-folded channels
/// (`[cout, t * c]`, input channel `c_in * t_idx + c_idx` = time `t_idx`, channel `c_idx`) so
/// it reads the unfolded `[c, t, h, w]` activation directly as `[c * t, h * w]`
/// (row `c_idx * t + t_idx`). The fold then moves no data.
pub fn fold_time_weights(w: &[f32], cout: usize, c: usize, t: usize) -> Vec<f32> {
    let k = c * t;
    let mut out = vec![0.0f32; cout * k];
    for o in 0..cout {
        for ti in 0..t {
            for ci in 0..c {
                out[o * k + ci * t + ti] = w[o * k + c * ti + ci];
            }
        }
    }
    out
}

/// Per-channel means of `[c, rest]` data (f64 accumulation).
pub fn channel_means(x: &[f32], c: usize) -> Vec<f64> {
    let plane = x.len() / c.max(1);
    x.par_chunks(plane.max(1))
        .map(|p| p.iter().map(|&v| v as f64).sum::<f64>() / plane.max(1) as f64)
        .collect()
}

/// In place: `x[c] += add[c]` over `[c, rest]` data.
pub fn add_per_channel(x: &mut [f32], add: &[f32]) {
    let plane = x.len() / add.len().max(1);
    x.par_chunks_mut(plane.max(1)).zip(add).for_each(|(p, &a)| {
        for v in p {
            *v += a;
        }
    });
}
