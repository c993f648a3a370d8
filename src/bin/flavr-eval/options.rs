// SPDX-License-Identifier: MIT OR Apache-2.0
//! The command line.

use std::path::PathBuf;

use crate::USAGE;
use crate::args::Flags;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Kind {
    Dup,
    Blend,
    Ours,
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Method {
    pub(crate) label: String,
    pub(crate) kind: Kind,
}

impl Method {
    pub(crate) fn parse(s: &str) -> Result<Method, String> {
        // `LABEL=METHOD`, unless the `=` is inside a file path.
        let (label, spec) = match s.split_once('=') {
            Some((l, m)) if !l.is_empty() && !l.starts_with("file:") => (Some(l), m),
            _ => (None, s),
        };
        let kind = match spec {
            "dup" => Kind::Dup,
            "blend" => Kind::Blend,
            "ours" => Kind::Ours,
            f if f.starts_with("file:") && f.len() > 5 => Kind::File(PathBuf::from(&f[5..])),
            _ => {
                return Err(format!(
                    "unknown method `{spec}` (dup, blend, ours, file:PATH)"
                ));
            }
        };
        Ok(Method {
            label: label.unwrap_or(spec).to_string(),
            kind,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Convert {
    Exact,
    VideoConvert,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Rect {
    pub(crate) x: usize,
    pub(crate) y: usize,
    pub(crate) w: usize,
    pub(crate) h: usize,
}

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) clip: PathBuf,
    pub(crate) methods: Vec<Method>,
    pub(crate) model: Option<PathBuf>,
    pub(crate) backend: String,
    pub(crate) precision: String,
    pub(crate) device_id: u32,
    pub(crate) frames: Option<usize>,
    pub(crate) convert: Convert,
    pub(crate) write_even: Option<PathBuf>,
    pub(crate) per_frame: Option<PathBuf>,
    pub(crate) png: Option<PathBuf>,
    pub(crate) crop_frame: Option<usize>,
    pub(crate) crop: Option<Rect>,
    pub(crate) crop_size: (usize, usize),
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Options, String> {
        let mut clip = None;
        let mut o = Options {
            clip: PathBuf::new(),
            methods: Vec::new(),
            model: None,
            backend: "auto".into(),
            precision: "fp16".into(),
            device_id: 0,
            frames: None,
            convert: Convert::Exact,
            write_even: None,
            per_frame: None,
            png: None,
            crop_frame: None,
            crop: None,
            crop_size: (320, 240),
        };
        let mut it = Flags::new(args);
        while let Some(a) = it.next() {
            let mut value = || it.value(a);
            let numbers = |v: &str, n: usize| -> Result<Vec<usize>, String> {
                let parts: Vec<Option<usize>> =
                    v.split(',').map(|p| p.trim().parse().ok()).collect();
                match parts.iter().copied().collect::<Option<Vec<usize>>>() {
                    Some(p) if p.len() == n => Ok(p),
                    _ => Err(format!("{a}: `{v}` is not {n} comma-separated numbers")),
                }
            };
            match a.as_str() {
                "--clip" => clip = Some(PathBuf::from(value()?)),
                "--method" => o.methods.push(Method::parse(&value()?)?),
                "--model" => o.model = Some(value()?.into()),
                "--backend" => o.backend = one_of(a, value()?, &["auto", "cuda", "cpu"])?,
                "--precision" => o.precision = one_of(a, value()?, &["fp16", "fp32", "bf16"])?,
                "--device-id" => o.device_id = numbers(&value()?, 1)?[0] as u32,
                "--frames" => match numbers(&value()?, 1)?[0] {
                    0 => return Err("--frames must be at least 1".into()),
                    n => o.frames = Some(n),
                },
                "--convert" => {
                    o.convert = match one_of(a, value()?, &["exact", "videoconvert"])?.as_str() {
                        "exact" => Convert::Exact,
                        _ => Convert::VideoConvert,
                    }
                }
                "--write-even" => o.write_even = Some(value()?.into()),
                "--per-frame" => o.per_frame = Some(value()?.into()),
                "--png" => o.png = Some(value()?.into()),
                "--crop-frame" => o.crop_frame = Some(numbers(&value()?, 1)?[0]),
                "--crop" => {
                    let v = numbers(&value()?, 4)?;
                    o.crop = Some(Rect {
                        x: v[0],
                        y: v[1],
                        w: v[2],
                        h: v[3],
                    });
                }
                "--crop-size" => {
                    let v = numbers(&value()?, 2)?;
                    o.crop_size = (v[0], v[1]);
                }
                other => return Err(format!("unknown option `{other}`\n{USAGE}")),
            }
        }
        o.clip = clip.ok_or_else(|| format!("--clip is required\n{USAGE}"))?;
        if o.methods.is_empty() {
            o.methods = vec![Method::parse("dup")?, Method::parse("blend")?];
        }
        if let Some(k) = o.crop_frame
            && k.is_multiple_of(2)
        {
            return Err(format!(
                "--crop-frame {k}: the rebuilt frames are the odd ones"
            ));
        }
        Ok(o)
    }
}

pub(crate) fn one_of(opt: &str, v: String, allowed: &[&str]) -> Result<String, String> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(format!("{opt}: `{v}` is not one of {}", allowed.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_parse_with_labels_and_paths() {
        let m = Method::parse("minterpolate=file:/a=b.mkv").unwrap();
        assert_eq!(m.label, "minterpolate");
        assert_eq!(m.kind, Kind::File("/a=b.mkv".into()));
        let m = Method::parse("file:/x=y.rgb").unwrap();
        assert_eq!(
            (m.label.as_str(), m.kind),
            ("file:/x=y.rgb", Kind::File("/x=y.rgb".into()))
        );
        assert_eq!(Method::parse("ours").unwrap().kind, Kind::Ours);
        assert!(Method::parse("bogus").unwrap_err().contains("bogus"));
        assert!(Method::parse("file:").is_err());
    }
}
