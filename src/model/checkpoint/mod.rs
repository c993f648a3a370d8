//! Checkpoint containers: what tensors a file holds, and reading one of them as float32.
//!
//! Formats, chosen by sniffing the first bytes:
//! - PyTorch `torch.save` zip container (`PK\x03\x04`), see [`pytorch`];
//! - PyTorch legacy (pre-1.6) pickle container (starts with a pickled magic number), see [`pytorch`];
//! - safetensors (8-byte little-endian header length, then a JSON header), see [`safetensors`].
//!
//! Opening a file reads only its index (the pickle or the JSON header); tensor data is read on
//! demand with [`Checkpoint::read_f32`], so optimizer state in a checkpoint costs no memory.

pub mod pickle;
pub mod pytorch;
pub mod safetensors;

use std::io::{Read, Seek};
use std::path::Path;

use super::LoadError;
use super::tensor::Tensor;

/// Element types a checkpoint may hold. Only `F32`, `F16` and `BF16` can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F16,
    BF16,
    /// Anything else, with the name the file gives it (`F64`, `torch.LongStorage`, ...).
    Other(String),
}

impl DType {
    pub fn size(&self) -> Option<usize> {
        match self {
            DType::F32 => Some(4),
            DType::F16 | DType::BF16 => Some(2),
            DType::Other(_) => None,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DType::F32 => f.write_str("float32"),
            DType::F16 => f.write_str("float16"),
            DType::BF16 => f.write_str("bfloat16"),
            DType::Other(s) => f.write_str(s),
        }
    }
}

/// One tensor of a checkpoint, as its index describes it. `name` is the key as stored
/// (a `module.` prefix is removed by the model, not here).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    pub name: String,
    pub dtype: DType,
    pub shape: Vec<usize>,
}

/// A source of seekable bytes: a file or memory.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// An opened checkpoint: its tensor index, and random access to each tensor's data.
pub trait Checkpoint: Send {
    /// Human-readable container name ("PyTorch zip", "PyTorch legacy", "safetensors").
    fn format(&self) -> &'static str;
    /// The model tensors of the file (for PyTorch files: the `state_dict`).
    fn entries(&self) -> &[TensorEntry];
    /// Reads one tensor, converted to float32. Errors name the key.
    fn read_f32(&mut self, name: &str) -> Result<Tensor, LoadError>;
}

/// Opens a checkpoint file of any supported format.
pub fn open_path(path: &Path) -> Result<Box<dyn Checkpoint>, LoadError> {
    let file =
        std::fs::File::open(path).map_err(|e| LoadError::Io(format!("{}: {e}", path.display())))?;
    open_reader(Box::new(std::io::BufReader::new(file)))
}

/// Opens a checkpoint held in memory (the embedded default model, tests, fuzzing).
pub fn open_bytes(
    bytes: impl AsRef<[u8]> + Send + 'static,
) -> Result<Box<dyn Checkpoint>, LoadError> {
    open_reader(Box::new(std::io::Cursor::new(bytes)))
}

/// Opens a checkpoint from any seekable reader, choosing the format from its first bytes.
pub fn open_reader(mut reader: Box<dyn ReadSeek>) -> Result<Box<dyn Checkpoint>, LoadError> {
    // 32 bytes: a legacy file written with pickle protocol 4 or 5 starts with a FRAME header
    // before its magic number.
    let mut head = [0u8; 32];
    let mut got = 0;
    while got < head.len() {
        match reader.read(&mut head[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LoadError::Io(e.to_string())),
        }
    }
    let head = &head[..got];
    reader
        .seek(std::io::SeekFrom::Start(0))
        .map_err(|e| LoadError::Io(e.to_string()))?;
    if head.starts_with(b"PK\x03\x04") {
        pytorch::open_zip(reader)
    } else if pytorch::sniff_legacy(head) {
        pytorch::open_legacy(reader)
    } else if safetensors::sniff(head) {
        safetensors::open(reader)
    } else if head.is_empty() {
        Err(LoadError::NotACheckpoint("the file is empty".into()))
    } else {
        Err(LoadError::NotACheckpoint(format!(
            "unknown leading bytes {:02x?}",
            &head[..head.len().min(8)]
        )))
    }
}

/// Decodes little-endian `dtype` values to float32 at the end of `out`.
pub(crate) fn decode_append(
    dtype: &DType,
    bytes: &[u8],
    out: &mut Vec<f32>,
    name: &str,
) -> Result<(), LoadError> {
    match dtype {
        DType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        ),
        DType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        DType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        ),
        DType::Other(d) => {
            return Err(LoadError::DType {
                key: name.to_string(),
                dtype: d.clone(),
            });
        }
    }
    Ok(())
}

/// Reads `count` consecutive `dtype` values at the reader's position as float32, through a
/// small buffer (the raw bytes are never held whole). `name` is for error messages.
pub(crate) fn read_values(
    reader: &mut dyn ReadSeek,
    dtype: &DType,
    count: usize,
    name: &str,
) -> Result<Vec<f32>, LoadError> {
    let size = dtype.size().ok_or_else(|| LoadError::DType {
        key: name.to_string(),
        dtype: dtype.to_string(),
    })?;
    let mut out = Vec::with_capacity(count);
    let mut buf = vec![0u8; count.min((64 << 10) / size) * size];
    let mut left = count;
    while left > 0 {
        let n = left.min(buf.len() / size);
        let chunk = &mut buf[..n * size];
        reader.read_exact(chunk).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                LoadError::Truncated(format!("the data of tensor `{name}` is cut short"))
            } else {
                LoadError::Io(e.to_string())
            }
        })?;
        decode_append(dtype, chunk, &mut out, name)?;
        left -= n;
    }
    Ok(out)
}
