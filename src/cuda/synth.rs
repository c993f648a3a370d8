//! Deterministic synthetic weights for any [`ModelSpec`] (tests and the benchmark use the full
//! width architecture without a 170 MB file). `tools/bench/synth.py` makes the same numbers
//! for PyTorch, bit for bit, so the GPU engine can be compared with the PyTorch reference on
//! identical weights.
//!
//! Tensor `ti` (the index in [`ModelSpec::keys`] order) element `i` is
//! `(2 u - 1) * scale` with `u = (mix(base + (i + 1) * GOLDEN) >> 40) / 2^24`,
//! `base = mix((seed << 32) ^ ti)` (all arithmetic wrapping u64, `mix` is splitmix64's
//! finaliser), and `scale = sqrt(3 / fan_in)` for weights (variance 1 / fan_in; a transposed
//! conv's fan-in is in * taps / 4; the outconv's scale is quartered so that outputs stay near
//! the image range), 0.1 for biases.

use crate::model::{Flavr, LoadError, ModelSpec};

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The scale of tensor `name` with `shape` (see the module documentation).
pub fn scale(name: &str, shape: &[usize]) -> f32 {
    if shape.len() == 1 {
        return 0.1;
    }
    let taps: usize = shape[2..].iter().product();
    let fan_in = if name.contains("upconv.0") {
        shape[0] * taps / 4
    } else {
        shape[1] * taps
    };
    let s = (3.0f32 / fan_in as f32).sqrt();
    if name.starts_with("outconv") {
        s * 0.25
    } else {
        s
    }
}

/// Values of tensor number `ti`.
pub fn values(seed: u64, ti: usize, n: usize, scale: f32) -> Vec<f32> {
    let base = mix((seed << 32) ^ ti as u64);
    (0..n as u64)
        .map(|i| {
            let z = mix(base.wrapping_add((i + 1).wrapping_mul(GOLDEN)));
            let u = (z >> 40) as f32 / 16_777_216.0;
            (u * 2.0 - 1.0) * scale
        })
        .collect()
}

/// A model of shape `spec` with synthetic weights, loaded through the safetensors reader.
pub fn synthetic_model(spec: &ModelSpec, seed: u64) -> Result<Flavr, LoadError> {
    let keys = spec.keys();
    let values: Vec<Vec<f32>> = keys
        .iter()
        .enumerate()
        .map(|(ti, (name, shape))| values(seed, ti, shape.iter().product(), scale(name, shape)))
        .collect();
    let tensors: Vec<(&str, &[usize], &[f32])> = keys
        .iter()
        .zip(&values)
        .map(|((name, shape), v)| (name.as_str(), shape.as_slice(), v.as_slice()))
        .collect();
    let bytes = crate::model::checkpoint::safetensors::to_bytes(&tensors, &[])
        .map_err(|e| LoadError::Malformed(format!("synthetic weights: {e}")))?;
    Flavr::load_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_synthetic_model_loads_with_expected_values() {
        let spec = ModelSpec {
            stem: 8,
            widths: [8, 16, 32, 64],
            decoder: [32, 16, 8, 8, 8],
            fuse: 8,
            n_out: 1,
            encoder_bias: false,
        };
        let m = synthetic_model(&spec, 7).expect("loads");
        assert_eq!(m.spec, spec);
        // First values of tensor 0 (the stem), pinned so that synth.py can be checked against
        // the same numbers.
        let s = scale("encoder.stem.0.weight", &[8, 3, 3, 7, 7]);
        assert_eq!(m.stem.weight.data[..3], values(7, 0, 3, s)[..]);
        assert!(m.stem.weight.data.iter().all(|v| v.abs() <= s));
    }
}
