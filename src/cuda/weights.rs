//! The network's weights rearranged for the GPU, on the host: convolution filters in cuDNN's
//! channels-last filter layout `[k, t, r, s, c]` and the engine's precision (channel counts
//! padded where the tensor cores want multiples), biases and SE gates in float32. Everything is
//! packed into one byte buffer that is uploaded once.

use super::params::{Dtype, NET_IN_CHANNELS};
use crate::backend::Precision;
use crate::model::{Conv, Flavr, Gate, Tensor};

/// Shape of one convolution as cuDNN sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// Output channels (for a transposed conv: its input channels, cuDNN's k).
    pub k: usize,
    /// Input channels (for a transposed conv: its output channels, cuDNN's c).
    pub c: usize,
    pub taps: [usize; 3],
    pub pad: [usize; 3],
    pub stride: [usize; 3],
    pub transposed: bool,
}

impl ConvShape {
    /// Channels the layer writes.
    pub fn cout(&self) -> usize {
        if self.transposed { self.c } else { self.k }
    }

    /// Filter dims `[k, c, t, r, s]`.
    pub fn filter_dims(&self) -> [usize; 5] {
        [self.k, self.c, self.taps[0], self.taps[1], self.taps[2]]
    }
}

/// Bytes `off..off + bytes` of the packed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub off: usize,
    pub bytes: usize,
}

/// A convolution's weights inside the packed buffer.
#[derive(Clone, Copy, Debug)]
pub struct ConvW {
    pub shape: ConvShape,
    /// The filter `[k, t, r, s, c]` in the activation precision.
    pub w: Span,
    /// float32 `[cout]`, when the layer has a bias.
    pub bias: Option<Span>,
}

/// SE gate: float32 `w [c, c]` (out x in) and `b [c]`.
#[derive(Clone, Copy, Debug)]
pub struct GateW {
    pub c: usize,
    pub w: Span,
    pub b: Span,
}

#[derive(Clone, Copy, Debug)]
pub struct BlockW {
    pub conv1: ConvW,
    pub conv2: ConvW,
    pub ds: Option<ConvW>,
    pub gate: GateW,
    /// conv1 and conv2 with time folded into channels ([`time_fold`]: 2-D 3x3 convs over
    /// `[h, w, 4 c]`, their biases repeated per frame), for the blocks of the first layer (64
    /// channels at half resolution, where the wider GEMM runs faster than the 3-D conv).
    pub folded: Option<[ConvW; 2]>,
}

#[derive(Clone, Copy, Debug)]
pub struct DecW {
    pub conv: ConvW,
    pub gate: GateW,
    /// For a transposed stage: its four sub-pixel phases as one forward conv with four times
    /// the output channels (see `convt_phases`), channel `(a*2 + b) * cout + o` making output
    /// `o` at (2i + a, 2j + b).
    pub phases: Option<ConvW>,
    /// For the stage after the last transposed one at half resolution (d3, a 3x3x3 conv): the
    /// conv time-folded ([`time_fold`]), as [`BlockW::folded`].
    pub folded: Option<ConvW>,
}

/// All weights, packed.
pub struct NetWeights {
    pub precision: Precision,
    /// Input channels of the stem: 4 frames x 2x2 pixel blocks x 3 colours.
    pub cin: usize,
    /// The stem as a 2-D conv, output `[h/2, w/2, 4 * stem]` (time in channels).
    pub stem: ConvW,
    /// The stem's own bias (`[stem]`), applied after the time unfold.
    pub stem_bias: Option<Span>,
    pub blocks: Vec<[BlockW; 2]>,
    pub dec: Vec<DecW>,
    pub fuse: ConvW,
    /// feature_fuse on the four-phase output of a transposed last stage (see `fuse_phases`).
    pub fuse_phases: ConvW,
    /// Room for `fuse_phases`' filter with the last stage's SE gate folded in, written for
    /// each window by the plan's `GateWeights` step (see `GraphOpts::gate_fold`).
    pub fuse_gated: Span,
    /// outconv per 2x2 output block, `kout` output channels (4 x 3n rounded up); its bias is
    /// the original `[3n]`.
    pub out: ConvW,
    pub kout: usize,
    pub bytes: Vec<u8>,
}

