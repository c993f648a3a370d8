// SPDX-License-Identifier: MIT OR Apache-2.0
//! What can go wrong, as one line for the user and a distinct exit status for scripts.

use std::fmt;
use std::process::ExitCode;

/// The exit statuses, one per kind of failure (README: "Exit status").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Code {
    /// A GStreamer or I/O error during the conversion itself.
    Failed = 1,
    /// A bad command line.
    Usage = 2,
    /// INPUT does not exist or cannot be read.
    InputMissing = 3,
    /// INPUT is not a media file, or has no video stream.
    NotVideo = 4,
    /// INPUT's video (or the container) has no decoder installed.
    NoDecoder = 5,
    /// OUTPUT cannot be written (folder missing, no permission, disk full).
    OutputUnwritable = 6,
    /// OUTPUT is INPUT.
    OutputIsInput = 7,
    /// `--backend cuda` and no usable GPU.
    NoGpu = 8,
    /// `--model` is not a usable FLAVR checkpoint.
    BadModel = 9,
    /// An element the output needs (encoder, muxer) is not installed.
    NoEncoder = 10,
    /// Stopped by SIGINT or SIGTERM (the output holds what was done, unless aborted).
    Interrupted = 130,
}

/// A failure: what to print (one line) and the exit status.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: Code,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(code: Code, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(Code::Usage, message)
    }

    pub(crate) fn failed(message: impl Into<String>) -> Failure {
        Failure::new(Code::Failed, message)
    }

    /// The message on one line: GStreamer's debug texts and loader errors may hold newlines.
    pub(crate) fn line(&self) -> String {
        self.message
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.code as u8)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line())
    }
}

/// The exit statuses as the help text lists them.
pub(crate) const TABLE: &str = "exit status:
  0 done; 1 conversion failed; 2 bad command line; 3 INPUT missing or unreadable;
  4 INPUT is not a video; 5 no decoder for INPUT (the message names the package);
  6 OUTPUT not writable; 7 OUTPUT is INPUT; 8 --backend cuda without a usable GPU;
  9 bad --model file; 10 encoder or muxer not installed; 130 stopped by Ctrl-C/SIGTERM";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line() {
        let f = Failure::failed("a\n  b\tc ");
        assert_eq!(f.line(), "a b c");
        assert_eq!(Code::NoEncoder as u8, 10);
    }
}
