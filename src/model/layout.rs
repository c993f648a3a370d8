//! The network's tensors, named once. [`Flavr::build`] makes a model of a [`ModelSpec`] from a
//! function that gives the tensor of each checkpoint key; it is the only place where the keys
//! are spelled. Everything else that needs them goes through it:
//! - [`ModelSpec::keys`]: the keys and shapes, in build order;
//! - [`Flavr::from_checkpoint`]: each tensor read by its key;
//! - [`Flavr::named_tensors`]: the model's tensors with their keys.

use std::convert::Infallible;

use super::spec::{DECODER_TRANSPOSED, ModelSpec, WINDOW};
use super::{Block, Conv, DecoderStage, Flavr, Gate};

/// Hands the build's requests to `get`, one key at a time.
struct Builder<F> {
    get: F,
}

impl<T, E, F: FnMut(String, Vec<usize>) -> Result<T, E>> Builder<F> {
    fn tensor(&mut self, key: String, shape: Vec<usize>) -> Result<T, E> {
        (self.get)(key, shape)
    }

    /// `{name}.weight` of `shape` and, when `bias` says so, `{name}.bias` of that many elements.
    fn conv(&mut self, name: &str, shape: Vec<usize>, bias: Option<usize>) -> Result<Conv<T>, E> {
        let weight = self.tensor(format!("{name}.weight"), shape)?;
        let bias = match bias {
            Some(n) => Some(self.tensor(format!("{name}.bias"), vec![n])?),
            None => None,
        };
        Ok(Conv { weight, bias })
    }

    /// An SE gate of `c` channels: `{name}.weight` `[c, c, 1, 1, 1]` and `{name}.bias` `[c]`.
    fn gate(&mut self, name: &str, c: usize) -> Result<Gate<T>, E> {
        Ok(Gate {
            weight: self.tensor(format!("{name}.weight"), vec![c, c, 1, 1, 1])?,
            bias: self.tensor(format!("{name}.bias"), vec![c])?,
        })
    }
}

/// `[f(0), .., f(N - 1)]`, stopping at the first error.
fn array<const N: usize, U, E>(mut f: impl FnMut(usize) -> Result<U, E>) -> Result<[U; N], E> {
    let mut items = Vec::with_capacity(N);
    for i in 0..N {
        items.push(f(i)?);
    }
    match items.try_into() {
        Ok(a) => Ok(a),
        Err(_) => unreachable!("exactly {N} items"),
    }
}

impl<T> Flavr<T> {
    /// The model of shape `spec`, its tensors made by `get(key, shape)` (the key without a
    /// `module.` prefix). Keys are requested in a fixed order, the order of
    /// [`ModelSpec::keys`]: encoder stem, then per layer and block conv1, conv2, SE gate and the
    /// shortcut projection, then per decoder stage its conv and SE gate, `feature_fuse`,
    /// `outconv`; each weight followed by its bias. `tools/bench/synth.py` numbers the tensors
    /// in this order.
    pub fn build<E>(
        spec: &ModelSpec,
        get: impl FnMut(String, Vec<usize>) -> Result<T, E>,
    ) -> Result<Flavr<T>, E> {
        let mut b = Builder { get };
        let eb = |c: usize| spec.encoder_bias.then_some(c);
        let stem = b.conv("encoder.stem.0", vec![spec.stem, 3, 3, 7, 7], eb(spec.stem))?;
        let layers = array(|i| {
            let l = i + 1;
            let c = spec.widths[i];
            array(|blk| {
                let cin = spec.block_in(l, blk);
                let p = format!("encoder.layer{l}.{blk}");
                Ok(Block {
                    conv1: b.conv(&format!("{p}.conv1.0"), vec![c, cin, 3, 3, 3], eb(c))?,
                    conv2: b.conv(&format!("{p}.conv2.0"), vec![c, c, 3, 3, 3], eb(c))?,
                    gate: b.gate(&format!("{p}.fg.attn_layer.0"), c)?,
                    downsample: if spec.has_downsample(l, blk) {
                        let key = format!("{p}.downsample.0.weight");
                        Some(b.tensor(key, vec![c, cin, 1, 1, 1])?)
                    } else {
                        None
                    },
                    stride: ModelSpec::block_stride(l, blk),
                })
            })
        })?;
        let decoder = array(|d| {
            let (cin, cout) = (spec.decoder_in(d), spec.decoder[d]);
            let transposed = DECODER_TRANSPOSED[d];
            let (op, shape) = if transposed {
                // ConvTranspose3d stores its weight as [in, out, ...].
                ("upconv", vec![cin, cout, 3, 4, 4])
            } else {
                ("conv", vec![cout, cin, 3, 3, 3])
            };
            Ok(DecoderStage {
                conv: b.conv(&format!("decoder.{d}.{op}.0"), shape, Some(cout))?,
                transposed,
                gate: b.gate(&format!("decoder.{d}.{op}.1.attn_layer.0"), cout)?,
            })
        })?;
        let fuse_shape = vec![spec.fuse, WINDOW * spec.decoder[4], 1, 1];
        let fuse = b.tensor("feature_fuse.conv.0.weight".into(), fuse_shape)?;
        let n = 3 * spec.n_out;
        let outconv = b.conv("outconv.1", vec![n, spec.fuse, 7, 7], Some(n))?;
        Ok(Flavr {
            spec: spec.clone(),
            stem,
            layers,
            decoder,
            fuse,
            outconv,
        })
    }

