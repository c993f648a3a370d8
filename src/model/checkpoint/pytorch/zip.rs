//! A small reader of zip archives as `torch.save` writes them (stored entries, zip64): the
//! central directory, each entry's data offset, whole small entries with their CRC. Every
//! size the archive claims is checked against the file before use.

use std::collections::HashMap;

use super::read_at;
use crate::model::LoadError;
use crate::model::checkpoint::ReadSeek;

/// One file of a zip archive, from its central directory record.
#[derive(Clone, Debug)]
pub(super) struct ZipEntry {
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    header: u64,
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes([
        b[at],
        b[at + 1],
        b[at + 2],
        b[at + 3],
        b[at + 4],
        b[at + 5],
        b[at + 6],
        b[at + 7],
    ])
}

/// Largest central directory read.
const MAX_ZIP_DIRECTORY: u64 = 64 << 20;

/// The central directory of a zip archive of `len` bytes, by entry name.
pub(super) fn zip_directory(
    r: &mut dyn ReadSeek,
    len: u64,
) -> Result<HashMap<String, ZipEntry>, LoadError> {
    let bad = |what: &str| LoadError::Malformed(format!("zip: {what}"));
    // End of central directory record: 22 bytes and a comment of up to 64 KiB, at the end.
    let tail_len = len.min(22 + 0xffff);
    let mut tail = vec![0u8; tail_len as usize];
    read_at(r, len - tail_len, &mut tail, "zip end")?;
    let eocd = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
        .ok_or_else(|| {
            LoadError::Truncated(
                "zip: no end-of-central-directory record (the file is cut short)".into(),
            )
        })?;
    let e = &tail[eocd..];
    let eocd_pos = len - tail_len + eocd as u64;
    let (mut count, mut cd_size, mut cd_off) =
        (le16(e, 10) as u64, le32(e, 12) as u64, le32(e, 16) as u64);
    // A zip64 locator just before it points at the zip64 record (PyTorch always writes one).
    if eocd_pos >= 20 {
        let mut loc = [0u8; 20];
        read_at(r, eocd_pos - 20, &mut loc, "zip64 locator")?;
        if loc.starts_with(b"PK\x06\x07") {
            let at = le64(&loc, 8);
            let mut z = [0u8; 56];
            if at.checked_add(56).is_none_or(|end| end > eocd_pos) {
                return Err(bad("zip64 record outside the file"));
            }
            read_at(r, at, &mut z, "zip64 record")?;
            if !z.starts_with(b"PK\x06\x06") {
                return Err(bad("zip64 record has a bad signature"));
            }
            (count, cd_size, cd_off) = (le64(&z, 32), le64(&z, 40), le64(&z, 48));
        }
    }
    if cd_off.checked_add(cd_size).is_none_or(|end| end > len) {
        return Err(LoadError::Truncated(format!(
            "zip: central directory [{cd_off}, +{cd_size}) runs past the end of the {len}-byte file"
        )));
    }
    if cd_size > MAX_ZIP_DIRECTORY {
        return Err(bad(&format!("central directory of {cd_size} bytes")));
    }
    if count.checked_mul(46).is_none_or(|b| b > cd_size) {
        return Err(bad(&format!(
            "{count} entries cannot fit a {cd_size}-byte central directory"
        )));
    }
    let mut cd = vec![0u8; cd_size as usize];
    read_at(r, cd_off, &mut cd, "zip central directory")?;
    let mut out = HashMap::with_capacity(count as usize);
    let mut at = 0usize;
    for _ in 0..count {
        let rec = cd
            .get(at..at + 46)
            .filter(|rec| rec.starts_with(b"PK\x01\x02"))
            .ok_or_else(|| bad("bad central directory record"))?;
        let (nlen, xlen, clen) = (
            le16(rec, 28) as usize,
            le16(rec, 30) as usize,
            le16(rec, 32) as usize,
        );
        let mut entry = ZipEntry {
            flags: le16(rec, 8),
            method: le16(rec, 10),
            crc: le32(rec, 16),
            csize: le32(rec, 20) as u64,
            usize: le32(rec, 24) as u64,
            header: le32(rec, 42) as u64,
        };
        let name = cd
            .get(at + 46..at + 46 + nlen)
            .ok_or_else(|| bad("entry name past the directory"))?;
        let name = String::from_utf8_lossy(name).into_owned();
        let mut extra = cd
            .get(at + 46 + nlen..at + 46 + nlen + xlen)
            .ok_or_else(|| bad("extra field past the directory"))?;
        // Zip64 extended information: the 64-bit values of the fields saturated above.
        while extra.len() >= 4 {
            let (id, size) = (le16(extra, 0), le16(extra, 2) as usize);
            let body = extra
                .get(4..4 + size)
                .ok_or_else(|| bad("extra field overruns"))?;
            if id == 1 {
                let mut b = body;
                for field in [&mut entry.usize, &mut entry.csize, &mut entry.header] {
                    if *field == 0xffff_ffff {
                        if b.len() < 8 {
                            return Err(bad("short zip64 extra field"));
                        }
                        *field = le64(b, 0);
                        b = &b[8..];
                    }
                }
            }
            extra = &extra[4 + size..];
        }
        at += 46 + nlen + xlen + clen;
        if out.insert(name.clone(), entry).is_some() {
            return Err(bad(&format!("entry `{name}` appears twice")));
        }
    }
    Ok(out)
}

