//! The FLAVR network as data: its shape (derived from the weights) and its weights.
//!
//! `docs/network.md` describes the network. Nothing here knows GStreamer or CUDA: the
//! backends ([`crate::backend`], [`crate::cuda`]) compute with what this module loads.

pub mod checkpoint;
mod layout;
pub mod spec;
pub mod synth;
pub mod tensor;

use std::collections::HashMap;
use std::path::Path;

pub use spec::ModelSpec;
pub use tensor::Tensor;

use checkpoint::Checkpoint;
use spec::{Key, expected_keys};

/// Why a checkpoint could not be turned into a model. Each message names the cause.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum LoadError {
    #[error("cannot read checkpoint: {0}")]
    Io(String),
    #[error("not a checkpoint (neither a PyTorch file nor safetensors): {0}")]
    NotACheckpoint(String),
    #[error("checkpoint is truncated: {0}")]
    Truncated(String),
    #[error("checkpoint is malformed: {0}")]
    Malformed(String),
    #[error("checkpoint has no tensor `{0}`")]
    MissingKey(String),
    #[error("checkpoint has an unexpected tensor `{0}` (is it a FLAVR checkpoint?)")]
    UnexpectedKey(String),
    #[error("tensor `{key}` has shape {found}, expected {expected}")]
    Shape {
        key: String,
        expected: String,
        found: String,
    },
    #[error("tensor `{key}` has dtype {dtype}; only float32, float16 and bfloat16 are read")]
    DType { key: String, dtype: String },
}

/// The checkpoint built into the plugin, used when `model-location` is empty: our own 2x model
/// (widths 32/64/128/256, float16 safetensors), trained by `tools/train/` on synthetic motion
/// over Debian wallpaper photographs. `models/README.md` says how it was made.
///
/// Empty when the crate is built without its `embedded-model` feature (a plugin 21 MB smaller,
/// for machines where every model is given by `model-location`): loading it then fails with
/// an error that says so.
pub fn default_model() -> &'static [u8] {
    #[cfg(feature = "embedded-model")]
    {
        include_bytes!("../../models/flavr2x-default.safetensors")
    }
    #[cfg(not(feature = "embedded-model"))]
    {
        &[]
    }
}

// The model's parts are generic over what stands in each tensor's place: a [`Tensor`] in a
// loaded model, the key or nothing in the model layout.rs builds to list the keys.

/// A convolution's weights, in PyTorch layout.
#[derive(Clone, Debug)]
pub struct Conv<T = Tensor> {
    pub weight: T,
    pub bias: Option<T>,
}

/// SE gating: `x * sigmoid(W · mean(x) + b)`, `W` is `[C, C]` (stored `[C, C, 1, 1, 1]`).
#[derive(Clone, Debug)]
pub struct Gate<T = Tensor> {
    pub weight: T,
    pub bias: T,
}

/// A 3D ResNet basic block with SE gating.
#[derive(Clone, Debug)]
pub struct Block<T = Tensor> {
    pub conv1: Conv<T>,
    pub conv2: Conv<T>,
    pub gate: Gate<T>,
    /// 1x1x1 projection of the shortcut (no bias), when the shape changes.
    pub downsample: Option<T>,
    /// Spatial stride of `conv1` and `downsample` (1 or 2); time is never strided.
    pub stride: usize,
}

/// One decoder stage: a 3x3x3 conv or a (3,4,4)/(1,2,2) transposed conv, then SE gating.
#[derive(Clone, Debug)]
pub struct DecoderStage<T = Tensor> {
    pub conv: Conv<T>,
    /// `true`: ConvTranspose3d, weight `[in, out, 3, 4, 4]`, doubles H and W.
    pub transposed: bool,
    pub gate: Gate<T>,
}

/// The whole FLAVR network with its weights. [`Flavr::build`] (layout.rs) names its tensors.
#[derive(Clone, Debug)]
pub struct Flavr<T = Tensor> {
    pub spec: ModelSpec,
    pub stem: Conv<T>,
    /// layer1..layer4, two blocks each.
    pub layers: [[Block<T>; 2]; 4],
    /// d0..d4.
    pub decoder: [DecoderStage<T>; 5],
    /// feature_fuse 1x1 conv, `[C, 4*C_d4, 1, 1]`, no bias.
    pub fuse: T,
    /// outconv 7x7 conv (after reflection padding 3), `[3n, C, 7, 7]` with bias.
    pub outconv: Conv<T>,
}

impl Flavr {
    /// Loads a checkpoint file of any supported format.
    pub fn load_path(path: &Path) -> Result<Flavr, LoadError> {
        let mut ckpt = checkpoint::open_path(path)?;
        Flavr::from_checkpoint(ckpt.as_mut())
    }

