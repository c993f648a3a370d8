//! Checkpoint containers against the fixtures PyTorch wrote (tools/reference/make_fixtures.py and
//! make_loader_fixtures.py): the same weights in every container, views and dtypes read as
//! PyTorch reads them, and every kind of bad file reported by an error that names it.

mod common;

use std::collections::BTreeMap;

use common::{fixture as path, fixture_bytes as bytes};
use gstflavrinterp::model::checkpoint::{self, Checkpoint, DType};
use gstflavrinterp::model::{Flavr, LoadError, Tensor};

fn open(name: &str) -> Box<dyn Checkpoint> {
    checkpoint::open_path(&path(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Every tensor of a checkpoint, keyed without `module.`.
fn tensors(c: &mut dyn Checkpoint) -> BTreeMap<String, Tensor> {
    let names: Vec<String> = c.entries().iter().map(|e| e.name.clone()).collect();
    names
        .into_iter()
        .map(|n| {
            let t = c.read_f32(&n).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n.strip_prefix("module.").unwrap_or(&n).to_string(), t)
        })
        .collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data.iter().map(|v| v.to_bits()).collect()
}

fn same(a: &BTreeMap<String, Tensor>, b: &BTreeMap<String, Tensor>, what: &str) {
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "{what}: keys"
    );
    for (k, t) in a {
        assert_eq!(t.shape, b[k].shape, "{what}: shape of {k}");
        assert_eq!(bits(t), bits(&b[k]), "{what}: values of {k}");
    }
}

/// `bytes` with the single occurrence of `from` (at or after `after`) replaced by `to`.
fn edit(bytes: &[u8], after: usize, from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = after
        + bytes[after..]
            .windows(from.len())
            .position(|w| w == from)
            .unwrap_or_else(|| panic!("{from:?} not found"));
    let mut out = bytes[..at].to_vec();
    out.extend_from_slice(to);
    out.extend_from_slice(&bytes[at + from.len()..]);
    out
}

fn find(bytes: &[u8], what: &[u8]) -> usize {
    bytes
        .windows(what.len())
        .position(|w| w == what)
        .unwrap_or_else(|| panic!("{what:?} not found"))
}

fn load(bytes: Vec<u8>) -> Result<Flavr, LoadError> {
    Flavr::load_bytes(bytes)
}

#[test]
fn three_containers_hold_the_same_tensors() {
    for (stem, count) in [("flavr2x_w8", 59), ("flavr4x_w16", 76)] {
        let mut zip = open(&format!("{stem}.pth"));
        let mut legacy = open(&format!("{stem}.legacy.pth"));
        let mut st = open(&format!("{stem}.safetensors"));
        assert_eq!(zip.format(), "PyTorch zip");
        assert_eq!(legacy.format(), "PyTorch legacy");
        assert_eq!(st.format(), "safetensors");
        // Both PyTorch containers list the state_dict, in its order, with `module.`.
        assert_eq!(zip.entries(), legacy.entries(), "{stem}");
        assert_eq!(zip.entries().len(), count);
        assert_eq!(zip.entries()[0].name, "module.encoder.stem.0.weight");
        assert!(zip.entries().iter().all(|e| e.dtype == DType::F32));
        let mut a: Vec<_> = zip
            .entries()
            .iter()
            .map(|e| (e.name["module.".len()..].to_string(), e.shape.clone()))
            .collect();
        let mut b: Vec<_> = st
            .entries()
            .iter()
            .map(|e| (e.name.clone(), e.shape.clone()))
            .collect();
        a.sort();
        b.sort();
        assert_eq!(a, b, "{stem}: zip and safetensors entries");

        let tz = tensors(zip.as_mut());
        same(
            &tz,
            &tensors(legacy.as_mut()),
            &format!("{stem} zip/legacy"),
        );
        same(
            &tz,
            &tensors(st.as_mut()),
            &format!("{stem} zip/safetensors"),
        );
        // Reading twice, in another order, gives the same again.
        let last = &zip.entries()[count - 1].name.clone();
        let again = zip.read_f32(last).unwrap();
        assert_eq!(bits(&again), bits(&tz[&last["module.".len()..]]));
    }
}

#[test]
fn the_model_loads_from_every_container() {
    let cases = [
        ("flavr2x_w8", [8, 16, 32, 64], 1, false),
        ("flavr4x_w16", [4, 8, 16, 32], 3, true),
    ];
    for (stem, widths, n_out, bias) in cases {
        let reference = tensors(open(&format!("{stem}.safetensors")).as_mut());
        for ext in ["pth", "legacy.pth", "safetensors"] {
            let name = format!("{stem}.{ext}");
            let m = Flavr::load_path(&path(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(m.spec.widths, widths, "{name}");
            assert_eq!(m.spec.n_out, n_out, "{name}");
            assert_eq!(m.spec.encoder_bias, bias, "{name}");
            let got: BTreeMap<String, Tensor> = m
                .named_tensors()
                .into_iter()
                .map(|(k, t)| (k, t.clone()))
                .collect();
            same(&got, &reference, &name);
            // The same from memory.
            let m2 = load(bytes(&name)).unwrap();
            assert_eq!(m2.spec, m.spec);
        }
    }
}

#[test]
fn half_precision_safetensors_are_the_weights_rounded() {
    let reference = tensors(open("flavr4x_w16.safetensors").as_mut());
    type Round = fn(f32) -> f32;
    let cases: [(&str, DType, Round); 2] = [
        ("flavr4x_w16.f16.safetensors", DType::F16, |v| {
            half::f16::from_f32(v).to_f32()
        }),
        ("flavr4x_w16.bf16.safetensors", DType::BF16, |v| {
            half::bf16::from_f32(v).to_f32()
        }),
    ];
    for (name, dtype, round) in cases {
        let mut c = open(name);
        assert!(c.entries().iter().all(|e| e.dtype == dtype), "{name}");
        let got = tensors(c.as_mut());
        let want: BTreeMap<String, Tensor> = reference
            .iter()
            .map(|(k, t)| {
                let data = t.data.iter().map(|&v| round(v)).collect();
                (k.clone(), Tensor::new(t.shape.clone(), data).unwrap())
            })
            .collect();
        same(&got, &want, name);
        // Not trivially equal to the float32 weights.
        assert!(got.iter().any(|(k, t)| bits(t) != bits(&reference[k])));
        let m = Flavr::load_path(&path(name)).unwrap();
        assert_eq!(m.spec.n_out, 3);
    }
}

/// tiny_mixed: a bare state_dict of views and dtypes, as PyTorch itself reads them
/// (`tiny_mixed.expect.safetensors`: `t.float().contiguous()`).
#[test]
fn views_and_dtypes_read_as_pytorch_reads_them() {
    let mut expect_ck = open("tiny_mixed.expect.safetensors");
    let expect = tensors(expect_ck.as_mut());
    let order = [
        "a.f32", "b.base", "b.view", "b.t", "b.step", "b.row", "c.f16", "d.bf16", "d.bf16t",
        "e.f64", "f.i64", "g.scalar", "h.empty", "i.expand", "j.param",
    ];
    for name in [
        "tiny_mixed.pth",
        "tiny_mixed.legacy.pth",
        "tiny_mixed.p4.pth",
        "tiny_mixed.p4.legacy.pth",
        "tiny_mixed.p5.pth",
        "tiny_mixed.p5.legacy.pth",
    ] {
        let mut c = open(name);
        let names: Vec<&str> = c.entries().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, order, "{name}");
        for e in c.entries() {
            let dtype = match e.name.as_str() {
                "c.f16" => DType::F16,
                "d.bf16" | "d.bf16t" => DType::BF16,
                "e.f64" => DType::Other("float64".into()),
                "f.i64" => DType::Other("int64".into()),
                _ => DType::F32,
            };
            assert_eq!(e.dtype, dtype, "{name}: {}", e.name);
        }
        assert_eq!(c.entries()[4].shape, [3, 2], "{name}: b.step");
        assert_eq!(c.entries()[11].shape, Vec::<usize>::new(), "{name}: scalar");
        for (key, want) in &expect {
            let got = c
                .read_f32(key)
                .unwrap_or_else(|e| panic!("{name} {key}: {e}"));
            assert_eq!(got.shape, want.shape, "{name}: {key}");
            assert_eq!(bits(&got), bits(want), "{name}: {key}");
        }
        for (key, dtype) in [("e.f64", "float64"), ("f.i64", "int64")] {
            assert_eq!(
                c.read_f32(key).unwrap_err(),
                LoadError::DType {
                    key: key.into(),
                    dtype: dtype.into()
                },
                "{name}"
            );
        }
        assert_eq!(
            c.read_f32("nope").unwrap_err(),
            LoadError::MissingKey("nope".into())
        );
    }
}

/// A bare `model.state_dict()` (no wrapper, no `module.`, with its `_metadata`).
#[test]
fn bare_state_dict_loads() {
    let m = Flavr::load_path(&path("flavr2x_w32.bare.pth")).unwrap();
    assert_eq!(m.spec.widths, [2, 4, 8, 16]);
    let got: BTreeMap<String, Tensor> = m
        .named_tensors()
        .into_iter()
        .map(|(k, t)| (k, t.clone()))
        .collect();
    same(
        &got,
        &tensors(open("flavr2x_w32.safetensors").as_mut()),
        "bare",
    );
}

#[test]
fn key_errors_name_the_key() {
    assert_eq!(
        Flavr::load_path(&path("flavr2x_w32_extra.pth")).unwrap_err(),
        LoadError::UnexpectedKey("extra.weight".into())
    );
    assert_eq!(
        Flavr::load_path(&path("flavr2x_w32_f64.legacy.pth")).unwrap_err(),
        LoadError::DType {
            key: "outconv.1.bias".into(),
            dtype: "float64".into()
        }
    );

    let legacy = bytes("flavr2x_w8.legacy.pth");
    let renamed = edit(
        &legacy,
        0,
        b"module.outconv.1.bias",
        b"module.outconv.1.bia_",
    );
    assert_eq!(
        load(renamed).unwrap_err(),
        LoadError::MissingKey("outconv.1.bias".into())
    );
    let st = bytes("flavr2x_w8.safetensors");
    let renamed = edit(&st, 0, b"\"outconv.1.bias\"", b"\"outconv.1.bia_\"");
    assert_eq!(
        load(renamed).unwrap_err(),
        LoadError::MissingKey("outconv.1.bias".into())
    );

    // The size tuple `(3,)` of outconv.1.bias (BININT1 3, TUPLE1) made `(2,)`.
    let key = find(&legacy, b"module.outconv.1.bias");
    assert_eq!(
        load(edit(&legacy, key, b"K\x03\x85", b"K\x02\x85")).unwrap_err(),
        LoadError::Shape {
            key: "outconv.1.bias".into(),
            expected: "[3]".into(),
            found: "[2]".into()
        }
    );
    // ... and `(4,)`: more than its 3-element storage holds.
    let e = load(edit(&legacy, key, b"K\x03\x85", b"K\x04\x85")).unwrap_err();
    assert!(
        matches!(&e, LoadError::Malformed(m) if m.contains("module.outconv.1.bias") && m.contains("past the end of its storage")),
        "{e}"
    );
}

fn is_truncated(r: Result<Box<dyn Checkpoint>, LoadError>) -> Result<(), String> {
    match r {
        Err(LoadError::Truncated(_)) => Ok(()),
        Err(e) => Err(format!("{e}")),
        Ok(_) => Err("opened".into()),
    }
}

#[test]
fn truncated_files_say_so() {
    for name in [
        "flavr2x_w8.pth",
        "flavr2x_w8.legacy.pth",
        "flavr2x_w8.safetensors",
        "flavr4x_w16.pth",
        "flavr4x_w16.legacy.pth",
        "flavr4x_w16.f16.safetensors",
        "tiny_mixed.p4.legacy.pth",
        "tiny_mixed.p5.pth",
    ] {
        let full = bytes(name);
        let n = full.len();
        for cut in [
            40,
            100,
            500,
            n / 10,
            n / 3,
            n / 2,
            2 * n / 3,
            n - 100,
            n - 9,
            n - 1,
        ] {
            let r = checkpoint::open_bytes(full[..cut].to_vec());
            if let Err(e) = is_truncated(r) {
                panic!("{name} cut to {cut} of {n} bytes: {e}");
            }
        }
    }
}

#[test]
fn other_bad_files_say_what_is_wrong() {
    let not = |b: Vec<u8>| match checkpoint::open_bytes(b) {
        Err(LoadError::NotACheckpoint(_)) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    };
    not(Vec::new());
    not(b"hello, this is not a checkpoint\n".to_vec());
    not(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec());
    // A pickle that is not a torch.save file: pickle.dumps({'a': 1}, 2).
    not(b"\x80\x02}q\x00X\x01\x00\x00\x00aq\x01K\x01s.".to_vec());
    // A zip that is not a torch.save file (its data.pkl renamed everywhere).
    let zip = bytes("tiny_mixed.pth");
    let renamed = edit(
        &edit(&zip, 0, b"tiny_mixed/data.pkl", b"tiny_mixed/data.pkX"),
        0,
        b"tiny_mixed/data.pkl",
        b"tiny_mixed/data.pkX",
    );
    not(renamed);

    let malformed = |b: Vec<u8>, needle: &str| match checkpoint::open_bytes(b) {
        Err(LoadError::Malformed(m)) => assert!(m.contains(needle), "{m}"),
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened"),
    };
    // Compressed entries (PyTorch stores them).
    malformed(
        bytes("tiny_mixed.deflate.pth"),
        "entry `data.pkl` is compressed (deflate)",
    );
    // data.pkl altered in the zip: its CRC no longer matches.
    let pkl = find(&zip, b"a.f32");
    malformed(edit(&zip, pkl, b"a.f32", b"a.f33"), "CRC");
    // Legacy protocol version 1002.
    let legacy = bytes("tiny_mixed.legacy.pth");
    malformed(
        edit(&legacy, 15, b"M\xe9\x03", b"M\xea\x03"),
        "protocol version",
    );
    // An opcode that does not exist, in the legacy main pickle.
    let at = find(&legacy, b"a.f32");
    let mut bad = legacy.clone();
    bad[at - 5] = 0xff;
    malformed(bad, "unknown opcode 0xff");
    // A safetensors header that is not JSON.
    let mut st = bytes("tiny_mixed.expect.safetensors");
    let colon = find(&st, b":");
    st[colon] = b';';
    malformed(st, "not JSON");
}

/// Sizes a file claims are checked against its length before anything is allocated: each of
/// these would ask for exabytes if trusted.
#[test]
fn claimed_sizes_are_checked_before_allocating() {
    // Legacy: the element count before the first storage's data (tensor a.f32's).
    let legacy = bytes("tiny_mixed.legacy.pth");
    let a = tensors(open("tiny_mixed.expect.safetensors").as_mut())["a.f32"].clone();
    let data: Vec<u8> = a.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    let at = find(&legacy, &data);
    assert_eq!(legacy[at - 8..at], 12u64.to_le_bytes());
    let mut bad = legacy.clone();
    bad[at - 8..at].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(matches!(
        checkpoint::open_bytes(bad),
        Err(LoadError::Truncated(m)) if m.contains("1152921504606846976 elements")
    ));

    // safetensors: a header of 2^60 bytes.
    let mut st = bytes("tiny_mixed.expect.safetensors");
    st[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    st[8] = b'{';
    assert!(matches!(
        checkpoint::open_bytes(st),
        Err(LoadError::Malformed(_))
    ));

    // Zip: 2^40 entries in the zip64 end record.
    let zip = bytes("tiny_mixed.pth");
    let z64 = find(&zip, b"PK\x06\x06");
    let mut bad = zip.clone();
    bad[z64 + 32..z64 + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        checkpoint::open_bytes(bad),
        Err(LoadError::Malformed(m)) if m.contains("cannot fit")
    ));
    // ... and a central directory said to start past the end.
    let mut bad = zip.clone();
    bad[z64 + 48..z64 + 56].copy_from_slice(&(1u64 << 62).to_le_bytes());
    assert!(matches!(
        checkpoint::open_bytes(bad),
        Err(LoadError::Truncated(_))
    ));
}
