//! Property tests: no input makes the checkpoint readers panic, hang or allocate without bound.
//! Random bytes (behind each container's leading bytes, so the sniffing lets them through),
//! and the real fixtures mutated, cut and spliced, for all three containers. Whatever opens is
//! read tensor by tensor and handed to the model loader, which must answer too.

mod common;

use std::sync::LazyLock;

use common::fixture_bytes as fixture;
use gstflavrinterp::model::Flavr;
use gstflavrinterp::model::checkpoint::{self, pickle};
use proptest::prelude::*;

/// (file, the byte range where its structure lies: pickles, directory, header).
struct Sample {
    bytes: Vec<u8>,
    hot: std::ops::Range<usize>,
}

static SAMPLES: LazyLock<Vec<Sample>> = LazyLock::new(|| {
    let mut v = Vec::new();
    let find = |b: &[u8], what: &[u8]| b.windows(what.len()).position(|w| w == what);
    for name in [
        "tiny_mixed.pth",
        "tiny_mixed.p4.pth",
        "tiny_mixed.legacy.pth",
        "tiny_mixed.p5.legacy.pth",
        "tiny_mixed.expect.safetensors",
        "flavr2x_w32.bare.pth",
        "flavr2x_w32_f64.legacy.pth",
        "flavr2x_w32.safetensors",
    ] {
        let bytes = fixture(name);
        let hot = if name.ends_with(".legacy.pth") {
            // The five pickles come first; the storages follow the key list.
            0..bytes.len().min(12_000)
        } else if name.ends_with(".safetensors") {
            let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
            0..8 + n
        } else {
            // Zip: the central directory and end records.
            let cd = find(&bytes, b"PK\x01\x02").unwrap();
            cd..bytes.len()
        };
        v.push(Sample { bytes, hot });
    }
    v
});

/// Opens, reads every tensor, loads the model: every step may fail, none may panic.
fn exercise(bytes: Vec<u8>) {
    let Ok(mut c) = checkpoint::open_bytes(bytes) else {
        return;
    };
    let names: Vec<String> = c.entries().iter().map(|e| e.name.clone()).collect();
    for n in &names {
        let _ = c.read_f32(n);
    }
    let _ = Flavr::from_checkpoint(c.as_mut());
}

#[derive(Clone, Debug)]
enum Edit {
    /// Sets a byte, at a fraction of the hot range (or of the whole file).
    Set { at: f64, hot: bool, value: u8 },
    /// Adds a small signed delta to a byte (sizes, counts, opcode arguments).
    Bump { at: f64, delta: i8 },
    /// Removes `len` bytes.
    Delete { at: f64, len: usize },
    /// Inserts bytes.
    Insert { at: f64, bytes: Vec<u8> },
    /// Copies a block of the file over another place (repeats structure).
    Splice { from: f64, to: f64, len: usize },
}