    /// Loads the model built into the plugin ([`default_model`]); an error naming the cargo
    /// feature when the crate was built without it.
    pub fn load_default() -> Result<Flavr, LoadError> {
        let bytes = default_model();
        if bytes.is_empty() {
            return Err(LoadError::Io(
                "this build has no embedded model (cargo feature `embedded-model` off): set \
                 model-location"
                    .into(),
            ));
        }
        Flavr::load_bytes(bytes)
    }

    /// Loads a checkpoint held in memory.
    pub fn load_bytes(bytes: impl AsRef<[u8]> + Send + 'static) -> Result<Flavr, LoadError> {
        let mut ckpt = checkpoint::open_bytes(bytes)?;
        Flavr::from_checkpoint(ckpt.as_mut())
    }

    /// Checks the checkpoint's keys and shapes against the architecture (widths and output
    /// count taken from the weights) and reads each tensor the model needs by its key.
    pub fn from_checkpoint(ckpt: &mut dyn Checkpoint) -> Result<Flavr, LoadError> {
        let (spec, keys) = expected_keys(ckpt.entries())?;
        let keys: HashMap<String, Key> = keys.into_iter().map(|k| (k.name.clone(), k)).collect();
        Flavr::build(&spec, |name, shape| {
            let key = keys.get(&name).ok_or(LoadError::MissingKey(name))?;
            let mut t = ckpt.read_f32(&key.stored)?;
            if t.shape != shape {
                // The index was checked already; a reader that disagrees with it is a bug in
                // the file, not a panic.
                return Err(LoadError::Shape {
                    key: key.name.clone(),
                    expected: tensor::shape_str(&shape),
                    found: tensor::shape_str(&t.shape),
                });
            }
            if t.data.iter().any(|v| !v.is_finite()) {
                return Err(LoadError::Malformed(format!(
                    "tensor `{}` holds NaN or infinity",
                    key.name
                )));
            }
            t.shape.shrink_to_fit();
            Ok(t)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors image of `spec`'s tensors, written in the order `order` gives, each
    /// filled with values no other tensor holds (same-shaped tensors differ too); `prefix` is
    /// put before every key.
    fn checkpoint(spec: &ModelSpec, order: &[usize], prefix: &str) -> Vec<u8> {
        let keys = spec.keys();
        let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = order
            .iter()
            .map(|&i| {
                let (name, shape) = &keys[i];
                let n: usize = shape.iter().product();
                let data = (0..n).map(|j| i as f32 + j as f32 / n as f32).collect();
                (format!("{prefix}{name}"), shape.clone(), data)
            })
            .collect();
        let views: Vec<(&str, &[usize], &[f32])> = tensors
            .iter()
            .map(|(k, s, d)| (k.as_str(), s.as_slice(), d.as_slice()))
            .collect();
        checkpoint::safetensors::to_bytes(&views, &[]).unwrap()
    }

    #[test]
    fn tensors_are_read_by_key_whatever_the_file_order() {
        let spec = ModelSpec {
            n_out: 3,
            encoder_bias: true,
            ..spec::NARROW
        };
        let n = spec.keys().len();
        let in_order: Vec<usize> = (0..n).collect();
        // A fixed shuffle: a step coprime with the count, so every key comes once.
        let step = (n / 3..n).find(|s| gcd(*s, n) == 1).unwrap();
        let shuffled: Vec<usize> = (0..n).map(|i| (i * step + 5) % n).collect();
        let mut sorted = shuffled.clone();
        sorted.sort();
        assert_eq!(sorted, in_order);
        assert_ne!(shuffled, in_order);

        let a = Flavr::load_bytes(checkpoint(&spec, &in_order, "")).unwrap();
        let bytes = checkpoint(&spec, &shuffled, "module.");
        let b = Flavr::load_bytes(bytes.clone()).unwrap();
        assert_eq!(a.spec, spec);
        let (na, nb) = (a.named_tensors(), b.named_tensors());
        assert_eq!(na.len(), n);
        assert_eq!(na, nb);
        // Each tensor is the one its key names in the file.
        let mut file = checkpoint::open_bytes(bytes).unwrap();
        for (name, t) in &nb {
            assert_eq!(*t, &file.read_f32(&format!("module.{name}")).unwrap());
        }
        // Two fields of equal shape, spelled out: a swap between them would show here.
        let l2 = &b.layers[1][1];
        let conv1 = file.read_f32("module.encoder.layer2.1.conv1.0.weight");
        let conv2 = file.read_f32("module.encoder.layer2.1.conv2.0.weight");
        assert_eq!(Ok(&l2.conv1.weight), conv1.as_ref());
        assert_eq!(Ok(&l2.conv2.weight), conv2.as_ref());
        assert_ne!(l2.conv1.weight, l2.conv2.weight);
    }

    fn gcd(a: usize, b: usize) -> usize {
        if b == 0 { a } else { gcd(b, a % b) }
    }
}
