// SPDX-License-Identifier: MIT OR Apache-2.0
//! Scene-cut detection on a reduced frame, free of GStreamer types.
//!
//! Each input frame is reduced to its luma averaged over a grid of at most 64 x 36 boxes
//! ([`Reduced`]), then normalised to zero mean and unit standard deviation, so that the
//! brightness and contrast of a shot do not matter: a dark scene compares like a bright one, and
//! a fade (a brightness ramp) moves neither measure much. Two measures between consecutive frames:
//! - `diff`: half the mean squared difference of the normalised frames, `1 - ncc` (their
//!   normalised cross-correlation): about 0 for the same picture, about 1 for unrelated ones;
//! - `hist`: the total-variation distance (0 to 1) of the histograms of the normalised values
//!   (24 bins over -3 to 3 standard deviations), which motion barely moves.
//!
//! Motion raises `diff` but not `hist`; a cut raises both. So the score is
//! `sqrt(min(excess, 1) * min(2 hist, 1))`, where `excess = diff - 1.5 * typical - 0.02` (at
//! least 0) and `typical` is the median `diff` of the last 8 frame pairs of the same shot: in a
//! shot that changes fast (action, handheld camera) the bar rises with it. A frame whose score
//! reaches the threshold starts a new shot; its own `diff` is not added to the history.
//!
//! Frames with almost no contrast (standard deviation under 4 of 255 luma levels, e.g. nearly
//! black frames in a fade) are normalised by that floor instead, so sensor noise on black is not
//! blown up into a picture. A frame with no picture at all (standard deviation of the box means
//! under 1 level: black, a flat colour) cannot start or end a shot: the score is scaled by
//! `clamp((s - 1) / 2, 0, 1)`, `s` the smaller standard deviation of the two frames, so a fade
//! through black is not a cut (a cut to black is then treated as a fade).

use std::collections::VecDeque;

use crate::backend::PixelFormat;

/// Largest grid the luma is averaged to (boxes across, down).
pub const GRID: (usize, usize) = (64, 36);
/// Default `scene-threshold`: no false cut at 0.3 on most of our real clips, see notes/scene.md.
pub const DEFAULT_THRESHOLD: f64 = 0.3;

const STD_FLOOR: f32 = 4.0;
/// Standard deviation (luma levels) below which a frame has no picture to compare, and the
/// width of the ramp above it.
const FLAT: f64 = 1.0;
const FLAT_RAMP: f64 = 2.0;
const BINS: usize = 24;
const HIST_RANGE: f32 = 3.0;
const HISTORY: usize = 8;
const TYPICAL_FACTOR: f64 = 1.5;
const MARGIN: f64 = 0.02;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum SceneError {
    #[error(
        "luma plane of {len} bytes is too small for {width}x{height} pixels with a stride of \
         {stride} bytes"
    )]
    Short {
        len: usize,
        width: usize,
        height: usize,
        stride: usize,
    },
    #[error("cannot measure a frame of {width}x{height} pixels")]
    Empty { width: usize, height: usize },
    #[error("{got} box sums for a grid of {want} boxes")]
    Sums { got: usize, want: usize },
}

/// Box `b` of `boxes` along a side of `len` pixels covers pixels `edges[b]..edges[b + 1]`:
/// pixel `x` is in box `x * boxes / len` (rounded down), so `edges[b] = ceil(b * len / boxes)`.
/// The one definition of the grid: the CPU sums, the box sizes of [`Reduced::from_box_sums`]
/// and the CUDA kernel's parameters (src/cuda) all come from it.
pub fn box_edges(len: usize, boxes: usize) -> Vec<usize> {
    (0..=boxes)
        .map(|b| (b * len).div_ceil(boxes.max(1)))
        .collect()
}

/// The first plane of a frame, as the reduction reads it: luma for the Y'CbCr formats (the Y
/// plane), `(77 R + 150 G + 29 B) / 256` for the packed RGB formats. `stride`: bytes per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plane {
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    pub stride: usize,
}

impl Plane {
    /// Boxes across and down: at most [`GRID`], at most one per pixel.
    pub fn grid(&self) -> (usize, usize) {
        (self.width.min(GRID.0), self.height.min(GRID.1))
    }

    /// [`box_edges`] across and down.
    pub fn edges(&self) -> (Vec<usize>, Vec<usize>) {
        let (gw, gh) = self.grid();
        (box_edges(self.width, gw), box_edges(self.height, gh))
    }

