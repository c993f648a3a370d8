//! The pickle's bytes: a reader with its position and the end of the data, so that every
//! length the pickle claims is checked against what is left before anything is allocated.

use std::io::Read;

use super::malformed;
use crate::model::LoadError;

/// The input with its position and its end.
pub(super) struct Source<'a> {
    pub(super) r: &'a mut dyn Read,
    pub(super) pos: u64,
    pub(super) end: u64,
}

impl Source<'_> {
    pub(super) fn left(&self) -> u64 {
        self.end.saturating_sub(self.pos)
    }

    pub(super) fn truncated(&self, what: &str) -> LoadError {
        LoadError::Truncated(format!(
            "{what} at byte {} runs past the end of the data",
            self.pos
        ))
    }

    pub(super) fn fill(&mut self, buf: &mut [u8], what: &str) -> Result<(), LoadError> {
        if (buf.len() as u64) > self.left() {
            return Err(self.truncated(what));
        }
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(self.truncated(what)),
            Err(e) => Err(LoadError::Io(e.to_string())),
        }
    }

    pub(super) fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], LoadError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what)?;
        Ok(b)
    }

    pub(super) fn u8(&mut self, what: &str) -> Result<u8, LoadError> {
        Ok(self.array::<1>(what)?[0])
    }

    /// `n` bytes; `n` is checked against what is left before allocating, and the buffer grows
    /// with the data actually read.
    pub(super) fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>, LoadError> {
        if n > self.left() {
            return Err(self.truncated(what));
        }
        let mut v = Vec::with_capacity(n.min(1 << 16) as usize);
        let got = (&mut *self.r)
            .take(n)
            .read_to_end(&mut v)
            .map_err(|e| LoadError::Io(e.to_string()))?;
        self.pos += got as u64;
        if (got as u64) < n {
            return Err(self.truncated(what));
        }
        Ok(v)
    }

    /// A line without its `\n` (protocol 0 arguments), at most `max` bytes.
    pub(super) fn line(&mut self, what: &str) -> Result<Vec<u8>, LoadError> {
        const MAX: usize = 1 << 16;
        let mut v = Vec::new();
        loop {
            let b = self.u8(what)?;
            if b == b'\n' {
                return Ok(v);
            }
            if v.len() >= MAX {
                return Err(malformed(format!("{what}: line longer than {MAX} bytes")));
            }
            v.push(b);
        }
    }
}
