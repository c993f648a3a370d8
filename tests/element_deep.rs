// SPDX-License-Identifier: MIT OR Apache-2.0
//! `flavrinterp` on 10-bit Y'CbCr (P010_10LE, I420_10LE, I422_10LE, Y444_10LE) and 16-bit RGB
//! (RGBA64_LE), CPU backend: originals bit-exact, new frames the backend's, colorimetry
//! (BT.2020 with PQ or HLG) passed through, odd sizes refused with a reason, and the error of
//! the new frames against the network run on the unquantised float frames, compared with the
//! same through 8-bit I420.

use std::str::FromStr;

use gst::prelude::*;
use gstflavrinterp::backend::cpu;
use gstflavrinterp::backend::pixels::{from_planar_rgb, to_planar_rgb};
use gstflavrinterp::backend::{FrameLayout, PixelFormat, YuvMatrix};
use gstflavrinterp::model::Flavr;

mod gst_common;
use gst_common::{cpu_harness, fixture, init, layout_of_info, reference_window};

const M2X: &str = "flavr2x_w8.safetensors";

const DEEP: [(&str, PixelFormat); 5] = [
    ("P010_10LE", PixelFormat::P010),
    ("I420_10LE", PixelFormat::I420P10),
    ("I422_10LE", PixelFormat::I422P10),
    ("Y444_10LE", PixelFormat::Y444P10),
    ("RGBA64_LE", PixelFormat::Rgba64),
];

fn harness(caps: &str) -> (gst_check::Harness, gst::Bus) {
    init();
    let el = gst::ElementFactory::make("flavrinterp")
        .property("model-location", fixture(M2X).to_str().unwrap())
        .property("max-in-flight", 0u32)
        .build()
        .unwrap();
    let (mut h, bus) = cpu_harness(&el);
    h.set_src_caps_str(caps);
    (h, bus)
}

/// The element's layout of `info` (GStreamer's strides and offsets), BT.2020 limited range.
fn layout_of(info: &gst_video::VideoInfo, format: PixelFormat) -> FrameLayout {
    let yuv = if format == PixelFormat::Rgba64 {
        YuvMatrix::BT601
    } else {
        YuvMatrix::BT2020
    };
    layout_of_info(info, format, yuv)
}

/// Frame `t` as planar float RGB: smooth moving luma, chroma constant over each 2x2 block
/// (BT.2020), with no value clamped, so that every format holds it up to its quantisation.
fn picture(t: usize, w: usize, h: usize) -> Vec<f32> {
    let (kr, kb) = (0.2627f64, 0.0593f64);
    let kg = 1.0 - kr - kb;
    let mut v = vec![0f32; 3 * w * h];
    for y in 0..h {
        for x in 0..w {
            let xf = x as f64 - 1.5 * t as f64;
            let luma = 0.5
                + 0.15 * (0.21 * xf + 0.13 * y as f64).sin()
                + 0.05 * (0.05 * xf * y as f64).cos();
            let (bx, by) = ((x / 2) as f64 - 0.75 * t as f64, (y / 2) as f64);
            let cb = 0.1 * (0.3 * bx + 0.2 * by).sin();
            let cr = 0.1 * (0.25 * bx - 0.35 * by + 1.0).cos();
            let r = luma + 2.0 * (1.0 - kr) * cr;
            let b = luma + 2.0 * (1.0 - kb) * cb;
            let g = (luma - kr * r - kb * b) / kg;
            for (c, val) in [r, g, b].into_iter().enumerate() {
                v[c * w * h + y * w + x] = val as f32;
            }
        }
    }
    v
}

fn encode(l: &FrameLayout, rgb: &[f32]) -> Vec<u8> {
    let mut f = vec![0u8; l.size];
    from_planar_rgb(l, rgb, &mut f).unwrap();
    f
}

fn bytes(b: &gst::Buffer) -> Vec<u8> {
    b.map_readable().unwrap().as_slice().to_vec()
}

#[test]
fn deep_formats_keep_originals_and_colorimetry() {
    init();
    let (w, h) = (38, 22);
    for (name, format) in DEEP {
        for colorimetry in ["bt2100-pq", "bt2100-hlg"] {
            let caps = format!(
                "video/x-raw,format={name},width={w},height={h},framerate=30/1,\
                 colorimetry={colorimetry}"
            );
            let info =
                gst_video::VideoInfo::from_caps(&gst::Caps::from_str(&caps).unwrap()).unwrap();
            let l = layout_of(&info, format);
            let frames: Vec<Vec<u8>> = (0..3).map(|t| encode(&l, &picture(t, w, h))).collect();
            let (mut hn, bus) = harness(&caps);
            for (i, f) in frames.iter().enumerate() {
                let mut b = gst::Buffer::from_mut_slice(f.clone());
                let d = 1_000_000_000u64 / 30;
                b.get_mut()
                    .unwrap()
                    .set_pts(gst::ClockTime::from_nseconds(i as u64 * d));
                hn.push(b).unwrap();
            }
            assert!(hn.push_event(gst::event::Eos::new()));
            let mut out = Vec::new();
            while let Some(b) = hn.try_pull() {
                out.push(b);
            }
            assert!(
                bus.pop_filtered(&[gst::MessageType::Error]).is_none(),
                "{name}: error"
            );
            // 3 frames: 2 new frames between, a copy of the last after it.
            assert_eq!(out.len(), 6, "{name}");
            for (i, f) in frames.iter().enumerate() {
                assert_eq!(&bytes(&out[2 * i]), f, "{name}: original {i} changed");
            }
            // The new frames are the CPU backend's on the same layout.
            let want = reference_window(M2X, &l, [&frames[0], &frames[0], &frames[1], &frames[2]]);
            assert_eq!(bytes(&out[1]), want[0], "{name}: first new frame");
            // Same format and colorimetry out.
            // The harness's sink pad receives the element's output.
            let src = hn.sinkpad().unwrap().current_caps().unwrap();
            let s = src.structure(0).unwrap();
            assert_eq!(s.get::<&str>("format").unwrap(), name);
            let got = gst_video::VideoInfo::from_caps(&src).unwrap();
            assert_eq!(
                got.colorimetry(),
                info.colorimetry(),
                "{name} {colorimetry}"
            );
            assert_eq!(s.get::<&str>("colorimetry").unwrap(), colorimetry, "{name}");
        }
    }
}

