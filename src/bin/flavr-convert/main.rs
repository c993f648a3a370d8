// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavr-convert`: one command from a video file to a smoother one, built on `flavrinterp`
//! with GStreamer doing all the media work.
//!
//! Modules, one concern each: `options` (the command line), `rate` (`--factor`/`--fps` to
//! what the pipeline does), `probe` (what INPUT holds), `container` (muxer and encoders from
//! OUTPUT's extension), `plugins` (missing elements and their packages), `pipeline` (the
//! elements and their links), `run` (one conversion and its bus loop), `progress` (the bar),
//! `signals` (Ctrl-C), `output` (the `.part` file), `orientation` (the MP4 rotation matrix),
//! `summary` (the closing line or JSON), `exit` (failures and exit statuses).

#[path = "../shared/args.rs"]
mod args;
mod container;
mod exit;
mod options;
mod orientation;
mod output;
mod pipeline;
mod plugins;
mod probe;
mod progress;
mod rate;
mod run;
mod signals;
mod summary;

use std::process::ExitCode;

use exit::Failure;
use options::{Options, Parsed};

const USAGE: &str = "usage: flavr-convert INPUT OUTPUT [options]

Raises the frame rate of the video INPUT with the FLAVR network (flavrinterp) and writes
OUTPUT; the container comes from OUTPUT's extension: .mp4, .mkv, .mov or .webm. Size, pixel
aspect, colorimetry and (in .mp4/.mov) rotation are kept; audio is copied when the container
takes it and encoded again otherwise (AAC for .mp4/.mov, Opus for .mkv/.webm); subtitles are
copied where the container holds them. OUTPUT is written as OUTPUT.part and renamed at the end.

options:
  --factor 2|4|8        multiply the frame rate (default 2)
  --fps N[/D]           reach this rate instead: the factor when it is 2, 4 or 8 times the
                        input's; otherwise the element's framerate (each frame made at the
                        nearest 1/8 of an input interval: at most 1/16 of one off its time)
  --model PATH          a FLAVR checkpoint (.pth or .safetensors; default: the embedded model)
  --backend auto|cuda|cpu   auto: CUDA if a GPU opens, else the CPU (default auto)
  --device N            the GPU (default 0)
  --precision fp16|fp32|bf16   arithmetic on the GPU (default fp16)
  --encoder NAME        a GStreamer video encoder (default: x264enc for .mp4/.mkv/.mov,
                        NVENC (nvh264enc) when the GPU backend runs and it is installed;
                        vp8enc for .webm)
  --quality Q           constant quality, 0 (best) .. 51, on H.264's CRF scale (default 20);
                        libvpx gets it scaled to its 0..63
  -q, --quiet           no progress, no closing line (errors still go to stderr)
  --json                print one JSON summary on stdout at the end
  -h, --help            this text
  -V, --version         the version

Ctrl-C (or SIGTERM) stops cleanly: the file is finished with what was done and plays; a
second Ctrl-C aborts at once and removes it.
";

fn main() -> ExitCode {
    // One line, never a backtrace, even for a bug.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("flavr-convert: internal error: {info} (please report it)");
    }));
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            println!("{USAGE}\n{}", exit::TABLE);
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Version) => {
            println!("flavr-convert {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(f) => return fail(&f),
    };
    if let Err(e) = gst::init() {
        return fail(&Failure::failed(format!(
            "cannot initialise GStreamer: {e}"
        )));
    }
    if let Err(e) = gstflavrinterp::plugin_register_static() {
        return fail(&Failure::failed(format!(
            "cannot register flavrinterp: {e}"
        )));
    }
    match run::run(&opts) {
        Ok((summary, stopped)) => {
            if opts.json {
                println!("{}", summary.json());
            } else if !opts.quiet {
                println!("{}", summary.text());
            }
            match stopped {
                Some(sig) => ExitCode::from(signals::status(sig)),
                None => ExitCode::SUCCESS,
            }
        }
        Err(f) => fail(&f),
    }
}

fn fail(f: &Failure) -> ExitCode {
    eprintln!("flavr-convert: {}", f.line());
    f.exit_code()
}

/// What the modules' tests share.
#[cfg(test)]
#[path = "../shared/test_init.rs"]
pub(crate) mod test_support;
