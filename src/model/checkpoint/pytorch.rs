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

use std::collections::HashMap;
use std::io::{BufReader, Seek, SeekFrom};

use super::pickle::{self, Id, Limits, Obj, Pickle};
use super::{Checkpoint, DType, ReadSeek, TensorEntry};
use crate::model::LoadError;
use crate::model::tensor::{Tensor, numel};

/// `0x1950a86a20f9469cfc6c`, little-endian: the legacy container's magic number.
const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;

/// Largest `data.pkl` read (the released FLAVR files' is well under 1 MB).
const MAX_PICKLE: u64 = 256 << 20;
/// Largest number of dimensions of a tensor.
const MAX_RANK: usize = 32;
/// A broadcast view (stride 0) may claim more elements than its storage holds, up to this.
const MAX_EXPANDED: usize = 1 << 24;
/// Nesting of wrapper calls (`_rebuild_parameter(_rebuild_tensor_v2(...))`) followed.
const MAX_WRAP: usize = 8;

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

// ---------------------------------------------------------------------------------------------
// What the pickle says.

/// A storage as a persistent id describes it.
#[derive(Clone, Debug, PartialEq)]
struct StorageRef {
    /// The key of the storage holding the data (for a legacy view: the root storage).
    key: String,
    dtype: DType,
    /// Bytes per element, when the type is known.
    elem: Option<usize>,
    /// Elements of the storage, as the pickle claims.
    numel: u64,
    /// A legacy view: its offset (elements) into the root storage and its length.
    view: Option<(u64, u64)>,
}

/// A tensor as the pickle describes it.
#[derive(Clone, Debug)]
struct TensorRef {
    storage: StorageRef,
    offset: u64,
    shape: Vec<usize>,
    stride: Vec<u64>,
}

/// The element type and size of a storage class (`torch.FloatStorage`, ...).
fn storage_type(module: &str, name: &str) -> (DType, Option<usize>) {
    let known = matches!(module, "torch" | "torch.cuda" | "torch.storage");
    let (dtype, size) = match name {
        "FloatStorage" => (DType::F32, 4),
        "HalfStorage" => (DType::F16, 2),
        "BFloat16Storage" => (DType::BF16, 2),
        "DoubleStorage" => (DType::Other("float64".into()), 8),
        "LongStorage" => (DType::Other("int64".into()), 8),
        "IntStorage" => (DType::Other("int32".into()), 4),
        "ShortStorage" => (DType::Other("int16".into()), 2),
        "CharStorage" => (DType::Other("int8".into()), 1),
        "ByteStorage" => (DType::Other("uint8".into()), 1),
        "BoolStorage" => (DType::Other("bool".into()), 1),
        "ComplexFloatStorage" => (DType::Other("complex64".into()), 8),
        "ComplexDoubleStorage" => (DType::Other("complex128".into()), 16),
        "UntypedStorage" => (DType::Other("untyped storage (bytes)".into()), 1),
        _ => return (DType::Other(format!("{module}.{name}")), None),
    };
    if known {
        (dtype, Some(size))
    } else {
        (DType::Other(format!("{module}.{name}")), None)
    }
}

/// A non-negative integer of the pickle.
fn uint(p: &Pickle, id: Id, what: &str) -> Result<u64, String> {
    p.int(id)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| format!("{what} is {}, not a non-negative integer", p.describe(id)))
}

