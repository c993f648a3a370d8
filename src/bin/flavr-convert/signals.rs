// SPDX-License-Identifier: MIT OR Apache-2.0
//! Ctrl-C and SIGTERM: the first asks for a clean stop (the bus loop ends the streams and
//! the muxer finishes the file); the second aborts at once.

use std::sync::mpsc::{Receiver, channel};

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::exit::Failure;

/// Starts the signal thread. The receiver gets the first signal's number; on the second,
/// `abort` runs on the signal thread (it should exit the process).
pub(crate) fn install(abort: impl Fn(i32) + Send + 'static) -> Result<Receiver<i32>, Failure> {
    let mut signals = Signals::new([SIGINT, SIGTERM])
        .map_err(|e| Failure::failed(format!("cannot handle SIGINT/SIGTERM: {e}")))?;
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen == 1 {
                    let _ = tx.send(sig);
                } else {
                    abort(sig);
                }
            }
        })
        .map_err(|e| Failure::failed(format!("cannot start the signal thread: {e}")))?;
    Ok(rx)
}

/// The conventional exit status for a process ended by `sig`.
pub(crate) fn status(sig: i32) -> u8 {
    u8::try_from(128 + sig).unwrap_or(130)
}

pub(crate) fn name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "Ctrl-C",
        SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}
