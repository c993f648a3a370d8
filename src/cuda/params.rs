//! The Rust side of `kernels/params.cuh`: the kernels' parameter structs (`#[repr(C)]`, field
//! for field), the activation and pixel-format codes, and the sizes of the records the kernels
//! index. Struct sizes are asserted at compile time here and in the header; a unit test reads
//! the header and checks every constant and field offset against these.
//!
//! Also [`FrameGeom`], a frame layout's kernel parameters checked against the layout, which the
//! launches require instead of bare [`FrameParams`].

use std::mem::size_of;

use super::error::{CudaError, Result};
use crate::backend::pixels::YuvCoeffs;
use crate::backend::{FrameLayout, PixelFormat, Precision};
use crate::model::spec::SIZE_MULTIPLE;
use crate::scene::Plane;

/// Element type of device memory, as the kernels and cuDNN read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dtype {
    U8,
    I32,
    U32,
    U64,
    F32,
    F64,
    F16,
    Bf16,
}

impl Dtype {
    /// Bytes per element.
    pub const fn bytes(self) -> usize {
        match self {
            Dtype::U8 => 1,
            Dtype::F16 | Dtype::Bf16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// The activation (storage) type of a precision.
    pub fn act(p: Precision) -> Dtype {
        match p {
            Precision::Fp32 => Dtype::F32,
            Precision::Fp16 => Dtype::F16,
            Precision::Bf16 => Dtype::Bf16,
        }
    }
}

/// Activation codes of [`EpiParams::act`] (0: none).
pub const ACT_RELU: i32 = 1;
/// LeakyReLU(0.2).
pub const ACT_LRELU: i32 = 2;

/// Bits of [`EpiParams::fold_keep`]: which of the residual, output, second output and input
/// are time-folded (see [`Fold`]).
pub const FOLD_RESID: i32 = 1;
pub const FOLD_OUT: i32 = 2;
pub const FOLD_OUT2: i32 = 4;
pub const FOLD_X: i32 = 8;

/// An epilogue whose rows run over `[t, p]` where some of its tensors are time-folded
/// `[p, t, c]` (a 2-D convolution's output with time in channels, or the input of one): those
/// are at row `q * t + t'` for row `t' * p + q`, the others at the row itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fold {
    pub t: usize,
    pub p: usize,
    pub x: bool,
    pub resid: bool,
    pub out: bool,
    pub out2: bool,
}

impl Fold {
    /// x folded; residual and outputs unfolded.
    pub fn unfold(t: usize, p: usize) -> Fold {
        Fold {
            t,
            p,
            x: true,
            resid: false,
            out: false,
            out2: false,
        }
    }

    /// The `fold_keep` bits.
    pub fn keep_bits(&self) -> i32 {
        let bit = |on: bool, b: i32| if on { b } else { 0 };
        bit(self.x, FOLD_X)
            | bit(self.resid, FOLD_RESID)
            | bit(self.out, FOLD_OUT)
            | bit(self.out2, FOLD_OUT2)
    }
}

/// Pixel-format codes of [`FrameParams::format`].
pub const FMT_RGB: i32 = 0;
pub const FMT_RGBA: i32 = 1;
pub const FMT_BGRA: i32 = 2;
pub const FMT_RGBX: i32 = 3;
pub const FMT_BGRX: i32 = 4;
pub const FMT_I420: i32 = 5;
pub const FMT_NV12: i32 = 6;
pub const FMT_P010: i32 = 7;
pub const FMT_I420_10: i32 = 8;
pub const FMT_I422_10: i32 = 9;
pub const FMT_Y444_10: i32 = 10;
pub const FMT_RGBA64: i32 = 11;

/// The kernels' code of a pixel format.
pub fn format_code(f: PixelFormat) -> i32 {
    match f {
        PixelFormat::Rgb => FMT_RGB,
        PixelFormat::Rgba => FMT_RGBA,
        PixelFormat::Bgra => FMT_BGRA,
        PixelFormat::Rgbx => FMT_RGBX,
        PixelFormat::Bgrx => FMT_BGRX,
        PixelFormat::I420 => FMT_I420,
        PixelFormat::Nv12 => FMT_NV12,
        PixelFormat::P010 => FMT_P010,
        PixelFormat::I420P10 => FMT_I420_10,
        PixelFormat::I422P10 => FMT_I422_10,
        PixelFormat::Y444P10 => FMT_Y444_10,
        PixelFormat::Rgba64 => FMT_RGBA64,
    }
}

/// Threads per block of every kernel (the reductions size their shared memory by it).
pub const THREADS: u32 = 256;
/// Bytes of one vector load or store of the kernels.
pub const VECTOR_BYTES: usize = 16;
/// Channels of a frame slot's pixel: R, G, B and a zero, float32.
pub const SLOT_CHANNELS: usize = 4;
/// Bytes of a frame slot's pixel.
pub const SLOT_PIXEL_BYTES: usize = SLOT_CHANNELS * size_of::<f32>();
/// Doubles per slot in the slot-sum table (the R, G, B sums and one unused).
pub const SLOT_SUM_RECORD: usize = 4;
/// Channels of the network input: 4 frames x 2x2 pixels x 3 colours.
pub const NET_IN_CHANNELS: usize = 48;

/// Mirrors `EpiParams` in kernels/params.cuh (see there for the fields' meaning).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct EpiParams {
    pub x: u64,
    pub resid: u64,
    pub bias: u64,
    pub gate: u64,
    pub out: u64,
    pub out2: u64,
    pub rows: i64,
    pub c: i32,
    pub act: i32,
    pub out_stride: i32,
    pub out_off: i32,
    pub out2_stride: i32,
    pub out2_off: i32,
    pub fold_t: i32,
    pub fold_p: i32,
    pub fold_keep: i32,
    pub ph_t: i32,
    pub ph_h: i32,
    pub ph_w: i32,
    pub gc: i32,
}

