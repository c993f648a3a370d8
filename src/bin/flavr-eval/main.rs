// SPDX-License-Identifier: MIT OR Apache-2.0
//! Interpolation quality on real video, through the `flavrinterp` element itself.
//!
//! The protocol: decode a clip, keep its even frames (0, 2, 4, ...), rebuild every odd frame
//! that has a right neighbour (1, 3, ..., 2M - 1 for a clip of 2M + 1 or 2M + 2 frames) from
//! the even ones, and compare the rebuilt frames with the real ones.
//!
//! ```text
//! flavr-eval --clip CLIP [--method M]... [--model PATH] [--backend auto|cuda|cpu]
//!            [--precision fp16|fp32|bf16] [--device-id N] [--frames N]
//!            [--convert exact|videoconvert] [--write-even OUT.rgb] [--per-frame OUT.csv]
//!            [--png OUT.png [--crop-frame K] [--crop X,Y,W,H | --crop-size W,H]]
//! ```
//!
//! Methods (`--method`, repeatable, default `dup`, `blend`; any of them may be written
//! `LABEL=METHOD` to name its row):
//! - `dup`: the previous even frame;
//! - `blend`: the rounded average of the two neighbouring even frames, `(a + b + 1) >> 1`;
//! - `ours`: the even frames (timestamps at twice the clip's frame duration) through
//!   `appsrc ! flavrinterp factor=2 [model-location=--model] ! appsink` (without `--model`: the
//!   model built into the plugin); the outputs at odd positions are the rebuilt
//!   frames. Checks that `2n - 1` frames come out and that the originals come back bit-exact;
//! - `file:PATH`: frame `k` of another tool's output (at the clip's frame rate, made from the
//!   even frames) is the rebuilt frame `k`. `PATH` is a video GStreamer decodes, or raw `rgb24`
//!   frames of the clip's size when it ends in `.rgb`.
//!
//! Metrics, per rebuilt frame, then the mean over frames:
//! - PSNR over all R, G, B samples, peak 255: `10 log10(255^2 / MSE)`; the table shows the mean
//!   of the per-frame PSNRs (this reproduces our FFmpeg-measured baselines; the PSNR of the
//!   mean MSE is about 3 dB lower on bigbuckbunny);
//! - SSIM (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, C1 = (0.01 * 255)^2,
//!   C2 = (0.03 * 255)^2, population statistics, mean over the positions where the window fits
//!   in the frame ("valid"), computed per R, G, B channel and averaged.
//!
//! RGB: with `--convert exact` (default) the decoder's 4:2:0 frames are converted here with the
//! exact BT.601/709/2020 formula of the caps colorimetry (untagged video: BT.601 limited range,
//! as FFmpeg), each chroma sample covering its 2x2 pixels, rounded to nearest. `videoconvert`
//! uses GStreamer's `videoconvert` instead, whose fast 8-bit path is up to 6 levels off the exact
//! formula here and moves PSNR by +0.05 dB.
//!
//! `--frames N` keeps the first `N` rebuilt frames (`ours` then pushes only the `N + 2` even
//! frames they need; the windows of those frames are the ones of a full run). `--png` writes a
//! crop of one rebuilt frame: truth | blend | each method other than dup and blend.

#[path = "../shared/args.rs"]
mod args;
mod evaluate;
mod methods;
mod metrics;
mod options;
mod picture;
mod pipeline;
mod video;

use std::process::ExitCode;

use evaluate::evaluate;
use options::Options;

pub(crate) const USAGE: &str = "usage:
  flavr-eval --clip CLIP [--method M]... [--model PATH (default: the embedded model)] [--backend auto|cuda|cpu]
             [--precision fp16|fp32|bf16] [--device-id N] [--frames N]
             [--convert exact|videoconvert] [--write-even OUT.rgb] [--per-frame OUT.csv]
             [--png OUT.png [--crop-frame K] [--crop X,Y,W,H | --crop-size W,H]]
  methods: dup, blend, ours, file:PATH (a video, or raw rgb24 frames if PATH ends in .rgb);
           LABEL=METHOD names the row (e.g. minterpolate=file:mi.mkv). Default: dup, blend.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = Options::parse(&args).and_then(|o| {
        gst::init().map_err(|e| format!("cannot initialise GStreamer: {e}"))?;
        gstflavrinterp::plugin_register_static()
            .map_err(|e| format!("cannot register flavrinterp: {e}"))?;
        evaluate(&o)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flavr-eval: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
#[path = "../shared/test_init.rs"]
mod test_init;

#[cfg(test)]
#[path = "../../../tests/common/mod.rs"]
mod test_fixtures;

/// What the modules' tests share.
#[cfg(test)]
pub(crate) mod test_support {
    pub(crate) use super::test_fixtures::fixture;
    pub(crate) use super::test_init::init;

    /// A smooth pattern and a noisy copy (LCG noise in -8..=8), as tools/eval's Python
    /// reference makes them for the constants in the metrics tests.
    pub(crate) fn synth(w: usize, h: usize, seed: u64) -> (Vec<u8>, Vec<u8>) {
        let mut s = seed;
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let base = (x * x / 7 + y * 5 + c * 40 + x * y / 11) % 256;
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = ((s >> 33) % 17) as i64 - 8;
                    a.push(base as u8);
                    b.push((base as i64 + noise).clamp(0, 255) as u8);
                }
            }
        }
        (a, b)
    }
}
