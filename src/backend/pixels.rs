//! Pixel layouts the element accepts, and their conversion to and from the network's input:
//! planar RGB float in [0, 1], and back with clamping and rounding.
//!
//! The conversions here are the CPU reference; the CUDA kernels in `kernels/` do the same
//! arithmetic. The conventions, in short:
//! - 8-bit to float: `v / 255`; float to 8-bit: `floor(clamp(v, 0, 1) * 255 + 0.5)` (NaN gives
//!   0). Packed RGB formats therefore round-trip bit-exactly.
//! - Alpha (RGBA, BGRA) and padding (RGBx, BGRx) bytes are ignored on input and written as 255
//!   on output: interpolated frames are opaque.
//! - 16-bit RGB (RGBA64_LE) likewise with 65535: `v / 65535` in, `floor(clamp(v, 0, 1) *
//!   65535 + 0.5)` out, alpha 65535 out. It round-trips bit-exactly too.
//! - I420 / NV12 chroma planes are `ceil(w / 2) x ceil(h / 2)`. Input chroma is upsampled by
//!   replication (pixel `(x, y)` takes sample `(x / 2, y / 2)`); output chroma is the
//!   Y'CbCr of the mean R'G'B' of each 2x2 block (fewer pixels at odd right/bottom edges).
//! - 10-bit Y'CbCr (P010_10LE, I420_10LE: 2x2 chroma; I422_10LE: 2x1; Y444_10LE: none) works
//!   the same way on 10-bit codes, little-endian 16-bit samples (P010 holds the code in the
//!   top 10 bits: its low 6 bits are ignored in and written as 0 out), with the 10-bit
//!   constants of [`YuvMatrix::coeffs_bits`]. Nothing is rounded to 8 bits on the way. The
//!   subsampled ones need an even width (and height, 4:2:0); [`check_layout`] refuses others.
//! - The matrix arithmetic, step by step, is on [`YuvCoeffs`]; decoded R'G'B' is clamped to
//!   [0, 1]. No gamma handling: the network sees gamma-encoded values, as in training (and
//!   PQ- or HLG-encoded values as they come, see the README).

/// Raw video formats the element negotiates (the same format goes out).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PixelFormat {
    Rgb,
    Rgba,
    Bgra,
    Rgbx,
    Bgrx,
    I420,
    Nv12,
    /// P010_10LE: 10-bit Y plane and interleaved UV plane (2x2 chroma), codes in the top bits.
    P010,
    /// I420_10LE: 10-bit planar Y, U, V (2x2 chroma), codes in the low bits.
    I420P10,
    /// I422_10LE: as I420_10LE with 2x1 chroma (full height).
    I422P10,
    /// Y444_10LE: as I420_10LE with chroma at every pixel.
    Y444P10,
    /// RGBA64_LE: 16-bit R, G, B, A per pixel.
    Rgba64,
}

impl PixelFormat {
    /// Every format, in declaration order.
    pub const ALL: [PixelFormat; 12] = [
        PixelFormat::Rgb,
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Rgbx,
        PixelFormat::Bgrx,
        PixelFormat::I420,
        PixelFormat::Nv12,
        PixelFormat::P010,
        PixelFormat::I420P10,
        PixelFormat::I422P10,
        PixelFormat::Y444P10,
        PixelFormat::Rgba64,
    ];
}

/// Y'CbCr to R'G'B' matrix and range, for the Y'CbCr formats.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YuvMatrix {
    /// Luma coefficients (Kr, Kb): BT.601 (0.299, 0.114), BT.709 (0.2126, 0.0722),
    /// BT.2020 (0.2627, 0.0593).
    pub kr: f32,
    pub kb: f32,
    /// Full range (0..255; 0..1023 at 10 bits) instead of limited (16..235 luma, 16..240
    /// chroma; 64..940 and 64..960 at 10 bits).
    pub full_range: bool,
}

impl YuvMatrix {
    pub const BT601: YuvMatrix = YuvMatrix {
        kr: 0.299,
        kb: 0.114,
        full_range: false,
    };
    pub const BT709: YuvMatrix = YuvMatrix {
        kr: 0.2126,
        kb: 0.0722,
        full_range: false,
    };
    pub const BT2020: YuvMatrix = YuvMatrix {
        kr: 0.2627,
        kb: 0.0593,
        full_range: false,
    };
}

