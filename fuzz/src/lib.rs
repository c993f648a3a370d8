// SPDX-License-Identifier: MIT OR Apache-2.0
//! The fuzz targets' entry points: any bytes through one checkpoint reader. Each may fail,
//! none may panic, hang or allocate without bound. Shared by the cargo-fuzz targets
//! (`fuzz_targets/`) and by `tests/fuzz_corpus.rs` (the corpus replayed in the normal test
//! suite, and the stable mutation driver of `tools/fuzz.sh`), which includes this file.

use std::io::Cursor;

use gstflavrinterp::model::Flavr;
use gstflavrinterp::model::checkpoint::{self, Checkpoint, pickle, pytorch, safetensors};

/// A fuzz target's entry point.
pub type Target = fn(&[u8]);

/// The targets by name, as `tools/fuzz.sh` and the corpus folders (`fuzz/corpus/NAME`) name
/// them.
pub const TARGETS: [(&str, Target); 4] = [
    ("pickle", pickle_target),
    ("zip", zip_target),
    ("safetensors", safetensors_target),
    ("open_checkpoint", open_checkpoint_target),
];

/// Reads every tensor of an opened checkpoint.
fn read_all(c: &mut dyn Checkpoint) {
    let names: Vec<String> = c.entries().iter().map(|e| e.name.clone()).collect();
    for n in &names {
        let _ = c.read_f32(n);
    }
}

/// The pickle machine, then the accessors over whatever it built.
pub fn pickle_target(data: &[u8]) {
    if let Ok(p) = pickle::load_slice(data, pickle::Limits::default()) {
        let _ = p.dict_items(p.root);
        let _ = p.describe(p.root);
    }
}

/// A PyTorch zip checkpoint (the zip reader, its pickle, the storages).
pub fn zip_target(data: &[u8]) {
    if let Ok(mut c) = pytorch::open_zip(Box::new(Cursor::new(data.to_vec()))) {
        read_all(c.as_mut());
    }
}

/// A safetensors file (the JSON header, the offsets, the dtypes).
pub fn safetensors_target(data: &[u8]) {
    if let Ok(mut c) = safetensors::open(Box::new(Cursor::new(data.to_vec()))) {
        read_all(c.as_mut());
    }
}

/// Any file as a checkpoint: sniffing, the container, every tensor, and the model loader.
pub fn open_checkpoint_target(data: &[u8]) {
    if let Ok(mut c) = checkpoint::open_bytes(data.to_vec()) {
        read_all(c.as_mut());
        let _ = Flavr::from_checkpoint(c.as_mut());
    }
}
