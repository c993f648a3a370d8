//! Reading a tensor's elements from its storage: contiguous tensors in one read, views with
//! any strides (transposed, broadcast, sparse) through the span they cover or run by run.

use std::io::SeekFrom;

use super::{Located, io};
use crate::model::LoadError;
use crate::model::checkpoint::{DType, ReadSeek, read_values};
use crate::model::tensor::numel;

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
pub(super) fn read_strided(
    r: &mut dyn ReadSeek,
    t: &Located,
    name: &str,
) -> Result<Vec<f32>, LoadError> {
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
        return read_values(r, dtype, n, name);
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
        let all = read_values(r, dtype, span as usize, name)?;
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
            out.extend(read_values(r, dtype, run, name)?);
            Ok(())
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::checkpoint::TensorEntry;

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
