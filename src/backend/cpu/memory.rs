//! Memory of the CPU backend: how much a window needs at a frame size, how much the process
//! may still take, and the check made when the backend is configured, so that a frame too
//! large fails with an error naming both numbers instead of an allocation failure (which
//! aborts the process).
//!
//! The estimate replays the allocations of [`CpuModel::forward`] and [`CpuBackend::interpolate`]
//! (the same buffers, in the same order, freed where the code drops them) and keeps the peak;
//! it adds the per-thread GEMM scratch and the frames the element holds. It must follow
//! `network()` in `mod.rs`: `tests/faults.rs` holds it to a measured peak RSS.
//!
//! [`CpuBackend::interpolate`]: super::CpuBackend

use std::path::{Path, PathBuf};

use super::conv::{self, Dims};
use super::{Block, CpuModel, SLOTS, Stage};
use crate::backend::{BackendError, FrameLayout};
use crate::model::spec::{SIZE_MULTIPLE, WINDOW};

const F32: u64 = 4;

/// Live and peak bytes of a replayed allocation sequence.
#[derive(Default)]
struct Tracker {
    live: u64,
    peak: u64,
}

impl Tracker {
    fn alloc(&mut self, d: Dims) -> u64 {
        self.alloc_floats(d.len() as u64)
    }

    fn alloc_floats(&mut self, n: u64) -> u64 {
        let bytes = n * F32;
        self.live += bytes;
        self.peak = self.peak.max(self.live);
        bytes
    }

    fn free(&mut self, bytes: u64) {
        self.live -= bytes;
    }
}

/// One residual block (`run_block`): conv1's output, conv2's output, then the shortcut.
fn block(t: &mut Tracker, b: &Block, xd: Dims) -> Result<Dims, String> {
    let y1d = b.conv1.out_dims(xd)?;
    let y1 = t.alloc(y1d);
    let y2d = b.conv2.out_dims(y1d)?;
    let y2 = t.alloc(y2d);
    t.free(y1);
    if let Some(ds) = &b.downsample {
        let s = t.alloc(ds.out_dims(xd)?);
        t.free(s);
    }
    t.free(y2);
    Ok(y2d)
}

/// Two blocks (`run_layer`); the first one's output is a temporary.
fn layer(t: &mut Tracker, blocks: &[Block; 2], xd: Dims) -> Result<Dims, String> {
    let md = super::block_out(&blocks[0], xd)?;
    let mid = t.alloc(md);
    block(t, &blocks[0], xd)?;
    let od = block(t, &blocks[1], md)?;
    t.free(mid);
    Ok(od)
}

fn stage_out(s: &Stage, x: Dims) -> Result<Dims, String> {
    s.conv.out_dims(x)
}

impl CpuModel {
    /// Peak bytes of the buffers one window allocates for `h` x `w` frames (the input window,
    /// every activation alive at once, the output), as `CpuBackend::interpolate` and
    /// [`CpuModel::forward`] allocate them. Scratch and frame slots are not included.
    pub fn window_peak_bytes(&self, h: usize, w: usize) -> Result<u64, String> {
        let hp = h.div_ceil(SIZE_MULTIPLE) * SIZE_MULTIPLE;
        let wp = w.div_ceil(SIZE_MULTIPLE) * SIZE_MULTIPLE;
        let plane = (h * w) as u64;
        let n = self.spec.n_out as u64;
        let mut t = Tracker::default();
        // interpolate(): the window gathered from the slots.
        let frames = t.alloc_floats(3 * WINDOW as u64 * plane);
        // forward(): the padded, normalised copy.
        let xd = Dims::new(3, WINDOW, hp, wp);
        let x = t.alloc(xd);
        // network(): the four concatenation buffers, all at once.
        let x0d = self.stem.out_dims(xd)?;
        let x1d = super::layer_out(&self.layers[0], x0d)?;
        let x2d = super::layer_out(&self.layers[1], x1d)?;
        let x3d = super::layer_out(&self.layers[2], x2d)?;
        let x4d = super::layer_out(&self.layers[3], x3d)?;
        let skips = [x3d, x2d, x1d, x0d];
        let mut cat = [0u64; 4];
        let mut prev = x4d;
        for d in 0..4 {
            let head = stage_out(&self.decoder[d], prev)?;
            let cd = Dims {
                c: head.c + skips[d].c,
                ..skips[d]
            };
            cat[d] = t.alloc(cd);
            prev = cd;
        }
        let yd = stage_out(&self.decoder[4], prev)?;
        // Encoder: the stem writes in place; each layer has its temporaries.
        layer(&mut t, &self.layers[0], x0d)?;
        layer(&mut t, &self.layers[1], x1d)?;
        layer(&mut t, &self.layers[2], x2d)?;
        let x4 = t.alloc(x4d);
        layer(&mut t, &self.layers[3], x3d)?;
        t.free(x4);
        // Decoder: the output of the last stage; each concatenation buffer goes once read.
        let y = t.alloc(yd);
        for c in cat {
            t.free(c);
        }
        // Feature fuse, reflection pad, output conv.
        let fd = Dims::new(yd.c * yd.t, 1, hp, wp);
        let fod = self.fuse.out_dims(fd)?;
        let f = t.alloc(fod);
        t.free(y);
        let pd = Dims::new(fod.c, 1, hp + 6, wp + 6);
        let fp = t.alloc(pd);
        t.free(f);
        let o = t.alloc(self.outconv.out_dims(pd)?);
        t.free(fp);
        // forward() returns: x goes, the cropped output comes while `o` is alive.
        t.free(x);
        let out = t.alloc_floats(n * 3 * plane);
        t.free(o);
        t.free(out);
        t.free(frames);
        Ok(t.peak)
    }

