// SPDX-License-Identifier: MIT OR Apache-2.0
//! Frames in GStreamer's CUDA memory through `flavrinterp` (the safe side; the foreign calls
//! are in [`super::cuda_mem`]): the caps of both memories, the pool the new frames come from,
//! and the per-frame choice between the GPU path (no host copy) and a copy through system
//! memory.
//!
//! CUDA memory is offered only where it is asked for and can be used: the `cuda-memory`
//! property on (off by default until the path is measured on a GPU), the library loaded, one
//! CUDA engine (`devices` empty), and that engine opened in the pipeline's CUDA context on
//! `device-id`. Otherwise the caps are system memory only, as before. A frame that arrives in CUDA memory
//! the engine cannot reach (another GPU, a failed map) is copied through the host; a warning
//! says so once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gst::prelude::*;
use gst_video::VideoFormat;

use super::cuda_mem;
use super::imp::CAT;
use crate::backend::Backend;
use crate::error::Error;
use crate::window::Key;

/// The formats taken and given in CUDA memory (those nvcodec's elements make and take).
pub(super) const FORMATS: [VideoFormat; 6] = [
    VideoFormat::Nv12,
    VideoFormat::I420,
    VideoFormat::Rgba,
    VideoFormat::Bgra,
    VideoFormat::Rgbx,
    VideoFormat::Bgrx,
];

/// The CUDA-memory half of the pad templates.
pub(super) fn template() -> gst::Caps {
    gst_video::VideoCapsBuilder::new()
        .features([cuda_mem::FEATURE])
        .format_list(FORMATS)
        .field("interlace-mode", "progressive")
        .build()
}

/// Whether the first structure of `caps` is in CUDA memory.
pub(super) fn is_cuda_caps(caps: &gst::CapsRef) -> bool {
    caps.features(0)
        .is_some_and(|f| f.contains(cuda_mem::FEATURE))
}

/// Why fixed caps in CUDA memory cannot be taken (`cuda`: the element can use CUDA memory now).
pub(super) fn cuda_caps_problem(caps: &gst::CapsRef, cuda: bool) -> Option<String> {
    if !is_cuda_caps(caps) {
        return None;
    }
    if !cuda {
        return Some(if cuda_mem::available() {
            "CUDA memory needs cuda-memory=true, backend=cuda (or auto on a GPU), `devices` empty \
             and the engine in the pipeline's CUDA context on device-id (put cudadownload before \
             flavrinterp)"
                .into()
        } else {
            "CUDA memory needs libgstcuda-1.0 (gst-plugins-bad's nvcodec) and a build with the \
             `cuda` feature (put cudadownload before flavrinterp)"
                .into()
        });
    }
    let format = caps.structure(0)?.get::<&str>("format").ok()?;
    let f = VideoFormat::from_string(format);
    (!FORMATS.contains(&f)).then(|| {
        format!(
            "format {format} is not taken in CUDA memory: use NV12, I420, RGBA, BGRA, RGBx or BGRx"
        )
    })
}

/// `caps` (transformed to the other pad) in the memories the element can give there: with
/// `cuda`, each structure in its own memory first and then in the other (so the memory
/// upstream chose is preferred, and CUDA memory when both neighbours can do it); without,
/// only the structures in system memory.
pub(super) fn memory_variants(caps: &gst::Caps, cuda: bool) -> gst::Caps {
    let cuda_formats = gst::Structure::builder("video/x-raw")
        .field("format", gst::List::new(FORMATS.iter().map(|f| f.to_str())))
        .build();
    let mut out = gst::Caps::new_empty();
    {
        let out = out.get_mut().expect("new caps are writable");
        for (s, f) in caps.iter_with_features() {
            let in_cuda = f.contains(cuda_mem::FEATURE);
            if !cuda {
                if !in_cuda {
                    out.append_structure_full(s.to_owned(), Some(f.to_owned()));
                }
                continue;
            }
            let as_cuda = s
                .intersect(&cuda_formats)
                .map(|s| (s, gst::CapsFeatures::new([cuda_mem::FEATURE])));
            let as_system = (s.to_owned(), gst::CapsFeatures::new_empty());
            let (first, second) = if in_cuda {
                (as_cuda, Some(as_system))
            } else {
                (Some(as_system), as_cuda)
            };
            for (s, f) in first.into_iter().chain(second) {
                out.append_structure_full(s, Some(f));
            }
        }
    }
    out
}

