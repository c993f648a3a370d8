// SPDX-License-Identifier: MIT OR Apache-2.0
//! OUTPUT: checked before anything runs, written as `OUTPUT.part` beside it and renamed over
//! OUTPUT at the end, so that a failed run leaves neither a broken file nor a half-replaced
//! old one.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::exit::{Code, Failure};

/// The file being written; removed on drop unless `commit`ted.
pub(crate) struct Part {
    part: PathBuf,
    output: PathBuf,
    done: bool,
}

/// Fails when `output` names the same file as `input` (same path, a link to it, a hard link).
pub(crate) fn check_not_input(input: &Path, output: &Path) -> Result<(), Failure> {
    let same = match (std::fs::metadata(input), std::fs::metadata(output)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    };
    if same || absolute(input) == absolute(output) {
        return Err(Failure::new(
            Code::OutputIsInput,
            format!(
                "OUTPUT {} is INPUT: write the result to another file",
                output.display()
            ),
        ));
    }
    Ok(())
}

fn absolute(p: &Path) -> Option<PathBuf> {
    std::path::absolute(p).ok()
}

impl Part {
    /// Creates `OUTPUT.part`, which shows that OUTPUT's folder can be written.
    pub(crate) fn create(output: &Path) -> Result<Part, Failure> {
        let mut name = output.file_name().unwrap_or_default().to_os_string();
        name.push(".part");
        let part = output.with_file_name(name);
        if output.is_dir() {
            return Err(Failure::new(
                Code::OutputUnwritable,
                format!("cannot write {}: it is a folder", output.display()),
            ));
        }
        std::fs::File::create(&part).map_err(|e| {
            let dir = output
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let why = match e.kind() {
                std::io::ErrorKind::NotFound => {
                    format!("the folder {} does not exist", dir.display())
                }
                std::io::ErrorKind::PermissionDenied => {
                    format!("no permission to write in {}", dir.display())
                }
                _ => e.to_string(),
            };
            Failure::new(
                Code::OutputUnwritable,
                format!("cannot write {}: {why}", output.display()),
            )
        })?;
        Ok(Part {
            part,
            output: output.to_path_buf(),
            done: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.part
    }

    /// Moves the finished file to OUTPUT (replacing a file there).
    pub(crate) fn commit(mut self) -> Result<(), Failure> {
        std::fs::rename(&self.part, &self.output).map_err(|e| {
            Failure::new(
                Code::OutputUnwritable,
                format!(
                    "cannot move {} to {}: {e}",
                    self.part.display(),
                    self.output.display()
                ),
            )
        })?;
        self.done = true;
        Ok(())
    }
}

impl Drop for Part {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.part);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_checks() {
        let dir = std::env::temp_dir().join(format!("flavr-convert-out-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let input = dir.join("in.mp4");
        std::fs::write(&input, b"x").unwrap();
        let e = check_not_input(&input, &dir.join(".").join("in.mp4")).unwrap_err();
        assert_eq!(e.code, Code::OutputIsInput);
        std::fs::hard_link(&input, dir.join("link.mp4")).unwrap();
        assert!(check_not_input(&input, &dir.join("link.mp4")).is_err());
        assert!(check_not_input(&input, &dir.join("out.mp4")).is_ok());
        let e = Part::create(&dir.join("missing/out.mp4")).err().unwrap();
        assert_eq!(e.code, Code::OutputUnwritable);
        assert!(e.message.contains("does not exist"), "{e}");
        {
            let p = Part::create(&dir.join("out.mp4")).unwrap();
            assert!(p.path().exists());
        }
        assert!(
            !dir.join("out.mp4.part").exists(),
            "dropped parts are removed"
        );
        let p = Part::create(&dir.join("out.mp4")).unwrap();
        p.commit().unwrap();
        assert!(dir.join("out.mp4").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
