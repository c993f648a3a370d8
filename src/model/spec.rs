//! The architecture of `docs/network.md` as a checklist: which keys a checkpoint must hold,
//! with which shapes, given the widths read from the weights themselves. The keys themselves
//! are spelled in layout.rs ([`Flavr::build`]).

use std::collections::{BTreeMap, HashSet};
use std::convert::Infallible;

use super::checkpoint::{DType, TensorEntry};
use super::tensor::shape_str;
use super::{Flavr, LoadError};

/// Decoder stages d0..d4: `true` where the stage is a ConvTranspose3d.
pub const DECODER_TRANSPOSED: [bool; 5] = [false, true, true, false, true];

/// Frames in a window.
pub const WINDOW: usize = 4;

/// Height and width must be multiples of this (three stride-2 stages).
pub const SIZE_MULTIPLE: usize = 8;

/// The shape of a FLAVR network, taken from its checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelSpec {
    /// Stem output channels (`x0`); 64 in the released models.
    pub stem: usize,
    /// layer1..layer4 widths; 64, 128, 256, 512 in the released models.
    pub widths: [usize; 4],
    /// d0..d4 output widths; 256, 128, 64, 64, 64 in the released models.
    pub decoder: [usize; 5],
    /// feature_fuse output width; 64 in the released models.
    pub fuse: usize,
    /// Interpolated frames per window: 1 (2x), 3 (4x), 7 (8x).
    pub n_out: usize,
    /// Encoder convolutions carry a bias (the 4x and 8x models).
    pub encoder_bias: bool,
}

/// A narrow network (a quarter of the stem's width and an eighth of the others'), for tests.
#[cfg(test)]
pub(crate) const NARROW: ModelSpec = ModelSpec {
    stem: 8,
    widths: [8, 16, 32, 64],
    decoder: [32, 16, 8, 8, 8],
    fuse: 8,
    n_out: 1,
    encoder_bias: false,
};

/// One tensor the model needs: its key without `module.`, the key as stored, its shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub stored: String,
    pub shape: Vec<usize>,
}

impl ModelSpec {
    /// The released 2x model's shape.
    pub fn released(n_out: usize) -> ModelSpec {
        ModelSpec {
            stem: 64,
            widths: [64, 128, 256, 512],
            decoder: [256, 128, 64, 64, 64],
            fuse: 64,
            n_out,
            encoder_bias: n_out > 1,
        }
    }

    /// Input channels of block `b` (0, 1) of layer `l` (1..=4).
    pub fn block_in(&self, l: usize, b: usize) -> usize {
        match (l, b) {
            (1, 0) => self.stem,
            (_, 0) => self.widths[l - 2],
            _ => self.widths[l - 1],
        }
    }

    /// Spatial stride of block `b` of layer `l`.
    pub fn block_stride(l: usize, b: usize) -> usize {
        if b == 0 && (l == 2 || l == 3) { 2 } else { 1 }
    }

    /// Whether block `b` of layer `l` has a 1x1x1 projection on its shortcut.
    pub fn has_downsample(&self, l: usize, b: usize) -> bool {
        Self::block_stride(l, b) != 1 || self.block_in(l, b) != self.widths[l - 1]
    }

    /// Input channels of decoder stage `d`: the previous stage's output concatenated with
    /// its skip (x3, x2, x1, x0).
    pub fn decoder_in(&self, d: usize) -> usize {
        match d {
            0 => self.widths[3],
            1 => self.decoder[0] + self.widths[2],
            2 => self.decoder[1] + self.widths[1],
            3 => self.decoder[2] + self.widths[0],
            _ => self.decoder[3] + self.stem,
        }
    }

    /// Every tensor of the model, its key and shape, in [`Flavr::build`]'s order.
    pub fn keys(&self) -> Vec<(String, Vec<usize>)> {
        let mut keys = Vec::new();
        let Ok(_) = Flavr::<()>::build(self, |key, shape| {
            keys.push((key, shape));
            Ok::<_, Infallible>(())
        });
        keys
    }

    /// Number of parameters.
    pub fn params(&self) -> usize {
        self.keys()
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum()
    }

