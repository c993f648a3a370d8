//! Device memory: raw allocations owned by RAII handles, and pinned host staging.

use std::sync::Arc;

use cudarc::driver::{CudaContext, result, sys::CUdeviceptr};

use super::arena::ALIGN;
use super::error::{DriverContext, Result};

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

    pub fn ptr(&self) -> CUdeviceptr {
        self.ptr
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
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

    pub fn bytes(&self) -> usize {
        self.bytes
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
