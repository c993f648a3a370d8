// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fuzz corpus (`fuzz/corpus/TARGET/`) through the fuzz targets' own entry points
//! (`fuzz/src/lib.rs`, included here), in the normal test suite; and the stable fuzzing
//! driver that `tools/fuzz.sh` runs where cargo-fuzz is not installed.
//!
//! The driver (`fuzz_with_mutations`, ignored by default) mutates the corpus with a small PRNG
//! (byte sets and bumps, deletions, insertions, block copies, splices between two files) for
//! `FLAVR_FUZZ_SECONDS` per target (`FLAVR_FUZZ_TARGETS`: a comma list, default all) from seed
//! `FLAVR_FUZZ_SEED`. A panic saves its input to `fuzz/artifacts/TARGET/` and fails the test;
//! an input that takes over 5 s (a hang, not a slow machine) is saved and fails it too.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[path = "../fuzz/src/lib.rs"]
mod targets;
use targets::TARGETS;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/corpus/NAME`, sorted, with their bytes.
fn corpus(name: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = fuzz_dir().join("corpus").join(name);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect()
}

/// Runs `f` on `data`; the panic message when it panics.
fn exec(f: targets::Target, data: &[u8]) -> Result<(), String> {
    catch_unwind(AssertUnwindSafe(|| f(data))).map_err(|p| {
        p.downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panic".into())
    })
}

#[test]
fn corpus_replays_without_panics() {
    for (name, f) in TARGETS {
        let files = corpus(name);
        assert!(
            files.len() >= 2,
            "fuzz/corpus/{name} has {} files",
            files.len()
        );
        for (path, bytes) in &files {
            assert!(
                bytes.len() <= 16 << 10,
                "{}: seeds stay small",
                path.display()
            );
            let t0 = Instant::now();
            if let Err(e) = exec(f, bytes) {
                panic!("{name} on {}: {e}", path.display());
            }
            assert!(t0.elapsed() < Duration::from_secs(2), "{}", path.display());
        }
    }
}

/// The seeds are the formats their targets read: each opens (a corpus of files rejected at
/// the first byte would fuzz nothing but the sniffing), but for those named `rejected_*`,
/// which must be refused with an error.
#[test]
fn corpus_seeds_are_valid_inputs() {
    use gstflavrinterp::model::checkpoint::{self, pickle};
    for (path, bytes) in corpus("pickle") {
        pickle::load_slice(&bytes, pickle::Limits::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
    for name in ["zip", "safetensors", "open_checkpoint"] {
        for (path, bytes) in corpus(name) {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if file.starts_with("rejected_") {
                assert!(checkpoint::open_bytes(bytes).is_err(), "{file} opens");
                continue;
            }
            let c =
                checkpoint::open_bytes(bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let want = match name {
                "zip" => Some("PyTorch zip"),
                "safetensors" => Some("safetensors"),
                _ => None,
            };
            if let Some(w) = want {
                assert_eq!(c.format(), w, "{}", path.display());
            }
            if path.ends_with("width1_model.safetensors") {
                // One whole model (every width 1), so that fuzzing reaches the model loader.
                let mut c = c;
                let m = gstflavrinterp::model::Flavr::from_checkpoint(c.as_mut())
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(m.spec.widths, [1, 1, 1, 1]);
            }
        }
    }
}

/// xorshift64*: enough randomness for mutations, reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that often matter to parsers: boundaries of sizes and counts.
const INTERESTING: [u8; 8] = [0, 1, 0x7f, 0x80, 0xff, b'{', b'"', b'.'];

/// One to eight random edits of `input`; sometimes spliced with `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(8) {
        let len = v.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] = rng.next() as u8;
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let d = rng.below(33) as i16 - 16;
                v[i] = (v[i] as i16 + d) as u8;
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = (1 + rng.below(16)).min(len - i);
                v.drain(i..i + n);
            }
            4 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            5 if len > 1 => {
                // Copy a block of the file over another place (repeats structure).
                let from = rng.below(len);
                let n = (1 + rng.below(64)).min(len - from);
                let block = v[from..from + n].to_vec();
                let to = rng.below(len);
                let end = (to + n).min(len);
                v[to..end].copy_from_slice(&block[..end - to]);
            }
            6 if !other.is_empty() && len > 0 => {
                // Head of this file, tail of another.
                let cut = rng.below(len);
                let from = rng.below(other.len());
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            _ => {}
        }
    }
    v
}

#[test]
#[ignore = "the stable fuzzing driver: tools/fuzz.sh runs it"]
fn fuzz_with_mutations() {
    let seconds: f64 = std::env::var("FLAVR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let only = std::env::var("FLAVR_FUZZ_TARGETS").unwrap_or_default();
    let seed: u64 = std::env::var("FLAVR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f1a7);
    // The panics are caught and reported once, with the input saved; keep the hook quiet.
    std::panic::set_hook(Box::new(|_| {}));
    let mut failures = Vec::new();
    for (name, f) in TARGETS {
        if !only.is_empty() && !only.split(',').any(|t| t == name) {
            continue;
        }
        let seeds = corpus(name);
        let mut rng = Rng(seed ^ name.len() as u64 ^ 0x9e37_79b9_7f4a_7c15);
        let t0 = Instant::now();
        let (mut execs, mut slowest) = (0u64, Duration::ZERO);
        let mut crashes = 0;
        while t0.elapsed().as_secs_f64() < seconds {
            let (_, a) = &seeds[rng.below(seeds.len())];
            let (_, b) = &seeds[rng.below(seeds.len())];
            // Stack mutations now and then, so that edits reach past the first check.
            let mut input = mutate(&mut rng, a, b);
            for _ in 0..rng.below(3) {
                input = mutate(&mut rng, &input, b);
            }
            let t = Instant::now();
            let r = exec(f, &input);
            let took = t.elapsed();
            slowest = slowest.max(took);
            execs += 1;
            let problem = match r {
                Err(e) => Some(format!("panic: {e}")),
                Ok(()) if took > Duration::from_secs(5) => Some(format!("slow: {took:?}")),
                Ok(()) => None,
            };
            if let Some(p) = problem {
                crashes += 1;
                let dir = fuzz_dir().join("artifacts").join(name);
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join(format!("crash-{execs}-{:016x}", fnv(&input)));
                std::fs::write(&file, &input).unwrap();
                failures.push(format!("{name}: {p} ({})", file.display()));
                if crashes >= 5 {
                    break;
                }
            }
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "fuzz {name}: {execs} executions in {secs:.1} s ({:.0}/s), {} seeds, slowest \
             {slowest:?}, {crashes} crashes",
            execs as f64 / secs,
            seeds.len()
        );
    }
    let _ = std::panic::take_hook();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// FNV-1a, to name a saved input.
fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}
