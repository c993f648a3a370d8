// SPDX-License-Identifier: MIT OR Apache-2.0
//! Seeded xorshift64 for the tests' synthetic pictures and noise. The unit tests use it as
//! `crate::test_rng`; an integration test includes this file with
//! `#[path = "../src/test_rng.rs"] mod test_rng;` (it needs nothing but `core`), and each
//! uses only some of it.
#![allow(dead_code)]

/// xorshift64 from `seed` (spread by the golden ratio, never zero): deterministic noise.
pub fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Values in [0, 1) from [`xorshift`]`(seed)`'s top 53 bits.
pub fn unit(seed: u64) -> impl FnMut() -> f32 {
    let mut next = xorshift(seed);
    move || (next() >> 11) as f32 / (1u64 << 53) as f32
}

/// `n` bytes from [`xorshift`]`(seed)` (bits 24..32 of each value): deterministic noise.
pub fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut next = xorshift(seed);
    (0..n).map(|_| (next() >> 24) as u8).collect()
}