/// Where a frame's planes are in its buffer.
#[derive(Clone, Debug, PartialEq)]
pub struct FrameLayout {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Byte offset of each plane (one for packed RGB, three for planar Y'CbCr, two for NV12
    /// and P010).
    pub offsets: Vec<usize>,
    /// Bytes per row of each plane.
    pub strides: Vec<usize>,
    /// Bytes of a whole frame.
    pub size: usize,
    /// Used by the Y'CbCr formats.
    pub yuv: YuvMatrix,
}

use super::BackendError;

impl PixelFormat {
    /// Bytes per pixel and the byte positions of R, G, B in a pixel, for packed formats (for
    /// RGBA64, of the little-endian 16-bit samples).
    pub fn packed(self) -> Option<(usize, [usize; 3])> {
        match self {
            PixelFormat::Rgb => Some((3, [0, 1, 2])),
            PixelFormat::Rgba | PixelFormat::Rgbx => Some((4, [0, 1, 2])),
            PixelFormat::Bgra | PixelFormat::Bgrx => Some((4, [2, 1, 0])),
            PixelFormat::Rgba64 => Some((8, [0, 2, 4])),
            _ => None,
        }
    }

    /// Number of planes in a frame.
    pub fn planes(self) -> usize {
        match self {
            PixelFormat::I420 | PixelFormat::I420P10 | PixelFormat::I422P10 => 3,
            PixelFormat::Y444P10 => 3,
            PixelFormat::Nv12 | PixelFormat::P010 => 2,
            _ => 1,
        }
    }

    /// Bytes per sample: 2 for the 10- and 16-bit formats (little-endian), else 1.
    pub fn sample_bytes(self) -> usize {
        match self {
            PixelFormat::P010
            | PixelFormat::I420P10
            | PixelFormat::I422P10
            | PixelFormat::Y444P10
            | PixelFormat::Rgba64 => 2,
            _ => 1,
        }
    }

    /// Bits of a code: 8, 10 or 16.
    pub fn bits(self) -> u32 {
        match self {
            PixelFormat::Rgba64 => 16,
            f if f.sample_bytes() == 2 => 10,
            _ => 8,
        }
    }

    /// How far a code is shifted left in its sample: 6 for P010 (top 10 bits), else 0.
    pub fn code_shift(self) -> u32 {
        if self == PixelFormat::P010 { 6 } else { 0 }
    }

    /// Chroma subsampling (pixels per chroma sample across, down) of a Y'CbCr format; `None`
    /// for packed RGB.
    pub fn chroma_block(self) -> Option<(usize, usize)> {
        match self {
            PixelFormat::I420 | PixelFormat::Nv12 | PixelFormat::P010 | PixelFormat::I420P10 => {
                Some((2, 2))
            }
            PixelFormat::I422P10 => Some((2, 1)),
            PixelFormat::Y444P10 => Some((1, 1)),
            _ => None,
        }
    }

    /// Whether U and V are interleaved in one plane (NV12, P010).
    pub fn semi_planar(self) -> bool {
        matches!(self, PixelFormat::Nv12 | PixelFormat::P010)
    }
}

/// The arithmetic constants of a [`YuvMatrix`], computed once in f64 and stored as f32.
/// `#[repr(C)]` so a GPU kernel can take the same struct as a parameter.
///
/// Y'CbCr to R'G'B' (the codes `Y`, `U`, `V` as f32, all steps in f32, left to right):
/// ```text
/// y  = (Y - y_off) * y_scale          cb = (U - c_off) * c_scale    cr = (V - c_off) * c_scale
/// R  = y + r_cr * cr                  G  = y + g_cb * cb + g_cr * cr B = y + b_cb * cb
/// ```
/// then each of R, G, B clamped to [0, 1]. R'G'B' to Y'CbCr (R, G, B clamped to [0, 1] first):
/// ```text
/// y  = kr * R + kg * G + kb * B       Y = floor(y_off + y * y_range + 0.5)
/// cb = (B - y) * cb_scale             U = floor(c_off + cb * c_range + 0.5)
/// cr = (R - y) * cr_scale             V = floor(c_off + cr * c_range + 0.5)
/// ```
/// each clamped to [0, code_max] (NaN gives 0). At 8 bits `c_off` is 128 and `code_max` 255; at 10 bits
/// 512 and 1023.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YuvCoeffs {
    pub y_off: f32,
    pub y_scale: f32,
    pub c_scale: f32,
    pub r_cr: f32,
    pub g_cb: f32,
    pub g_cr: f32,
    pub b_cb: f32,
    pub kr: f32,
    pub kg: f32,
    pub kb: f32,
    pub cb_scale: f32,
    pub cr_scale: f32,
    pub y_range: f32,
    pub c_range: f32,
    /// The chroma code of zero: 128 (8 bits), 512 (10 bits).
    pub c_off: f32,
    /// The largest code: 255 (8 bits), 1023 (10 bits).
    pub code_max: f32,
}

