//! The FLAVR network as data: its shape (derived from the weights) and its weights.
//!
//! `docs/network.md` describes the network. Nothing here knows GStreamer or CUDA: the
//! backends ([`crate::backend`], [`crate::cuda`]) compute with what this module loads.

pub mod checkpoint;
pub mod spec;
pub mod tensor;

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

/// A convolution's weights, in PyTorch layout.
#[derive(Clone, Debug)]
pub struct Conv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

/// SE gating: `x * sigmoid(W · mean(x) + b)`, `W` is `[C, C]` (stored `[C, C, 1, 1, 1]`).
#[derive(Clone, Debug)]
pub struct Gate {
    pub weight: Tensor,
    pub bias: Tensor,
}

/// A 3D ResNet basic block with SE gating.
#[derive(Clone, Debug)]
pub struct Block {
    pub conv1: Conv,
    pub conv2: Conv,
    pub gate: Gate,
    /// 1x1x1 projection of the shortcut (no bias), when the shape changes.
    pub downsample: Option<Tensor>,
    /// Spatial stride of `conv1` and `downsample` (1 or 2); time is never strided.
    pub stride: usize,
}

/// One decoder stage: a 3x3x3 conv or a (3,4,4)/(1,2,2) transposed conv, then SE gating.
#[derive(Clone, Debug)]
pub struct DecoderStage {
    pub conv: Conv,
    /// `true`: ConvTranspose3d, weight `[in, out, 3, 4, 4]`, doubles H and W.
    pub transposed: bool,
    pub gate: Gate,
}

/// The whole FLAVR network with its weights.
#[derive(Clone, Debug)]
pub struct Flavr {
    pub spec: ModelSpec,
    pub stem: Conv,
    /// layer1..layer4, two blocks each.
    pub layers: [[Block; 2]; 4],
    /// d0..d4.
    pub decoder: [DecoderStage; 5],
    /// feature_fuse 1x1 conv, `[C, 4*C_d4, 1, 1]`, no bias.
    pub fuse: Tensor,
    /// outconv 7x7 conv (after reflection padding 3), `[3n, C, 7, 7]` with bias.
    pub outconv: Conv,
}

impl Flavr {
    /// Loads a checkpoint file of any supported format.
    pub fn load_path(path: &Path) -> Result<Flavr, LoadError> {
        let mut ckpt = checkpoint::open_path(path)?;
        Flavr::from_checkpoint(ckpt.as_mut())
    }

    /// Loads a checkpoint held in memory.
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

    pub fn load_bytes(bytes: impl AsRef<[u8]> + Send + 'static) -> Result<Flavr, LoadError> {
        let mut ckpt = checkpoint::open_bytes(bytes)?;
        Flavr::from_checkpoint(ckpt.as_mut())
    }