/// Whether the peer of `pad` can take or give CUDA memory (its caps name the feature).
pub(super) fn peer_can(pad: &gst::Pad) -> bool {
    pad.peer_query_caps(None)
        .iter_with_features()
        .any(|(_, f)| f.contains(cuda_mem::FEATURE))
}

/// A pool of CUDA memory for frames of `caps`, configured and active.
pub(super) fn pool(
    ctx: &cuda_mem::Context,
    caps: &gst::Caps,
    info: &gst_video::VideoInfo,
    min: u32,
) -> Result<gst::BufferPool, String> {
    let pool = cuda_mem::pool(ctx).ok_or("gst_cuda_buffer_pool_new failed")?;
    let mut config = pool.config();
    // No maximum: a pool that runs dry makes more frames instead of stalling the stream.
    config.set_params(Some(caps), info.size() as u32, min, 0);
    config.add_option(gst_video::BUFFER_POOL_OPTION_VIDEO_META.as_ref());
    pool.set_config(config)
        .map_err(|e| format!("the CUDA buffer pool refused its configuration: {e}"))?;
    pool.set_active(true)
        .map_err(|e| format!("cannot start the CUDA buffer pool: {e}"))?;
    Ok(pool)
}

/// The element's CUDA-memory state (its own lock, never taken while holding `state`).
#[derive(Default)]
pub(super) struct CudaState {
    /// The pipeline's CUDA context on `device-id` (given by `set_context`, or found at start).
    pub ctx: Option<cuda_mem::Context>,
    /// The engine runs in `ctx`: CUDA memory is offered on both pads.
    pub active: bool,
}

/// What the network thread needs for the negotiated memories.
#[derive(Clone, Debug)]
pub(super) struct DeviceIo {
    /// The engine's GPU: input frames in CUDA memory of this GPU are read there.
    pub device_id: u32,
    /// Output frames come from this pool of CUDA memory (`None`: system memory).
    pub pool: Option<gst::BufferPool>,
    /// Raised once a frame had to go through the host (the warning is given once).
    pub fell_back: Arc<AtomicBool>,
}

impl DeviceIo {
    fn fall_back(&self, what: &str) {
        if !self.fell_back.swap(true, Ordering::Relaxed) {
            gst::warning!(
                CAT,
                "{what}: frames in CUDA memory are copied through system memory from now on"
            );
        }
    }
}

/// Loads `buf` into `slot` from device memory; `Ok(false)` when it must go through the host
/// instead (not CUDA memory, another GPU, or the GPU path failed once).
pub(super) fn load(
    backend: &mut dyn Backend,
    buf: &gst::Buffer,
    slot: usize,
    dev: &DeviceIo,
) -> Result<bool, Error> {
    if dev.fell_back.load(Ordering::Relaxed) || !cuda_mem::is_cuda(buf) {
        return Ok(false);
    }
    let Some(mapped) = cuda_mem::map(buf, false) else {
        dev.fall_back("cannot map an input frame on the GPU");
        return Ok(false);
    };
    if mapped.device_id != dev.device_id {
        dev.fall_back(&format!(
            "input frames are in memory of GPU {}, the engine runs on device-id {}",
            mapped.device_id, dev.device_id
        ));
        return Ok(false);
    }
    match backend.load_frame_device(slot, &mapped.frame) {
        Ok(()) => Ok(true),
        Err(e) => {
            dev.fall_back(&format!("reading an input frame on the GPU failed ({e})"));
            Ok(false)
        }
    }
}