impl YuvMatrix {
    pub const BT601_FULL: YuvMatrix = YuvMatrix {
        full_range: true,
        ..YuvMatrix::BT601
    };

    /// The conversion constants of 8-bit codes (see [`YuvCoeffs`]).
    pub fn coeffs(&self) -> YuvCoeffs {
        self.coeffs_bits(8)
    }

    /// The conversion constants of `bits`-bit codes (8 to 16), as GStreamer scales them: full
    /// range 0..2^bits - 1; limited range luma 16..235 and chroma 16..240 times 2^(bits - 8);
    /// chroma zero at 2^(bits - 1).
    pub fn coeffs_bits(&self, bits: u32) -> YuvCoeffs {
        let (kr, kb) = (self.kr as f64, self.kb as f64);
        let kg = 1.0 - kr - kb;
        let max = ((1u32 << bits) - 1) as f64;
        let scale = (1u32 << (bits - 8)) as f64;
        let (y_off, y_range, c_range) = if self.full_range {
            (0.0, max, max)
        } else {
            (16.0 * scale, 219.0 * scale, 224.0 * scale)
        };
        YuvCoeffs {
            y_off: y_off as f32,
            y_scale: (1.0 / y_range) as f32,
            c_scale: (1.0 / c_range) as f32,
            r_cr: (2.0 * (1.0 - kr)) as f32,
            g_cb: (-2.0 * kb * (1.0 - kb) / kg) as f32,
            g_cr: (-2.0 * kr * (1.0 - kr) / kg) as f32,
            b_cb: (2.0 * (1.0 - kb)) as f32,
            kr: kr as f32,
            kg: kg as f32,
            kb: kb as f32,
            cb_scale: (1.0 / (2.0 * (1.0 - kb))) as f32,
            cr_scale: (1.0 / (2.0 * (1.0 - kr))) as f32,
            y_range: y_range as f32,
            c_range: c_range as f32,
            c_off: (128.0 * scale) as f32,
            code_max: max as f32,
        }
    }
}

impl YuvCoeffs {
    /// One pixel from the codes Y, U, V to R, G, B in [0, 1].
    #[inline]
    pub fn to_rgb(&self, y: u16, u: u16, v: u16) -> [f32; 3] {
        let yv = (y as f32 - self.y_off) * self.y_scale;
        let cb = (u as f32 - self.c_off) * self.c_scale;
        let cr = (v as f32 - self.c_off) * self.c_scale;
        let r = yv + self.r_cr * cr;
        let g = yv + self.g_cb * cb + self.g_cr * cr;
        let b = yv + self.b_cb * cb;
        [r.clamp(0.0, 1.0), g.clamp(0.0, 1.0), b.clamp(0.0, 1.0)]
    }

    /// Luma of R, G, B (already clamped to [0, 1]) as the code `Y`.
    #[inline]
    pub fn luma(&self, rgb: [f32; 3]) -> u16 {
        let yv = self.kr * rgb[0] + self.kg * rgb[1] + self.kb * rgb[2];
        self.round_code(self.y_off + yv * self.y_range)
    }

    /// Chroma of R, G, B (clamped to [0, 1]) as the codes `U`, `V`.
    #[inline]
    pub fn chroma(&self, rgb: [f32; 3]) -> (u16, u16) {
        let yv = self.kr * rgb[0] + self.kg * rgb[1] + self.kb * rgb[2];
        let cb = (rgb[2] - yv) * self.cb_scale;
        let cr = (rgb[0] - yv) * self.cr_scale;
        (
            self.round_code(self.c_off + cb * self.c_range),
            self.round_code(self.c_off + cr * self.c_range),
        )
    }

    /// `floor(v + 0.5)` clamped to [0, code_max]; NaN gives 0.
    #[inline]
    fn round_code(&self, v: f32) -> u16 {
        (v + 0.5).floor().clamp(0.0, self.code_max) as u16
    }
}

/// A network value to an 8-bit channel: `floor(clamp(v, 0, 1) * 255 + 0.5)`; NaN gives 0.
#[inline]
pub fn unit_to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0 + 0.5).floor() as u8
}

/// An 8-bit channel to the network's range: `v / 255`.
#[inline]
pub fn u8_to_unit(v: u8) -> f32 {
    v as f32 / 255.0
}

/// A network value to a 16-bit channel: `floor(clamp(v, 0, 1) * 65535 + 0.5)`; NaN gives 0.
#[inline]
pub fn unit_to_u16(v: f32) -> u16 {
    (v.clamp(0.0, 1.0) * 65535.0 + 0.5).floor() as u16
}