    /// Every place a tensor can sit, in field order, `None` where this model has none (a
    /// missing bias or shortcut projection). The list has the same length and order for every
    /// `T`, so two models of one spec pair up place by place.
    fn places(&self) -> Vec<Option<&T>> {
        let mut out = vec![Some(&self.stem.weight), self.stem.bias.as_ref()];
        for block in self.layers.iter().flatten() {
            out.push(Some(&block.conv1.weight));
            out.push(block.conv1.bias.as_ref());
            out.push(Some(&block.conv2.weight));
            out.push(block.conv2.bias.as_ref());
            out.push(Some(&block.gate.weight));
            out.push(Some(&block.gate.bias));
            out.push(block.downsample.as_ref());
        }
        for stage in &self.decoder {
            out.push(Some(&stage.conv.weight));
            out.push(stage.conv.bias.as_ref());
            out.push(Some(&stage.gate.weight));
            out.push(Some(&stage.gate.bias));
        }
        out.push(Some(&self.fuse));
        out.push(Some(&self.outconv.weight));
        out.push(self.outconv.bias.as_ref());
        out
    }

    /// Every tensor of the model with its (prefix-free) checkpoint key, in field order.
    ///
    /// # Panics
    /// When the model lacks a tensor its spec calls for or holds one it does not (a model
    /// assembled by hand against [`Flavr::build`]'s shape).
    pub fn named_tensors(&self) -> Vec<(String, &T)> {
        let Ok(keys) = Flavr::<String>::build(&self.spec, |key, _| Ok::<_, Infallible>(key));
        let keys = keys.places();
        let tensors = self.places();
        assert_eq!(keys.len(), tensors.len(), "the model's places");
        keys.into_iter()
            .zip(tensors)
            .filter_map(|pair| match pair {
                (Some(key), Some(t)) => Some((key.clone(), t)),
                (None, None) => None,
                (Some(key), None) => panic!("the model has no tensor `{key}`"),
                (None, Some(_)) => panic!("the model holds a tensor its spec has no key for"),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_every_place_is_named() {
        for spec in [ModelSpec::released(1), ModelSpec::released(3)] {
            let keys = spec.keys();
            let unique: std::collections::HashSet<&String> = keys.iter().map(|(k, _)| k).collect();
            assert_eq!(unique.len(), keys.len());
            // A model whose every tensor is its own key: named_tensors pairs each with itself.
            let Ok(m) = Flavr::<String>::build(&spec, |k, _| Ok::<_, Infallible>(k));
            let named = m.named_tensors();
            assert_eq!(named.len(), keys.len());
            assert!(named.iter().all(|(k, t)| k == *t));
            // ... and keys() and named_tensors() list them in the same order.
            assert!(named.iter().zip(&keys).all(|((a, _), (b, _))| a == b));
        }
    }

    #[test]
    fn fields_hold_the_tensors_their_keys_name() {
        // An oracle written apart from the build: the key of each field, spelled out.
        let spec = ModelSpec::released(3);
        let Ok(m) = Flavr::<String>::build(&spec, |k, _| Ok::<_, Infallible>(k));
        assert_eq!(m.stem.weight, "encoder.stem.0.weight");
        assert_eq!(m.stem.bias.as_deref(), Some("encoder.stem.0.bias"));
        let b = &m.layers[1][0];
        assert_eq!(b.conv1.weight, "encoder.layer2.0.conv1.0.weight");
        assert_eq!(
            b.conv2.bias.as_deref(),
            Some("encoder.layer2.0.conv2.0.bias")
        );
        assert_eq!(b.gate.weight, "encoder.layer2.0.fg.attn_layer.0.weight");
        assert_eq!(b.gate.bias, "encoder.layer2.0.fg.attn_layer.0.bias");
        assert_eq!(
            b.downsample.as_deref(),
            Some("encoder.layer2.0.downsample.0.weight")
        );
        assert_eq!((b.stride, m.layers[3][1].stride), (2, 1));
        assert_eq!(m.layers[0][0].downsample, None);
        assert_eq!(
            m.layers[3][1].conv2.weight,
            "encoder.layer4.1.conv2.0.weight"
        );
        assert_eq!(m.decoder[0].conv.weight, "decoder.0.conv.0.weight");
        assert_eq!(
            m.decoder[1].conv.bias.as_deref(),
            Some("decoder.1.upconv.0.bias")
        );
        assert_eq!(
            m.decoder[4].gate.weight,
            "decoder.4.upconv.1.attn_layer.0.weight"
        );
        assert!(m.decoder[4].transposed && !m.decoder[3].transposed);
        assert_eq!(m.fuse, "feature_fuse.conv.0.weight");
        assert_eq!(m.outconv.bias.as_deref(), Some("outconv.1.bias"));
        // Without encoder biases there is no bias key.
        let Ok(m) = Flavr::<String>::build(&ModelSpec::released(1), |k, _| Ok::<_, Infallible>(k));
        assert_eq!(m.stem.bias, None);
        assert_eq!(m.layers[2][1].conv1.bias, None);
    }

    #[test]
    #[should_panic(expected = "the model has no tensor `encoder.stem.0.bias`")]
    fn named_tensors_refuses_a_model_that_lacks_a_tensor() {
        let Ok(mut m) =
            Flavr::<String>::build(&ModelSpec::released(3), |k, _| Ok::<_, Infallible>(k));
        m.stem.bias = None;
        m.named_tensors();
    }

    #[test]
    fn build_stops_at_the_first_error() {
        let mut asked = 0;
        let r = Flavr::<()>::build(&ModelSpec::released(1), |k, _| {
            asked += 1;
            if k.starts_with("encoder.layer2") {
                Err(k)
            } else {
                Ok(())
            }
        });
        assert_eq!(r.unwrap_err(), "encoder.layer2.0.conv1.0.weight");
        // The stem's weight, layer1's two blocks (conv1, conv2, gate weight and bias), then the
        // failing key.
        assert_eq!(asked, 1 + 2 * 4 + 1);
    }
}
