//! safetensors: `u64` little-endian header length, a JSON header
//! `{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__": {...}}`,
//! then the data. Only the header is read when opening.

use std::io::{Read, Seek, SeekFrom};

use super::{Checkpoint, DType, ReadSeek, TensorEntry};
use crate::model::LoadError;
use crate::model::tensor::{Tensor, numel};

/// Largest header accepted (the format's own limit is 100 MB).
const MAX_HEADER: u64 = 100 << 20;

struct Located {
    entry: TensorEntry,
    /// Absolute byte offset of the data in the file (its size was checked when opening).
    begin: u64,
}

pub struct SafeTensors {
    reader: Box<dyn ReadSeek>,
    tensors: Vec<Located>,
    entries: Vec<TensorEntry>,
}

/// True when `head` (the file's first bytes) looks like safetensors.
pub fn sniff(head: &[u8]) -> bool {
    match head.first_chunk::<8>() {
        Some(n) => head.get(8) == Some(&b'{') && u64::from_le_bytes(*n) >= 2,
        None => false,
    }
}

pub fn open(mut reader: Box<dyn ReadSeek>) -> Result<Box<dyn Checkpoint>, LoadError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut n = [0u8; 8];
    reader
        .read_exact(&mut n)
        .map_err(|_| LoadError::Truncated("safetensors header length".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER {
        return Err(LoadError::Malformed(format!(
            "safetensors header of {n} bytes"
        )));
    }
    if 8 + n > len {
        return Err(LoadError::Truncated(format!(
            "safetensors header of {n} bytes in a {len}-byte file"
        )));
    }
    let mut header = vec![0u8; n as usize];
    reader.read_exact(&mut header).map_err(io)?;
    let json: serde_json::Value = serde_json::from_slice(&header)
        .map_err(|e| LoadError::Malformed(format!("safetensors header is not JSON: {e}")))?;
    let obj = json
        .as_object()
        .ok_or_else(|| LoadError::Malformed("safetensors header is not a JSON object".into()))?;
    let data_start = 8 + n;
    let mut tensors = Vec::new();
    for (name, info) in obj {
        if name == "__metadata__" {
            continue;
        }
        let bad = |what: &str| LoadError::Malformed(format!("safetensors entry `{name}`: {what}"));
        let dtype = match info
            .get("dtype")
            .and_then(|d| d.as_str())
            .ok_or_else(|| bad("no dtype"))?
        {
            "F32" => DType::F32,
            "F16" => DType::F16,
            "BF16" => DType::BF16,
            other => DType::Other(other.to_string()),
        };
        let shape = info
            .get("shape")
            .and_then(|s| s.as_array())
            .ok_or_else(|| bad("no shape"))?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| bad("shape is not a list of sizes"))?;
        let offsets = info
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .filter(|a| a.len() == 2)
            .and_then(|a| Some((a[0].as_u64()?, a[1].as_u64()?)))
            .ok_or_else(|| bad("data_offsets is not [begin, end]"))?;
        let (begin, end) = (
            data_start
                .checked_add(offsets.0)
                .ok_or_else(|| bad("offset overflows"))?,
            data_start
                .checked_add(offsets.1)
                .ok_or_else(|| bad("offset overflows"))?,
        );
        if begin > end {
            return Err(bad("data_offsets decrease"));
        }
        if end > len {
            return Err(LoadError::Truncated(format!(
                "tensor `{name}` ends at byte {end} of a {len}-byte file"
            )));
        }
        if let Some(size) = dtype.size() {
            let bytes = numel(&shape).and_then(|n| n.checked_mul(size));
            if bytes != Some((end - begin) as usize) {
                return Err(bad("data size does not match its shape and dtype"));
            }
        }
        tensors.push(Located {
            entry: TensorEntry {
                name: name.clone(),
                dtype,
                shape,
            },
            begin,
        });
    }
    let entries = tensors.iter().map(|t| t.entry.clone()).collect();
    Ok(Box::new(SafeTensors {
        reader,
        tensors,
        entries,
    }))
}

fn io(e: std::io::Error) -> LoadError {
    LoadError::Io(e.to_string())
}