    /// Bytes the CPU backend needs on top of what it holds after opening, for frames of
    /// `layout`: a window's peak ([`window_peak_bytes`](Self::window_peak_bytes)), the frame
    /// slots, the per-thread GEMM scratch, and the frames the element keeps (the held inputs
    /// and a window's outputs, in the caps' format).
    pub fn needed_bytes(&self, layout: &FrameLayout) -> Result<u64, String> {
        let (h, w) = (layout.height, layout.width);
        let window = self.window_peak_bytes(h, w)?;
        let slots = SLOTS as u64 * 3 * (h * w) as u64 * F32;
        let threads = rayon::current_num_threads().max(1) as u64;
        let scratch = threads * conv::SCRATCH_BYTES_PER_THREAD;
        let frames = (SLOTS as u64 + 2 + self.spec.n_out as u64) * layout.size as u64;
        Ok(window + slots + scratch + frames)
    }
}

/// Memory this process may still allocate, and which limit says so.
#[derive(Clone, Debug, PartialEq)]
pub struct Headroom {
    pub bytes: u64,
    /// The limit that gives `bytes` ("MemAvailable in /proc/meminfo", ...).
    pub source: String,
}

/// The three limits: free memory of the machine, the address-space limit (`ulimit -v`), and
/// the memory cgroup. `None` where none can be read (not Linux).
pub fn headroom() -> Option<Headroom> {
    let read = |p: &Path| std::fs::read_to_string(p).ok();
    let mut all = Vec::new();
    if let Some(kb) = read(Path::new("/proc/meminfo")).and_then(|s| field_kb(&s, "MemAvailable:")) {
        all.push(Headroom {
            bytes: kb * 1024,
            source: "MemAvailable in /proc/meminfo".into(),
        });
    }
    if let Some(limit) = read(Path::new("/proc/self/limits")).and_then(|s| address_limit(&s)) {
        let used = read(Path::new("/proc/self/status"))
            .and_then(|s| field_kb(&s, "VmSize:"))
            .unwrap_or(0)
            * 1024;
        all.push(Headroom {
            bytes: limit.saturating_sub(used),
            source: format!(
                "the address-space limit (ulimit -v) of {}, {} already mapped",
                gib(limit),
                gib(used)
            ),
        });
    }
    if let Some(h) = read(Path::new("/proc/self/cgroup")).and_then(|s| cgroup_headroom(&s, read)) {
        all.push(h);
    }
    all.into_iter().min_by_key(|h| h.bytes)
}

/// A `Name:   123 kB` line of /proc/meminfo or /proc/self/status, in kB.
fn field_kb(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// The soft "Max address space" of /proc/self/limits, in bytes; `None` when unlimited.
fn address_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))?;
    line["Max address space".len()..]
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
}

/// The tightest `memory.max - memory.current` of this process's cgroup (v2) and its parents,
/// or `memory.limit_in_bytes - memory.usage_in_bytes` (v1).
fn cgroup_headroom(cgroups: &str, read: impl Fn(&Path) -> Option<String>) -> Option<Headroom> {
    let num = |p: PathBuf| read(&p).and_then(|s| s.trim().parse::<u64>().ok());
    let mut best: Option<Headroom> = None;
    let mut consider = |limit: Option<u64>, used: Option<u64>, dir: &Path| {
        if let Some(limit) = limit {
            let h = Headroom {
                bytes: limit.saturating_sub(used.unwrap_or(0)),
                source: format!(
                    "the memory cgroup's limit of {} ({})",
                    gib(limit),
                    dir.display()
                ),
            };
            if best.as_ref().is_none_or(|b| h.bytes < b.bytes) {
                best = Some(h);
            }
        }
    };
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let rel = path.trim_start_matches('/');
        if controllers.is_empty() {
            // v2: the limit may sit on any ancestor.
            let mut dir = Path::new("/sys/fs/cgroup").join(rel);
            loop {
                consider(
                    num(dir.join("memory.max")),
                    num(dir.join("memory.current")),
                    &dir,
                );
                if dir == Path::new("/sys/fs/cgroup") || !dir.pop() {
                    break;
                }
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let dir = Path::new("/sys/fs/cgroup/memory").join(rel);
            // v1 says "no limit" with a huge number.
            let limit = num(dir.join("memory.limit_in_bytes")).filter(|&l| l < 1 << 60);
            consider(limit, num(dir.join("memory.usage_in_bytes")), &dir);
        }
    }
    best
}

