// SPDX-License-Identifier: MIT OR Apache-2.0
//! Windows submitted to the backend and not yet collected, oldest first, with the frames each
//! will make. A backend that pipelines ([`Backend::depth`] above 1) computes them on its own
//! while the network thread goes on (loads the next frame, submits the next window); one that
//! does not computes a window when it is submitted, and collecting it only hands the frames
//! over.

use std::collections::VecDeque;

use super::stream::network;
use crate::backend::Backend;
use crate::error::Error;
use crate::window::Key;

struct Pending {
    /// Model output index and frame name of each frame kept.
    outputs: Vec<(usize, Key)>,
    /// The frames, already made (a backend that does not pipeline).
    made: Option<Vec<(Key, gst::Buffer)>>,
}

#[derive(Default)]
pub(super) struct InFlight {
    windows: VecDeque<Pending>,
    /// Where model outputs that the plan does not keep are written.
    scratch: Vec<u8>,
}

impl InFlight {
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether a window in flight makes frame `key`.
    pub fn makes(&self, key: &Key) -> bool {
        self.windows
            .iter()
            .any(|w| w.outputs.iter().any(|(_, k)| k == key))
    }

    /// Submits the network on `window`, first collecting the oldest window when the backend
    /// holds as many as it can (its frames land in `frames`).
    pub fn submit(
        &mut self,
        backend: &mut dyn Backend,
        size: usize,
        window: [usize; 4],
        outputs: Vec<(usize, Key)>,
        frames: &mut Vec<(Key, gst::Buffer)>,
    ) -> Result<(), Error> {
        let depth = backend.depth();
        if depth <= 1 {
            // Collected in order: nothing older may be left behind this one.
            while !self.windows.is_empty() {
                frames.extend(self.collect(backend, size)?);
            }
            let made = network(backend, size, window, outputs.clone(), &mut self.scratch)?;
            self.windows.push_back(Pending {
                outputs,
                made: Some(made),
            });
            return Ok(());
        }
        while self.windows.len() >= depth {
            frames.extend(self.collect(backend, size)?);
        }
        backend.submit(window)?;
        self.windows.push_back(Pending {
            outputs,
            made: None,
        });
        Ok(())
    }

    /// Whether collecting the oldest window would not wait (true with none in flight).
    pub fn ready(&self, backend: &mut dyn Backend) -> Result<bool, Error> {
        match self.windows.front() {
            None => Ok(true),
            Some(w) if w.made.is_some() => Ok(true),
            Some(_) => Ok(backend.ready()?),
        }
    }

    /// Waits for the oldest window and returns its frames.
    pub fn collect(
        &mut self,
        backend: &mut dyn Backend,
        size: usize,
    ) -> Result<Vec<(Key, gst::Buffer)>, Error> {
        let Some(w) = self.windows.pop_front() else {
            return Ok(Vec::new());
        };
        if let Some(made) = w.made {
            return Ok(made);
        }
        fill(
            backend.n_outputs(),
            size,
            w.outputs,
            &mut self.scratch,
            |slices| backend.collect(slices),
        )
    }

    /// Forgets every window in flight (a flush or a stop): their frames never come out.
    pub fn abandon(&mut self, backend: &mut dyn Backend) {
        if self.windows.iter().any(|w| w.made.is_none()) {
            backend.abandon();
        }
        self.windows.clear();
    }
}

/// New frames for the model outputs named in `outputs` (the others written to `scratch` and
/// dropped), filled by `write` with one buffer per model output.
pub(super) fn fill(
    n: usize,
    size: usize,
    outputs: Vec<(usize, Key)>,
    scratch: &mut Vec<u8>,
    write: impl FnOnce(&mut [&mut [u8]]) -> Result<(), crate::backend::BackendError>,
) -> Result<Vec<(Key, gst::Buffer)>, Error> {
    let mut mapped: Vec<Option<gst::MappedBuffer<gst::buffer::Writable>>> =
        (0..n).map(|_| None).collect();
    for &(idx, _) in &outputs {
        let slot = mapped
            .get_mut(idx)
            .ok_or_else(|| Error::Buffer(format!("model output {idx} of {n} requested")))?;
        // Zeroed, so row padding the backend does not write is not garbage.
        let buf = gst::Buffer::from_mut_slice(vec![0u8; size]);
        *slot = Some(
            buf.into_mapped_buffer_writable()
                .map_err(|_| Error::Buffer("cannot map a new frame for writing".into()))?,
        );
    }
    let unused = mapped.iter().filter(|m| m.is_none()).count();
    scratch.resize(unused * size, 0);
    {
        let mut chunks = scratch.chunks_mut(size.max(1));
        let mut slices: Vec<&mut [u8]> = Vec::with_capacity(n);
        for m in mapped.iter_mut() {
            match m {
                Some(m) => slices.push(m.as_mut_slice()),
                None => slices.push(
                    chunks
                        .next()
                        .ok_or_else(|| Error::Buffer("scratch space too small".into()))?,
                ),
            }
        }
        write(&mut slices)?;
    }
    let mut made = Vec::with_capacity(outputs.len());
    for (idx, key) in outputs {
        if let Some(m) = mapped.get_mut(idx).and_then(Option::take) {
            made.push((key, m.into_buffer()));
        }
    }
    Ok(made)
}