/// A 16-bit channel to the network's range: `v / 65535`.
#[inline]
pub fn u16_to_unit(v: u16) -> f32 {
    v as f32 / 65535.0
}

/// The little-endian 16-bit sample at byte `i`.
#[inline]
fn get16(frame: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([frame[i], frame[i + 1]])
}

#[inline]
fn put16(frame: &mut [u8], i: usize, v: u16) {
    frame[i..i + 2].copy_from_slice(&v.to_le_bytes());
}

/// The code of a Y'CbCr sample at byte `i` (8- or 16-bit, shifted for P010).
#[inline]
fn get_code(format: PixelFormat, frame: &[u8], i: usize) -> u16 {
    if format.sample_bytes() == 1 {
        u16::from(frame[i])
    } else {
        get16(frame, i) >> format.code_shift()
    }
}

/// Writes a Y'CbCr code (at most the format's largest) at byte `i`.
#[inline]
fn put_code(format: PixelFormat, frame: &mut [u8], i: usize, code: u16) {
    if format.sample_bytes() == 1 {
        frame[i] = code as u8;
    } else {
        put16(frame, i, code << format.code_shift());
    }
}

/// Extent of a plane: (bytes of pixel data per row, rows).
fn plane_extent(layout: &FrameLayout, plane: usize) -> (usize, usize) {
    let (w, h) = (layout.width, layout.height);
    let f = layout.format;
    let sb = f.sample_bytes();
    match (f.packed(), f.chroma_block(), plane) {
        (Some((bpp, _)), _, _) => (bpp * w, h),
        (None, _, 0) => (sb * w, h),
        (None, Some((sx, sy)), _) => {
            let (cw, ch) = (w.div_ceil(sx), h.div_ceil(sy));
            // NV12 and P010: U and V interleaved.
            let per = if f.semi_planar() { 2 } else { 1 };
            (per * sb * cw, ch)
        }
        (None, None, _) => (0, 0),
    }
}

/// Whether `format` at `width` x `height` is refused for its size: the 10-bit Y'CbCr formats
/// with subsampled chroma need an even width (and height, 4:2:0); GStreamer's own converters
/// treat their odd edges inconsistently. `Some(reason)` when refused.
pub fn odd_size_problem(format: PixelFormat, width: usize, height: usize) -> Option<String> {
    if format.sample_bytes() != 2 {
        return None;
    }
    let (sx, sy) = format.chroma_block()?;
    let odd_w = sx == 2 && width % 2 == 1;
    let odd_h = sy == 2 && height % 2 == 1;
    if !(odd_w || odd_h) {
        return None;
    }
    let need = if sy == 2 {
        "an even width and height"
    } else {
        "an even width"
    };
    Some(format!(
        "{width}x{height} is an odd size: 10-bit Y'CbCr with subsampled chroma needs {need}"
    ))
}

/// Checks that every plane of `layout` lies inside `layout.size` bytes, with strides at least
/// a row long. Conversions assume this.
pub fn check_layout(layout: &FrameLayout) -> Result<(), BackendError> {
    let bad = |what: String| {
        BackendError::Layout(format!(
            "{:?} {}x{}: {what}",
            layout.format, layout.width, layout.height
        ))
    };
    if layout.width == 0 || layout.height == 0 {
        return Err(bad("empty frame".into()));
    }
    if let Some(why) = odd_size_problem(layout.format, layout.width, layout.height) {
        return Err(bad(why));
    }
    let planes = layout.format.planes();
    if layout.offsets.len() < planes || layout.strides.len() < planes {
        return Err(bad(format!(
            "{} offsets and {} strides for {planes} planes",
            layout.offsets.len(),
            layout.strides.len()
        )));
    }
    for p in 0..planes {
        let (row, rows) = plane_extent(layout, p);
        let (off, stride) = (layout.offsets[p], layout.strides[p]);
        if stride < row {
            return Err(bad(format!(
                "plane {p} stride {stride} is shorter than a row ({row} bytes)"
            )));
        }
        let end = stride
            .checked_mul(rows - 1)
            .and_then(|v| v.checked_add(off))
            .and_then(|v| v.checked_add(row));
        match end {
            Some(end) if end <= layout.size => {}
            _ => {
                return Err(bad(format!(
                    "plane {p} (offset {off}, stride {stride}, {rows} rows of {row} bytes) \
                     does not fit in {} bytes",
                    layout.size
                )));
            }
        }
    }
    Ok(())
}