    /// Bytes per pixel of the plane.
    pub fn pixel_bytes(&self) -> usize {
        let sb = self.format.sample_bytes();
        self.format.packed().map_or(sb, |(bpp, _)| bpp)
    }

    /// Bytes the plane spans: every row's stride but the last one's pixels.
    pub fn span(&self) -> Option<usize> {
        (self.height.checked_sub(1)?)
            .checked_mul(self.stride)?
            .checked_add(self.width.checked_mul(self.pixel_bytes())?)
    }

    /// An error unless the plane has pixels and `len` bytes hold it.
    pub fn check(&self, len: usize) -> Result<(), SceneError> {
        let (width, height, stride) = (self.width, self.height, self.stride);
        if width == 0 || height == 0 {
            return Err(SceneError::Empty { width, height });
        }
        let row = width.checked_mul(self.pixel_bytes());
        match (row, self.span()) {
            (Some(row), Some(need)) if stride >= row && len >= need => Ok(()),
            _ => Err(SceneError::Short {
                len,
                width,
                height,
                stride,
            }),
        }
    }

    /// Sample value per 8-bit level: 10-bit codes 4 (P010 holds them 6 bits up: 256), 16-bit
    /// RGB 257. A box's mean is its sum over `level` times its pixels (times 256 for RGB).
    fn level(&self) -> u64 {
        match (self.format.bits(), self.format.code_shift()) {
            (8, _) => 1,
            (10, 0) => 4,
            (10, _) => 256,
            _ => 257,
        }
    }

    /// The exact integer sum of each box, row by row: the samples of the first plane, or
    /// `77 R + 150 G + 29 B` per pixel for packed RGB. A GPU computing the same sums
    /// (src/cuda) gives the same [`Reduced`] through [`Reduced::from_box_sums`].
    pub fn box_sums(&self, plane: &[u8]) -> Result<Vec<u64>, SceneError> {
        self.check(plane.len())?;
        let sb = self.format.sample_bytes();
        let bpp = self.pixel_bytes();
        let sample = |px: &[u8], i: usize| {
            if sb == 2 {
                u64::from(u16::from_le_bytes([px[i], px[i + 1]]))
            } else {
                u64::from(px[i])
            }
        };
        let (gw, gh) = self.grid();
        let (xe, ye) = self.edges();
        let mut sums = vec![0u64; gw * gh];
        for by in 0..gh {
            let sums = &mut sums[by * gw..(by + 1) * gw];
            for y in ye[by]..ye[by + 1] {
                let row = &plane[y * self.stride..y * self.stride + self.width * bpp];
                for (bx, sum) in sums.iter_mut().enumerate() {
                    let pixels = row[xe[bx] * bpp..xe[bx + 1] * bpp].chunks_exact(bpp);
                    *sum += match self.format.packed() {
                        None => pixels.map(|px| sample(px, 0)).sum::<u64>(),
                        Some((_, [r, g, b])) => pixels
                            .map(|px| 77 * sample(px, r) + 150 * sample(px, g) + 29 * sample(px, b))
                            .sum(),
                    };
                }
            }
        }
        Ok(sums)
    }
}

/// A frame's luma, averaged over the grid and normalised.
#[derive(Clone, Debug, PartialEq)]
pub struct Reduced {
    /// Normalised box means, row by row.
    z: Vec<f32>,
    /// Histogram of `z`, summing to 1.
    hist: [f32; BINS],
    /// Standard deviation of the box means, in luma levels.
    sd: f64,
}

impl Reduced {
    /// Reduces the first plane of a frame ([`Plane`]) on the CPU: [`Plane::box_sums`], then
    /// [`Reduced::from_box_sums`]. 10- and 16-bit samples are scaled to 8-bit levels (not
    /// rounded), so the thresholds in luma levels mean the same at every depth.
    pub fn from_plane(
        format: PixelFormat,
        plane: &[u8],
        stride: usize,
        width: usize,
        height: usize,
    ) -> Result<Reduced, SceneError> {
        let p = Plane {
            format,
            width,
            height,
            stride,
        };
        Reduced::from_box_sums(&p, &p.box_sums(plane)?)
    }

