// SPDX-License-Identifier: MIT OR Apache-2.0
//! GStreamer's CUDA memory (`video/x-raw(memory:CUDAMemory)`, gst-plugins-bad's libgstcuda-1.0,
//! 1.22 API) for `flavrinterp`: the only place with its foreign calls.
//!
//! No Rust binding of libgstcuda exists, and the plugin must load where it is missing (CI, any
//! machine without nvcodec), so the library is opened at run time with `dlopen` and each symbol
//! looked up once ([`lib`]). A missing library or symbol means "no CUDA memory": the element
//! then negotiates system memory as before. `FLAVR_NO_GSTCUDA=1` makes it missing on purpose
//! (tests).
//!
//! What is used, with the 1.22 ABI it relies on:
//! - `GstCudaContext`, a `GstObject` with the property `cuda-device-id` (guint);
//!   `gst_cuda_context_get_handle` gives its `CUcontext`. In 1.22 `gst_cuda_context_new`
//!   creates a context of its own with `cuCtxCreate` (not the device's primary context), so the
//!   engine is opened in the pipeline's context instead of its own (src/cuda `SharedContext`).
//! - Sharing through `GstContext` of type `gst.cuda.context`:
//!   `gst_cuda_handle_set_context` (takes a context only for the requested device),
//!   `gst_cuda_handle_context_query`, and `gst_cuda_ensure_element_context` (asks the
//!   neighbours, then the application, then creates one and posts it).
//! - `GstCudaMemory`: a `GstMemory` followed by its context and the `GstVideoInfo` of its
//!   pitched layout (one `cuMemAllocPitch` allocation, planes at `info.offset[]` with
//!   `info.stride[]`); mapped with `GST_MAP_CUDA` (`GST_MAP_FLAG_LAST << 1`) `data` is the
//!   `CUdeviceptr`. 1.22 copies synchronously, so a mapped memory is ready to read; writes
//!   done on our stream are waited for before unmapping.
//! - `gst_cuda_buffer_pool_new` for the frames the element makes.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::sync::OnceLock;

use gst::glib;
use gst::glib::translate::{FromGlibPtrFull, FromGlibPtrNone, ToGlibPtr};
use gst::prelude::*;

use crate::backend::DeviceFrame;

/// The caps feature of CUDA memory.
pub(super) const FEATURE: &str = "memory:CUDAMemory";
/// The `GstContext` type that carries a `GstCudaContext`.
pub(super) const CONTEXT_TYPE: &str = "gst.cuda.context";
/// Names the library to open instead of [`LIBRARY`] (empty: none).
pub(super) const LIBRARY_ENV: &str = "FLAVR_GSTCUDA_LIBRARY";
const LIBRARY: &str = "libgstcuda-1.0.so.0";
/// `GST_MAP_CUDA` of gstcudamemory.h: `GST_MAP_FLAG_LAST << 1`.
const MAP_CUDA: gst::ffi::GstMapFlags = gst::ffi::GST_MAP_FLAG_LAST << 1;

type Gboolean = glib::ffi::gboolean;

/// The functions of libgstcuda-1.0 the element calls (1.22 signatures).
struct Lib {
    is_cuda_memory: unsafe extern "C" fn(*mut gst::ffi::GstMemory) -> Gboolean,
    ensure_element_context:
        unsafe extern "C" fn(*mut gst::ffi::GstElement, c_int, *mut *mut c_void) -> Gboolean,
    handle_set_context: unsafe extern "C" fn(
        *mut gst::ffi::GstElement,
        *mut gst::ffi::GstContext,
        c_int,
        *mut *mut c_void,
    ) -> Gboolean,
    handle_context_query: unsafe extern "C" fn(
        *mut gst::ffi::GstElement,
        *mut gst::ffi::GstQuery,
        *mut c_void,
    ) -> Gboolean,
    context_get_handle: unsafe extern "C" fn(*mut c_void) -> *mut c_void,
    buffer_pool_new: unsafe extern "C" fn(*mut c_void) -> *mut gst::ffi::GstBufferPool,
    /// Kept open for the process's lifetime (the functions above point into it).
    _lib: libloading::Library,
}

/// The head of `struct _GstCudaMemory` (gstcudamemory.h, 1.22): only read, never allocated.
#[repr(C)]
struct GstCudaMemory {
    mem: gst::ffi::GstMemory,
    context: *mut c_void,
    info: gst_video::ffi::GstVideoInfo,
}

