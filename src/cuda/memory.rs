//! Device memory: raw allocations owned by RAII handles, typed views into them, and pinned
//! host staging.
//!
//! A [`DevView`] is what the launches, cuDNN calls and copies take instead of a device address:
//! where it starts, how many elements and of which type. Views are made only from a live
//! [`DeviceBuf`] (borrowed for the view's lifetime) and sub-views are bounds-checked, so a view
//! always lies inside one allocation. Work queued on a stream may outlive the borrow: owners
//! synchronise their streams before freeing (the engine does at configure and drop).

use std::marker::PhantomData;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaStream, result, sys::CUdeviceptr};

use super::arena::ALIGN;
use super::error::{CudaError, DriverContext, Result};
pub use super::params::Dtype;

/// `len` elements of `dtype` at a device address inside a live allocation (see the module
/// documentation).
#[derive(Clone, Copy, Debug)]
pub struct DevView<'a> {
    ptr: CUdeviceptr,
    len: usize,
    dtype: Dtype,
    _buf: PhantomData<&'a DeviceBuf>,
}

impl<'a> DevView<'a> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn bytes(&self) -> usize {
        self.len * self.dtype.bytes()
    }

    /// Elements `start..start + len` of this view.
    pub fn sub(&self, start: usize, len: usize) -> Result<DevView<'a>> {
        match start.checked_add(len) {
            Some(end) if end <= self.len => Ok(DevView {
                ptr: self.ptr + (start * self.dtype.bytes()) as u64,
                len,
                ..*self
            }),
            _ => Err(CudaError::Internal(format!(
                "device view {start}..+{len} outside {} elements of {:?}",
                self.len, self.dtype
            ))),
        }
    }

    /// Elements from `start` to the end of this view.
    pub fn from(&self, start: usize) -> Result<DevView<'a>> {
        self.sub(start, self.len.saturating_sub(start))
    }

    /// An error unless this view holds at least `n` elements of `dtype`; `what` names the
    /// buffer in the error.
    pub fn check(&self, dtype: Dtype, n: usize, what: &str) -> Result<()> {
        if self.dtype != dtype || self.len < n {
            return Err(CudaError::Internal(format!(
                "{what}: needs {n} elements of {dtype:?}, the buffer has {} of {:?}",
                self.len, self.dtype
            )));
        }
        Ok(())
    }

    /// An error unless the view starts at a multiple of `align` bytes (vector loads).
    pub fn check_aligned(&self, align: usize, what: &str) -> Result<()> {
        if !self.ptr.is_multiple_of(align as u64) {
            return Err(CudaError::Internal(format!(
                "{what}: device address not {align}-byte aligned"
            )));
        }
        Ok(())
    }

    /// `bytes` bytes at `ptr` that this crate did not allocate (a frame in GStreamer's CUDA
    /// memory), as bytes, borrowed for as long as `owner` (what keeps the memory mapped).
    ///
    /// # Safety
    /// `ptr..ptr + bytes` must be one live device allocation of the current context's device,
    /// usable by kernels of the engine's context, that stays allocated (mapped) for `'a` and
    /// until every stream that used the view has been synchronised.
    pub unsafe fn external<T: ?Sized>(ptr: CUdeviceptr, bytes: usize, _owner: &'a T) -> Self {
        DevView {
            ptr,
            len: bytes,
            dtype: Dtype::U8,
            _buf: PhantomData,
        }
    }

    /// The device address, for the unsafe launch, cuDNN call or copy that uses the view.
    pub fn device_ptr(&self) -> CUdeviceptr {
        self.ptr
    }
}

/// A device allocation, freed on drop.
pub struct DeviceBuf {
    ctx: Arc<CudaContext>,
    ptr: CUdeviceptr,
    bytes: usize,
}

impl DeviceBuf {
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize, what: &'static str) -> Result<DeviceBuf> {
        ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let n = bytes.max(ALIGN);
        // SAFETY: a plain allocation; freed once in Drop.
        let ptr = unsafe { result::malloc_sync(n) }.during(what)?;
        Ok(DeviceBuf {
            ctx: ctx.clone(),
            ptr,
            bytes: n,
        })
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The whole allocation as elements of `dtype`.
    pub fn view(&self, dtype: Dtype) -> DevView<'_> {
        DevView {
            ptr: self.ptr,
            len: self.bytes / dtype.bytes(),
            dtype,
            _buf: PhantomData,
        }
    }

    /// Bytes `off..off + bytes` of the allocation as elements of `dtype` (`off` and `bytes`
    /// multiples of its size).
    pub fn slice(&self, off: usize, bytes: usize, dtype: Dtype) -> Result<DevView<'_>> {
        let e = dtype.bytes();
        if !off.is_multiple_of(e) || !bytes.is_multiple_of(e) {
            return Err(CudaError::Internal(format!(
                "device slice at {off} of {bytes} bytes is not in whole {dtype:?} elements"
            )));
        }
        self.view(dtype).sub(off / e, bytes / e)
    }
}