fn check_buffers(layout: &FrameLayout, frame: usize, rgb: usize) -> Result<(), BackendError> {
    check_layout(layout)?;
    if frame < layout.size {
        return Err(BackendError::Layout(format!(
            "frame buffer of {frame} bytes for a {}-byte layout",
            layout.size
        )));
    }
    let want = 3 * layout.width * layout.height;
    if rgb != want {
        return Err(BackendError::Layout(format!(
            "planar RGB buffer of {rgb} values for {want}"
        )));
    }
    Ok(())
}

/// Converts one frame to planar RGB `[3, height, width]` in [0, 1].
///
/// - Packed RGB formats: `v / 255` (`v / 65535` for RGBA64); alpha and padding are ignored.
/// - Y'CbCr: chroma is upsampled by replication (pixel `(x, y)` takes chroma sample
///   `(x / sx, y / sy)` for the format's block `sx x sy`), then converted as [`YuvCoeffs`]
///   says (clamped to [0, 1]).
pub fn to_planar_rgb(
    layout: &FrameLayout,
    frame: &[u8],
    rgb: &mut [f32],
) -> Result<(), BackendError> {
    check_buffers(layout, frame.len(), rgb.len())?;
    let (w, h) = (layout.width, layout.height);
    let plane = w * h;
    let (r_out, rest) = rgb.split_at_mut(plane);
    let (g_out, b_out) = rest.split_at_mut(plane);
    let f = layout.format;
    if let Some((bpp, [ri, gi, bi])) = f.packed() {
        let (off, stride) = (layout.offsets[0], layout.strides[0]);
        let wide = f.sample_bytes() == 2;
        for y in 0..h {
            let row = &frame[off + y * stride..][..bpp * w];
            for (x, px) in row.chunks_exact(bpp).enumerate() {
                if wide {
                    r_out[y * w + x] = u16_to_unit(get16(px, ri));
                    g_out[y * w + x] = u16_to_unit(get16(px, gi));
                    b_out[y * w + x] = u16_to_unit(get16(px, bi));
                } else {
                    r_out[y * w + x] = u8_to_unit(px[ri]);
                    g_out[y * w + x] = u8_to_unit(px[gi]);
                    b_out[y * w + x] = u8_to_unit(px[bi]);
                }
            }
        }
        return Ok(());
    }
    let k = layout.yuv_coeffs();
    let (sx, sy) = f.chroma_block().unwrap_or((2, 2));
    let sb = f.sample_bytes();
    let (yo, ys) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        for x in 0..w {
            let luma = get_code(f, frame, yo + y * ys + sb * x);
            let (u, v) = chroma_at(layout, frame, x / sx, y / sy);
            let [r, g, b] = k.to_rgb(luma, u, v);
            r_out[y * w + x] = r;
            g_out[y * w + x] = g;
            b_out[y * w + x] = b;
        }
    }
    Ok(())
}

/// Byte positions of the (U, V) samples at chroma position (cx, cy) of a Y'CbCr frame.
#[inline]
fn chroma_pos(layout: &FrameLayout, cx: usize, cy: usize) -> (usize, usize) {
    let sb = layout.format.sample_bytes();
    if layout.format.semi_planar() {
        let i = layout.offsets[1] + cy * layout.strides[1] + 2 * sb * cx;
        (i, i + sb)
    } else {
        (
            layout.offsets[1] + cy * layout.strides[1] + sb * cx,
            layout.offsets[2] + cy * layout.strides[2] + sb * cx,
        )
    }
}

/// The (U, V) codes at chroma position (cx, cy) of a Y'CbCr frame.
#[inline]
fn chroma_at(layout: &FrameLayout, frame: &[u8], cx: usize, cy: usize) -> (u16, u16) {
    let (iu, iv) = chroma_pos(layout, cx, cy);
    let f = layout.format;
    (get_code(f, frame, iu), get_code(f, frame, iv))
}