/// libgstcuda-1.0, once opened; `None` (for good) when it is missing, lacks a symbol, or the
/// build has no CUDA backend.
fn lib() -> Option<&'static Lib> {
    static LIB: OnceLock<Option<Lib>> = OnceLock::new();
    LIB.get_or_init(|| {
        if !cfg!(feature = "cuda") {
            return None;
        }
        let name = std::env::var(LIBRARY_ENV).unwrap_or_else(|_| LIBRARY.into());
        if name.is_empty() {
            return None;
        }
        match open(&name) {
            Ok(l) => Some(l),
            Err(e) => {
                gst::info!(super::imp::CAT, "no CUDA memory: {e}");
                None
            }
        }
    })
    .as_ref()
}

fn open(name: &str) -> Result<Lib, String> {
    // SAFETY: libgstcuda has no load-time initialisers beyond GLib's type registration on
    // first use; it links the same libgstreamer as this plugin.
    let lib = unsafe { libloading::Library::new(name) }.map_err(|e| e.to_string())?;
    // SAFETY: `gboolean gst_cuda_load_library (void)` (gstcudaloader.h). It loads libcuda and
    // must succeed before any context function runs (they assert on the driver's table).
    let loaded = unsafe {
        let load: libloading::Symbol<unsafe extern "C" fn() -> Gboolean> = lib
            .get(b"gst_cuda_load_library\0")
            .map_err(|e| e.to_string())?;
        load()
    };
    if loaded == glib::ffi::GFALSE {
        return Err(format!(
            "{name} cannot load the CUDA driver library (no GPU driver)"
        ));
    }
    symbols(lib).map_err(|e| e.to_string())
}

fn symbols(lib: libloading::Library) -> Result<Lib, libloading::Error> {
    // SAFETY: each symbol is looked up by its exported name and given the signature of the
    // 1.22 headers (gstcudamemory.h, gstcudautils.h, gstcudacontext.h, gstcudabufferpool.h).
    unsafe {
        Ok(Lib {
            is_cuda_memory: *lib.get(b"gst_is_cuda_memory\0")?,
            ensure_element_context: *lib.get(b"gst_cuda_ensure_element_context\0")?,
            handle_set_context: *lib.get(b"gst_cuda_handle_set_context\0")?,
            handle_context_query: *lib.get(b"gst_cuda_handle_context_query\0")?,
            context_get_handle: *lib.get(b"gst_cuda_context_get_handle\0")?,
            buffer_pool_new: *lib.get(b"gst_cuda_buffer_pool_new\0")?,
            _lib: lib,
        })
    }
}

/// Whether CUDA memory can be used at all here (the library opened).
pub(super) fn available() -> bool {
    lib().is_some()
}

/// A `GstCudaContext` (a strong reference).
#[derive(Clone, Debug)]
pub(super) struct Context(gst::Object);

impl Context {
    /// Takes a full reference to a `GstCudaContext` (null: none).
    fn from_full(ptr: *mut c_void) -> Option<Context> {
        if ptr.is_null() {
            return None;
        }
        // SAFETY: libgstcuda returns `GstCudaContext *` (a GstObject) with a reference the
        // caller owns, which the gst::Object takes over.
        Some(Context(unsafe {
            gst::Object::from_glib_full(ptr as *mut gst::ffi::GstObject)
        }))
    }

    fn as_ptr(&self) -> *mut c_void {
        let p: *mut gst::ffi::GstObject = self.0.to_glib_none().0;
        p as *mut c_void
    }

    /// The GPU it is on (its `cuda-device-id` property).
    pub(super) fn device_id(&self) -> u32 {
        if self.0.find_property("cuda-device-id").is_none() {
            return u32::MAX;
        }
        self.0.property::<u32>("cuda-device-id")
    }

    /// Its `CUcontext`, as an address.
    pub(super) fn handle(&self) -> usize {
        let Some(l) = lib() else { return 0 };
        // SAFETY: a live GstCudaContext (we hold a reference); the handle stays valid while
        // it lives.
        unsafe { (l.context_get_handle)(self.as_ptr()) as usize }
    }

    /// The object itself, to keep the context alive as long as an engine runs in it.
    pub(super) fn object(&self) -> gst::Object {
        self.0.clone()
    }
}

/// The CUDA context in a `GstContext` given to the element (`set_context`), if it is one (on
/// any GPU: the caller checks).
pub(super) fn from_gst_context(element: &gst::Element, context: &gst::Context) -> Option<Context> {
    let l = lib()?;
    if context.context_type() != CONTEXT_TYPE {
        return None;
    }
    let mut out: *mut c_void = std::ptr::null_mut();
    // SAFETY: valid element and context pointers for the call; `out` receives a new
    // reference (taken over by Context) or stays null.
    let ok = unsafe {
        (l.handle_set_context)(
            element.to_glib_none().0,
            ToGlibPtr::<*const gst::ffi::GstContext>::to_glib_none(context).0 as *mut _,
            -1,
            &mut out,
        )
    };
    let ctx = Context::from_full(out);
    if ok == glib::ffi::GFALSE {
        return None;
    }
    ctx
}