/// Fills a view's bytes with `byte`, ordered on `stream`.
pub fn memset(view: DevView<'_>, byte: u8, stream: &CudaStream) -> Result<()> {
    // SAFETY: the view lies inside a live allocation (DevView's invariant); no host memory is
    // involved.
    unsafe { result::memset_d8_async(view.ptr, byte, view.bytes(), stream.cu_stream()) }
        .during("cuMemsetD8Async")
}

/// Queues a copy of `src` into the start of `dst` on `stream` (bounds checked).
///
/// # Safety
/// `src` must stay valid and unchanged until the stream has passed the copy (a pinned buffer
/// not touched until an event after the copy completes, or a synchronisation of the stream
/// before `src` is used or dropped).
pub unsafe fn copy_to_device<T>(dst: DevView<'_>, src: &[T], stream: &CudaStream) -> Result<()> {
    let n = std::mem::size_of_val(src);
    if n > dst.bytes() {
        return Err(CudaError::Internal(format!(
            "copy of {n} bytes into a device buffer of {}",
            dst.bytes()
        )));
    }
    // SAFETY: n bytes fit in dst (checked), which lies in a live allocation; the caller keeps
    // `src` valid until the copy is done.
    unsafe { result::memcpy_htod_async(dst.ptr, src, stream.cu_stream()) }
        .during("cuMemcpyHtoDAsync")
}

/// Queues a copy of the start of `src` into `dst` on `stream` (bounds checked).
///
/// # Safety
/// `dst` must stay valid and not be read or written by the host until the stream has passed
/// the copy (synchronise the stream first).
pub unsafe fn copy_to_host<T>(dst: &mut [T], src: DevView<'_>, stream: &CudaStream) -> Result<()> {
    let n = std::mem::size_of_val(dst);
    if n > src.bytes() {
        return Err(CudaError::Internal(format!(
            "copy of {n} bytes out of a device buffer of {}",
            src.bytes()
        )));
    }
    // SAFETY: n bytes lie in src (checked), inside a live allocation; the caller leaves `dst`
    // alone until the copy is done.
    unsafe { result::memcpy_dtoh_async(dst, src.ptr, stream.cu_stream()) }
        .during("cuMemcpyDtoHAsync")
}

impl Drop for DeviceBuf {
    fn drop(&mut self) {
        // Errors cannot be returned from drop; a failing free leaves nothing to clean up.
        let _ = self.ctx.bind_to_thread();
        // SAFETY: allocated by malloc_sync in `new`, freed only here. Work that used it has
        // been synchronised by the owner before dropping.
        let _ = unsafe { result::free_sync(self.ptr) };
    }
}

// SAFETY: a device pointer plus the context that owns it; no host aliasing.
unsafe impl Send for DeviceBuf {}

/// Page-locked host memory (fast, asynchronous copies), freed on drop.
pub struct PinnedBuf {
    ctx: Arc<CudaContext>,
    ptr: *mut u8,
    bytes: usize,
}

impl PinnedBuf {
    pub fn new(ctx: &Arc<CudaContext>, bytes: usize) -> Result<PinnedBuf> {
        ctx.bind_to_thread().during("cuCtxSetCurrent")?;
        let n = bytes.max(1);
        // SAFETY: plain page-locked allocation, freed once in Drop.
        let ptr = unsafe { result::malloc_host(n, 0) }.during("cuMemHostAlloc")? as *mut u8;
        Ok(PinnedBuf {
            ctx: ctx.clone(),
            ptr,
            bytes: n,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: ptr is a live allocation of `bytes` bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self guarantees exclusive access from the host.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.bytes) }
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: allocated by malloc_host in `new`, freed only here.
        let _ = unsafe { result::free_host(self.ptr as *mut std::ffi::c_void) };
    }
}

// SAFETY: owned host memory; access goes through &self / &mut self.
unsafe impl Send for PinnedBuf {}
