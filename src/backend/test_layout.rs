// SPDX-License-Identifier: MIT OR Apache-2.0
//! Padded frame layouts for the pixel tests, shared by the unit tests (as
//! `crate::backend::test_layout`) and the GPU tests (`tests/cuda_common` includes this file with
//! `#[path]`). It uses only `FrameLayout`'s public interface; the including module must have
//! `FrameLayout`, `PixelFormat` and `YuvMatrix` in scope.

use super::{FrameLayout, PixelFormat, YuvMatrix};

/// The layout of `format` with the first plane `pad[0]` bytes in, each row `pad[1]` bytes
/// longer than its samples and `pad[2]` bytes between planes: stride and offset bugs show.
pub fn padded_by(
    format: PixelFormat,
    w: usize,
    h: usize,
    yuv: YuvMatrix,
    pad: [usize; 3],
) -> FrameLayout {
    let tight = FrameLayout::packed(format, w, h, yuv);
    let (mut offsets, mut strides, mut off) = (Vec::new(), Vec::new(), pad[0]);
    for p in 0..format.planes() {
        // The packed layout's rows are exactly the samples: its stride and row count.
        let end = tight.offsets.get(p + 1).copied().unwrap_or(tight.size);
        let rows = (end - tight.offsets[p]) / tight.strides[p];
        let stride = tight.strides[p] + pad[1];
        offsets.push(off);
        strides.push(stride);
        off += stride * rows + pad[2];
    }
    FrameLayout {
        offsets,
        strides,
        size: off,
        ..tight
    }
}
