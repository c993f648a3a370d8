// SPDX-License-Identifier: MIT OR Apache-2.0
//! Command-line flags and their values, shared by the binaries (each includes this file with
//! `#[path]`; a folder without `main.rs` is not a binary of its own).

/// The arguments of a command line, read as `--flag [value]` pairs.
pub(crate) struct Flags<'a> {
    it: std::slice::Iter<'a, String>,
}

impl<'a> Flags<'a> {
    pub(crate) fn new(args: &'a [String]) -> Flags<'a> {
        Flags { it: args.iter() }
    }

    /// The value that follows `flag`; an error naming `flag` when the line ends there.
    pub(crate) fn value(&mut self, flag: &str) -> Result<String, String> {
        self.it
            .next()
            .cloned()
            .ok_or_else(|| format!("{flag} needs a value"))
    }
}

/// `v`, the value of `flag`, as a positive whole number; an error naming both otherwise.
#[allow(dead_code)] // flavr-cli's commands; the other binaries read their numbers their own way.
pub(crate) fn positive(flag: &str, v: String) -> Result<usize, String> {
    v.parse::<usize>()
        .ok()
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{flag}: `{v}` is not a positive number"))
}

impl<'a> Iterator for Flags<'a> {
    type Item = &'a String;

    /// The next flag, `None` at the end.
    fn next(&mut self) -> Option<&'a String> {
        self.it.next()
    }
}
