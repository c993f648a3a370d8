//! Decoding of argument payloads: `LONG1`/`LONG4` integers and the quoted and escaped text
//! arguments of protocol 0.

use super::Obj;

/// A little-endian two's-complement integer of `LONG1`/`LONG4`.
pub(super) fn long(b: Vec<u8>) -> Obj {
    if b.len() <= 8 {
        let fill = if b.last().is_some_and(|&x| x & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut w = [fill; 8];
        w[..b.len()].copy_from_slice(&b);
        Obj::Int(i64::from_le_bytes(w))
    } else {
        Obj::BigInt(b.into_boxed_slice())
    }
}

/// The bytes of a protocol-0 `STRING` argument (a Python `repr` of a byte string).
pub(super) fn unquote(l: &[u8]) -> Option<Vec<u8>> {
    let q = *l.first()?;
    if !(q == b'\'' || q == b'"') || l.len() < 2 || l[l.len() - 1] != q {
        return None;
    }
    let body = &l[1..l.len() - 1];
    let mut out = Vec::with_capacity(body.len());
    let mut i = 0;
    while i < body.len() {
        let c = body[i];
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let e = *body.get(i)?;
        i += 1;
        out.push(match e {
            b'n' => b'\n',
            b't' => b'\t',
            b'r' => b'\r',
            b'0' => 0,
            b'x' => {
                let h = std::str::from_utf8(body.get(i..i + 2)?).ok()?;
                i += 2;
                u8::from_str_radix(h, 16).ok()?
            }
            other => other,
        });
    }
    Some(out)
}

/// Python's `raw-unicode-escape` decoding (protocol-0 `UNICODE`): `\uXXXX`, `\UXXXXXXXX`,
/// every other byte is Latin-1.
pub(super) fn raw_unicode_escape(l: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(l.len());
    let mut i = 0;
    while i < l.len() {
        let c = l[i];
        let digits = match (c, l.get(i + 1)) {
            (b'\\', Some(b'u')) => 4,
            (b'\\', Some(b'U')) => 8,
            _ => 0,
        };
        if digits == 0 {
            out.push(char::from(c));
            i += 1;
            continue;
        }
        let h = std::str::from_utf8(l.get(i + 2..i + 2 + digits)?).ok()?;
        out.push(char::from_u32(u32::from_str_radix(h, 16).ok()?)?);
        i += 2 + digits;
    }
    Some(out)
}