#[test]
fn odd_sizes_of_subsampled_ten_bit_formats_fail_with_a_reason() {
    init();
    for (name, w, h) in [
        ("P010_10LE", 37, 22),
        ("P010_10LE", 38, 21),
        ("I420_10LE", 33, 25),
        ("I422_10LE", 31, 20),
    ] {
        let caps = format!("video/x-raw,format={name},width={w},height={h},framerate=30/1");
        let (mut hn, bus) = harness(&caps);
        let r = hn.push(gst::Buffer::with_size(w * h * 4).unwrap());
        assert_eq!(r, Err(gst::FlowError::NotNegotiated), "{caps}");
        let m = bus
            .pop_filtered(&[gst::MessageType::Warning])
            .unwrap_or_else(|| panic!("no reason given for {caps}"));
        let gst::MessageView::Warning(e) = m.view() else {
            unreachable!()
        };
        let text = e.error().to_string();
        eprintln!("{caps}: {text}");
        assert!(text.contains("odd size") && text.contains(name), "{text}");
    }
    // The same sizes in formats without subsampled chroma are taken.
    for name in ["Y444_10LE", "RGBA64_LE"] {
        let caps = format!("video/x-raw,format={name},width=37,height=21,framerate=30/1");
        let info = gst_video::VideoInfo::from_caps(&gst::Caps::from_str(&caps).unwrap()).unwrap();
        let (mut hn, bus) = harness(&caps);
        let mut b = gst::Buffer::with_size(info.size()).unwrap();
        b.get_mut().unwrap().set_pts(gst::ClockTime::ZERO);
        hn.push(b).unwrap_or_else(|e| panic!("{name} 37x21: {e:?}"));
        assert!(
            bus.pop_filtered(&[gst::MessageType::Warning]).is_none(),
            "{name}"
        );
    }
}

/// The float reference: the network on the float frames themselves, its output written in the
/// format by the same conversion. The element's path quantises the input frames first; the
/// error it adds is measured in output codes and as a fraction of full scale, for each deep
/// format and for 8-bit I420.
#[test]
fn error_against_the_float_reference() {
    let (w, h) = (32, 24);
    let model = Flavr::load_path(&fixture(M2X)).unwrap();
    let pics: Vec<Vec<f32>> = (0..4).map(|t| picture(t, w, h)).collect();
    let plane = w * h;
    let mut stacked = vec![0f32; 3 * 4 * plane];
    for (t, p) in pics.iter().enumerate() {
        for c in 0..3 {
            stacked[(c * 4 + t) * plane..][..plane].copy_from_slice(&p[c * plane..][..plane]);
        }
    }
    let reference = cpu::forward(&model, &stacked, h, w);
    let mut rms8 = None;
    for (name, format) in [("I420", PixelFormat::I420)].into_iter().chain(DEEP) {
        let l = FrameLayout::packed(format, w, h, YuvMatrix::BT2020);
        let frames: Vec<Vec<u8>> = pics.iter().map(|p| encode(&l, p)).collect();
        let got = &reference_window(M2X, &l, [&frames[0], &frames[1], &frames[2], &frames[3]])[0];
        let want = encode(&l, &reference[..3 * plane]);
        // Compared as decoded floats (the codes differ by depth): the same decoder on both.
        let (mut a, mut b) = (vec![0f32; 3 * plane], vec![0f32; 3 * plane]);
        to_planar_rgb(&l, got, &mut a).unwrap();
        to_planar_rgb(&l, &want, &mut b).unwrap();
        let se: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| f64::from(x - y).powi(2))
            .sum();
        let rms = (se / a.len() as f64).sqrt();
        let worst = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        let full = if format.bits() == 16 {
            65535.0
        } else {
            f64::from((1u32 << format.bits()) - 1)
        };
        eprintln!(
            "{name}: new frame vs float reference: RMS {rms:.2e}, worst {worst:.2e} of full \
             scale (RMS {:.2} codes of {full})",
            rms * full
        );
        match rms8 {
            None => rms8 = Some(rms),
            Some(r8) => assert!(rms < r8 / 2.0, "{name}: {rms} is not well under 8-bit {r8}"),
        }
    }
}
