//! Any bytes as a pickle: the machine may fail, never panic.
#![no_main]

use gstflavrinterp::model::checkpoint::pickle;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = pickle::load_slice(data, pickle::Limits::default()) {
        let _ = p.dict_items(p.root);
        let _ = p.describe(p.root);
    }
});