/// The storage a persistent id names: `('storage', type, key, location, numel[, view])`.
fn storage_ref(p: &Pickle, pid: Id) -> Result<StorageRef, String> {
    let items = p
        .tuple(pid)
        .ok_or_else(|| format!("its storage id is {}", p.describe(pid)))?;
    if items.len() < 5 || p.str(items[0]) != Some("storage") {
        return Err("its storage id is not ('storage', type, key, location, size)".into());
    }
    let (module, name) = p
        .global(items[1])
        .ok_or_else(|| format!("its storage type is {}", p.describe(items[1])))?;
    let (dtype, elem) = storage_type(module, name);
    let key = match p.get(items[2]) {
        Some(Obj::Str(s)) => s.to_string(),
        Some(Obj::Int(v)) => v.to_string(),
        _ => return Err(format!("its storage key is {}", p.describe(items[2]))),
    };
    let numel = uint(p, items[4], "its storage size")?;
    let view = match items.get(5).map(|&v| (v, p.get(v))) {
        None | Some((_, Some(Obj::None))) => None,
        Some((v, _)) => match p.tuple(v) {
            Some(&[_, off, len]) => Some((
                uint(p, off, "its storage view offset")?,
                uint(p, len, "its storage view size")?,
            )),
            _ => return Err(format!("its storage view is {}", p.describe(v))),
        },
    };
    Ok(StorageRef {
        key,
        dtype,
        elem,
        numel,
        view,
    })
}

/// The tensor object `id` describes, following known wrappers.
fn tensor_ref(p: &Pickle, id: Id) -> Result<TensorRef, String> {
    let c = p
        .call(id)
        .ok_or_else(|| format!("it is {}, not a tensor", p.describe(id)))?;
    rebuild(p, c.func, c.args, 0)
}

/// The tensor `func(*args)` makes.
fn rebuild(p: &Pickle, func: Id, args: Id, depth: usize) -> Result<TensorRef, String> {
    if depth > MAX_WRAP {
        return Err("its tensor is wrapped too deeply".into());
    }
    let Some((module, name)) = p.global(func) else {
        return Err(format!("it is made by {}, not a tensor", p.describe(func)));
    };
    let args = p
        .tuple(args)
        .ok_or_else(|| format!("{module}.{name} is called with {}", p.describe(args)))?;
    let arg = |i: usize| -> Result<Id, String> {
        args.get(i)
            .copied()
            .ok_or_else(|| format!("{module}.{name} has too few arguments"))
    };
    match (module, name) {
        ("torch._utils", "_rebuild_tensor" | "_rebuild_tensor_v2") => {
            let storage = match p.get(arg(0)?) {
                Some(Obj::PersId(pid)) => storage_ref(p, *pid)?,
                _ => {
                    return Err(format!(
                        "its storage is {}, not a storage reference",
                        p.describe(arg(0)?)
                    ));
                }
            };
            let offset = uint(p, arg(1)?, "its storage offset")?;
            let ints = |id: Id, what: &str| -> Result<Vec<u64>, String> {
                let t = p
                    .tuple(id)
                    .ok_or_else(|| format!("its {what} is {}", p.describe(id)))?;
                if t.len() > MAX_RANK {
                    return Err(format!("its {what} has {} dimensions", t.len()));
                }
                t.iter().map(|&d| uint(p, d, what)).collect()
            };
            let shape = ints(arg(2)?, "size")?
                .into_iter()
                .map(|d| usize::try_from(d).map_err(|_| format!("its size {d} is too large")))
                .collect::<Result<Vec<usize>, String>>()?;
            let stride = ints(arg(3)?, "stride")?;
            if stride.len() != shape.len() {
                return Err(format!(
                    "its size has {} dimensions and its stride {}",
                    shape.len(),
                    stride.len()
                ));
            }
            Ok(TensorRef {
                storage,
                offset,
                shape,
                stride,
            })
        }
        ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => {
            let data = arg(0)?;
            let c = p
                .call(data)
                .ok_or_else(|| format!("its parameter holds {}", p.describe(data)))?;
            rebuild(p, c.func, c.args, depth + 1)
        }
        // _rebuild_from_type_v2(func, new_type, args, state): tensor subclasses.
        ("torch._tensor", "_rebuild_from_type_v2") | ("torch._utils", "_rebuild_from_type") => {
            rebuild(p, arg(0)?, arg(2)?, depth + 1)
        }
        _ => Err(format!("it is made by {module}.{name}, not a tensor")),
    }
}

