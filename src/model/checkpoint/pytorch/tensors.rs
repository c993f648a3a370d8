//! What the pickle of a PyTorch file says: the tensors of its state_dict, each a call of
//! `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...)` (through known
//! wrappers), and the storages they view, each a persistent id
//! `('storage', torch.FloatStorage, key, location, numel[, view])`.

use std::collections::HashMap;

use crate::model::LoadError;
use crate::model::checkpoint::DType;
use crate::model::checkpoint::pickle::{Id, Obj, Pickle};

/// Largest number of dimensions of a tensor.
const MAX_RANK: usize = 32;
/// Nesting of wrapper calls (`_rebuild_parameter(_rebuild_tensor_v2(...))`) followed.
const MAX_WRAP: usize = 8;

/// A storage as a persistent id describes it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct StorageRef {
    /// The key of the storage holding the data (for a legacy view: the root storage).
    pub(super) key: String,
    pub(super) dtype: DType,
    /// Bytes per element, when the type is known.
    pub(super) elem: Option<usize>,
    /// Elements of the storage, as the pickle claims.
    pub(super) numel: u64,
    /// A legacy view: its offset (elements) into the root storage and its length.
    pub(super) view: Option<(u64, u64)>,
}

/// A tensor as the pickle describes it.
#[derive(Clone, Debug)]
pub(super) struct TensorRef {
    pub(super) storage: StorageRef,
    pub(super) offset: u64,
    pub(super) shape: Vec<usize>,
    pub(super) stride: Vec<u64>,
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
pub(super) fn state_dict(p: &Pickle) -> Result<Vec<(String, TensorRef)>, LoadError> {
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
pub(super) fn all_storages(p: &Pickle) -> Result<HashMap<String, StorageRef>, LoadError> {
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
