//! The legacy (pre-1.6) container: the pickled magic number `0x1950a86a20f9469cfc6c`, the
//! protocol version 1001, a `sys_info` dict, the main pickle, a pickled list of storage keys,
//! then for each key in that order a little-endian `u64` element count and the raw bytes.

use std::collections::HashMap;
use std::io::{BufReader, Seek, SeekFrom};

use super::tensors::{all_storages, state_dict};
use super::validate::build;
use super::{context, io, read_at};
use crate::model::LoadError;
use crate::model::checkpoint::pickle::{self, Limits, Obj, Pickle};
use crate::model::checkpoint::{Checkpoint, ReadSeek};

/// `0x1950a86a20f9469cfc6c`, little-endian: the legacy container's magic number.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

/// True when `head` (the first bytes of a file) starts with the legacy container's pickled
/// magic number: `PROTO n`, an optional `FRAME` (protocol 4+), `LONG1` of 10 bytes.
pub fn sniff_legacy(head: &[u8]) -> bool {
    let Some(rest) = head.strip_prefix(&[0x80]) else {
        return false;
    };
    let Some(mut rest) = rest.get(1..) else {
        return false;
    };
    if rest.first() == Some(&0x95) {
        let Some(r) = rest.get(9..) else {
            return false;
        };
        rest = r;
    }
    rest.starts_with(&[0x8a, 0x0a]) && rest[2..].starts_with(&LEGACY_MAGIC)
}

/// Opens a legacy container: reads its pickles and walks its storage headers.
pub fn open_legacy(mut reader: Box<dyn ReadSeek>) -> Result<Box<dyn Checkpoint>, LoadError> {
    let len = reader.seek(SeekFrom::End(0)).map_err(io)?;
    reader.seek(SeekFrom::Start(0)).map_err(io)?;
    let limits = Limits::default();
    let (main, keys, data_start) = {
        let mut input = BufReader::new(&mut reader);
        let mut pos = 0u64;
        let mut next = |what: &str| -> Result<Pickle, LoadError> {
            let p = pickle::load(&mut input, len - pos, limits).map_err(|e| context(e, what))?;
            pos += p.len;
            Ok(p)
        };
        let magic = next("legacy magic number pickle")?;
        match magic.get(magic.root) {
            Some(Obj::BigInt(b)) if **b == LEGACY_MAGIC => {}
            _ => {
                return Err(LoadError::NotACheckpoint(
                    "a pickle without the PyTorch magic number".into(),
                ));
            }
        }
        let version = next("legacy protocol version pickle")?;
        if version.int(version.root) != Some(LEGACY_PROTOCOL) {
            return Err(LoadError::Malformed(format!(
                "legacy protocol version is {}, expected {LEGACY_PROTOCOL}",
                version.describe(version.root)
            )));
        }
        let sys = next("legacy sys_info pickle")?;
        if let Some(le) = sys.dict_get(sys.root, "little_endian")
            && sys.get(le) != Some(&Obj::Bool(true))
        {
            return Err(LoadError::Malformed(
                "the file was written on a big-endian machine; only little-endian is read".into(),
            ));
        }
        let main = next("legacy main pickle")?;
        let keys = next("legacy storage key list pickle")?;
        (main, keys, pos)
    };
    let tensors = state_dict(&main)?;
    let storages = all_storages(&main)?;
    drop(main);
    let key_list = keys.tuple(keys.root).ok_or_else(|| {
        LoadError::Malformed(format!(
            "the storage key list is {}",
            keys.describe(keys.root)
        ))
    })?;
    // Walk the storage headers: u64 element count, then the bytes, in key-list order.
    let mut where_is: HashMap<String, (u64, u64)> = HashMap::with_capacity(key_list.len());
    let mut pos = data_start;
    for (i, &k) in key_list.iter().enumerate() {
        let key = match keys.get(k) {
            Some(Obj::Str(s)) => s.to_string(),
            Some(Obj::Int(v)) => v.to_string(),
            _ => {
                return Err(LoadError::Malformed(format!(
                    "storage key {i} is {}",
                    keys.describe(k)
                )));
            }
        };
        let s = storages.get(&key).ok_or_else(|| {
            LoadError::Malformed(format!("storage `{key}` is listed but never used"))
        })?;
        let elem = s.elem.ok_or_else(|| {
            LoadError::Malformed(format!(
                "storage `{key}` has type {}, whose element size is unknown",
                s.dtype
            ))
        })?;
        let mut n = [0u8; 8];
        read_at(reader.as_mut(), pos, &mut n, &format!("storage `{key}`"))?;
        let count = u64::from_le_bytes(n);
        let bytes = count.checked_mul(elem as u64);
        let end = bytes.and_then(|b| (pos + 8).checked_add(b));
        match end {
            Some(end) if end <= len => {
                where_is.insert(key, (pos + 8, count));
                pos = end;
            }
            _ => {
                return Err(LoadError::Truncated(format!(
                    "storage `{key}` of {count} elements at byte {} runs past the end of the \
                     {len}-byte file",
                    pos + 8
                )));
            }
        }
    }
    drop(keys);
    build("PyTorch legacy", reader, tensors, |s| {
        where_is.get(&s.key).copied().ok_or_else(|| {
            LoadError::Malformed(format!(
                "storage `{}` is not in the file's storage list",
                s.key
            ))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_legacy_heads() {
        // torch.save(..., _use_new_zipfile_serialization=False) with protocols 2 and 5.
        let p2 = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.\x80\x02M\xe9";
        let p5 = b"\x80\x05\x95\r\x00\x00\x00\x00\x00\x00\x00\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.";
        assert!(sniff_legacy(p2));
        assert!(sniff_legacy(p5));
        assert!(!sniff_legacy(b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x18."));
        assert!(!sniff_legacy(b"\x80"));
        assert!(!sniff_legacy(b""));
        assert!(!sniff_legacy(b"\x80\x05\x95\r\x00"));
    }
}