/// Bytes of an activation element.
pub fn elem_bytes(p: Precision) -> usize {
    Dtype::act(p).bytes()
}

/// A PyTorch weight `[d0, d1, t, r, s]` (d0 = cuDNN's k, d1 = its c) rearranged to
/// `[kp, t, r, s, cp]`, zero where k >= d0 or c >= d1.
pub fn to_khwc(src: &Tensor, kp: usize, cp: usize) -> Vec<f32> {
    let s = &src.shape;
    let (k0, c0) = (s[0], s[1]);
    let taps: usize = s[2..].iter().product();
    let mut out = vec![0f32; kp * taps * cp];
    for k in 0..k0 {
        for c in 0..c0 {
            for t in 0..taps {
                out[(k * taps + t) * cp + c] = src.data[(k * c0 + c) * taps + t];
            }
        }
    }
    out
}

/// The stem Conv3d k(3,7,7) s(1,2,2) p(1,3,3) on `[t, h, w, 3]` is computed as a stride-1
/// Conv3d k(3,4,4) p(1,0,0) on the space-to-depth input `[t, h/2 + 3, w/2 + 3, 12]`: channel
/// `(py*2 + px)*3 + c` of block `(by, bx)` holds colour c of pixel `(2(by-2) + py, 2(bx-2) + px)`
/// (zero outside the frame: two blocks of padding before, one after). Output `(i, j)` reads
/// blocks `i..i+4`, so tap `by` with parity `py` is the original tap `ky = 2 by - 1 + py`
/// (none when that falls outside 0..7). Same products, in another order; tensor cores get
/// 12 input channels instead of 3 and a stride of 1.
///
/// Returns the weight as a PyTorch-layout `[k, 12, 3, 4, 4]` tensor.
pub fn stem_s2d(w: &Tensor) -> Tensor {
    let (k0, c0) = (w.shape[0], w.shape[1]);
    let mut out = vec![0f32; k0 * 12 * 3 * 16];
    for k in 0..k0 {
        for c in 0..c0.min(3) {
            for t in 0..3 {
                for by in 0..4 {
                    for bx in 0..4 {
                        for py in 0..2 {
                            for px in 0..2 {
                                let (ky, kx) = (2 * by + py, 2 * bx + px);
                                if ky == 0 || kx == 0 {
                                    continue; // 2 by - 1 + py < 0
                                }
                                let (ky, kx) = (ky - 1, kx - 1);
                                let ci = (py * 2 + px) * 3 + c;
                                out[(((k * 12 + ci) * 3 + t) * 4 + by) * 4 + bx] =
                                    w.data[(((k * c0 + c) * 3 + t) * 7 + ky) * 7 + kx];
                            }
                        }
                    }
                }
            }
        }
    }
    Tensor {
        shape: vec![k0, 12, 3, 4, 4],
        data: out,
    }
}

/// A convolution over time with 3 taps and time padding 1, `[k, c, 3, taps...]` in PyTorch
/// layout, on `t` frames, as a 2-D conv over the frames stacked in channels: output channel
/// `t_o * k + o`, input channel `t_i * c + ci`, weight `w[o][ci][t_i - t_o + 1]` when
/// `|t_i - t_o| <= 1` (the time padding is the zero weights). Returns `[t k, t c, 1, taps...]`.
pub fn time_fold(w: &Tensor, t: usize) -> Tensor {
    let (k0, c0) = (w.shape[0], w.shape[1]);
    assert_eq!(w.shape[2], 3, "time_fold: 3 taps over time");
    let taps: usize = w.shape[3..].iter().product();
    let mut out = vec![0f32; t * k0 * t * c0 * taps];
    for to in 0..t {
        for o in 0..k0 {
            for ti in 0..t {
                let dt = ti as i64 - to as i64 + 1;
                if !(0..3).contains(&dt) {
                    continue;
                }
                for c in 0..c0 {
                    let src = ((o * c0 + c) * 3 + dt as usize) * taps;
                    let dst = ((to * k0 + o) * t * c0 + ti * c0 + c) * taps;
                    out[dst..dst + taps].copy_from_slice(&w.data[src..src + taps]);
                }
            }
        }
    }
    let mut shape = vec![t * k0, t * c0, 1];
    shape.extend_from_slice(&w.shape[3..]);
    Tensor { shape, data: out }
}