/// File offset of an entry's data, from its local header; checks that it is readable.
pub(super) fn zip_data(
    r: &mut dyn ReadSeek,
    len: u64,
    name: &str,
    e: &ZipEntry,
) -> Result<(u64, u64), LoadError> {
    if e.flags & 1 != 0 {
        return Err(LoadError::Malformed(format!(
            "zip entry `{name}` is encrypted"
        )));
    }
    if e.method != 0 {
        let how = match e.method {
            8 => "deflate".to_string(),
            m => format!("method {m}"),
        };
        return Err(LoadError::Malformed(format!(
            "zip entry `{name}` is compressed ({how}); PyTorch stores entries uncompressed, \
             only those are read (load and re-save the file with torch.save)"
        )));
    }
    if e.csize != e.usize {
        return Err(LoadError::Malformed(format!(
            "zip entry `{name}` is stored but its sizes differ"
        )));
    }
    let mut h = [0u8; 30];
    read_at(r, e.header, &mut h, &format!("zip entry `{name}`"))?;
    if !h.starts_with(b"PK\x03\x04") {
        return Err(LoadError::Malformed(format!(
            "zip entry `{name}` has a bad local header"
        )));
    }
    let start = e.header + 30 + le16(&h, 26) as u64 + le16(&h, 28) as u64;
    if start.checked_add(e.usize).is_none_or(|end| end > len) {
        return Err(LoadError::Truncated(format!(
            "zip entry `{name}` of {} bytes at byte {start} runs past the end of the {len}-byte file",
            e.usize
        )));
    }
    Ok((start, e.usize))
}

/// Reads a whole (small) stored entry and checks its CRC.
pub(super) fn zip_read(
    r: &mut dyn ReadSeek,
    len: u64,
    name: &str,
    e: &ZipEntry,
    max: u64,
) -> Result<Vec<u8>, LoadError> {
    let (start, size) = zip_data(r, len, name, e)?;
    if size > max {
        return Err(LoadError::Malformed(format!(
            "zip entry `{name}` is {size} bytes, more than {max}"
        )));
    }
    let mut buf = vec![0u8; size as usize];
    read_at(r, start, &mut buf, &format!("zip entry `{name}`"))?;
    if crc32(&buf) != e.crc {
        return Err(LoadError::Malformed(format!(
            "zip entry `{name}` fails its CRC check (the file is damaged)"
        )));
    }
    Ok(buf)
}

/// CRC-32 (IEEE), as zip uses.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    !data.iter().fold(!0u32, |c, &b| {
        TABLE[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_strings() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }
}
