//! Checks each tensor of the pickle against its storage (type, place, size, view bounds,
//! duplicates) before anything is read, and builds the checkpoint of the checked tensors.

use std::collections::HashMap;

use super::tensors::{StorageRef, TensorRef};
use super::{Located, Torch};
use crate::model::LoadError;
use crate::model::checkpoint::{Checkpoint, DType, ReadSeek, TensorEntry};
use crate::model::tensor::numel;

/// A broadcast view (stride 0) may claim more elements than its storage holds, up to this.
const MAX_EXPANDED: usize = 1 << 24;

/// Checks each tensor against its storage and builds the checkpoint. `place(key, numel,
/// elem)` gives the file offset of a storage and the elements it really holds.
pub(super) fn build(
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
