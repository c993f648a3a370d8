//! The planner that packs activation buffers into one arena by liveness: buffers whose
//! lifetimes do not overlap share bytes, so peak memory stays near the largest set of
//! simultaneously live activations. Pure Rust (offsets only; the engine allocates).

/// Alignment of every buffer inside the arena (cuDNN and 16-byte vector kernels), and of every
/// device allocation.
pub const ALIGN: usize = 256;

pub fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// A buffer to place: its size and the first and last step (inclusive) that use it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    pub bytes: usize,
    pub first: usize,
    pub last: usize,
}

/// Offsets of every buffer in one arena, and the arena's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArenaPlan {
    pub offsets: Vec<usize>,
    pub size: usize,
}

/// Places buffers largest first, each at the lowest aligned offset where it overlaps no
/// already placed buffer that is live at the same time.
pub fn plan_arena(bufs: &[Lifetime]) -> ArenaPlan {
    let mut order: Vec<usize> = (0..bufs.len()).collect();
    order.sort_by(|&a, &b| bufs[b].bytes.cmp(&bufs[a].bytes).then(a.cmp(&b)));
    let mut offsets = vec![0usize; bufs.len()];
    let mut placed: Vec<usize> = Vec::with_capacity(bufs.len());
    let mut size = 0usize;
    for &i in &order {
        let b = bufs[i];
        let need = align_up(b.bytes);
        // Byte ranges of placed buffers alive at the same time, by offset.
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| bufs[j].first <= b.last && b.first <= bufs[j].last)
            .map(|&j| (offsets[j], offsets[j] + align_up(bufs[j].bytes)))
            .collect();
        busy.sort_unstable();
        let mut at = 0usize;
        for (start, end) in busy {
            if start >= at + need {
                break;
            }
            at = at.max(end);
        }
        offsets[i] = at;
        size = size.max(at + need);
        placed.push(i);
    }
    ArenaPlan { offsets, size }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check(bufs: &[Lifetime], plan: &ArenaPlan) {
        for (i, a) in bufs.iter().enumerate() {
            assert_eq!(plan.offsets[i] % ALIGN, 0);
            assert!(plan.offsets[i] + a.bytes <= plan.size);
            for (j, b) in bufs.iter().enumerate().skip(i + 1) {
                let live = a.first <= b.last && b.first <= a.last;
                let (oa, ob) = (plan.offsets[i], plan.offsets[j]);
                let apart = oa + a.bytes <= ob || ob + b.bytes <= oa;
                assert!(
                    !live || apart,
                    "buffers {i} and {j} overlap while both live"
                );
            }
        }
    }

    #[test]
    fn dead_buffers_share_memory() {
        let bufs = [
            Lifetime {
                bytes: 1000,
                first: 0,
                last: 1,
            },
            Lifetime {
                bytes: 1000,
                first: 2,
                last: 3,
            },
            Lifetime {
                bytes: 500,
                first: 1,
                last: 2,
            },
        ];
        let plan = plan_arena(&bufs);
        check(&bufs, &plan);
        assert_eq!(plan.offsets[0], plan.offsets[1]);
        assert_eq!(plan.size, align_up(1000) + align_up(500));
    }

    proptest! {
        #[test]
        fn never_overlaps_live_buffers(spec in prop::collection::vec((1usize..5000, 0usize..20, 0usize..6), 1..30)) {
            let bufs: Vec<Lifetime> = spec
                .iter()
                .map(|&(bytes, first, len)| Lifetime { bytes, first, last: first + len })
                .collect();
            let plan = plan_arena(&bufs);
            check(&bufs, &plan);
            let total: usize = bufs.iter().map(|b| align_up(b.bytes)).sum();
            prop_assert!(plan.size <= total);
        }
    }
}