/// Mirrors `FrameParams` in kernels/params.cuh.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct FrameParams {
    /// Byte offset of each plane.
    pub off: [i64; 3],
    /// Bytes per row of each plane.
    pub stride: [i32; 3],
    pub format: i32,
    pub width: i32,
    pub height: i32,
    pub pw: i32,
    pub ph: i32,
    /// The CPU reference's Y'CbCr constants (same struct, same arithmetic).
    pub yuv: YuvCoeffs,
}

/// Boxes across and down of the scene-cut grid, at most ([`crate::scene::GRID`]).
pub const SCENE_GRID_W: usize = crate::scene::GRID.0;
pub const SCENE_GRID_H: usize = crate::scene::GRID.1;

/// Mirrors `SceneParams` in kernels/params.cuh: the first plane of a frame to reduce to box
/// sums (kernels/scene.cu). Made by [`SceneParams::new`], checked.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SceneParams {
    pub off: i64,
    pub stride: i32,
    pub bpp: i32,
    pub sample_bytes: i32,
    pub packed: i32,
    pub r: i32,
    pub g: i32,
    pub b: i32,
    pub gw: i32,
    pub gh: i32,
    pub xe: [i32; SCENE_GRID_W + 1],
    pub ye: [i32; SCENE_GRID_H + 1],
}

// The same sizes as the header's static_asserts.
const _: () = assert!(size_of::<EpiParams>() == 112);
const _: () = assert!(size_of::<YuvCoeffs>() == 64);
const _: () = assert!(size_of::<FrameParams>() == 120);
const _: () = assert!(size_of::<SceneParams>() == 456);

impl SceneParams {
    /// The parameters of `plane` at byte `off` of a buffer of `size` bytes, checked: every
    /// byte the kernel reads lies inside the buffer. The box edges are the CPU's
    /// ([`crate::scene::box_edges`]).
    pub fn new(plane: &Plane, off: usize, size: usize) -> Result<SceneParams> {
        let (w, h) = (plane.width, plane.height);
        plane
            .check(size.saturating_sub(off))
            .map_err(|e| CudaError::Layout(e.to_string()))?;
        if w > MAX_SIDE || h > MAX_SIDE || plane.stride > i32::MAX as usize || off > size {
            return Err(CudaError::Layout(format!(
                "frame {w}x{h} (stride {}) too large (at most {MAX_SIDE} per side)",
                plane.stride
            )));
        }
        let (gw, gh) = plane.grid();
        let (xe, ye) = plane.edges();
        let mut p = SceneParams {
            off: off as i64,
            stride: plane.stride as i32,
            bpp: plane.pixel_bytes() as i32,
            sample_bytes: plane.format.sample_bytes() as i32,
            packed: 0,
            r: 0,
            g: 0,
            b: 0,
            gw: gw as i32,
            gh: gh as i32,
            xe: [0; SCENE_GRID_W + 1],
            ye: [0; SCENE_GRID_H + 1],
        };
        if let Some((_, [r, g, b])) = plane.format.packed() {
            (p.packed, p.r, p.g, p.b) = (1, r as i32, g as i32, b as i32);
        }
        // At most GRID boxes, so the edges fit; each at most MAX_SIDE.
        for (d, &e) in p.xe.iter_mut().zip(&xe) {
            *d = e as i32;
        }
        for (d, &e) in p.ye.iter_mut().zip(&ye) {
            *d = e as i32;
        }
        Ok(p)
    }