/// The lookup [`ensure`] runs on this thread, if any: the element, the GPU asked for, and the
/// slot `gst_cuda_ensure_element_context` waits to see filled.
#[derive(Clone, Copy)]
struct Ensuring {
    element: *mut gst::ffi::GstElement,
    device_id: c_int,
    slot: *mut *mut c_void,
}

thread_local! {
    static ENSURING: Cell<Option<Ensuring>> = const { Cell::new(None) };
}

/// Clears [`ENSURING`] when [`ensure`] returns (or unwinds).
struct EnsuringGuard;

impl Drop for EnsuringGuard {
    fn drop(&mut self) {
        ENSURING.with(|e| e.set(None));
    }
}

/// The pipeline's CUDA context for GPU `device_id`: the neighbours' or the application's, or
/// a new one that is then posted for the others (`gst_cuda_ensure_element_context`).
///
/// The lookup (1.22's `find_cuda_context`) finds a neighbour's context with a CONTEXT query
/// and hands it to the element with `gst_element_set_context`, then reads `out`: it expects
/// the element's `set_context` to store the context in that very slot, and creates a new
/// context when the slot is still empty. So while the call runs, the slot is published on
/// this thread ([`ENSURING`]), and the element's `set_context` fills it through
/// [`fill_ensuring`].
pub(super) fn ensure(element: &gst::Element, device_id: u32) -> Option<Context> {
    let l = lib()?;
    let mut out: *mut c_void = std::ptr::null_mut();
    // One pointer to `out` for both the call and the published slot.
    let slot: *mut *mut c_void = &mut out;
    let raw: *mut gst::ffi::GstElement = element.to_glib_none().0;
    ENSURING.with(|e| {
        e.set(Some(Ensuring {
            element: raw,
            device_id: device_id as c_int,
            slot,
        }))
    });
    let guard = EnsuringGuard;
    // SAFETY: a valid element; `*slot` (`out`) is null on entry (so the function looks the
    // context up), lives on this frame for the whole call (the published slot is cleared by
    // `guard` before `out` goes away), and receives a reference we own.
    let ok = unsafe { (l.ensure_element_context)(raw, device_id as c_int, slot) };
    drop(guard);
    // SAFETY: `slot` points to `out`, still live; nothing else writes it any more.
    let ctx = Context::from_full(unsafe { *slot });
    if ok == glib::ffi::GFALSE {
        return None;
    }
    ctx
}

/// Called from the element's `set_context`: when [`ensure`] for this element runs on this
/// thread, stores a CUDA context of `context` (on the GPU asked for) in the slot the lookup
/// reads, unless the slot holds one already. True when the slot holds a context afterwards.
pub(super) fn fill_ensuring(element: &gst::Element, context: &gst::Context) -> bool {
    // The thread-local first: with no lookup running, libgstcuda is not even opened.
    let raw: *mut gst::ffi::GstElement = element.to_glib_none().0;
    let Some(e) = ENSURING.with(|e| e.get()).filter(|e| e.element == raw) else {
        return false;
    };
    if context.context_type() != CONTEXT_TYPE {
        return false;
    }
    let Some(l) = lib() else { return false };
    // SAFETY: `e.slot` is the `out` of the `ensure` call running further up this thread's
    // stack (published only for its duration, and only this thread reads it), a
    // `GstCudaContext **` that is null or holds a reference; the function fills it with a new
    // reference only when null and the context is on `e.device_id`, which `ensure` then owns.
    // Element and context are valid for the call.
    let ok = unsafe {
        (l.handle_set_context)(
            raw,
            ToGlibPtr::<*const gst::ffi::GstContext>::to_glib_none(context).0 as *mut _,
            e.device_id,
            e.slot,
        )
    };
    // SAFETY: the same live slot, read on the thread that owns it.
    ok != glib::ffi::GFALSE && !unsafe { *e.slot }.is_null()
}

/// Answers a CONTEXT query for `gst.cuda.context` with `ctx`; false for other queries.
pub(super) fn answer_query(
    element: &gst::Element,
    query: &mut gst::QueryRef,
    ctx: &Context,
) -> bool {
    let Some(l) = lib() else { return false };
    // SAFETY: valid element, query (writable: we were handed it mutably) and context for the
    // duration of the call, which only fills the query.
    unsafe {
        (l.handle_context_query)(element.to_glib_none().0, query.as_mut_ptr(), ctx.as_ptr())
            != glib::ffi::GFALSE
    }
}

