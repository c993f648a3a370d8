//! A FLAVR model of any shape with random weights, for benchmarks and tests: the released
//! architecture at full width without the 170 MB checkpoint.
//!
//! Weights are uniform with the variance of `tools/reference/flavr_ref.py::init_random`
//! (`1 / fan_in` for weights, `0.05^2` for biases), so activations keep a realistic scale
//! through the network. The values come from a fixed generator seeded per tensor, so a seed
//! always gives the same model.

use crate::model::checkpoint::{Checkpoint, DType, TensorEntry};
use crate::model::{Flavr, LoadError, ModelSpec, Tensor};

/// splitmix64: small, fast, good enough for test weights.
pub struct SplitMix(u64);

impl SplitMix {
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Uniform in [-a, a).
    pub fn symmetric(&mut self, a: f32) -> f32 {
        (2.0 * self.unit() - 1.0) * a
    }
}

struct RandomCheckpoint {
    entries: Vec<TensorEntry>,
    seed: u64,
}

impl Checkpoint for RandomCheckpoint {
    fn format(&self) -> &'static str {
        "random"
    }

    fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    fn read_f32(&mut self, name: &str) -> Result<Tensor, LoadError> {
        let (i, e) = self
            .entries
            .iter()
            .enumerate()
            .find(|(_, e)| e.name == name)
            .ok_or_else(|| LoadError::MissingKey(name.to_string()))?;
        let n: usize = e.shape.iter().product();
        let std = if e.shape.len() > 1 {
            let fan_in: usize = if name.contains("upconv.0") {
                // A (3,4,4)/(1,2,2) transposed conv: each output sees a quarter of the taps.
                e.shape[0] * e.shape[2..].iter().product::<usize>() / 4
            } else {
                e.shape[1..].iter().product()
            };
            (1.0 / fan_in.max(1) as f32).sqrt()
        } else {
            0.05
        };
        let a = std * 3f32.sqrt();
        let mut rng = SplitMix::new(self.seed ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
        let data = (0..n).map(|_| rng.symmetric(a)).collect();
        Tensor::new(e.shape.clone(), data)
            .ok_or_else(|| LoadError::Malformed(format!("random tensor `{name}`")))
    }
}

/// A model of shape `spec` with random weights drawn from `seed`.
pub fn random_flavr(spec: &ModelSpec, seed: u64) -> Result<Flavr, LoadError> {
    let entries = spec
        .keys()
        .into_iter()
        .map(|(name, shape)| TensorEntry {
            name,
            dtype: DType::F32,
            shape,
        })
        .collect();
    Flavr::from_checkpoint(&mut RandomCheckpoint { entries, seed })
}