/// Writes planar RGB `[3, height, width]` (any values; clamped to [0, 1]) into `frame` in
/// `layout`. Bytes outside the planes' pixels (row padding) are left as they are.
///
/// - Packed RGB formats: [`unit_to_u8`] ([`unit_to_u16`] for RGBA64); the alpha of
///   RGBA/BGRA/RGBA64 and the padding byte of RGBx/BGRx are set to the largest value
///   (interpolated frames are opaque).
/// - Y'CbCr: luma per pixel; chroma per block of the format (2x2 for 4:2:0, 2x1 for 4:2:2,
///   1x1 for 4:4:4; fewer pixels at an odd right or bottom edge) from the block's mean R, G,
///   B (summed in row-major order, divided by the pixel count), as [`YuvCoeffs`] says.
pub fn from_planar_rgb(
    layout: &FrameLayout,
    rgb: &[f32],
    frame: &mut [u8],
) -> Result<(), BackendError> {
    check_buffers(layout, frame.len(), rgb.len())?;
    let (w, h) = (layout.width, layout.height);
    let plane = w * h;
    let at = |c: usize, x: usize, y: usize| rgb[c * plane + y * w + x].clamp(0.0, 1.0);
    let f = layout.format;
    if let Some((bpp, [ri, gi, bi])) = f.packed() {
        let (off, stride) = (layout.offsets[0], layout.strides[0]);
        let wide = f.sample_bytes() == 2;
        for y in 0..h {
            let row = &mut frame[off + y * stride..][..bpp * w];
            for (x, px) in row.chunks_exact_mut(bpp).enumerate() {
                if wide {
                    put16(px, ri, unit_to_u16(at(0, x, y)));
                    put16(px, gi, unit_to_u16(at(1, x, y)));
                    put16(px, bi, unit_to_u16(at(2, x, y)));
                    put16(px, 6, u16::MAX);
                    continue;
                }
                px[ri] = unit_to_u8(at(0, x, y));
                px[gi] = unit_to_u8(at(1, x, y));
                px[bi] = unit_to_u8(at(2, x, y));
                if bpp == 4 {
                    px[3] = 255;
                }
            }
        }
        return Ok(());
    }
    let k = layout.yuv_coeffs();
    let (sx, sy) = f.chroma_block().unwrap_or((2, 2));
    let sb = f.sample_bytes();
    let (yo, ys) = (layout.offsets[0], layout.strides[0]);
    for y in 0..h {
        for x in 0..w {
            let luma = k.luma([at(0, x, y), at(1, x, y), at(2, x, y)]);
            put_code(f, frame, yo + y * ys + sb * x, luma);
        }
    }
    for cy in 0..h.div_ceil(sy) {
        for cx in 0..w.div_ceil(sx) {
            let mut sum = [0.0f32; 3];
            let mut n = 0usize;
            for y in sy * cy..(sy * cy + sy).min(h) {
                for x in sx * cx..(sx * cx + sx).min(w) {
                    for (c, s) in sum.iter_mut().enumerate() {
                        *s += at(c, x, y);
                    }
                    n += 1;
                }
            }
            let mean = sum.map(|s| s / n as f32);
            let (u, v) = k.chroma(mean);
            let (iu, iv) = chroma_pos(layout, cx, cy);
            put_code(f, frame, iu, u);
            put_code(f, frame, iv, v);
        }
    }
    Ok(())
}

impl FrameLayout {
    /// The Y'CbCr constants of this layout's matrix at its format's bit depth.
    pub fn yuv_coeffs(&self) -> YuvCoeffs {
        self.yuv.coeffs_bits(self.format.bits())
    }