    /// Multiply-adds of one window at a (padded) size `h` x `w`, counting convolutions only.
    pub fn macs(&self, h: usize, w: usize) -> f64 {
        let t = WINDOW as f64;
        let (h, w) = (h as f64, w as f64);
        let px = |s: f64| t * (h / s) * (w / s); // output positions of a 3D conv at scale 1/s
        let mut m = px(2.0) * (self.stem * 3 * 3 * 7 * 7) as f64;
        for l in 1..=4 {
            let c = self.widths[l - 1];
            let s = [2.0, 4.0, 8.0, 8.0][l - 1];
            for b in 0..2 {
                let cin = self.block_in(l, b);
                m += px(s) * (c * cin * 27 + c * c * 27) as f64 + (c * c) as f64; // convs, SE
                if self.has_downsample(l, b) {
                    m += px(s) * (c * cin) as f64;
                }
            }
        }
        // Output scale of d0..d4; a (3,4,4)/(1,2,2) transposed conv has 12 taps per output.
        let scale = [8.0, 4.0, 2.0, 2.0, 1.0];
        for d in 0..5 {
            let taps = if DECODER_TRANSPOSED[d] { 12 } else { 27 };
            let (cin, cout) = (self.decoder_in(d), self.decoder[d]);
            m += px(scale[d]) * (cout * cin * taps) as f64 + (cout * cout) as f64;
        }
        m += h * w * (self.fuse * WINDOW * self.decoder[4]) as f64;
        m += h * w * (3 * self.n_out * self.fuse * 49) as f64;
        m
    }

    /// Floating-point operations (2 per multiply-add) of one window.
    pub fn flops(&self, h: usize, w: usize) -> f64 {
        2.0 * self.macs(h, w)
    }
}

