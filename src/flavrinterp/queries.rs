// SPDX-License-Identifier: MIT OR Apache-2.0
//! Answers to queries that need no element state beyond a number: CONVERT on the source pad,
//! and the buffers the window holds in the ALLOCATION query.

/// Answers a CONVERT query on the source pad (caps `caps`) at the output frame rate.
pub(super) fn convert_out(caps: Option<gst::Caps>, q: &mut gst::query::Convert) -> bool {
    let (src, dest_fmt) = q.get();
    let Some(info) = caps.and_then(|c| gst_video::VideoInfo::from_caps(&c).ok()) else {
        return false;
    };
    match info.convert_generic(src, dest_fmt) {
        Some(dest) => {
            q.set(src, dest);
            true
        }
        None => false,
    }
}

/// Asks upstream's pools for `held` more buffers (the input frames the window holds).
pub(super) fn ask_for_held(query: &mut gst::query::Allocation, held: u32) {
    let (caps, _) = query.get_owned();
    let Some(info) = caps.and_then(|c| gst_video::VideoInfo::from_caps(&c).ok()) else {
        return;
    };
    let pools: Vec<_> = query.allocation_pools().collect();
    if pools.is_empty() {
        query.add_allocation_pool(None::<&gst::BufferPool>, info.size() as u32, held, 0);
    } else {
        for (i, (pool, size, min, max)) in pools.into_iter().enumerate() {
            let min = min + held;
            let max = if max != 0 && max < min { min } else { max };
            query.set_nth_allocation_pool(i as u32, pool.as_ref(), size, min, max);
        }
    }
}
