// SPDX-License-Identifier: MIT OR Apache-2.0
//! The element's side of GStreamer's CUDA memory: the pipeline's CUDA context (taken from
//! `set_context`, found at start or made and posted) and the pool of CUDA memory the new frames
//! come from. A child of `imp.rs` (it reads the element's fields); the foreign calls are in
//! [`super::super::cuda_mem`].

use std::sync::Arc;

use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_base::prelude::*;

use super::super::cuda_mem;
use super::super::cuda_path::{self, DeviceIo};
use super::{CAT, FlavrInterp};

impl FlavrInterp {
    /// Whether `buf` is in CUDA memory and the element runs the CUDA-memory path (with
    /// `cuda-memory` off it never asks: libgstcuda is not even opened, as before).
    pub(super) fn in_cuda_memory(&self, buf: &gst::BufferRef) -> bool {
        self.cuda.lock().unwrap().active && cuda_mem::is_cuda(buf)
    }

    /// Whether the caps offer CUDA memory now: while the element runs, where its engine runs in
    /// the pipeline's CUDA context; before it starts (links, caps filters, templates), wherever
    /// it could (`cuda-memory` on, libgstcuda loaded, the CUDA backend asked or `auto`, one
    /// engine), so that a link through a CUDA-memory caps filter is not refused before the
    /// engine exists. Negotiation happens after start, with the real answer.
    pub(super) fn offers_cuda_memory(&self) -> bool {
        if self.cuda.lock().unwrap().active {
            return true;
        }
        if self.running.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let s = self.settings.lock().unwrap();
        s.cuda_memory
            && s.backend != super::super::BackendKind::Cpu
            && s.devices.is_empty()
            && cuda_mem::available()
    }

    /// A `GstContext` given to the element: kept if it is a CUDA context on `device-id` and no
    /// engine runs in another one.
    pub(super) fn take_cuda_context(&self, context: &gst::Context) {
        let (id, wanted) = {
            let s = self.settings.lock().unwrap();
            (s.device_id, s.cuda_memory)
        };
        if !wanted {
            // `cuda-memory` off: the element neither keeps nor shares a CUDA context.
            return;
        }
        let Some(ctx) = cuda_mem::from_gst_context(self.obj().upcast_ref(), context) else {
            return;
        };
        if ctx.device_id() != id {
            gst::warning!(
                CAT,
                imp = self,
                "the pipeline's CUDA context is on GPU {}, device-id is {id}: frames in CUDA \
                 memory will go through system memory",
                ctx.device_id()
            );
            return;
        }
        let mut cuda = self.cuda.lock().unwrap();
        if !cuda.active {
            cuda.ctx = Some(ctx);
        }
    }

    /// The pipeline's CUDA context for the engine, when CUDA memory is asked for
    /// (`cuda-memory`) and can be used: libgstcuda loaded, one engine on the GPU, a neighbour
    /// that takes or gives CUDA memory (or a context given already). Found as nvcodec's
    /// elements find it (neighbours, application), else made and posted for them.
    pub(super) fn cuda_context(
        &self,
        settings: &super::super::props::Settings,
    ) -> Option<crate::cuda::SharedContext> {
        if !settings.cuda_memory {
            gst::debug!(CAT, imp = self, "cuda-memory is off: system memory only");
            return None;
        }
        if !cuda_mem::available()
            || settings.backend == super::super::BackendKind::Cpu
            || !settings.devices.is_empty()
        {
            return None;
        }
        let known = self.cuda.lock().unwrap().ctx.clone();
        let ctx = match known {
            Some(ctx) => ctx,
            None => {
                let obj = self.obj();
                if !cuda_path::peer_can(obj.sink_pad()) && !cuda_path::peer_can(obj.src_pad()) {
                    gst::debug!(CAT, imp = self, "no neighbour does CUDA memory");
                    return None;
                }
                // Without our lock: this posts messages, and the answer comes in set_context.
                let ctx = cuda_mem::ensure(obj.upcast_ref(), settings.device_id)?;
                self.cuda.lock().unwrap().ctx = Some(ctx.clone());
                ctx
            }
        };
        if ctx.device_id() != settings.device_id {
            gst::warning!(
                CAT,
                imp = self,
                "the pipeline's CUDA context is on GPU {}, device-id is {}: system memory only",
                ctx.device_id(),
                settings.device_id
            );
            return None;
        }
        Some(crate::cuda::SharedContext {
            handle: ctx.handle(),
            keep: Box::new(ctx.object()),
        })
    }

    /// How the network thread handles CUDA memory for the negotiated caps of `query` (the
    /// ALLOCATION query with downstream's answer): a pool of CUDA memory for the output, put
    /// first in the query, when the output caps are CUDA memory.
    pub(super) fn device_io(
        &self,
        query: &mut gst::query::Allocation,
    ) -> Result<Option<DeviceIo>, gst::LoggableError> {
        let (ctx, active) = {
            let cuda = self.cuda.lock().unwrap();
            (cuda.ctx.clone(), cuda.active)
        };
        let (Some(ctx), true) = (ctx, active) else {
            return Ok(None);
        };
        let (caps, _) = query.get_owned();
        let pool = match caps {
            Some(caps) if cuda_path::is_cuda_caps(&caps) => {
                let info = gst_video::VideoInfo::from_caps(&caps)
                    .map_err(|_| gst::loggable_error!(CAT, "cannot parse caps {caps}"))?;
                let min = query
                    .allocation_pools()
                    .next()
                    .map_or(0, |(_, _, min, _)| min);
                let pool = cuda_path::pool(&ctx, &caps, &info, min)
                    .map_err(|e| gst::loggable_error!(CAT, "{e}"))?;
                let size = pool.config().params().map_or(info.size() as u32, |p| p.1);
                if query.allocation_pools().next().is_some() {
                    query.set_nth_allocation_pool(0, Some(&pool), size, min, 0);
                } else {
                    query.add_allocation_pool(Some(&pool), size, min, 0);
                }
                gst::debug!(
                    CAT,
                    imp = self,
                    "new frames from a CUDA pool ({size} bytes)"
                );
                Some(pool)
            }
            _ => None,
        };
        let device_id = self.settings.lock().unwrap().device_id;
        Ok(Some(DeviceIo {
            device_id,
            pool,
            fell_back: Arc::default(),
        }))
    }
}