fn edit_strategy() -> impl Strategy<Value = Edit> {
    let at = 0.0..1.0f64;
    prop_oneof![
        4 => (at.clone(), prop::bool::weighted(0.9), any::<u8>())
            .prop_map(|(at, hot, value)| Edit::Set { at, hot, value }),
        2 => (at.clone(), any::<i8>()).prop_map(|(at, delta)| Edit::Bump { at, delta }),
        1 => (at.clone(), 1..64usize).prop_map(|(at, len)| Edit::Delete { at, len }),
        1 => (at.clone(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Edit::Insert { at, bytes }),
        1 => (at.clone(), at, 1..256usize).prop_map(|(from, to, len)| Edit::Splice { from, to, len }),
    ]
}

fn apply(s: &Sample, edits: &[Edit], cut: Option<f64>) -> Vec<u8> {
    let mut b = s.bytes.clone();
    let hot = s.hot.start.min(b.len())..s.hot.end.min(b.len());
    let pos = |b: &Vec<u8>, at: f64, hot_only: bool| -> usize {
        let r = if hot_only && hot.end <= b.len() && !hot.is_empty() {
            hot.clone()
        } else {
            0..b.len()
        };
        (r.start + (at * r.len() as f64) as usize).min(b.len().saturating_sub(1))
    };
    for e in edits {
        if b.is_empty() {
            break;
        }
        match e {
            Edit::Set { at, hot, value } => {
                let i = pos(&b, *at, *hot);
                b[i] = *value;
            }
            Edit::Bump { at, delta } => {
                let i = pos(&b, *at, true);
                b[i] = b[i].wrapping_add(*delta as u8);
            }
            Edit::Delete { at, len } => {
                let i = pos(&b, *at, true);
                let end = (i + len).min(b.len());
                b.drain(i..end);
            }
            Edit::Insert { at, bytes } => {
                let i = pos(&b, *at, true);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Splice { from, to, len } => {
                let (f, t) = (pos(&b, *from, true), pos(&b, *to, true));
                let n = (*len).min(b.len() - f).min(b.len() - t);
                let block = b[f..f + n].to_vec();
                b[t..t + n].copy_from_slice(&block);
            }
        }
    }
    if let Some(c) = cut {
        let n = (c * b.len() as f64) as usize;
        b.truncate(n);
    }
    b
}

/// Leading bytes that pass each container's sniffing.
const HEADS: [&[u8]; 4] = [
    b"PK\x03\x04",
    b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19.",
    b"\x80\x05\x95\r\x00\x00\x00\x00\x00\x00\x00\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.",
    b"\x40\x00\x00\x00\x00\x00\x00\x00{",
];

proptest! {
    #![proptest_config(ProptestConfig {
        // CHECKPOINT_FUZZ_CASES=1000000 for a longer run.
        cases: std::env::var("CHECKPOINT_FUZZ_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(12_000),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_fixtures_never_panic(
        which in 0..8usize,
        edits in prop::collection::vec(edit_strategy(), 1..6),
        cut in prop::option::weighted(0.2, 0.0..1.0f64),
    ) {
        let s = &SAMPLES[which];
        exercise(apply(s, &edits, cut));
    }

    #[test]
    fn random_bytes_never_panic(
        head in 0..5usize,
        body in prop::collection::vec(any::<u8>(), 0..2048),
    ) {
        let mut b = HEADS.get(head).map(|h| h.to_vec()).unwrap_or_default();
        b.extend(body);
        exercise(b);
    }

    /// The pickle machine alone, on PyTorch's pickles mutated (the zip container's CRC would
    /// stop most of these before the machine sees them).
    #[test]
    fn mutated_pickles_never_panic(
        proto in 0..3usize,
        edits in prop::collection::vec((0.0..1.0f64, any::<u8>()), 1..8),
        cut in 0.0..1.0f64,
    ) {
        static PICKLES: LazyLock<Vec<Vec<u8>>> = LazyLock::new(|| {
            ["tiny_mixed.legacy.pth", "tiny_mixed.p4.legacy.pth", "tiny_mixed.p5.legacy.pth"]
                .iter()
                .map(|n| {
                    let b = fixture(n);
                    // The main pickle starts after the three small header pickles.
                    let mut r = &b[..];
                    let mut start = 0;
                    for _ in 0..3 {
                        let p = pickle::load(&mut r, (b.len() - start) as u64, Default::default())
                            .unwrap();
                        start += p.len as usize;
                    }
                    b[start..].to_vec()
                })
                .collect()
        });
        let mut b = PICKLES[proto].clone();
        let n = 1 + (cut * 3000.0) as usize;
        for (at, v) in edits {
            let i = ((at * n as f64) as usize).min(b.len() - 1);
            b[i] = v;
        }
        if cut < 0.2 {
            b.truncate((cut * 5.0 * b.len() as f64) as usize);
        }
        let _ = pickle::load_slice(&b, Default::default());
    }
}

/// The unmutated samples open (so the mutations start from files that work).
#[test]
fn samples_open() {
    for s in SAMPLES.iter() {
        assert!(checkpoint::open_bytes(s.bytes.clone()).is_ok());
    }
}