/// A buffer pool of CUDA memory in `ctx` (not configured).
pub(super) fn pool(ctx: &Context) -> Option<gst::BufferPool> {
    let l = lib()?;
    // SAFETY: a live context; the function returns a new pool (or null).
    let p = unsafe { (l.buffer_pool_new)(ctx.as_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: a new GstBufferPool; a floating reference becomes ours by sinking it (which
    // keeps the count at one).
    unsafe {
        if glib::gobject_ffi::g_object_is_floating(p as *mut _) != glib::ffi::GFALSE {
            gst::ffi::gst_object_ref_sink(p as *mut _);
        }
        Some(gst::BufferPool::from_glib_full(p))
    }
}

/// Whether every memory of `buf` is CUDA memory (and it has one memory: the pitched frame).
pub(super) fn is_cuda(buf: &gst::BufferRef) -> bool {
    let Some(l) = lib() else { return false };
    if buf.n_memory() != 1 {
        return false;
    }
    let mem = buf.peek_memory(0);
    // SAFETY: a live memory of a buffer we hold; the call only reads its allocator.
    unsafe { (l.is_cuda_memory)(mem.as_mut_ptr()) != glib::ffi::GFALSE }
}

/// A CUDA memory mapped on the device: where its frame is, until dropped.
pub(super) struct Mapped {
    mem: gst::Memory,
    info: gst::ffi::GstMapInfo,
    pub frame: DeviceFrame,
    pub device_id: u32,
}

// SAFETY: the map info is plain data about a memory this value keeps a reference to; mapping
// and unmapping a GstMemory are thread-safe.
unsafe impl Send for Mapped {}

/// Maps `buf`'s CUDA memory on the device, for reading or (`write`) writing; `None` when it is
/// not CUDA memory or the map fails (the caller copies through the host then).
pub(super) fn map(buf: &gst::BufferRef, write: bool) -> Option<Mapped> {
    if !is_cuda(buf) {
        return None;
    }
    let mem = buf.peek_memory(0).to_owned();
    let raw = mem.as_mut_ptr();
    // SAFETY: `is_cuda` checked that the allocator is GstCudaAllocator, whose memories are
    // `GstCudaMemory` (gstcudamemory.h): the GstMemory, then the context and the pitched
    // video info, read here while we hold a reference.
    let (ctx, vinfo) = unsafe {
        let cm = raw as *const GstCudaMemory;
        ((*cm).context, (*cm).info)
    };
    let device_id = if ctx.is_null() {
        u32::MAX
    } else {
        // SAFETY: the memory holds a reference to its context while we hold the memory;
        // from_glib_none takes one more for the temporary.
        let obj = unsafe { gst::Object::from_glib_none(ctx as *mut gst::ffi::GstObject) };
        Context(obj).device_id()
    };
    let flags = MAP_CUDA
        | if write {
            gst::ffi::GST_MAP_WRITE
        } else {
            gst::ffi::GST_MAP_READ
        };
    // SAFETY: zeroed GstMapInfo is a valid "unmapped" value for gst_memory_map to fill.
    let mut info: gst::ffi::GstMapInfo = unsafe { std::mem::zeroed() };
    // SAFETY: a live memory; on success `info.data` is the CUdeviceptr (GST_MAP_CUDA) until
    // gst_memory_unmap in Drop. A write map needs a writable memory: the caller only maps
    // frames it just took from its own pool for writing.
    let ok = unsafe { gst::ffi::gst_memory_map(raw, &mut info, flags) };
    if ok == glib::ffi::GFALSE {
        return None;
    }
    let planes = if vinfo.finfo.is_null() {
        0
    } else {
        // SAFETY: finfo points into GStreamer's static table of format descriptions.
        (unsafe { (*vinfo.finfo).n_planes } as usize).min(4)
    };
    let frame = DeviceFrame {
        context: ctx_handle(ctx),
        ptr: info.data as u64,
        size: info.size,
        offsets: vinfo.offset[..planes].to_vec(),
        strides: vinfo.stride[..planes]
            .iter()
            .map(|&s| usize::try_from(s).unwrap_or(0))
            .collect(),
    };
    Some(Mapped {
        mem,
        info,
        frame,
        device_id,
    })
}

/// The `CUcontext` of a `GstCudaContext *` held by a memory (0 without the library).
fn ctx_handle(ctx: *mut c_void) -> usize {
    match lib() {
        // SAFETY: the memory we hold keeps its context alive.
        Some(l) if !ctx.is_null() => unsafe { (l.context_get_handle)(ctx) as usize },
        _ => 0,
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: mapped in `map` with this info and not unmapped since.
        unsafe { gst::ffi::gst_memory_unmap(self.mem.as_mut_ptr(), &mut self.info) };
    }
}