    /// The reduced frame of `plane` from its box sums ([`Plane::box_sums`], or the same sums
    /// computed elsewhere): each box's mean in 8-bit luma levels, then normalised.
    pub fn from_box_sums(plane: &Plane, sums: &[u64]) -> Result<Reduced, SceneError> {
        let (width, height) = (plane.width, plane.height);
        if width == 0 || height == 0 {
            return Err(SceneError::Empty { width, height });
        }
        let (gw, gh) = plane.grid();
        if sums.len() != gw * gh {
            return Err(SceneError::Sums {
                got: sums.len(),
                want: gw * gh,
            });
        }
        let (xe, ye) = plane.edges();
        let weight = plane.level()
            * if plane.format.packed().is_some() {
                256
            } else {
                1
            };
        let means: Vec<f32> = sums
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let (bx, by) = (i % gw, i / gw);
                let pixels = ((xe[bx + 1] - xe[bx]) * (ye[by + 1] - ye[by])) as u64;
                (s as f64 / (pixels * weight).max(1) as f64) as f32
            })
            .collect();
        Ok(Reduced::from_means(&means))
    }

    /// Normalises box means (any number, in luma levels).
    fn from_means(means: &[f32]) -> Reduced {
        let n = means.len().max(1) as f64;
        let mean = means.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = means
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        let scale = (var.sqrt() as f32).max(STD_FLOOR);
        let z: Vec<f32> = means.iter().map(|&v| (v - mean as f32) / scale).collect();
        let mut hist = [0f32; BINS];
        for &v in &z {
            let t = (v.clamp(-HIST_RANGE, HIST_RANGE) + HIST_RANGE) / (2.0 * HIST_RANGE);
            let bin = ((t * BINS as f32) as usize).min(BINS - 1);
            hist[bin] += 1.0;
        }
        hist.iter_mut().for_each(|h| *h /= n as f32);
        Reduced {
            z,
            hist,
            sd: var.sqrt(),
        }
    }
}

/// The measures between two consecutive frames.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Measure {
    /// `1 - ncc` of the normalised frames (0: same picture, about 1: unrelated).
    pub diff: f64,
    /// Histogram distance, 0 to 1.
    pub hist: f64,
    /// Median `diff` of the shot's recent frame pairs (0 at a shot's start).
    pub typical: f64,
    /// The smaller standard deviation of the two frames' box means (luma levels).
    pub contrast: f64,
    /// The score compared with the threshold, 0 to 1.
    pub score: f64,
    /// The score reached the threshold (and the threshold is not 0).
    pub cut: bool,
}

/// `diff` and `hist` of two reduced frames (of the same grid).
pub fn compare(a: &Reduced, b: &Reduced) -> (f64, f64) {
    let n = a.z.len().min(b.z.len()).max(1) as f64;
    let sq: f64 =
        a.z.iter()
            .zip(&b.z)
            .map(|(&x, &y)| f64::from(x - y).powi(2))
            .sum();
    let hist: f64 = a
        .hist
        .iter()
        .zip(&b.hist)
        .map(|(&x, &y)| f64::from((x - y).abs()))
        .sum();
    (sq / n / 2.0, hist / 2.0)
}

/// The cut decision along a stream.
#[derive(Clone, Debug)]
pub struct Detector {
    threshold: f64,
    prev: Option<Reduced>,
    history: VecDeque<f64>,
}

impl Detector {
    /// `threshold` 0 turns detection off ([`Detector::push`] then never reports a cut).
    pub fn new(threshold: f64) -> Detector {
        Detector {
            threshold,
            prev: None,
            history: VecDeque::with_capacity(HISTORY),
        }
    }

    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    pub fn set_threshold(&mut self, threshold: f64) {
        self.threshold = threshold;
    }

    /// Forgets the previous frame and the shot's history (a new run: DISCONT, gap, flush).
    pub fn reset(&mut self) {
        self.prev = None;
        self.history.clear();
    }

    /// The next frame: its measures against the previous one (`None` for the first frame after
    /// a reset).
    pub fn push(&mut self, frame: Reduced) -> Option<Measure> {
        let prev = self.prev.replace(frame);
        let (prev, cur) = (prev?, self.prev.as_ref()?);
        let (diff, hist) = compare(&prev, cur);
        let typical = median(&self.history);
        let excess = (diff - TYPICAL_FACTOR * typical - MARGIN).max(0.0);
        let contrast = prev.sd.min(cur.sd);
        let flat = ((contrast - FLAT) / FLAT_RAMP).clamp(0.0, 1.0);
        let score = flat * (excess.min(1.0) * (2.0 * hist).min(1.0)).sqrt();
        let cut = self.threshold > 0.0 && score >= self.threshold;
        if !cut {
            if self.history.len() == HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(diff);
        }
        Some(Measure {
            diff,
            hist,
            typical,
            contrast,
            score,
            cut,
        })
    }
}

fn median(v: &VecDeque<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s: Vec<f64> = v.iter().copied().collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

#[cfg(test)]
mod tests;
