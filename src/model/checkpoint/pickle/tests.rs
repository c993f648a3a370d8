//! The pickle reader on pickles Python wrote, and on hostile input.

use super::*;

fn run(bytes: &[u8]) -> Result<Pickle, LoadError> {
    load_slice(bytes, Limits::default())
}

#[test]
fn python_pickles() {
    // pickle.dumps({'a': [1, -2, 3.5, None, True], 'b': (b'xy', 'é')}, protocol=2)
    let p2 = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01]q\x02(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00bq\x03c_codecs\nencode\nq\x04X\x02\x00\x00\x00xyq\x05X\x06\x00\x00\x00latin1q\x06\x86q\x07Rq\x08X\x02\x00\x00\x00\xc3\xa9q\t\x86q\nu.";
    let p = run(p2).unwrap();
    let a = p.dict_get(p.root, "a").unwrap();
    let Some(Obj::List(items)) = p.get(a) else {
        panic!("not a list")
    };
    let vals: Vec<&Obj> = items.iter().map(|&i| p.get(i).unwrap()).collect();
    assert_eq!(
        vals,
        [
            &Obj::Int(1),
            &Obj::Int(-2),
            &Obj::Float(3.5),
            &Obj::None,
            &Obj::Bool(true)
        ]
    );
    let b = p.tuple(p.dict_get(p.root, "b").unwrap()).unwrap();
    assert_eq!(p.str(b[1]), Some("é"));
    assert_eq!(
        p.global(p.call(b[0]).unwrap().func),
        Some(("_codecs", "encode"))
    );
    assert_eq!(p.len, p2.len() as u64);

    // The same with protocol=5 (FRAME, SHORT_BINUNICODE, MEMOIZE, SHORT_BINBYTES).
    let p5 = b"\x80\x05\x95/\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01a\x94]\x94(K\x01J\xfe\xff\xff\xffG@\x0c\x00\x00\x00\x00\x00\x00N\x88e\x8c\x01b\x94C\x02xy\x94\x8c\x02\xc3\xa9\x94\x86\x94u.";
    let p = run(p5).unwrap();
    let b = p.tuple(p.dict_get(p.root, "b").unwrap()).unwrap();
    assert_eq!(p.get(b[0]), Some(&Obj::Bytes(b"xy".to_vec().into())));
    assert_eq!(p.str(b[1]), Some("é"));

    // Protocol 0: pickle.dumps([12345678901, 'x\u20ac', 1.25], protocol=0)
    let p0 = b"(lp0\nL12345678901L\naVx\\u20ac\np1\naF1.25\na.";
    let p = run(p0).unwrap();
    let l = p.tuple(p.root).unwrap();
    assert_eq!(p.int(l[0]), Some(12_345_678_901));
    assert_eq!(p.str(l[1]), Some("x€"));
    assert_eq!(p.get(l[2]), Some(&Obj::Float(1.25)));
}

#[test]
fn big_and_negative_longs() {
    // pickle.dumps(0x1950a86a20f9469cfc6c, 2) and pickle.dumps(-(2**63), 2)
    let p = run(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    assert_eq!(
        p.get(p.root),
        Some(&Obj::BigInt(
            b"l\xfc\x9cF\xf9 j\xa8P\x19".to_vec().into_boxed_slice()
        ))
    );
    let p = run(b"\x80\x02\x8a\x08\x00\x00\x00\x00\x00\x00\x00\x80.").unwrap();
    assert_eq!(p.int(p.root), Some(i64::MIN));
    let p = run(b"\x80\x02\x8a\x01\xff.").unwrap();
    assert_eq!(p.int(p.root), Some(-1));
}

#[test]
fn shared_and_mutated_through_the_memo() {
    // d = {}; l = [d, d]; d['k'] = 1 -> pickle.dumps(l, 2) memoizes d before filling it.
    let b = b"\x80\x02]q\x00(}q\x01X\x01\x00\x00\x00kq\x02K\x01sh\x01e.";
    let p = run(b).unwrap();
    let l = p.tuple(p.root).unwrap();
    assert_eq!(l[0], l[1]);
    assert_eq!(p.dict_get(l[0], "k").and_then(|v| p.int(v)), Some(1));
}

#[test]
fn hostile_input_is_an_error() {
    let cases: &[&[u8]] = &[
        b"",
        b"\x80\x02",
        b"\x80\x02N",
        b".",
        b"\x80\x09N.",
        b"\x80\x02X\xff\xff\xff\xff", // 4 GB string in 7 bytes
        b"\x80\x04\x8d\xff\xff\xff\xff\xff\xff\xff\x7f", // 2^63-byte string
        b"\x80\x02\x8b\xff\xff\xff\x7f", // 2 GB integer
        b"\x80\x02h\x05.",            // memo miss
        b"\x80\x02t.",                // TUPLE without MARK
        b"\x80\x02Ns.",               // SETITEM on None
        b"\x80\x02N(.",               // STOP below a mark
        b"\x80\x02\x97.",             // NEXT_BUFFER
        b"\x80\x02\x82\x01.",         // EXT1
        b"\x80\x02\xff",              // unknown opcode
        b"\x80\x02X\x02\x00\x00\x00\xff\xfe.", // not UTF-8
        b"\x80\x02K\x01K\x02\x93.",   // STACK_GLOBAL on ints
    ];
    for &c in cases {
        assert!(run(c).is_err(), "{c:?} was accepted");
    }
    assert!(matches!(
        run(b"\x80\x02X\xff\xff\xff\xff").unwrap_err(),
        LoadError::Truncated(_)
    ));
}

#[test]
fn limits_hold() {
    // 2 million DUPs of one object: the stack limit stops it.
    let mut b = b"\x80\x02N".to_vec();
    b.extend(std::iter::repeat_n(b'2', 2 << 20));
    b.push(b'.');
    let e = run(&b).unwrap_err();
    assert!(e.to_string().contains("stack deeper"), "{e}");

    let small = Limits {
        max_objects: 10,
        ..Limits::default()
    };
    let mut b = b"\x80\x02(".to_vec();
    b.extend(std::iter::repeat_n(b'N', 20));
    b.extend(b"l.");
    let e = load_slice(&b, small).unwrap_err();
    assert!(e.to_string().contains("objects"), "{e}");

    // Appending a list to itself through the memo cannot grow past max_items.
    let small = Limits {
        max_items: 1000,
        ..Limits::default()
    };
    let mut b = b"\x80\x02]q\x00N".to_vec();
    b.extend(b"a");
    for _ in 0..600 {
        b.extend(b"(h\x00h\x00e"); // l.extend([l, l])
    }
    b.push(b'.');
    assert!(load_slice(&b, Limits::default()).is_ok());
    let e = load_slice(&b, small).unwrap_err();
    assert!(e.to_string().contains("items"), "{e}");
}