/// The space-to-depth stem `[k, 12, 3, 4, 4]` (conv over t with padding 1) as a 2-D conv over
/// the four frames stacked in channels ([`time_fold`]): output channel `t_o * k + o`, input
/// channel `t_i * 12 + c`. Returns `[4 k, 48, 1, 4, 4]` in PyTorch layout.
pub fn stem_fold(s2d: &Tensor) -> Tensor {
    time_fold(s2d, 4)
}

/// outconv (7x7 on the reflection-padded map, `[n3, c, 7, 7]`) computed per 2x2 block of
/// outputs, as a 4x4 conv on the padded map in space-to-depth form (`[h/2 + 3, w/2 + 3, 4c]`,
/// channel `(py*2 + px)*c + ci` of block (by, bx) = padded pixel (2by + py, 2bx + px)): output
/// channel `(a*2 + b)*n3 + o` is output pixel (2i + a, 2j + b), tap (by, bx, py, px) is the
/// original tap (2by + py - a, 2bx + px - b) when inside 0..7. Returns `[4 n3, 4c, 1, 4, 4]`.
pub fn outconv_s2d(w: &Tensor) -> Tensor {
    let (n3, c0) = (w.shape[0], w.shape[1]);
    let mut out = vec![0f32; 4 * n3 * 4 * c0 * 16];
    for a in 0..2 {
        for b in 0..2 {
            for o in 0..n3 {
                for by in 0..4 {
                    for bx in 0..4 {
                        for py in 0..2 {
                            for px in 0..2 {
                                let ky = (2 * by + py) as i64 - a as i64;
                                let kx = (2 * bx + px) as i64 - b as i64;
                                if !(0..7).contains(&ky) || !(0..7).contains(&kx) {
                                    continue;
                                }
                                for ci in 0..c0 {
                                    let oc = (a * 2 + b) * n3 + o;
                                    let ic = (py * 2 + px) * c0 + ci;
                                    out[(oc * 4 * c0 + ic) * 16 + by * 4 + bx] =
                                        w.data[((o * c0 + ci) * 7 + ky as usize) * 7 + kx as usize];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    Tensor {
        shape: vec![4 * n3, 4 * c0, 1, 4, 4],
        data: out,
    }
}

/// One sub-pixel phase of a ConvTranspose3d k(3,4,4) s(1,2,2) p(1,1,1) (weight `[in, out,
/// 3, 4, 4]`) as a forward conv k(3,2,2) with padding 1 on the input grid: its output
/// `[t, h + 1, w + 1]` at (i + a, j + b) is the transposed conv's output (2i + a, 2j + b).
/// Forward tap (kt, ty, tx) reads input (t - 1 + kt, i + a - 1 + ty, j + b - 1 + tx), which
/// the transposed conv weights with its tap (2 - kt, 3 - a - 2 ty, 3 - b - 2 tx).
/// Returns `[out, in, 3, 2, 2]` in PyTorch conv layout.
pub fn convt_phase(w: &Tensor, a: usize, b: usize) -> Tensor {
    let (ci, co) = (w.shape[0], w.shape[1]);
    let mut out = vec![0f32; co * ci * 12];
    for o in 0..co {
        for c in 0..ci {
            for kt in 0..3 {
                for ty in 0..2 {
                    for tx in 0..2 {
                        let (ky, kx) = (3 - a - 2 * ty, 3 - b - 2 * tx);
                        out[(((o * ci + c) * 3 + kt) * 2 + ty) * 2 + tx] =
                            w.data[(((c * co + o) * 3 + (2 - kt)) * 4 + ky) * 4 + kx];
                    }
                }
            }
        }
    }
    Tensor {
        shape: vec![co, ci, 3, 2, 2],
        data: out,
    }
}

/// The four sub-pixel phases of a transposed conv (see [`convt_phase`]) as one forward conv
/// k(3,2,2) with padding 1 on the input grid and `4 * out` output channels, phase-major:
/// channel `(a*2 + b) * out + o` is phase (a, b)'s output `o`. All four phases read the same
/// 2x2 input window at each position of the `[t, h + 1, w + 1]` grid, so no tap is zero and
/// the GEMM is four times wider. Returns `[4 * out, in, 3, 2, 2]`.
pub fn convt_phases(w: &Tensor) -> Tensor {
    let mut data = Vec::with_capacity(4 * w.shape[0] * w.shape[1] * 12);
    for ab in 0..4 {
        data.extend(convt_phase(w, ab / 2, ab % 2).data);
    }
    Tensor {
        shape: vec![4 * w.shape[1], w.shape[0], 3, 2, 2],
        data,
    }
}

/// feature_fuse (`[f, 4 * c, 1, 1]`, in-channel `c * t + ci`) applied to each of the four
/// phases of `[t, h + 1, w + 1, 4 * c]` at once: a (4, 1, 1) conv over time with `4 * c` inputs
/// and `4 * f` outputs, block-diagonal over phases (output `p * f + o` reads only phase `p`'s
/// channels). Returns the channels-last filter `[4 f, 4, 1, 1, 4 c]`.
pub fn fuse_phases(fuse: &Tensor, c: usize) -> Vec<f32> {
    let f = fuse.shape[0];
    let mut out = vec![0f32; 4 * f * 4 * 4 * c];
    for p in 0..4 {
        for o in 0..f {
            for t in 0..4 {
                let src = &fuse.data[o * 4 * c + t * c..][..c];
                let at = (((p * f + o) * 4 + t) * 4 + p) * c;
                out[at..at + c].copy_from_slice(src);
            }
        }
    }
    out
}

struct Packer {
    precision: Precision,
    bytes: Vec<u8>,
}

impl Packer {
    fn align(&mut self) {
        let n = super::arena::align_up(self.bytes.len());
        self.bytes.resize(n, 0);
    }

    /// Values in the activation precision.
    fn act(&mut self, v: &[f32]) -> Span {
        self.align();
        let at = self.bytes.len();
        match self.precision {
            Precision::Fp32 => v.iter().for_each(|x| self.bytes.extend(x.to_le_bytes())),
            Precision::Fp16 => v
                .iter()
                .for_each(|x| self.bytes.extend(half::f16::from_f32(*x).to_le_bytes())),
            Precision::Bf16 => v
                .iter()
                .for_each(|x| self.bytes.extend(half::bf16::from_f32(*x).to_le_bytes())),
        }
        self.span_from(at)
    }

    /// Values in float32.
    fn f32s(&mut self, v: &[f32]) -> Span {
        self.align();
        let at = self.bytes.len();
        v.iter().for_each(|x| self.bytes.extend(x.to_le_bytes()));
        self.span_from(at)
    }

    /// The bytes written since `at`.
    fn span_from(&self, at: usize) -> Span {
        Span {
            off: at,
            bytes: self.bytes.len() - at,
        }
    }

    fn bias(&mut self, b: Option<&Tensor>, n: usize) -> Option<Span> {
        b.map(|b| {
            let mut v = b.data.clone();
            v.resize(n, 0.0);
            self.f32s(&v)
        })
    }

    /// A Conv3d / ConvTranspose3d with `taps`, `pad`, `stride`; channels padded to `kp`, `cp`.
    fn conv(&mut self, c: &Conv, shape: ConvShape) -> ConvW {
        let w = self.act(&to_khwc(&c.weight, shape.k, shape.c));
        let bias = self.bias(c.bias.as_ref(), shape.cout());
        ConvW { shape, w, bias }
    }

    /// A 3x3x3 conv (pad 1, stride 1) of `c` to `k` channels on `t` frames as its time-folded
    /// 2-D form, the bias repeated per frame.
    fn conv_folded(&mut self, conv: &Conv, k: usize, c: usize, t: usize) -> ConvW {
        let shape = ConvShape {
            k: t * k,
            c: t * c,
            taps: [1, 3, 3],
            pad: [0, 1, 1],
            stride: [1, 1, 1],
            transposed: false,
        };
        let w = self.act(&to_khwc(&time_fold(&conv.weight, t), shape.k, shape.c));
        let bias = conv.bias.as_ref().map(|b| {
            let mut v = b.data.clone();
            v.resize(k, 0.0);
            self.f32s(&v.repeat(t))
        });
        ConvW { shape, w, bias }
    }

    fn gate(&mut self, g: &Gate) -> GateW {
        let c = g.bias.data.len();
        GateW {
            c,
            w: self.f32s(&g.weight.data),
            b: self.f32s(&g.bias.data),
        }
    }
}

/// Frames of the network's time axis (the window), which a time-folded conv stacks.
pub const FOLD_FRAMES: usize = 4;

fn conv3(k: usize, c: usize, stride: usize) -> ConvShape {
    ConvShape {
        k,
        c,
        taps: [3, 3, 3],
        pad: [1, 1, 1],
        stride: [1, stride, stride],
        transposed: false,
    }
}

impl NetWeights {
    pub fn pack(model: &Flavr, precision: Precision) -> NetWeights {
        let spec = &model.spec;
        let v = super::params::VECTOR_BYTES / elem_bytes(precision);
        let mut p = Packer {
            precision,
            bytes: Vec::new(),
        };
        // The stem runs as a 2-D conv on the space-to-depth input with time in channels (see
        // `stem_fold`): 48 channels in, 4 x stem channels out.
        let cin = NET_IN_CHANNELS;
        let stem = p.conv(
            &Conv {
                weight: stem_fold(&stem_s2d(&model.stem.weight)),
                bias: None,
            },
            ConvShape {
                k: 4 * spec.stem,
                c: cin,
                taps: [1, 4, 4],
                pad: [0, 0, 0],
                stride: [1, 1, 1],
                transposed: false,
            },
        );
        let stem_bias = p.bias(model.stem.bias.as_ref(), spec.stem);
        let mut blocks = Vec::new();
        for (l, layer) in model.layers.iter().enumerate() {
            let mut pair = Vec::new();
            for (b, block) in layer.iter().enumerate() {
                let c = spec.widths[l];
                let ci = spec.block_in(l + 1, b);
                let s = block.stride;
                let conv1 = p.conv(&block.conv1, conv3(c, ci, s));
                let conv2 = p.conv(&block.conv2, conv3(c, c, 1));
                let gate = p.gate(&block.gate);
                let ds = block.downsample.as_ref().map(|w| {
                    let conv = Conv {
                        weight: w.clone(),
                        bias: None,
                    };
                    p.conv(
                        &conv,
                        ConvShape {
                            k: c,
                            c: ci,
                            taps: [1, 1, 1],
                            pad: [0, 0, 0],
                            stride: [1, s, s],
                            transposed: false,
                        },
                    )
                });
                // The first layer's blocks (stride 1, no downsample) also time-folded.
                let folded = (l == 0 && s == 1 && ds.is_none() && ci == c).then(|| {
                    [
                        p.conv_folded(&block.conv1, c, ci, FOLD_FRAMES),
                        p.conv_folded(&block.conv2, c, c, FOLD_FRAMES),
                    ]
                });
                pair.push(BlockW {
                    conv1,
                    conv2,
                    ds,
                    gate,
                    folded,
                });
            }
            blocks.push([pair[0], pair[1]]);
        }
        let mut dec = Vec::new();
        for (d, stage) in model.decoder.iter().enumerate() {
            let (ci, co) = (spec.decoder_in(d), spec.decoder[d]);
            let shape = if stage.transposed {
                ConvShape {
                    k: ci,
                    c: co,
                    taps: [3, 4, 4],
                    pad: [1, 1, 1],
                    stride: [1, 2, 2],
                    transposed: true,
                }
            } else {
                conv3(co, ci, 1)
            };
            let conv = p.conv(&stage.conv, shape);
            let phases = stage.transposed.then(|| {
                let shape = ConvShape {
                    k: 4 * co,
                    c: ci,
                    taps: [3, 2, 2],
                    pad: [1, 1, 1],
                    stride: [1, 1, 1],
                    transposed: false,
                };
                let w = convt_phases(&stage.conv.weight);
                // The bias repeated per phase, `[4 co]`, for an epilogue fused into the conv.
                let bias = stage.conv.bias.as_ref().map(|b| {
                    let mut v = b.data.clone();
                    v.resize(co, 0.0);
                    p.f32s(&v.repeat(4))
                });
                ConvW {
                    shape,
                    w: p.act(&to_khwc(&w, 4 * co, ci)),
                    bias,
                }
            });
            let gate = p.gate(&stage.gate);
            // d3 reads the first layer's skip at half resolution: also time-folded.
            let folded = (d == 3 && !stage.transposed)
                .then(|| p.conv_folded(&stage.conv, co, ci, FOLD_FRAMES));
            dec.push(DecW {
                conv,
                gate,
                phases,
                folded,
            });
        }
        // feature_fuse [f, 4*c4, 1, 1], in-channel `c4 * t + c`: read as a (4, 1, 1) conv over
        // time on [t, h, w, c4] (the time fold without a copy); its channels-last filter
        // [f, 4, 1, 1, c4] has exactly the PyTorch weight's memory order.
        let c4 = spec.decoder[4];
        let fuse = ConvW {
            shape: ConvShape {
                k: spec.fuse,
                c: c4,
                taps: [4, 1, 1],
                pad: [0, 0, 0],
                stride: [1, 1, 1],
                transposed: false,
            },
            w: p.act(&model.fuse.data),
            bias: None,
        };
        let fuse_phases = ConvW {
            shape: ConvShape {
                k: 4 * spec.fuse,
                c: 4 * c4,
                ..fuse.shape
            },
            w: p.act(&fuse_phases(&model.fuse, c4)),
            bias: None,
        };
        let fuse_gated = p.act(&vec![0.0; fuse_phases.w.bytes / elem_bytes(precision)]);
        // outconv per 2x2 output block (see `outconv_s2d`).
        let n3 = 3 * spec.n_out;
        let kout = (4 * n3).div_ceil(v) * v;
        let out = ConvW {
            shape: ConvShape {
                k: kout,
                c: 4 * spec.fuse,
                taps: [1, 4, 4],
                pad: [0, 0, 0],
                stride: [1, 1, 1],
                transposed: false,
            },
            w: p.act(&to_khwc(
                &outconv_s2d(&model.outconv.weight),
                kout,
                4 * spec.fuse,
            )),
            bias: p.bias(model.outconv.bias.as_ref(), n3),
        };
        p.align();
        NetWeights {
            precision,
            cin,
            stem,
            stem_bias,
            blocks,
            dec,
            fuse,
            fuse_phases,
            fuse_gated,
            out,
            kout,
            bytes: p.bytes,
        }
    }
}

#[cfg(test)]
#[path = "weights_tests.rs"]
mod tests;
