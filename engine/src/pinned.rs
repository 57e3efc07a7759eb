//! Page-locked host memory for adapter uploads. Under CUDA the store's read buffers are
//! registered with the driver (`cuMemHostRegister`), so the NVMe read lands in memory the GPU's
//! copy engine reads directly and [`crate::ResidentAdapter::from_blob`]'s upload is one DMA per
//! tensor instead of a staged copy through the driver's bounce buffer. The CPU engine has nothing
//! to copy to, so it gets no pinner.

use std::sync::Arc;

use candle_core::Device;
use lorad_store::paging::HostPinner;

/// The pinner for buffers whose contents are uploaded to `device`: the CUDA driver's for a GPU,
/// none for the CPU.
pub fn host_pinner(device: &Device) -> Option<Arc<dyn HostPinner>> {
    match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(dev) => Some(Arc::new(cuda::CudaPinner::new(dev))),
        _ => None,
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::Arc;

    use candle_core::cuda_backend::CudaDevice;
    use candle_core::cuda_backend::cudarc::driver::{CudaContext, sys};
    use lorad_store::paging::HostPinner;

    /// Registers host memory with the CUDA driver, portable across contexts.
    #[derive(Debug)]
    pub(super) struct CudaPinner {
        ctx: Arc<CudaContext>,
    }

    impl CudaPinner {
        pub(super) fn new(dev: &CudaDevice) -> CudaPinner {
            CudaPinner { ctx: dev.cuda_stream().context().clone() }
        }
    }

    impl HostPinner for CudaPinner {
        unsafe fn pin(&self, ptr: *mut u8, len: usize) -> Result<(), String> {
            // Page-ins run on blocking threads that may never have touched the GPU.
            self.ctx.bind_to_thread().map_err(|e| format!("binding the CUDA context: {e}"))?;
            // SAFETY: the caller guarantees `ptr` is valid for `len` bytes until `unpin`; the
            // driver only records and locks the range. PORTABLE makes it pinned for every
            // context, not just the one bound here.
            unsafe { sys::cuMemHostRegister_v2(ptr.cast(), len, sys::CU_MEMHOSTREGISTER_PORTABLE) }
                .result()
                .map_err(|e| format!("cuMemHostRegister of {len} bytes: {e}"))
        }

        unsafe fn unpin(&self, ptr: *mut u8, len: usize) {
            let result = self.ctx.bind_to_thread().and_then(|()| {
                // SAFETY: `ptr` was registered by `pin` (the caller's contract) and is still
                // allocated; after this the driver no longer references it.
                unsafe { sys::cuMemHostUnregister(ptr.cast()) }.result()
            });
            if let Err(e) = result {
                // The memory is freed next either way; the driver drops a stale registration
                // when the context goes.
                tracing::warn!(error = %e, bytes = len, "cuMemHostUnregister failed");
            }
        }

        fn name(&self) -> &str {
            "cuda"
        }
    }
}
