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
    let mut head = [0u8; 16];
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

/// Decodes little-endian `dtype` values to float32; `name` is for the error message.
pub(crate) fn decode(dtype: &DType, bytes: &[u8], name: &str) -> Result<Vec<f32>, LoadError> {
    Ok(match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::Other(d) => {
            return Err(LoadError::DType {
                key: name.to_string(),
                dtype: d.clone(),
            });
        }
    })
}