    /// Checks the checkpoint's keys and shapes against the architecture (widths and output
    /// count taken from the weights) and reads the tensors the model needs.
    pub fn from_checkpoint(ckpt: &mut dyn Checkpoint) -> Result<Flavr, LoadError> {
        let (spec, keys) = expected_keys(ckpt.entries())?;
        let mut load = |key: &Key| -> Result<Tensor, LoadError> {
            let mut t = ckpt.read_f32(&key.stored)?;
            if t.shape != key.shape {
                // The index was checked already; a reader that disagrees with it is a bug in
                // the file, not a panic.
                return Err(LoadError::Shape {
                    key: key.name.clone(),
                    expected: tensor::shape_str(&key.shape),
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
        };
        let mut it = keys.iter();
        let mut next = |expect: &str| -> Result<Tensor, LoadError> {
            let key = it.next().expect("key list and loader agree");
            debug_assert_eq!(key.name, expect);
            load(key)
        };
        let mut conv = |name: &str, bias: bool| -> Result<Conv, LoadError> {
            let weight = next(&format!("{name}.weight"))?;
            let bias = if bias {
                Some(next(&format!("{name}.bias"))?)
            } else {
                None
            };
            Ok(Conv { weight, bias })
        };
        let eb = spec.encoder_bias;
        let stem = conv("encoder.stem.0", eb)?;
        let mut layers = Vec::with_capacity(4);
        for l in 1..=4 {
            let mut blocks = Vec::with_capacity(2);
            for b in 0..2 {
                let p = format!("encoder.layer{l}.{b}");
                let conv1 = conv(&format!("{p}.conv1.0"), eb)?;
                let conv2 = conv(&format!("{p}.conv2.0"), eb)?;
                let se = conv(&format!("{p}.fg.attn_layer.0"), true)?;
                let downsample = if spec.has_downsample(l, b) {
                    Some(conv(&format!("{p}.downsample.0"), false)?.weight)
                } else {
                    None
                };
                blocks.push(Block {
                    conv1,
                    conv2,
                    gate: Gate {
                        weight: se.weight,
                        bias: se.bias.expect("SE has a bias"),
                    },
                    downsample,
                    stride: if b == 0 && (l == 2 || l == 3) { 2 } else { 1 },
                });
            }
            layers.push(<[Block; 2]>::try_from(blocks).expect("two blocks"));
        }
        let mut decoder = Vec::with_capacity(5);
        for d in 0..5 {
            let transposed = spec::DECODER_TRANSPOSED[d];
            let op = if transposed { "upconv" } else { "conv" };
            let c = conv(&format!("decoder.{d}.{op}.0"), true)?;
            let se = conv(&format!("decoder.{d}.{op}.1.attn_layer.0"), true)?;
            decoder.push(DecoderStage {
                conv: c,
                transposed,
                gate: Gate {
                    weight: se.weight,
                    bias: se.bias.expect("SE has a bias"),
                },
            });
        }
        let fuse = conv("feature_fuse.conv.0", false)?.weight;
        let outconv = conv("outconv.1", true)?;
        Ok(Flavr {
            spec,
            stem,
            layers: <[[Block; 2]; 4]>::try_from(layers).expect("four layers"),
            decoder: <[DecoderStage; 5]>::try_from(decoder).expect("five stages"),
            fuse,
            outconv,
        })
    }

    /// Every weight tensor of the model with its (prefix-free) checkpoint key, in key order.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        fn conv<'a>(out: &mut Vec<(String, &'a Tensor)>, name: &str, c: &'a Conv) {
            out.push((format!("{name}.weight"), &c.weight));
            if let Some(b) = &c.bias {
                out.push((format!("{name}.bias"), b));
            }
        }
        fn gate<'a>(out: &mut Vec<(String, &'a Tensor)>, name: &str, g: &'a Gate) {
            out.push((format!("{name}.weight"), &g.weight));
            out.push((format!("{name}.bias"), &g.bias));
        }
        let mut out = Vec::new();
        conv(&mut out, "encoder.stem.0", &self.stem);
        for (l, layer) in self.layers.iter().enumerate() {
            for (b, block) in layer.iter().enumerate() {
                let p = format!("encoder.layer{}.{b}", l + 1);
                conv(&mut out, &format!("{p}.conv1.0"), &block.conv1);
                conv(&mut out, &format!("{p}.conv2.0"), &block.conv2);
                gate(&mut out, &format!("{p}.fg.attn_layer.0"), &block.gate);
                if let Some(ds) = &block.downsample {
                    out.push((format!("{p}.downsample.0.weight"), ds));
                }
            }
        }
        for (d, stage) in self.decoder.iter().enumerate() {
            let op = if stage.transposed { "upconv" } else { "conv" };
            conv(&mut out, &format!("decoder.{d}.{op}.0"), &stage.conv);
            gate(
                &mut out,
                &format!("decoder.{d}.{op}.1.attn_layer.0"),
                &stage.gate,
            );
        }
        out.push(("feature_fuse.conv.0.weight".into(), &self.fuse));
        conv(&mut out, "outconv.1", &self.outconv);
        out
    }
}