/// The `(key, tensor)` pairs of the file's state_dict.
fn state_dict(p: &Pickle) -> Result<Vec<(String, TensorRef)>, LoadError> {
    let root = p.dict_items(p.root).ok_or_else(|| {
        LoadError::Malformed(format!(
            "the PyTorch file holds {}, not a dict with a state_dict",
            p.describe(p.root)
        ))
    })?;
    let wrapped = p.dict_get(p.root, "state_dict");
    let items = match wrapped {
        Some(sd) => p.dict_items(sd).ok_or_else(|| {
            LoadError::Malformed(format!("`state_dict` is {}, not a dict", p.describe(sd)))
        })?,
        None => root,
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, v) in items {
        let key = p.str(k).ok_or_else(|| {
            LoadError::Malformed(format!("a state_dict key is {}", p.describe(k)))
        })?;
        let t = tensor_ref(p, v).map_err(|e| {
            let place = if wrapped.is_some() {
                "state_dict entry"
            } else {
                "entry (of a file without `state_dict`)"
            };
            LoadError::Malformed(format!("{place} `{key}`: {e}"))
        })?;
        out.push((key.to_string(), t));
    }
    Ok(out)
}

/// Every storage any persistent id of the pickle names (the optimizer's too), by key.
fn all_storages(p: &Pickle) -> Result<HashMap<String, StorageRef>, LoadError> {
    let mut out: HashMap<String, StorageRef> = HashMap::new();
    for obj in &p.objs {
        if let Obj::PersId(pid) = obj
            && let Ok(s) = storage_ref(p, *pid)
        {
            match out.get(&s.key) {
                Some(old) if old.dtype != s.dtype || old.numel != s.numel => {
                    return Err(LoadError::Malformed(format!(
                        "storage `{}` is described twice, differently",
                        s.key
                    )));
                }
                Some(_) => {}
                None => {
                    out.insert(s.key.clone(), s);
                }
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The checkpoint.

/// A tensor and where its storage lies in the file.
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
        let data = read_strided(reader, t, name)?;
        Tensor::new(t.entry.shape.clone(), data).ok_or_else(|| {
            LoadError::Malformed(format!("tensor `{name}`: element count does not match"))
        })
    }
}

/// Calls `f` with the storage index of each element of `shape`/`stride` from `base`, in
/// row-major order.
fn for_each_index(
    shape: &[usize],
    stride: &[u64],
    base: u64,
    mut f: impl FnMut(u64) -> Result<(), LoadError>,
) -> Result<(), LoadError> {
    if shape.contains(&0) {
        return Ok(());
    }
    let mut idx = vec![0usize; shape.len()];
    let mut pos = base;
    loop {
        f(pos)?;
        let mut d = shape.len();
        loop {
            if d == 0 {
                return Ok(());
            }
            d -= 1;
            idx[d] += 1;
            pos = pos.wrapping_add(stride[d]);
            if idx[d] < shape[d] {
                break;
            }
            pos = pos.wrapping_sub(stride[d].wrapping_mul(shape[d] as u64));
            idx[d] = 0;
        }
    }
}

/// Whether `stride` is the row-major layout of `shape` (dimensions of size 1 do not count).
fn contiguous(shape: &[usize], stride: &[u64]) -> bool {
    let mut expect = 1u64;
    for (&n, &s) in shape.iter().zip(stride).rev() {
        if n != 1 && s != expect {
            return false;
        }
        expect = expect.saturating_mul(n as u64);
    }
    true
}

/// Reads one tensor's elements (bounds were checked at open).
fn read_strided(r: &mut dyn ReadSeek, t: &Located, name: &str) -> Result<Vec<f32>, LoadError> {
    let dtype = &t.entry.dtype;
    if let DType::Other(d) = dtype {
        return Err(LoadError::DType {
            key: name.to_string(),
            dtype: d.clone(),
        });
    }
    let n = numel(&t.entry.shape)
        .ok_or_else(|| LoadError::Malformed(format!("tensor `{name}`: size overflows")))?;
    if n == 0 {
        return Ok(Vec::new());
    }
    let elem = t.elem as u64;
    let at = |i: u64| t.start + i * elem;
    if contiguous(&t.entry.shape, &t.stride) {
        r.seek(SeekFrom::Start(at(t.offset))).map_err(io)?;
        return super::read_values(r, dtype, n, name);
    }
    // A view: read the span it covers when that is not much more than its elements, else
    // each innermost run on its own.
    let last = t.offset
        + t.entry
            .shape
            .iter()
            .zip(&t.stride)
            .map(|(&s, &st)| (s as u64 - 1) * st)
            .sum::<u64>();
    let span = last - t.offset + 1;
    let mut out = Vec::with_capacity(n);
    if span <= 2 * n as u64 + (1 << 18) {
        r.seek(SeekFrom::Start(at(t.offset))).map_err(io)?;
        let all = super::read_values(r, dtype, span as usize, name)?;
        for_each_index(&t.entry.shape, &t.stride, 0, |i| {
            out.push(all[i as usize]);
            Ok(())
        })?;
    } else {
        let rank = t.entry.shape.len();
        let (outer, run) = if rank > 0 && t.stride[rank - 1] == 1 {
            (rank - 1, t.entry.shape[rank - 1])
        } else {
            (rank, 1)
        };
        for_each_index(&t.entry.shape[..outer], &t.stride[..outer], t.offset, |i| {
            r.seek(SeekFrom::Start(at(i))).map_err(io)?;
            out.extend(super::read_values(r, dtype, run, name)?);
            Ok(())
        })?;
    }
    Ok(out)
}

/// Checks each tensor against its storage and builds the checkpoint. `place(key, numel,
/// elem)` gives the file offset of a storage and the elements it really holds.
fn build(
    format: &'static str,
    reader: Box<dyn ReadSeek>,
    tensors: Vec<(String, TensorRef)>,
    mut place: impl FnMut(&StorageRef) -> Result<(u64, u64), LoadError>,
) -> Result<Box<dyn Checkpoint>, LoadError> {
    let mut located = Vec::with_capacity(tensors.len());
    let mut index = HashMap::with_capacity(tensors.len());
    let mut placed: HashMap<String, (u64, u64)> = HashMap::new();
    for (name, t) in tensors {
        let bad = |what: String| LoadError::Malformed(format!("tensor `{name}`: {what}"));
        let n = numel(&t.shape).ok_or_else(|| bad("its size overflows".into()))?;
        let s = &t.storage;
        // A dtype we do not read keeps its entry (so the error names the key and the dtype)
        // and is never placed nor read.
        let elem = match (&s.dtype, s.elem) {
            (DType::Other(_), _) | (_, None) => 0,
            (_, Some(elem)) => elem,
        };
        let mut start = 0;
        if elem > 0 {
            let (at, stored) = match placed.get(&s.key) {
                Some(&p) => p,
                None => {
                    let p = place(s)?;
                    placed.insert(s.key.clone(), p);
                    p
                }
            };
            if stored < s.numel {
                return Err(bad(format!(
                    "its storage `{}` holds {stored} elements, the index says {}",
                    s.key, s.numel
                )));
            }
            start = at;
            let mut held = s.numel;
            if let Some((off, len)) = s.view {
                if off.checked_add(len).is_none_or(|end| end > held) {
                    return Err(bad(format!(
                        "its storage view [{off}, +{len}) lies outside storage `{}`",
                        s.key
                    )));
                }
                start += off * elem as u64;
                held = len;
            }
            if n == 0 {
                if t.offset > held {
                    return Err(bad("its storage offset lies past its storage".into()));
                }
            } else {
                let last = t
                    .shape
                    .iter()
                    .zip(&t.stride)
                    .try_fold(t.offset, |acc, (&d, &st)| {
                        acc.checked_add((d as u64 - 1).checked_mul(st)?)
                    });
                if last.is_none_or(|l| l >= held) {
                    return Err(bad(format!(
                        "it reads past the end of its storage `{}` ({held} elements)",
                        s.key
                    )));
                }
                if n as u64 > held && n > MAX_EXPANDED {
                    return Err(bad(format!(
                        "a broadcast view of {n} elements over {held} stored ones"
                    )));
                }
            }
        }
        if index.insert(name.clone(), located.len()).is_some() {
            return Err(LoadError::Malformed(format!(
                "tensor `{name}` appears twice"
            )));
        }
        located.push(Located {
            entry: TensorEntry {
                name,
                dtype: s.dtype.clone(),
                shape: t.shape,
            },
            start,
            elem,
            offset: t.offset,
            stride: t.stride,
        });
    }
    let entries = located.iter().map(|t| t.entry.clone()).collect();
    Ok(Box::new(Torch {
        format,
        reader,
        tensors: located,
        index,
        entries,
    }))
}

// ---------------------------------------------------------------------------------------------
// The legacy container.

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

// ---------------------------------------------------------------------------------------------
// The zip container. A small reader of the zip directory, so that every size it claims is
// checked against the file before use.

/// One file of a zip archive, from its central directory record.
#[derive(Clone, Debug)]
struct ZipEntry {
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
fn zip_directory(r: &mut dyn ReadSeek, len: u64) -> Result<HashMap<String, ZipEntry>, LoadError> {
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
fn zip_data(
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
fn zip_read(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_of_known_strings() {
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

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

    #[test]
    fn strided_index_order() {
        // A [2, 3] view with strides (1, 2) from offset 5 (a transposed [3, 2] block).
        let mut got = Vec::new();
        for_each_index(&[2, 3], &[1, 2], 5, |i| {
            got.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [5, 7, 9, 6, 8, 10]);
        let mut got = Vec::new();
        for_each_index(&[], &[], 3, |i| {
            got.push(i);
            Ok(())
        })
        .unwrap();
        assert_eq!(got, [3]);
        assert!(contiguous(&[2, 1, 3], &[3, 99, 1]));
        assert!(!contiguous(&[2, 3], &[1, 2]));
    }

    /// Views read through the span path and through the run-by-run path (sparse strides).
    #[test]
    fn strided_reads() {
        // A storage of 1,000,000 float32 holding i at index i, after 16 bytes of something.
        let n = 1_000_000u64;
        let mut file = vec![7u8; 16];
        file.extend((0..n).flat_map(|i| (i as f32).to_le_bytes()));
        let mut r: Box<dyn ReadSeek> = Box::new(std::io::Cursor::new(file));
        let read = |r: &mut Box<dyn ReadSeek>, offset: u64, shape: &[usize], stride: &[u64]| {
            let t = Located {
                entry: TensorEntry {
                    name: "t".into(),
                    dtype: DType::F32,
                    shape: shape.to_vec(),
                },
                start: 16,
                elem: 4,
                offset,
                stride: stride.to_vec(),
            };
            read_strided(r.as_mut(), &t, "t").unwrap()
        };
        // Direct: element (i, j) is offset + i*s0 + j*s1.
        let want = |offset: u64, shape: &[usize], stride: &[u64]| {
            let mut v = Vec::new();
            for_each_index(shape, stride, offset, |i| {
                v.push(i as f32);
                Ok(())
            })
            .unwrap();
            v
        };
        for (offset, shape, stride) in [
            (5u64, vec![3usize, 4], vec![4u64, 1]),  // contiguous
            (7, vec![4, 3], vec![1, 4]),             // transposed: span path
            (3, vec![4, 3], vec![0, 1]),             // broadcast
            (11, vec![3, 2], vec![400_000, 1]),      // sparse rows: runs of 2
            (2, vec![3], vec![300_001]),             // sparse elements: runs of 1
            (0, vec![2, 2, 2], vec![500_000, 1, 2]), // sparse, inner stride 2
            (999_999, vec![], vec![]),               // scalar at the end
        ] {
            let got = read(&mut r, offset, &shape, &stride);
            assert_eq!(got, want(offset, &shape, &stride), "{shape:?} {stride:?}");
        }
        assert_eq!(
            read(&mut r, 11, &[3, 2], &[400_000, 1]),
            [11.0, 12.0, 400_011.0, 400_012.0, 800_011.0, 800_012.0]
        );
    }
}
