// SPDX-License-Identifier: MIT OR Apache-2.0
//! The command line.

use std::path::PathBuf;

use crate::args::Flags;
use crate::exit::Failure;
use crate::rate::{FACTORS, Rate, Request};

#[derive(Debug)]
pub(crate) struct Options {
    pub(crate) input: PathBuf,
    pub(crate) output: PathBuf,
    pub(crate) rate: Request,
    pub(crate) model: Option<PathBuf>,
    pub(crate) backend: String,
    pub(crate) device: u32,
    pub(crate) precision: String,
    pub(crate) encoder: Option<String>,
    pub(crate) quality: Option<u32>,
    pub(crate) quiet: bool,
    pub(crate) json: bool,
}

/// What the command line asks for: a conversion, or a text to print.
pub(crate) enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> Result<Parsed, Failure> {
        let mut o = Options {
            input: PathBuf::new(),
            output: PathBuf::new(),
            rate: Request::Factor(2),
            model: None,
            backend: "auto".into(),
            device: 0,
            precision: "fp16".into(),
            encoder: None,
            quality: None,
            quiet: false,
            json: false,
        };
        let mut files = Vec::new();
        let (mut factor, mut fps) = (None, None);
        let mut it = Flags::new(args);
        let mut flags_done = false;
        while let Some(a) = it.next() {
            if flags_done || !a.starts_with('-') || a == "-" {
                files.push(PathBuf::from(a));
                continue;
            }
            let mut value = || it.value(a).map_err(Failure::usage);
            match a.as_str() {
                "--" => flags_done = true,
                "-h" | "--help" => return Ok(Parsed::Help),
                "-V" | "--version" => return Ok(Parsed::Version),
                "--factor" => {
                    let v = value()?;
                    match v.parse::<u32>() {
                        Ok(f) if FACTORS.contains(&f) => factor = Some(f),
                        _ => {
                            return Err(Failure::usage(format!(
                                "--factor: `{v}` is not 2, 4 or 8"
                            )));
                        }
                    }
                }
                "--fps" => fps = Some(Rate::parse(&value()?).map_err(Failure::usage)?),
                "--model" => o.model = Some(value()?.into()),
                "--backend" => o.backend = one_of(a, value()?, &["auto", "cuda", "cpu"])?,
                "--device" => {
                    let v = value()?;
                    o.device = v.parse().map_err(|_| {
                        Failure::usage(format!("--device: `{v}` is not a GPU number (0, 1, ...)"))
                    })?;
                }
                "--precision" => o.precision = one_of(a, value()?, &["fp16", "fp32", "bf16"])?,
                "--encoder" => o.encoder = Some(value()?),
                "--quality" => {
                    let v = value()?;
                    match v.parse::<u32>() {
                        Ok(q) if q <= 51 => o.quality = Some(q),
                        _ => {
                            return Err(Failure::usage(format!(
                                "--quality: `{v}` is not a number from 0 (best) to 51"
                            )));
                        }
                    }
                }
                "-q" | "--quiet" => o.quiet = true,
                "--json" => o.json = true,
                other => {
                    return Err(Failure::usage(format!(
                        "unknown option `{other}` (flavr-convert --help lists them)"
                    )));
                }
            }
        }
        o.rate = match (factor, fps) {
            (Some(_), Some(_)) => {
                return Err(Failure::usage("give --factor or --fps, not both"));
            }
            (Some(f), None) => Request::Factor(f),
            (None, Some(r)) => Request::Fps(r),
            (None, None) => Request::Factor(2),
        };
        match <[PathBuf; 2]>::try_from(files) {
            Ok([input, output]) => {
                o.input = input;
                o.output = output;
            }
            Err(files) => {
                return Err(Failure::usage(format!(
                    "expected INPUT and OUTPUT, got {} file name(s) (flavr-convert --help)",
                    files.len()
                )));
            }
        }
        Ok(Parsed::Run(Box::new(o)))
    }
}

fn one_of(opt: &str, v: String, allowed: &[&str]) -> Result<String, Failure> {
    if allowed.contains(&v.as_str()) {
        Ok(v)
    } else {
        Err(Failure::usage(format!(
            "{opt}: `{v}` is not one of {}",
            allowed.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Code;

    fn parse(line: &str) -> Result<Options, Failure> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        match Options::parse(&args)? {
            Parsed::Run(o) => Ok(*o),
            _ => panic!("not a run: {line}"),
        }
    }

    #[test]
    fn defaults_and_flags() {
        let o = parse("in.mp4 out.mkv").unwrap();
        assert_eq!(o.rate, Request::Factor(2));
        assert_eq!(
            (o.backend.as_str(), o.device, o.quiet, o.json),
            ("auto", 0, false, false)
        );
        let o = parse("--factor 4 in.mp4 --backend cpu out.mp4 --json --quality 23").unwrap();
        assert_eq!(o.rate, Request::Factor(4));
        assert_eq!(
            (o.backend.as_str(), o.quality, o.json),
            ("cpu", Some(23), true)
        );
        let o = parse("--fps 60000/1001 -- -in.mp4 out.mp4").unwrap();
        assert_eq!(
            o.rate,
            Request::Fps(Rate {
                num: 60000,
                den: 1001
            })
        );
        assert_eq!(o.input, PathBuf::from("-in.mp4"));
    }

    #[test]
    fn mistakes_are_usage_errors() {
        for line in [
            "in.mp4",
            "a b c",
            "--factor 3 a b",
            "--factor 2 --fps 60 a b",
            "--backend gpu a b",
            "--quality 99 a b",
            "--bogus a b",
            "a b --model",
        ] {
            let e = parse(line).unwrap_err();
            assert_eq!(e.code, Code::Usage, "{line}: {e}");
        }
        let args = vec!["--help".to_string()];
        assert!(matches!(Options::parse(&args), Ok(Parsed::Help)));
    }
}
