// SPDX-License-Identifier: MIT OR Apache-2.0
//! PSNR and SSIM of packed RGB frames (see the binary's doc).

/// PSNR in dB over all samples, peak 255 (infinite for identical frames).
pub(crate) fn psnr(a: &[u8], b: &[u8]) -> f64 {
    let se: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i64::from(x) - i64::from(y);
            (d * d) as u64
        })
        .sum();
    let mse = se as f64 / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}

pub(crate) const SSIM_WIN: usize = 11;

pub(crate) fn gaussian_window() -> [f64; SSIM_WIN] {
    let sigma = 1.5f64;
    let c = (SSIM_WIN / 2) as f64;
    let mut g = [0.0; SSIM_WIN];
    for (i, v) in g.iter_mut().enumerate() {
        let d = i as f64 - c;
        *v = (-d * d / (2.0 * sigma * sigma)).exp();
    }
    let sum: f64 = g.iter().sum();
    g.map(|v| v / sum)
}

/// SSIM of one channel `c` of packed RGB frames (see the module doc).
pub(crate) fn ssim_channel(a: &[u8], b: &[u8], w: usize, h: usize, c: usize) -> f64 {
    let g = gaussian_window();
    let (ow, oh) = (w - SSIM_WIN + 1, h - SSIM_WIN + 1);
    // Horizontal pass: 5 sums (x, y, xx, yy, xy) for each row and output column.
    let mut hs = vec![[0.0f64; 5]; h * ow];
    for y in 0..h {
        let row = |img: &[u8], x: usize| f64::from(img[(y * w + x) * 3 + c]);
        for x in 0..ow {
            let mut s = [0.0f64; 5];
            for (i, &gi) in g.iter().enumerate() {
                let (p, q) = (row(a, x + i), row(b, x + i));
                s[0] += gi * p;
                s[1] += gi * q;
                s[2] += gi * p * p;
                s[3] += gi * q * q;
                s[4] += gi * p * q;
            }
            hs[y * ow + x] = s;
        }
    }
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let mut total = 0.0f64;
    for y in 0..oh {
        for x in 0..ow {
            let mut s = [0.0f64; 5];
            for (i, &gi) in g.iter().enumerate() {
                let v = &hs[(y + i) * ow + x];
                for k in 0..5 {
                    s[k] += gi * v[k];
                }
            }
            let (mx, my) = (s[0], s[1]);
            let (vx, vy, cxy) = (s[2] - mx * mx, s[3] - my * my, s[4] - mx * my);
            total += ((2.0 * mx * my + c1) * (2.0 * cxy + c2))
                / ((mx * mx + my * my + c1) * (vx + vy + c2));
        }
    }
    total / (ow * oh) as f64
}

/// SSIM of packed RGB frames: the mean over R, G, B.
pub(crate) fn ssim(a: &[u8], b: &[u8], w: usize, h: usize) -> f64 {
    (0..3).map(|c| ssim_channel(a, b, w, h, c)).sum::<f64>() / 3.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::synth;

    #[test]
    fn psnr_and_ssim_match_the_torch_reference() {
        // tools/eval/ref_metrics.py's psnr/ssim (torch conv2d, float64) on synth(w, h, seed).
        for (w, h, seed, p, s) in [
            (37, 23, 1, 34.209905855774, 0.949204943416),
            (64, 48, 7, 34.356267538033, 0.976013251797),
        ] {
            let (a, b) = synth(w, h, seed);
            assert!((psnr(&a, &b) - p).abs() < 1e-9, "{w}x{h}: {}", psnr(&a, &b));
            assert!(
                (ssim(&a, &b, w, h) - s).abs() < 1e-9,
                "{w}x{h}: {}",
                ssim(&a, &b, w, h)
            );
            assert_eq!(ssim(&a, &a, w, h), 1.0);
        }
        let a = vec![10u8; 12 * 12 * 3];
        let b = vec![11u8; 12 * 12 * 3];
        assert!((psnr(&a, &b) - 10.0 * 65025f64.log10()).abs() < 1e-12);
        assert_eq!(psnr(&a, &a), f64::INFINITY);
    }
}
