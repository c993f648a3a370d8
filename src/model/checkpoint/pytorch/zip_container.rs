//! The zip container (`PK\x03\x04`): `<archive>/data.pkl`, `<archive>/byteorder` (`little`),
//! `<archive>/version`, and each storage's bytes in the stored entry `<archive>/data/<key>`.

use std::collections::HashMap;
use std::io::{Seek, SeekFrom};

use super::tensors::{StorageRef, state_dict};
use super::validate::build;
use super::zip::{zip_data, zip_directory, zip_read};
use super::{context, io};
use crate::model::LoadError;
use crate::model::checkpoint::pickle::{self, Limits};
use crate::model::checkpoint::{Checkpoint, DType, ReadSeek};

/// Largest `data.pkl` read (the released FLAVR files' is well under 1 MB).
const MAX_PICKLE: u64 = 256 << 20;

/// Opens a zip container: reads `data.pkl` and places each storage's entry.
pub fn open_zip(mut reader: Box<dyn ReadSeek>) -> Result<Box<dyn Checkpoint>, LoadError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    let dir = zip_directory(reader.as_mut(), len)?;
    // `<archive>/data.pkl`; the archive folder is named after the file by PyTorch.
    let mut pkls = dir
        .keys()
        .filter_map(|n| n.strip_suffix("/data.pkl"))
        .filter(|prefix| !prefix.contains('/'));
    let prefix = match (pkls.next(), pkls.next()) {
        (Some(p), None) => p.to_string(),
        (None, _) => {
            return Err(LoadError::NotACheckpoint(
                "a zip file without `<archive>/data.pkl` (not a torch.save file)".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(LoadError::Malformed(
                "zip holds more than one `data.pkl`".into(),
            ));
        }
    };
    let entry = |name: &str| dir.get(&format!("{prefix}/{name}"));
    let pkl = entry("data.pkl").ok_or_else(|| LoadError::Malformed("data.pkl vanished".into()))?;
    let bytes = zip_read(reader.as_mut(), len, "data.pkl", pkl, MAX_PICKLE)?;
    if let Some(e) = entry("byteorder") {
        let order = zip_read(reader.as_mut(), len, "byteorder", e, 64)?;
        if order != b"little" {
            return Err(LoadError::Malformed(format!(
                "byte order `{}`; only little-endian files are read",
                String::from_utf8_lossy(&order)
            )));
        }
    }
    let p = pickle::load_slice(&bytes, Limits::default()).map_err(|e| context(e, "data.pkl"))?;
    drop(bytes);
    let tensors = state_dict(&p)?;
    drop(p);
    let r = reader.as_mut();
    let mut place = |s: &StorageRef| -> Result<(u64, u64), LoadError> {
        let name = format!("{prefix}/data/{}", s.key);
        let e = dir.get(&name).ok_or_else(|| {
            LoadError::Malformed(format!("storage `{}` has no zip entry `{name}`", s.key))
        })?;
        let (start, bytes) = zip_data(r, len, &name, e)?;
        let elem = s.elem.unwrap_or(1).max(1) as u64;
        Ok((start, bytes / elem))
    };
    // Place every storage first (`build` needs the reader itself afterwards).
    let mut placed = HashMap::new();
    for (_, t) in &tensors {
        if t.storage.elem.is_some()
            && !matches!(t.storage.dtype, DType::Other(_))
            && !placed.contains_key(&t.storage.key)
        {
            placed.insert(t.storage.key.clone(), place(&t.storage)?);
        }
    }
    build("PyTorch zip", reader, tensors, |s| {
        placed
            .get(&s.key)
            .copied()
            .ok_or_else(|| LoadError::Malformed(format!("storage `{}` was not placed", s.key)))
    })
}