/// [`super::stream::network`] into frames of CUDA memory from `pool`: written on the GPU, or
/// (after a failure there) made in system memory and copied in.
pub(super) fn network(
    backend: &mut dyn Backend,
    info: &gst_video::VideoInfo,
    window: [usize; 4],
    outputs: Vec<(usize, Key)>,
    dev: &DeviceIo,
    pool: &gst::BufferPool,
    scratch: &mut Vec<u8>,
) -> Result<Vec<(Key, gst::Buffer)>, Error> {
    if !dev.fell_back.load(Ordering::Relaxed) {
        let n = backend.n_outputs();
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(acquire(pool)?);
        }
        let written = {
            let maps: Option<Vec<cuda_mem::Mapped>> =
                frames.iter().map(|b| cuda_mem::map(b, true)).collect();
            match maps {
                Some(maps) => {
                    let targets: Vec<_> = maps.iter().map(|m| m.frame.clone()).collect();
                    backend.interpolate_device(window, &targets)
                }
                None => Err(crate::backend::BackendError::Layout(
                    "cannot map a pool frame on the GPU".into(),
                )),
            }
        };
        match written {
            Ok(()) => {
                let mut frames: Vec<Option<gst::Buffer>> = frames.into_iter().map(Some).collect();
                return Ok(outputs
                    .into_iter()
                    .filter_map(|(i, key)| frames.get_mut(i)?.take().map(|b| (key, b)))
                    .collect());
            }
            // A lost GPU fails the host path below too, which reports it.
            Err(e) => dev.fall_back(&format!("writing new frames on the GPU failed ({e})")),
        }
    }
    let made = super::stream::network(backend, info.size(), window, outputs, scratch)?;
    made.into_iter()
        .map(|(key, b)| Ok((key, into_pool(pool, info, &b)?)))
        .collect()
}

fn acquire(pool: &gst::BufferPool) -> Result<gst::Buffer, Error> {
    pool.acquire_buffer(None).map_err(|e| {
        Error::Buffer(format!(
            "cannot take a frame from the CUDA buffer pool: {e:?}"
        ))
    })
}