/// Bytes as GiB with two decimals ("11.99 GiB").
pub fn gib(bytes: u64) -> String {
    format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Fails when `needed` bytes exceed `room`, naming the frame size, both numbers and the limit.
pub fn check(
    needed: u64,
    room: Option<&Headroom>,
    layout: &FrameLayout,
) -> Result<(), BackendError> {
    match room {
        Some(r) if needed > r.bytes => Err(BackendError::HostMemory(format!(
            "the CPU backend needs about {} for {}x{} frames with this model, but only {} is \
             available ({}); use a smaller frame size or the CUDA backend",
            gib(needed),
            layout.width,
            layout.height,
            gib(r.bytes),
            r.source
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{PixelFormat, YuvMatrix};

    fn rgb(w: usize, h: usize) -> FrameLayout {
        FrameLayout::packed(PixelFormat::Rgb, w, h, YuvMatrix::BT601)
    }

    #[test]
    fn proc_files_are_read() {
        let meminfo = "MemTotal:       24000000 kB\nMemAvailable:   21000000 kB\n";
        assert_eq!(field_kb(meminfo, "MemAvailable:"), Some(21_000_000));
        assert_eq!(field_kb(meminfo, "MemFree:"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max address space         3072000000           unlimited            bytes     \n";
        assert_eq!(address_limit(limits), Some(3_072_000_000));
        let unlimited =
            "Max address space         unlimited            unlimited            bytes\n";
        assert_eq!(address_limit(unlimited), None);
    }

    #[test]
    fn cgroup_limits_are_found_on_parents_and_in_v1() {
        let files = |p: &Path| -> Option<String> {
            match p.to_str()? {
                "/sys/fs/cgroup/a/memory.max" => Some("max\n".into()),
                "/sys/fs/cgroup/a/memory.current" => Some("100\n".into()),
                "/sys/fs/cgroup/memory.max" => None,
                "/sys/fs/cgroup/a/b/memory.max" => Some("4096\n".into()),
                "/sys/fs/cgroup/a/b/memory.current" => Some("1000\n".into()),
                _ => None,
            }
        };
        let h = cgroup_headroom("0::/a/b\n", files).expect("a limit");
        assert_eq!(h.bytes, 3096);
        assert!(h.source.contains("/sys/fs/cgroup/a/b"), "{}", h.source);
        assert_eq!(cgroup_headroom("0::/a\n", files), None);
        let v1 = |p: &Path| -> Option<String> {
            match p.to_str()? {
                "/sys/fs/cgroup/memory/x/memory.limit_in_bytes" => Some("5000".into()),
                "/sys/fs/cgroup/memory/x/memory.usage_in_bytes" => Some("2000".into()),
                _ => None,
            }
        };
        assert_eq!(cgroup_headroom("4:memory:/x\n", v1).unwrap().bytes, 3000);
    }

    #[test]
    fn the_check_names_the_size_and_the_limit() {
        let room = Headroom {
            bytes: 2 << 30,
            source: "the address-space limit (ulimit -v)".into(),
        };
        let l = rgb(4096, 2160);
        let e = check(12 << 30, Some(&room), &l).unwrap_err().to_string();
        assert!(
            e.contains("12.00 GiB") && e.contains("4096x2160") && e.contains("2.00 GiB"),
            "{e}"
        );
        assert!(e.contains("ulimit -v"), "{e}");
        assert!(check(1 << 30, Some(&room), &l).is_ok());
        assert!(check(u64::MAX, None, &l).is_ok());
    }

    #[test]
    fn the_estimate_grows_with_the_frame() {
        let m = crate::model::synth::synthetic_model(&crate::model::spec::NARROW, 1).unwrap();
        let cpu = CpuModel::new(&m).unwrap();
        let small = cpu.window_peak_bytes(64, 64).unwrap();
        let large = cpu.window_peak_bytes(128, 128).unwrap();
        // Activations scale with the pixels; at least the input window and its copy are there.
        assert!(small >= 2 * 3 * 4 * 64 * 64 * 4, "{small}");
        assert!(large > 3 * small && large < 5 * small, "{small} -> {large}");
        assert!(cpu.needed_bytes(&rgb(128, 128)).unwrap() > large);
    }
}