    /// A tightly packed layout (rows not padded, planes back to back) of `format`, for tests
    /// and tools. GStreamer's own layouts pad rows to 4 bytes; the element passes those.
    pub fn packed(format: PixelFormat, width: usize, height: usize, yuv: YuvMatrix) -> FrameLayout {
        let sb = format.sample_bytes();
        let (offsets, strides, size) = match (format.packed(), format.chroma_block()) {
            (Some((bpp, _)), _) => (vec![0], vec![bpp * width], bpp * width * height),
            (None, Some((sx, sy))) => {
                let (cw, ch) = (width.div_ceil(sx), height.div_ceil(sy));
                let y = sb * width * height;
                if format.semi_planar() {
                    (
                        vec![0, y],
                        vec![sb * width, 2 * sb * cw],
                        y + 2 * sb * cw * ch,
                    )
                } else {
                    let c = sb * cw * ch;
                    (
                        vec![0, y, y + c],
                        vec![sb * width, sb * cw, sb * cw],
                        y + 2 * c,
                    )
                }
            }
            (None, None) => (vec![0], vec![0], 0),
        };
        FrameLayout {
            format,
            width,
            height,
            offsets,
            strides,
            size,
            yuv,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::test_layout::padded_by;

    const PACKED: [PixelFormat; 5] = [
        PixelFormat::Rgb,
        PixelFormat::Rgba,
        PixelFormat::Bgra,
        PixelFormat::Rgbx,
        PixelFormat::Bgrx,
    ];

    /// A layout with padded rows and a gap before each plane, to catch stride and offset bugs
    /// (odd bytes, so that 8-bit code gets no alignment it could lean on).
    fn padded(format: PixelFormat, w: usize, h: usize, yuv: YuvMatrix) -> FrameLayout {
        padded_by(format, w, h, yuv, [5, 7, 3])
    }

    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (s >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn packed_round_trip_is_exact() {
        for format in PACKED {
            for (w, h) in [(1, 1), (5, 3), (16, 9)] {
                let layout = padded(format, w, h, YuvMatrix::BT601);
                check_layout(&layout).unwrap();
                let src = noise(layout.size, (w * 31 + h) as u64);
                let mut rgb = vec![0.0; 3 * w * h];
                to_planar_rgb(&layout, &src, &mut rgb).unwrap();
                assert!(rgb.iter().all(|v| (0.0..=1.0).contains(v)));
                let mut dst = vec![0u8; layout.size];
                from_planar_rgb(&layout, &rgb, &mut dst).unwrap();
                let (bpp, _) = format.packed().unwrap();
                for y in 0..h {
                    for x in 0..w {
                        let i = layout.offsets[0] + y * layout.strides[0] + x * bpp;
                        assert_eq!(&dst[i..i + 3], &src[i..i + 3], "{format:?} ({x},{y})");
                        if bpp == 4 {
                            assert_eq!(dst[i + 3], 255, "{format:?} alpha");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn packed_channel_order() {
        let px = [10u8, 20, 30, 40];
        let expect = [10.0 / 255.0, 20.0 / 255.0, 30.0 / 255.0];
        for (format, order) in [
            (PixelFormat::Rgb, [0, 1, 2]),
            (PixelFormat::Rgba, [0, 1, 2]),
            (PixelFormat::Rgbx, [0, 1, 2]),
            (PixelFormat::Bgra, [2, 1, 0]),
            (PixelFormat::Bgrx, [2, 1, 0]),
        ] {
            let layout = FrameLayout::packed(format, 1, 1, YuvMatrix::BT601);
            let mut rgb = [0.0f32; 3];
            to_planar_rgb(&layout, &px[..layout.size], &mut rgb).unwrap();
            assert_eq!(
                rgb,
                [expect[order[0]], expect[order[1]], expect[order[2]]],
                "{format:?}"
            );
        }
    }

    #[test]
    fn rounding_and_clamping() {
        let layout = FrameLayout::packed(PixelFormat::Rgb, 2, 1, YuvMatrix::BT601);
        // Planar R = [-0.5, 2], G = [0.5, 0.25], B = [NaN, 1.49 / 255].
        let rgb = [-0.5, 2.0, 0.5, 0.25, f32::NAN, 1.49 / 255.0];
        let mut out = [0u8; 6];
        from_planar_rgb(&layout, &rgb, &mut out).unwrap();
        // Clamped; 127.5 rounds up to 128; 63.75 to 64; NaN gives 0; 1.49 to 1.
        assert_eq!(out, [0, 128, 0, 255, 64, 1]);
    }

    #[test]
    fn known_yuv_colours() {
        let k = YuvMatrix::BT601.coeffs();
        let close = |a: [f32; 3], b: [f32; 3]| a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-6);
        assert!(close(k.to_rgb(16, 128, 128), [0.0, 0.0, 0.0]));
        assert!(close(k.to_rgb(235, 128, 128), [1.0, 1.0, 1.0]));
        assert!(close(k.to_rgb(126, 128, 128), [110.0 / 219.0; 3]));
        // BT.601 limited-range red is (81, 90, 240).
        let red = k.to_rgb(81, 90, 240);
        assert!(
            (red[0] - 1.0).abs() < 0.01 && red[1] < 0.01 && red[2] < 0.01,
            "{red:?}"
        );
        assert_eq!(k.luma([1.0, 0.0, 0.0]), 81);
        assert_eq!(k.chroma([1.0, 0.0, 0.0]), (90, 240));
        assert_eq!(k.luma([0.0; 3]), 16);
        assert_eq!(k.luma([1.0; 3]), 235);
        assert_eq!(k.chroma([0.5; 3]), (128, 128));
        // Full range: 0 / 255 are black / white; BT.709 limited-range blue is (41, 240, 110).
        let f = YuvMatrix::BT601_FULL.coeffs();
        assert!(close(f.to_rgb(0, 128, 128), [0.0; 3]));
        assert!(close(f.to_rgb(255, 128, 128), [1.0; 3]));
        let b = YuvMatrix::BT709.coeffs();
        assert_eq!(b.luma([0.0, 0.0, 1.0]), 32);
        assert_eq!(b.chroma([0.0, 0.0, 1.0]), (240, 118));
    }

    #[test]
    fn yuv_round_trip() {
        for format in [PixelFormat::I420, PixelFormat::Nv12] {
            for yuv in [
                YuvMatrix::BT601,
                YuvMatrix::BT709,
                YuvMatrix::BT2020,
                YuvMatrix::BT601_FULL,
            ] {
                for (w, h) in [(1, 1), (7, 5), (16, 8)] {
                    let layout = padded(format, w, h, yuv);
                    check_layout(&layout).unwrap();
                    // Smooth colours, constant over each 2x2 block: the chroma survives the
                    // down-sampling, so a round trip is within rounding.
                    let mut rgb = vec![0.0f32; 3 * w * h];
                    for c in 0..3 {
                        for y in 0..h {
                            for x in 0..w {
                                let v = 0.1
                                    + 0.8 * (((x / 2) * 3 + (y / 2) * 5 + c * 7) % 11) as f32
                                        / 10.0;
                                rgb[c * w * h + y * w + x] = v;
                            }
                        }
                    }
                    let mut frame = vec![0u8; layout.size];
                    from_planar_rgb(&layout, &rgb, &mut frame).unwrap();
                    let mut back = vec![0.0f32; 3 * w * h];
                    to_planar_rgb(&layout, &frame, &mut back).unwrap();
                    let err = rgb
                        .iter()
                        .zip(&back)
                        .map(|(a, b)| (a - b).abs())
                        .fold(0.0, f32::max);
                    // Half a code of Y and of each chroma, times the largest matrix gain.
                    assert!(err < 0.02, "{format:?} {yuv:?} {w}x{h}: {err}");

                    // YUV -> RGB -> YUV is stable on real-world (random) luma.
                    let mut src = noise(layout.size, 7);
                    // Keep chroma neutral so no RGB clamping happens, luma inside the range.
                    let y_lo = if yuv.full_range { 0 } else { 16 };
                    for y in 0..h {
                        for x in 0..w {
                            let i = layout.offsets[0] + y * layout.strides[0] + x;
                            src[i] = y_lo + src[i] % 200;
                        }
                    }
                    let (cw, ch) = (w.div_ceil(2), h.div_ceil(2));
                    for cy in 0..ch {
                        for cx in 0..cw {
                            if format == PixelFormat::I420 {
                                src[layout.offsets[1] + cy * layout.strides[1] + cx] = 128;
                                src[layout.offsets[2] + cy * layout.strides[2] + cx] = 128;
                            } else {
                                let i = layout.offsets[1] + cy * layout.strides[1] + 2 * cx;
                                src[i] = 128;
                                src[i + 1] = 128;
                            }
                        }
                    }
                    let mut rgb = vec![0.0f32; 3 * w * h];
                    to_planar_rgb(&layout, &src, &mut rgb).unwrap();
                    let mut again = src.clone();
                    from_planar_rgb(&layout, &rgb, &mut again).unwrap();
                    assert_eq!(again, src, "{format:?} {yuv:?} {w}x{h}");
                }
            }
        }
    }

    #[test]
    fn chroma_is_averaged_over_blocks() {
        // 3x1 I420: the first chroma sample is the mean of pixels 0 and 1, the second pixel 2.
        let layout = FrameLayout::packed(PixelFormat::I420, 3, 1, YuvMatrix::BT601);
        let rgb = [
            1.0, 0.0, 0.0, /* G */ 0.0, 0.0, 1.0, /* B */ 0.0, 1.0, 0.0,
        ];
        let mut frame = vec![0u8; layout.size];
        from_planar_rgb(&layout, &rgb, &mut frame).unwrap();
        let k = YuvMatrix::BT601.coeffs();
        let (u0, v0) = k.chroma([0.5, 0.0, 0.5]);
        let (u1, v1) = k.chroma([0.0, 1.0, 0.0]);
        assert_eq!(frame[3..], [u0, u1, v0, v1].map(|c| c as u8));
    }

    #[test]
    fn bad_layouts_are_errors() {
        let mut l = FrameLayout::packed(PixelFormat::Rgbx, 4, 4, YuvMatrix::BT601);
        l.size -= 1;
        assert!(matches!(check_layout(&l), Err(BackendError::Layout(_))));
        let mut l = FrameLayout::packed(PixelFormat::Nv12, 4, 4, YuvMatrix::BT601);
        l.strides[1] = 3;
        assert!(check_layout(&l).is_err());
        let mut l = FrameLayout::packed(PixelFormat::I420, 4, 4, YuvMatrix::BT601);
        l.offsets.pop();
        assert!(check_layout(&l).is_err());
        let l = FrameLayout::packed(PixelFormat::Rgb, 4, 4, YuvMatrix::BT601);
        let mut rgb = vec![0.0; 48];
        assert!(to_planar_rgb(&l, &[0u8; 47], &mut rgb).is_err());
        assert!(to_planar_rgb(&l, &[0u8; 48], &mut rgb[..47]).is_err());
    }
}

#[cfg(test)]
#[path = "pixels_deep_tests.rs"]
mod deep_tests;
