//! The graph API's tuning results, kept between runs.
//!
//! Timing the engine configurations of every convolution shape takes seconds at configure
//! (about 20 s for the full-width network at 1080p on an H200). The choice depends only on the
//! GPU, the cuDNN version and the shape, so it is written to a small text file and read back by
//! the next engine: a pipeline that starts again at the same size configures in a fraction of a
//! second. A missing, unreadable or corrupt file only means tuning again.
//!
//! The file is `EngineOptions::plan_cache` (see src/cuda/options.rs); None keeps the choices in
//! memory. One line per choice: `scope \t key \t rank \t engine` (rank `-`: the legacy algorithm was
//! faster), where scope names the GPU and the cuDNN version.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// A configuration choice: its rank in heuristics mode A's list and cuDNN's global engine
/// index (checked when the plan is rebuilt), or None where the legacy algorithm won.
pub type Choice = Option<(usize, i64)>;

pub struct PlanCache {
    path: Option<PathBuf>,
    scope: String,
    entries: HashMap<String, Choice>,
    unsaved: Vec<(String, Choice)>,
}

impl PlanCache {
    /// The choices recorded in `path` for this GPU and cuDNN version.
    pub fn open(path: Option<PathBuf>, gpu: &str, cudnn_version: usize) -> PlanCache {
        let scope = format!("{} cudnn {cudnn_version}", gpu.replace(['\t', '\n'], " "));
        let mut entries = HashMap::new();
        if let Some(text) = path.as_ref().and_then(|p| std::fs::read_to_string(p).ok()) {
            for line in text.lines() {
                let f: Vec<&str> = line.split('\t').collect();
                let [s, key, rank, engine] = f[..] else {
                    continue;
                };
                if s != scope {
                    continue;
                }
                let choice = match (rank, engine.parse::<i64>()) {
                    ("-", _) => None,
                    (r, Ok(e)) => match r.parse::<usize>() {
                        Ok(r) => Some((r, e)),
                        Err(_) => continue,
                    },
                    _ => continue,
                };
                entries.insert(key.to_string(), choice);
            }
        }
        PlanCache {
            path,
            scope,
            entries,
            unsaved: Vec::new(),
        }
    }

    pub fn get(&self, key: &str) -> Option<Choice> {
        self.entries.get(key).copied()
    }

    pub fn insert(&mut self, key: &str, choice: Choice) {
        if self.entries.insert(key.to_string(), choice) != Some(choice) {
            self.unsaved.push((key.to_string(), choice));
        }
    }

    /// Appends the new choices to the file (best effort: a cache that cannot be written only
    /// costs tuning time next run).
    pub fn save(&mut self) {
        let Some(path) = &self.path else {
            self.unsaved.clear();
            return;
        };
        if self.unsaved.is_empty() {
            return;
        }
        let mut text = String::new();
        for (key, choice) in self.unsaved.drain(..) {
            let (rank, engine) = match choice {
                Some((r, e)) => (r.to_string(), e.to_string()),
                None => ("-".to_string(), "-".to_string()),
            };
            text.push_str(&format!("{}\t{key}\t{rank}\t{engine}\n", self.scope));
        }
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(text.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_survive_a_round_trip_per_gpu_and_version() {
        let dir = std::env::temp_dir().join(format!("flavr-plan-cache-{}", std::process::id()));
        let path = dir.join("sub").join("plans.tsv");
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = PlanCache::open(Some(path.clone()), "NVIDIA H200", 91400);
        assert_eq!(c.get("a"), None);
        c.insert("a", Some((9, 62)));
        c.insert("b", None);
        c.save();
        let c2 = PlanCache::open(Some(path.clone()), "NVIDIA H200", 91400);
        assert_eq!(c2.get("a"), Some(Some((9, 62))));
        assert_eq!(c2.get("b"), Some(None));
        // Another GPU or cuDNN version sees none of it.
        assert_eq!(
            PlanCache::open(Some(path.clone()), "NVIDIA H100", 91400).get("a"),
            None
        );
        assert_eq!(
            PlanCache::open(Some(path.clone()), "NVIDIA H200", 91900).get("a"),
            None
        );
        // Corrupt lines are skipped, later lines win.
        std::fs::write(
            &path,
            "junk\nNVIDIA H200 cudnn 91400\ta\tx\t1\nNVIDIA H200 cudnn 91400\ta\t3\t7\n",
        )
        .unwrap();
        assert_eq!(
            PlanCache::open(Some(path), "NVIDIA H200", 91400).get("a"),
            Some(Some((3, 7)))
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_path_keeps_choices_in_memory() {
        let mut c = PlanCache::open(None, "gpu", 1);
        c.insert("k", Some((1, 2)));
        c.save();
        assert_eq!(c.get("k"), Some(Some((1, 2))));
    }
}
