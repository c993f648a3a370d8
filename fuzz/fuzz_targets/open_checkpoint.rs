//! Any bytes as a checkpoint file: opening, reading every tensor and loading the model may
//! fail, never panic.
#![no_main]

use gstflavrinterp::model::Flavr;
use gstflavrinterp::model::checkpoint;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut c) = checkpoint::open_bytes(data.to_vec()) else {
        return;
    };
    let names: Vec<String> = c.entries().iter().map(|e| e.name.clone()).collect();
    for n in &names {
        let _ = c.read_f32(n);
    }
    let _ = Flavr::from_checkpoint(c.as_mut());
});