    /// Boxes across and down.
    pub fn grid(&self) -> (usize, usize) {
        (self.gw as usize, self.gh as usize)
    }
}

/// Largest frame side the kernels' 32-bit pixel indices allow.
pub const MAX_SIDE: usize = 16384;

/// A frame layout's kernel parameters, checked: every byte the kernels address for a frame
/// lies inside its `size` bytes, and the padded size is what the plan was made for.
#[derive(Clone, Copy, Debug)]
pub struct FrameGeom {
    params: FrameParams,
    size: usize,
    format: PixelFormat,
}

impl FrameGeom {
    /// The parameters of `l`, checked against its size (by the CPU reference's check, so both
    /// backends accept the same layouts).
    pub fn new(l: &FrameLayout) -> Result<FrameGeom> {
        crate::backend::pixels::check_layout(l).map_err(|e| CudaError::Layout(e.to_string()))?;
        let (w, h) = (l.width, l.height);
        if w > MAX_SIDE || h > MAX_SIDE || l.strides.iter().any(|&s| s > i32::MAX as usize) {
            return Err(CudaError::Layout(format!(
                "frame {w}x{h} too large (at most {MAX_SIDE} per side)"
            )));
        }
        let m = SIZE_MULTIPLE;
        let mut off = [0i64; 3];
        let mut stride = [0i32; 3];
        for i in 0..l.format.planes() {
            off[i] = l.offsets[i] as i64;
            stride[i] = l.strides[i] as i32;
        }
        let params = FrameParams {
            off,
            stride,
            format: format_code(l.format),
            width: w as i32,
            height: h as i32,
            pw: (w.div_ceil(m) * m) as i32,
            ph: (h.div_ceil(m) * m) as i32,
            yuv: l.yuv_coeffs(),
        };
        Ok(FrameGeom {
            params,
            size: l.size,
            format: l.format,
        })
    }

    pub fn params(&self) -> &FrameParams {
        &self.params
    }

