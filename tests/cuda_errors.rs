//! Errors of the CUDA backend name their cause: an unusable device id (also where there is no
//! driver at all, as in CI), a bad frame layout, a frame size that does not fit in GPU memory
//! (after which the engine still works at a size that fits).

mod cuda_common;

use std::sync::Arc;

use cuda_common::*;
use gstflavrinterp::backend::{BackendError, FrameLayout, PixelFormat, Precision, YuvMatrix};

#[test]
fn unusable_device_id_is_a_clear_error() {
    let model = Arc::new(load_model("flavr2x_w8.safetensors"));
    match gstflavrinterp::cuda::open(model, 999, Precision::Fp16, options()) {
        Ok(_) => panic!("device 999 opened"),
        Err(BackendError::NoDevice(msg)) => {
            eprintln!("{msg}");
            assert!(
                msg.contains("999") || msg.contains("driver"),
                "unclear: {msg}"
            );
        }
        Err(other) => panic!("expected NoDevice, got {other}"),
    }
}

#[test]
fn bad_layout_and_out_of_memory_are_errors() {
    let spec = gstflavrinterp::model::ModelSpec::released(1);
    let model = gstflavrinterp::model::synth::synthetic_model(&spec, 1).expect("synthetic model");
    let Some(mut e) = engine(&model, Precision::Fp16) else {
        return;
    };
    let mut bad = rgb_layout(40, 30);
    bad.size -= 1;
    let err = e.configure(&bad).expect_err("short layout accepted");
    assert!(matches!(BackendError::from(err), BackendError::Layout(_)));
    // 16384 x 16384 needs about 220 GB of activations.
    let huge = FrameLayout::packed(PixelFormat::Rgb, 16384, 16384, YuvMatrix::BT709);
    match e.configure(&huge).map_err(BackendError::from) {
        Err(BackendError::OutOfMemory(msg)) => eprintln!("{msg}"),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    // Still usable.
    e.configure(&rgb_layout(40, 30))
        .expect("configure after OOM");
    for s in 0..4 {
        e.load_frame(s, &vec![100u8 + s as u8; 40 * 30 * 3])
            .expect("load");
    }
    let mut out = vec![0u8; 40 * 30 * 3];
    e.interpolate([0, 1, 2, 3], &mut [&mut out[..]])
        .expect("run after OOM");
    let err = e
        .interpolate([0, 1, 2, 9], &mut [&mut out[..]])
        .expect_err("slot 9 accepted");
    assert!(err.to_string().contains("slot 9"), "{err}");
}
