//! PyTorch `torch.save` files: the zip container and the legacy (pre-1.6) pickle container.
//!
//! Both hold a pickle (read by [`super::pickle`], never executed) whose tensors are calls of
//! `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)`, the storage
//! being a persistent id `('storage', torch.FloatStorage, key, location, numel[, view])`.
//! The containers differ in where a storage's bytes are:
//! - zip (`PK\x03\x04`): entry `<archive>/data/<key>`, stored uncompressed, next to
//!   `<archive>/data.pkl`, `<archive>/byteorder` (`little`) and `<archive>/version`.
//! - legacy: the pickled magic number `0x1950a86a20f9469cfc6c`, the protocol version 1001, a
//!   `sys_info` dict, the main pickle, a pickled list of storage keys, then for each key in that
//!   order a little-endian `u64` element count and the raw bytes.
//!
//! Opening reads the pickle and the container's directory only; each storage's file offset is
//! computed from the headers (the data is skipped by seeking), so the optimizer state of a
//! checkpoint costs neither time nor memory. The tensors reported are those of the
//! `state_dict` (the file's top-level dict under `'state_dict'`, or the top-level dict itself
//! when it holds tensors only), with their keys as stored.
//!
//! The parts, one concern each:
//! - `tensors.rs`: what the pickle says: the state_dict's tensors and the storages they view;
//! - `validate.rs`: each tensor checked against its storage's place and size in the file;
//! - `strided.rs`: reading a tensor's elements, views with any strides included;
//! - `zip.rs`: a reader of the zip directory that checks every size it claims;
//! - `zip_container.rs` and `legacy.rs`: the two containers.

mod legacy;
mod strided;
mod tensors;
mod validate;
mod zip;
mod zip_container;

use std::collections::HashMap;
use std::io::SeekFrom;

use super::{Checkpoint, ReadSeek, TensorEntry};
use crate::model::LoadError;
use crate::model::tensor::Tensor;

pub use legacy::{open_legacy, sniff_legacy};
pub use zip_container::open_zip;

/// `e` with `what` (which pickle) in front of its message.
fn context(e: LoadError, what: &str) -> LoadError {
    match e {
        LoadError::Truncated(m) => LoadError::Truncated(format!("{what}: {m}")),
        LoadError::Malformed(m) => LoadError::Malformed(format!("{what}: {m}")),
        e => e,
    }
}

fn io(e: std::io::Error) -> LoadError {
    if e.kind() == std::io::ErrorKind::UnexpectedEof {
        LoadError::Truncated(e.to_string())
    } else {
        LoadError::Io(e.to_string())
    }
}

/// Reads exactly `buf.len()` bytes at `pos`; a short read is truncation, named by `what`.
fn read_at(r: &mut dyn ReadSeek, pos: u64, buf: &mut [u8], what: &str) -> Result<(), LoadError> {
    r.seek(SeekFrom::Start(pos)).map_err(io)?;
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            LoadError::Truncated(format!(
                "{what} at byte {pos} runs past the end of the file"
            ))
        } else {
            LoadError::Io(e.to_string())
        }
    })
}

/// A tensor and where its storage lies in the file (checked by `validate.rs`).
#[derive(Clone, Debug)]
struct Located {
    entry: TensorEntry,
    /// File offset of element 0 of the storage (of the view, for a legacy view).
    start: u64,
    /// Bytes per element (0 for a type we cannot read).
    elem: usize,
    offset: u64,
    stride: Vec<u64>,
}

/// An opened PyTorch file: its tensors and where each lies.
pub struct Torch {
    format: &'static str,
    reader: Box<dyn ReadSeek>,
    tensors: Vec<Located>,
    index: HashMap<String, usize>,
    entries: Vec<TensorEntry>,
}

impl Checkpoint for Torch {
    fn format(&self) -> &'static str {
        self.format
    }

    fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    fn read_f32(&mut self, name: &str) -> Result<Tensor, LoadError> {
        let i = *self
            .index
            .get(name)
            .ok_or_else(|| LoadError::MissingKey(name.to_string()))?;
        let t = &self.tensors[i];
        let reader = self.reader.as_mut();
        let data = strided::read_strided(reader, t, name)?;
        Tensor::new(t.entry.shape.clone(), data).ok_or_else(|| {
            LoadError::Malformed(format!("tensor `{name}`: element count does not match"))
        })
    }
}