    /// Bytes of a frame.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn width(&self) -> usize {
        self.params.width as usize
    }

    pub fn height(&self) -> usize {
        self.params.height as usize
    }

    /// Padded width and height (multiples of [`SIZE_MULTIPLE`]).
    pub fn padded(&self) -> (usize, usize) {
        (self.params.pw as usize, self.params.ph as usize)
    }

    /// Pixels per chroma sample (across, down) of a Y'CbCr format; `None` for packed RGB.
    pub fn chroma_block(&self) -> Option<(usize, usize)> {
        self.format.chroma_block()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::mem::offset_of;

    use super::*;

    const HEADER: &str = include_str!("../../kernels/params.cuh");

    #[test]
    fn layouts_are_checked() {
        let mut l = FrameLayout {
            format: PixelFormat::I420,
            width: 5,
            height: 3,
            offsets: vec![0, 15, 21],
            strides: vec![5, 3, 3],
            size: 27,
            yuv: crate::backend::YuvMatrix::BT709,
        };
        let g = FrameGeom::new(&l).expect("valid I420");
        assert_eq!(g.padded(), (8, 8));
        assert_eq!((g.width(), g.height(), g.size()), (5, 3, 27));
        assert_eq!(g.chroma_block(), Some((2, 2)));
        assert_eq!(g.params().format, FMT_I420);
        l.size = 26;
        assert!(FrameGeom::new(&l).is_err());
        l.size = 27;
        l.strides[1] = 2;
        assert!(FrameGeom::new(&l).is_err());
        let big = FrameLayout::packed(PixelFormat::Rgb, MAX_SIDE + 1, 8, l.yuv);
        let err = FrameGeom::new(&big).expect_err("too wide").to_string();
        assert!(err.contains("16384"), "{err}");
    }

    /// The header's `#define NAME <integer>` lines.
    fn defines() -> HashMap<String, i64> {
        HEADER
            .lines()
            .filter_map(|l| {
                let mut it = l.strip_prefix("#define ")?.split_whitespace();
                let (name, value) = (it.next()?, it.next()?);
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    }

    /// A C struct's size, alignment and fields with their offsets.
    type CStruct = (usize, usize, Vec<(String, usize)>);

    /// Size and alignment of a C type of the header.
    fn c_type(ty: &str, structs: &HashMap<String, CStruct>) -> (usize, usize) {
        if ty.ends_with('*') {
            return (8, 8);
        }
        match ty {
            "long long" => (8, 8),
            "int" | "float" => (4, 4),
            s => {
                let (size, align, _) = structs
                    .get(s)
                    .unwrap_or_else(|| panic!("params.cuh: unknown type `{s}`"));
                (*size, *align)
            }
        }
    }

    /// Each struct of the header: size, alignment and its fields' offsets, laid out as a C
    /// compiler does (each field at the next multiple of its alignment).
    fn structs() -> HashMap<String, CStruct> {
        let text: String = HEADER
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ");
        let mut out = HashMap::new();
        let mut rest = text.as_str();
        while let Some(at) = rest.find("struct ") {
            let after = &rest[at + 7..];
            let open = after.find('{').expect("struct body");
            let close = after.find("};").expect("struct end");
            let name = after[..open].trim().to_string();
            let (mut off, mut align) = (0usize, 1usize);
            let mut fields = Vec::new();
            for decl in after[open + 1..close].split(';') {
                let decl = decl.trim();
                if decl.is_empty() {
                    continue;
                }
                // "TYPE a, b" / "TYPE *a" / "TYPE a[3]", TYPE possibly "const T" or "long long".
                let decl = decl.replace('*', "* ");
                let words: Vec<&str> = decl.split_whitespace().collect();
                let split = words
                    .iter()
                    .position(|w| {
                        !matches!(
                            *w,
                            "const" | "long" | "int" | "float" | "void" | "YuvCoeffs"
                        ) && *w != "*"
                    })
                    .expect("declarator");
                let ty_words: Vec<&str> = words[..split]
                    .iter()
                    .copied()
                    .filter(|w| *w != "const")
                    .collect();
                let ty = ty_words.join(" ").replace(" *", "*");
                let (size, a) = c_type(&ty, &out);
                for d in words[split..].join(" ").split(',') {
                    let d = d.trim();
                    let (fname, n) = match d.split_once('[') {
                        Some((f, n)) => (
                            f,
                            n.trim_end_matches(']')
                                .parse::<usize>()
                                .expect("array length"),
                        ),
                        None => (d, 1),
                    };
                    off = off.div_ceil(a) * a;
                    fields.push((fname.to_string(), off));
                    off += size * n;
                    align = align.max(a);
                }
            }
            let size = off.div_ceil(align) * align;
            out.insert(name, (size, align, fields));
            rest = &after[close..];
        }
        out
    }

    macro_rules! rust_fields {
        ($t:ty; $($f:ident),+) => {
            vec![$((stringify!($f).to_string(), offset_of!($t, $f))),+]
        };
    }

    #[test]
    fn header_matches_the_rust_mirrors() {
        let s = structs();
        let check = |name: &str, size: usize, fields: Vec<(String, usize)>| {
            let (csize, _, cfields) = s
                .get(name)
                .unwrap_or_else(|| panic!("params.cuh has no struct {name}"));
            assert_eq!(*csize, size, "{name}: size");
            assert_eq!(*cfields, fields, "{name}: fields and offsets");
        };
        check(
            "EpiParams",
            size_of::<EpiParams>(),
            rust_fields!(EpiParams; x, resid, bias, gate, out, out2, rows, c, act, out_stride,
                out_off, out2_stride, out2_off, fold_t, fold_p, fold_keep, ph_t, ph_h, ph_w, gc),
        );
        check(
            "YuvCoeffs",
            size_of::<YuvCoeffs>(),
            rust_fields!(YuvCoeffs; y_off, y_scale, c_scale, r_cr, g_cb, g_cr, b_cb, kr, kg, kb,
                cb_scale, cr_scale, y_range, c_range, c_off, code_max),
        );
        check(
            "FrameParams",
            size_of::<FrameParams>(),
            rust_fields!(FrameParams; off, stride, format, width, height, pw, ph, yuv),
        );
        check(
            "SceneParams",
            size_of::<SceneParams>(),
            rust_fields!(SceneParams; off, stride, bpp, sample_bytes, packed, r, g, b, gw, gh,
                xe, ye),
        );
        // The header asserts the same sizes.
        for (name, size) in [
            ("EpiParams", size_of::<EpiParams>()),
            ("YuvCoeffs", size_of::<YuvCoeffs>()),
            ("FrameParams", size_of::<FrameParams>()),
            ("SceneParams", size_of::<SceneParams>()),
        ] {
            let line = format!("static_assert(sizeof({name}) == {size},");
            assert!(HEADER.contains(&line), "params.cuh lacks `{line}`");
        }
        let d = defines();
        let want: [(&str, i64); 25] = [
            ("ACT_RELU", ACT_RELU as i64),
            ("ACT_LRELU", ACT_LRELU as i64),
            ("FOLD_RESID", FOLD_RESID as i64),
            ("FOLD_OUT", FOLD_OUT as i64),
            ("FOLD_OUT2", FOLD_OUT2 as i64),
            ("FOLD_X", FOLD_X as i64),
            ("FMT_RGB", FMT_RGB as i64),
            ("FMT_RGBA", FMT_RGBA as i64),
            ("FMT_BGRA", FMT_BGRA as i64),
            ("FMT_RGBX", FMT_RGBX as i64),
            ("FMT_BGRX", FMT_BGRX as i64),
            ("FMT_I420", FMT_I420 as i64),
            ("FMT_NV12", FMT_NV12 as i64),
            ("FMT_P010", FMT_P010 as i64),
            ("FMT_I420_10", FMT_I420_10 as i64),
            ("FMT_I422_10", FMT_I422_10 as i64),
            ("FMT_Y444_10", FMT_Y444_10 as i64),
            ("FMT_RGBA64", FMT_RGBA64 as i64),
            ("THREADS", THREADS as i64),
            ("VECTOR_BYTES", VECTOR_BYTES as i64),
            ("SLOT_CHANNELS", SLOT_CHANNELS as i64),
            ("SLOT_SUM_RECORD", SLOT_SUM_RECORD as i64),
            ("NET_IN_CHANNELS", NET_IN_CHANNELS as i64),
            ("SCENE_GRID_W", SCENE_GRID_W as i64),
            ("SCENE_GRID_H", SCENE_GRID_H as i64),
        ];
        for (name, value) in want {
            assert_eq!(d.get(name), Some(&value), "params.cuh {name}");
        }
        assert_eq!(
            d.len(),
            want.len(),
            "params.cuh defines more than the mirror: {d:?}"
        );
    }

    #[test]
    fn scene_params_carry_the_cpu_grid() {
        let plane = Plane {
            format: PixelFormat::Bgrx,
            width: 101,
            height: 57,
            stride: 420,
        };
        let span = 56 * 420 + 101 * 4;
        let p = SceneParams::new(&plane, 16, 16 + span).expect("fits");
        let (xe, ye) = plane.edges();
        assert_eq!(p.grid(), (64, 36));
        assert_eq!(
            p.xe[..65].iter().map(|&e| e as usize).collect::<Vec<_>>(),
            xe
        );
        assert_eq!(
            p.ye[..37].iter().map(|&e| e as usize).collect::<Vec<_>>(),
            ye
        );
        assert_eq!((p.off, p.stride, p.bpp, p.sample_bytes), (16, 420, 4, 1));
        assert_eq!((p.packed, p.r, p.g, p.b), (1, 2, 1, 0));
        // One byte short, a stride shorter than a row, a frame too large: refused.
        assert!(SceneParams::new(&plane, 16, 15 + span).is_err());
        assert!(
            SceneParams::new(
                &Plane {
                    stride: 400,
                    ..plane
                },
                0,
                1 << 20
            )
            .is_err()
        );
        let big = Plane {
            format: PixelFormat::I420,
            width: MAX_SIDE + 1,
            height: 2,
            stride: MAX_SIDE + 1,
        };
        assert!(SceneParams::new(&big, 0, 1 << 20).is_err());
        let tiny = Plane {
            format: PixelFormat::P010,
            width: 3,
            height: 2,
            stride: 6,
        };
        let p = SceneParams::new(&tiny, 0, 12).expect("fits");
        assert_eq!((p.grid(), p.packed, p.sample_bytes), ((3, 2), 0, 2));
        assert_eq!(
            (&p.xe[..4], &p.ye[..3]),
            (&[0, 1, 2, 3][..], &[0, 1, 2][..])
        );
    }

    #[test]
    fn format_codes_are_distinct() {
        let all = PixelFormat::ALL;
        let codes: Vec<i32> = all.iter().map(|&f| format_code(f)).collect();
        assert_eq!(codes, (0..12).collect::<Vec<_>>());
    }
}
