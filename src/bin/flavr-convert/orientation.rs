// SPDX-License-Identifier: MIT OR Apache-2.0
//! The rotation tag of MP4 and QuickTime files. GStreamer 1.22's `qtmux`/`mp4mux` read the
//! `image-orientation` tag but do not write it, so flavr-convert writes it itself, after
//! muxing: the display matrix of the video track's `tkhd` box, as players (and `qtdemux`)
//! read it. Matroska and WebM files get no rotation (GStreamer's `matroskamux` writes none).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The `tkhd` matrix for `orientation` (`rotate-90`, `rotate-180`, `rotate-270`) of a
/// `width` x `height` picture: `a b 0 c d 0 tx ty 1`, 16.16 fixed point (the last 2.30).
pub(crate) fn matrix(orientation: &str, width: u32, height: u32) -> Option<[u32; 9]> {
    let one = 1i32 << 16;
    let (a, b, c, d, tx, ty) = match orientation {
        "rotate-90" => (0, one, -one, 0, height, 0),
        "rotate-180" => (-one, 0, 0, -one, width, height),
        "rotate-270" => (0, -one, one, 0, 0, width),
        _ => return None,
    };
    Some([
        a as u32,
        b as u32,
        0,
        c as u32,
        d as u32,
        0,
        tx << 16,
        ty << 16,
        1 << 30,
    ])
}

/// A box header at `pos`: (type, header size, total size); `None` past the end.
fn read_header(f: &mut File, pos: u64, end: u64) -> io::Result<Option<([u8; 4], u64, u64)>> {
    if pos + 8 > end {
        return Ok(None);
    }
    f.seek(SeekFrom::Start(pos))?;
    let mut h = [0u8; 8];
    f.read_exact(&mut h)?;
    let size = u64::from(u32::from_be_bytes([h[0], h[1], h[2], h[3]]));
    let kind = [h[4], h[5], h[6], h[7]];
    let (header, size) = match size {
        0 => (8, end - pos),
        1 => {
            let mut l = [0u8; 8];
            f.read_exact(&mut l)?;
            (16, u64::from_be_bytes(l))
        }
        s => (8, s),
    };
    if size < header || pos + size > end {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "bad box size"));
    }
    Ok(Some((kind, header, size)))
}

/// The children of the box whose payload spans `start..end`: (type, payload start, end).
fn children(f: &mut File, start: u64, end: u64) -> io::Result<Vec<([u8; 4], u64, u64)>> {
    let mut out = Vec::new();
    let mut pos = start;
    while let Some((kind, header, size)) = read_header(f, pos, end)? {
        out.push((kind, pos + header, pos + size));
        pos += size;
    }
    Ok(out)
}

/// Writes `matrix` into the `tkhd` of every video track of the MP4/QuickTime file at
/// `path`; the number of tracks written.
pub(crate) fn write_matrix(path: &Path, matrix: [u32; 9]) -> io::Result<usize> {
    let mut f = File::options().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    let mut written = 0;
    for (kind, start, end) in children(&mut f, 0, len)? {
        if &kind != b"moov" {
            continue;
        }
        for (kind, start, end) in children(&mut f, start, end)? {
            if &kind != b"trak" {
                continue;
            }
            let boxes = children(&mut f, start, end)?;
            let Some(&(_, tkhd, tkhd_end)) = boxes.iter().find(|b| &b.0 == b"tkhd") else {
                continue;
            };
            let Some(&(_, mdia, mdia_end)) = boxes.iter().find(|b| &b.0 == b"mdia") else {
                continue;
            };
            let hdlr = children(&mut f, mdia, mdia_end)?
                .into_iter()
                .find(|b| &b.0 == b"hdlr");
            let Some((_, hdlr, _)) = hdlr else { continue };
            // hdlr: version/flags (4), pre_defined (4), handler_type (4).
            let mut handler = [0u8; 4];
            f.seek(SeekFrom::Start(hdlr + 8))?;
            f.read_exact(&mut handler)?;
            if &handler != b"vide" {
                continue;
            }
            // tkhd: version (1), flags (3), times/ids (20, or 32 in version 1), reserved (8),
            // layer, alternate group, volume, reserved (2 each), then the matrix.
            let mut version = [0u8; 1];
            f.seek(SeekFrom::Start(tkhd))?;
            f.read_exact(&mut version)?;
            let at = tkhd + 4 + if version[0] == 1 { 32 } else { 20 } + 16;
            if at + 36 > tkhd_end {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "short tkhd box"));
            }
            let bytes: Vec<u8> = matrix.iter().flat_map(|v| v.to_be_bytes()).collect();
            f.seek(SeekFrom::Start(at))?;
            f.write_all(&bytes)?;
            written += 1;
        }
    }
    f.sync_all()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrices_are_the_ones_players_read() {
        let m = matrix("rotate-90", 320, 240).unwrap();
        assert_eq!(
            m,
            [0, 0x10000, 0, 0xFFFF_0000, 0, 0, 240 << 16, 0, 0x4000_0000]
        );
        let m = matrix("rotate-180", 320, 240).unwrap();
        assert_eq!(
            (m[0], m[4], m[6], m[7]),
            (0xFFFF_0000, 0xFFFF_0000, 320 << 16, 240 << 16)
        );
        assert!(matrix("flip-rotate-0", 1, 1).is_none());
    }
}