/// Reads the architecture off a checkpoint's index and checks every key and shape.
/// Returns the spec and the keys to load, in [`ModelSpec::keys`] order.
pub fn expected_keys(entries: &[TensorEntry]) -> Result<(ModelSpec, Vec<Key>), LoadError> {
    let mut by_name: BTreeMap<&str, &TensorEntry> = BTreeMap::new();
    for e in entries {
        let name = e.name.strip_prefix("module.").unwrap_or(&e.name);
        if by_name.insert(name, e).is_some() {
            return Err(LoadError::Malformed(format!(
                "tensor `{name}` appears twice"
            )));
        }
    }
    let shape = |name: &str| -> Result<&[usize], LoadError> {
        by_name
            .get(name)
            .map(|e| e.shape.as_slice())
            .ok_or_else(|| LoadError::MissingKey(name.to_string()))
    };
    // Reads dimension `dim` of `name`, which must have `rank` dimensions.
    let dim = |name: &str, rank: usize, dim: usize, what: &str| -> Result<usize, LoadError> {
        let s = shape(name)?;
        if s.len() != rank || s[dim] == 0 {
            return Err(LoadError::Shape {
                key: name.to_string(),
                expected: what.to_string(),
                found: shape_str(s),
            });
        }
        Ok(s[dim])
    };
    let stem = dim("encoder.stem.0.weight", 5, 0, "[C, 3, 3, 7, 7]")?;
    let mut widths = [0; 4];
    for (l, w) in widths.iter_mut().enumerate() {
        *w = dim(
            &format!("encoder.layer{}.0.conv1.0.weight", l + 1),
            5,
            0,
            "[C, Cin, 3, 3, 3]",
        )?;
    }
    let mut decoder = [0; 5];
    for (d, w) in decoder.iter_mut().enumerate() {
        *w = if DECODER_TRANSPOSED[d] {
            dim(
                &format!("decoder.{d}.upconv.0.weight"),
                5,
                1,
                "[Cin, C, 3, 4, 4]",
            )?
        } else {
            dim(
                &format!("decoder.{d}.conv.0.weight"),
                5,
                0,
                "[C, Cin, 3, 3, 3]",
            )?
        };
    }
    let fuse = dim("feature_fuse.conv.0.weight", 4, 0, "[C, Cin, 1, 1]")?;
    let out = dim("outconv.1.weight", 4, 0, "[3n, C, 7, 7]")?;
    if out % 3 != 0 {
        return Err(LoadError::Shape {
            key: "outconv.1.weight".into(),
            expected: "[3n, C, 7, 7] (a multiple of 3 outputs)".into(),
            found: shape_str(shape("outconv.1.weight")?),
        });
    }
    let spec = ModelSpec {
        stem,
        widths,
        decoder,
        fuse,
        n_out: out / 3,
        encoder_bias: by_name.contains_key("encoder.stem.0.bias"),
    };
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    for (name, expected) in spec.keys() {
        let e = by_name
            .get(name.as_str())
            .ok_or_else(|| LoadError::MissingKey(name.clone()))?;
        if e.shape != expected {
            return Err(LoadError::Shape {
                key: name,
                expected: shape_str(&expected),
                found: shape_str(&e.shape),
            });
        }
        if let DType::Other(dtype) = &e.dtype {
            return Err(LoadError::DType {
                key: name,
                dtype: dtype.clone(),
            });
        }
        seen.insert(name.clone());
        keys.push(Key {
            name,
            stored: e.name.clone(),
            shape: expected,
        });
    }
    if let Some(extra) = by_name.keys().find(|k| !seen.contains(**k)) {
        return Err(LoadError::UnexpectedKey(extra.to_string()));
    }
    Ok((spec, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(spec: &ModelSpec, prefix: &str) -> Vec<TensorEntry> {
        spec.keys()
            .into_iter()
            .map(|(name, shape)| TensorEntry {
                name: format!("{prefix}{name}"),
                dtype: DType::F32,
                shape,
            })
            .collect()
    }

    #[test]
    fn released_parameter_counts() {
        // docs/network.md (widths table): 2x 42,061,571; 4x 42,084,297; 8x 42,121,941.
        assert_eq!(ModelSpec::released(1).params(), 42_061_571);
        assert_eq!(ModelSpec::released(3).params(), 42_084_297);
        assert_eq!(ModelSpec::released(7).params(), 42_121_941);
        assert_eq!(ModelSpec::released(1).keys().len(), 59);
        assert_eq!(ModelSpec::released(3).keys().len(), 76);
    }

    #[test]
    fn released_costs() {
        // docs/network.md cost table, in tera multiply-adds.
        let s = ModelSpec::released(1);
        for (w, h, t) in [
            (960, 544, 2.1),
            (1280, 720, 3.7),
            (1920, 1080, 8.4),
            (3840, 2160, 33.7),
        ] {
            let got = s.macs(h, w) / 1e12;
            assert!((got - t).abs() < 0.06, "{w}x{h}: {got} T");
        }
    }

    #[test]
    #[cfg(feature = "embedded-model")]
    fn embedded_default_model_loads() {
        let bytes = crate::model::default_model();
        assert!(bytes.len() <= 25_000_000, "{} bytes", bytes.len());
        let m = crate::model::Flavr::load_default().unwrap();
        assert_eq!(m.spec.widths, [32, 64, 128, 256]);
        assert_eq!(m.spec.decoder, [128, 64, 32, 32, 32]);
        assert_eq!((m.spec.stem, m.spec.fuse, m.spec.n_out), (32, 32, 1));
        assert!(!m.spec.encoder_bias);
        assert_eq!(m.spec.params(), 10_525_571);
    }

    #[test]
    fn spec_read_back_from_keys() {
        for n in [1, 3, 7] {
            let spec = ModelSpec::released(n);
            let (got, keys) = expected_keys(&entries(&spec, "module.")).unwrap();
            assert_eq!(got, spec);
            assert_eq!(keys.len(), spec.keys().len());
            assert!(keys[0].stored.starts_with("module."));
        }
        assert_eq!(expected_keys(&entries(&NARROW, "")).unwrap().0, NARROW);
    }

    #[test]
    fn errors_name_the_key() {
        let spec = ModelSpec::released(1);
        let mut e = entries(&spec, "module.");
        e.retain(|t| t.name != "module.decoder.2.upconv.0.bias");
        assert_eq!(
            expected_keys(&e).unwrap_err(),
            LoadError::MissingKey("decoder.2.upconv.0.bias".into())
        );

        let mut e = entries(&spec, "");
        e.push(TensorEntry {
            name: "foo.weight".into(),
            dtype: DType::F32,
            shape: vec![1],
        });
        assert_eq!(
            expected_keys(&e).unwrap_err(),
            LoadError::UnexpectedKey("foo.weight".into())
        );

        let mut e = entries(&spec, "");
        let i = e
            .iter()
            .position(|t| t.name == "encoder.layer2.1.conv2.0.weight")
            .unwrap();
        e[i].shape = vec![128, 128, 3, 3, 1];
        assert_eq!(
            expected_keys(&e).unwrap_err(),
            LoadError::Shape {
                key: "encoder.layer2.1.conv2.0.weight".into(),
                expected: "[128, 128, 3, 3, 3]".into(),
                found: "[128, 128, 3, 3, 1]".into(),
            }
        );

        let mut e = entries(&spec, "");
        e[3].dtype = DType::Other("float64".into());
        assert!(matches!(
            expected_keys(&e).unwrap_err(),
            LoadError::DType { .. }
        ));

        let mut e = entries(&spec, "");
        let i = e.iter().position(|t| t.name == "outconv.1.weight").unwrap();
        e[i].shape = vec![4, 64, 7, 7];
        assert!(matches!(
            expected_keys(&e).unwrap_err(),
            LoadError::Shape { .. }
        ));
    }
}