/// A frame of `pool` holding `src` (system memory, the caps layout), copied through the host
/// map of the CUDA memory.
pub(super) fn into_pool(
    pool: &gst::BufferPool,
    info: &gst_video::VideoInfo,
    src: &gst::Buffer,
) -> Result<gst::Buffer, Error> {
    let mut out = acquire(pool)?;
    {
        let out = out
            .get_mut()
            .ok_or_else(|| Error::Buffer("a pool frame is shared".into()))?;
        let s = gst_video::VideoFrameRef::from_buffer_ref_readable(src.as_ref(), info)
            .map_err(|e| Error::Buffer(format!("cannot map a new frame: {e}")))?;
        let mut d = gst_video::VideoFrameRef::from_buffer_ref_writable(out, info)
            .map_err(|e| Error::Buffer(format!("cannot map a CUDA frame on the host: {e}")))?;
        s.copy(&mut d)
            .map_err(|e| Error::Buffer(format!("cannot copy a frame into CUDA memory: {e}")))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn caps(s: &str) -> gst::Caps {
        gst::Caps::from_str(s).unwrap()
    }

    /// (is CUDA memory, format) of each structure, in order.
    fn shape(c: &gst::Caps) -> Vec<(bool, String)> {
        c.iter_with_features()
            .map(|(s, f)| {
                let format = s
                    .value("format")
                    .map(|v| format!("{:?}", v.serialize().unwrap()))
                    .unwrap_or_default();
                (f.contains(cuda_mem::FEATURE), format)
            })
            .collect()
    }

    #[test]
    fn variants_keep_upstreams_memory_first() {
        gst::init().unwrap();
        let sys = caps("video/x-raw,format=NV12,width=64,height=48");
        let v = memory_variants(&sys, true);
        assert_eq!(
            shape(&v),
            vec![(false, "\"NV12\"".into()), (true, "\"NV12\"".into())]
        );
        let cuda = caps("video/x-raw(memory:CUDAMemory),format=BGRx,width=64,height=48");
        let v = memory_variants(&cuda, true);
        assert_eq!(
            shape(&v),
            vec![(true, "\"BGRx\"".into()), (false, "\"BGRx\"".into())]
        );
        // Sizes and other fields are kept in both.
        for (s, _) in v.iter_with_features() {
            assert_eq!(s.get::<i32>("width").unwrap(), 64);
        }
    }

    #[test]
    fn variants_in_cuda_memory_only_for_its_formats() {
        gst::init().unwrap();
        let v = memory_variants(&caps("video/x-raw,format=RGB"), true);
        assert_eq!(shape(&v), vec![(false, "\"RGB\"".into())]);
        let v = memory_variants(&caps("video/x-raw,format={RGB,I420,P010_10LE}"), true);
        let cuda: Vec<_> = shape(&v).into_iter().filter(|(c, _)| *c).collect();
        assert_eq!(cuda, vec![(true, "\"I420\"".into())], "{v}");
        // No format field: every CUDA format.
        let v = memory_variants(&caps("video/x-raw,width=8"), true);
        let s = v.structure(1).unwrap();
        assert!(v.features(1).unwrap().contains(cuda_mem::FEATURE));
        assert_eq!(s.get::<gst::List>("format").unwrap().len(), FORMATS.len());
    }

    #[test]
    fn without_cuda_only_system_memory_is_given() {
        gst::init().unwrap();
        let both = caps(
            "video/x-raw(memory:CUDAMemory),format=NV12; video/x-raw,format=NV12; \
             video/x-raw(memory:CUDAMemory),format=RGBA",
        );
        let v = memory_variants(&both, false);
        assert_eq!(shape(&v), vec![(false, "\"NV12\"".into())]);
        assert!(memory_variants(&caps("video/x-raw(memory:CUDAMemory)"), false).is_empty());
    }

    #[test]
    fn cuda_caps_problems_are_named() {
        gst::init().unwrap();
        let c = caps("video/x-raw(memory:CUDAMemory),format=NV12,width=64,height=48");
        assert_eq!(cuda_caps_problem(&c, true), None);
        let why = cuda_caps_problem(&c, false).unwrap();
        assert!(why.contains("cudadownload"), "{why}");
        let c = caps("video/x-raw(memory:CUDAMemory),format=P010_10LE,width=64,height=48");
        let why = cuda_caps_problem(&c, true).unwrap();
        assert!(why.contains("P010_10LE") && why.contains("NV12"), "{why}");
        let c = caps("video/x-raw,format=RGB,width=64,height=48");
        assert_eq!(cuda_caps_problem(&c, false), None);
        assert!(is_cuda_caps(&caps("video/x-raw(memory:CUDAMemory)")));
        assert!(!is_cuda_caps(&caps("video/x-raw")));
    }

    #[test]
    fn template_lists_both_memories() {
        gst::init().unwrap();
        let t = super::super::caps::template();
        let cuda: Vec<_> = t
            .iter_with_features()
            .filter(|(_, f)| f.contains(cuda_mem::FEATURE))
            .collect();
        if !cfg!(feature = "cuda") {
            assert!(cuda.is_empty(), "{t}");
            return;
        }
        assert_eq!(cuda.len(), 1, "{t}");
        let formats = cuda[0].0.get::<gst::List>("format").unwrap();
        let names: Vec<&str> = formats.iter().map(|v| v.get::<&str>().unwrap()).collect();
        assert_eq!(names, ["NV12", "I420", "RGBA", "BGRA", "RGBx", "BGRx"]);
        assert!(t.can_intersect(&caps("video/x-raw,format=Y444_10LE")));
        assert!(!t.can_intersect(&caps("video/x-raw(memory:CUDAMemory),format=Y444_10LE")));
    }
}