impl Checkpoint for SafeTensors {
    fn format(&self) -> &'static str {
        "safetensors"
    }

    fn entries(&self) -> &[TensorEntry] {
        &self.entries
    }

    fn read_f32(&mut self, name: &str) -> Result<Tensor, LoadError> {
        let t = self
            .tensors
            .iter()
            .find(|t| t.entry.name == name)
            .ok_or_else(|| LoadError::MissingKey(name.to_string()))?;
        let count = numel(&t.entry.shape)
            .ok_or_else(|| LoadError::Malformed(format!("tensor `{name}`: size overflows")))?;
        self.reader.seek(SeekFrom::Start(t.begin)).map_err(io)?;
        let data = super::read_values(self.reader.as_mut(), &t.entry.dtype, count, name)?;
        Tensor::new(t.entry.shape.clone(), data).ok_or_else(|| {
            LoadError::Malformed(format!("tensor `{name}`: element count does not match"))
        })
    }
}

/// Serialises float32 tensors `(name, shape, data)` as a safetensors file image (`F32`,
/// little-endian, in the given order), with optional `__metadata__` string pairs. The header
/// is padded with spaces to a multiple of 8 bytes, as the reference writer does.
pub fn to_bytes(
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &[(&str, &str)],
) -> std::io::Result<Vec<u8>> {
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidInput, m);
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        let meta = metadata
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        header.insert("__metadata__".into(), serde_json::Value::Object(meta));
    }
    let mut offset = 0usize;
    for (name, shape, data) in tensors {
        if numel(shape) != Some(data.len()) {
            return Err(invalid(format!(
                "tensor `{name}`: {} values for shape {shape:?}",
                data.len()
            )));
        }
        if *name == "__metadata__" || header.contains_key(*name) {
            return Err(invalid(format!(
                "tensor name `{name}` used twice or reserved"
            )));
        }
        let end = offset + 4 * data.len();
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut json = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| invalid(format!("safetensors header: {e}")))?;
    while json.len() % 8 != 0 {
        json.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + json.len() + offset);
    out.extend_from_slice(&(json.len() as u64).to_le_bytes());
    out.extend_from_slice(&json);
    for (_, _, data) in tensors {
        for v in data.iter() {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    Ok(out)
}

/// Writes float32 tensors as a safetensors file (see [`to_bytes`]).
pub fn write(
    path: &std::path::Path,
    tensors: &[(&str, &[usize], &[f32])],
    metadata: &[(&str, &str)],
) -> std::io::Result<()> {
    std::fs::write(path, to_bytes(tensors, metadata)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_files_read_back() {
        let a: Vec<f32> = (0..24).map(|v| v as f32 * 0.5 - 3.0).collect();
        let b = [f32::MIN_POSITIVE, -0.0, 1e30];
        let bytes = to_bytes(
            &[
                ("a", &[2, 3, 4], &a),
                ("b.x", &[3], &b),
                ("empty", &[0, 2], &[]),
            ],
            &[("format", "pt")],
        )
        .unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0);
        assert_eq!(bytes.len(), 8 + n + 4 * 27);
        let mut ck = crate::model::checkpoint::open_bytes(bytes).unwrap();
        assert_eq!(ck.format(), "safetensors");
        let ta = ck.read_f32("a").unwrap();
        assert_eq!((ta.shape, ta.data), (vec![2, 3, 4], a));
        let tb = ck.read_f32("b.x").unwrap();
        assert_eq!(
            tb.data.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.map(f32::to_bits)
        );
        assert_eq!(ck.read_f32("empty").unwrap().shape, vec![0, 2]);
        assert_eq!(ck.entries().len(), 3);
    }

    #[test]
    fn bad_tensors_are_refused() {
        assert!(to_bytes(&[("a", &[2, 2], &[1.0; 3])], &[]).is_err());
        assert!(to_bytes(&[("a", &[1], &[1.0]), ("a", &[1], &[2.0])], &[]).is_err());
        assert!(to_bytes(&[("__metadata__", &[1], &[1.0])], &[]).is_err());
    }
}
