//! Pixel layouts the element accepts, and their conversion to and from the network's input:
//! planar RGB float in [0, 1], and back with clamping and rounding.
//!
//! The conversions here are the CPU reference; the CUDA kernels in `kernels/` do the same
//! arithmetic.

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
}

/// Y'CbCr to R'G'B' matrix and range, for I420 and NV12.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct YuvMatrix {
    /// Luma coefficients (Kr, Kb): BT.601 (0.299, 0.114), BT.709 (0.2126, 0.0722),
    /// BT.2020 (0.2627, 0.0593).
    pub kr: f32,
    pub kb: f32,
    /// Full range (0..255) instead of limited (16..235 luma, 16..240 chroma).
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
    /// Byte offset of each plane (one for packed RGB, three for I420, two for NV12).
    pub offsets: Vec<usize>,
    /// Bytes per row of each plane.
    pub strides: Vec<usize>,
    /// Bytes of a whole frame.
    pub size: usize,
    /// Used by I420 and NV12.
    pub yuv: YuvMatrix,
}
