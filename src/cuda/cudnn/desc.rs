//! cuDNN descriptors as owned values: channels-last 5-D tensors and filters, and the 3-D
//! convolution. Each is created on construction and destroyed once on drop.

use cudarc::cudnn::sys;

use crate::cuda::error::{CudaError, Result, cudnn_check};

/// An owned descriptor type `$name` around the handle `$raw`, made by `$create` and released
/// by `$destroy`.
macro_rules! descriptor {
    ($(#[$doc:meta])* $name:ident, $raw:ty, $create:ident, $destroy:ident) => {
        $(#[$doc])*
        pub struct $name($raw);

        // SAFETY: an opaque host-side descriptor, owned; used by one thread at a time.
        unsafe impl Send for $name {}

        impl $name {
            /// A fresh descriptor, not yet set.
            fn create() -> Result<$name> {
                let mut d = std::ptr::null_mut();
                // SAFETY: out-pointer to a new descriptor.
                cudnn_check(unsafe { sys::$create(&mut d) }, stringify!($create))?;
                Ok($name(d))
            }

            pub fn raw(&self) -> $raw {
                self.0
            }
        }

        impl Drop for $name {
            fn drop(&mut self) {
                // SAFETY: created once by `create`, destroyed once here.
                let _ = unsafe { sys::$destroy(self.0) };
            }
        }
    };
}

descriptor!(
    /// A packed channels-last tensor `[n, c, d, h, w]` (memory order n, d, h, w, c).
    TensorDesc,
    sys::cudnnTensorDescriptor_t,
    cudnnCreateTensorDescriptor,
    cudnnDestroyTensorDescriptor
);

descriptor!(
    /// A channels-last filter `[k, c, t, r, s]` (memory order k, t, r, s, c).
    FilterDesc,
    sys::cudnnFilterDescriptor_t,
    cudnnCreateFilterDescriptor,
    cudnnDestroyFilterDescriptor
);

descriptor!(
    /// A 3-D cross-correlation with padding and stride, float32 accumulation.
    ConvDesc,
    sys::cudnnConvolutionDescriptor_t,
    cudnnCreateConvolutionDescriptor,
    cudnnDestroyConvolutionDescriptor
);

impl TensorDesc {
    pub fn ndhwc(dt: sys::cudnnDataType_t, dims: [usize; 5]) -> Result<TensorDesc> {
        let [_, c, d, h, w] = dims;
        let dims_i = to_int(&dims)?;
        let strides = to_int(&[d * h * w * c, 1, h * w * c, w * c, c])?;
        let desc = TensorDesc::create()?;
        // SAFETY: 5 dims and 5 strides.
        cudnn_check(
            unsafe {
                sys::cudnnSetTensorNdDescriptor(desc.0, dt, 5, dims_i.as_ptr(), strides.as_ptr())
            },
            "cudnnSetTensorNdDescriptor",
        )?;
        Ok(desc)
    }
}

impl FilterDesc {
    pub fn khwc(dt: sys::cudnnDataType_t, dims: [usize; 5]) -> Result<FilterDesc> {
        let dims_i = to_int(&dims)?;
        let desc = FilterDesc::create()?;
        // SAFETY: 5 dims.
        cudnn_check(
            unsafe {
                sys::cudnnSetFilterNdDescriptor(
                    desc.0,
                    dt,
                    sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
                    5,
                    dims_i.as_ptr(),
                )
            },
            "cudnnSetFilterNdDescriptor",
        )?;
        Ok(desc)
    }
}

impl ConvDesc {
    pub fn new(pad: [usize; 3], stride: [usize; 3]) -> Result<ConvDesc> {
        let desc = ConvDesc::create()?;
        let pad = to_int(&pad)?;
        let stride = to_int(&stride)?;
        let dil = [1i32; 3];
        // SAFETY: arrays of length 3.
        cudnn_check(
            unsafe {
                sys::cudnnSetConvolutionNdDescriptor(
                    desc.0,
                    3,
                    pad.as_ptr(),
                    stride.as_ptr(),
                    dil.as_ptr(),
                    sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
                    sys::cudnnDataType_t::CUDNN_DATA_FLOAT,
                )
            },
            "cudnnSetConvolutionNdDescriptor",
        )?;
        Ok(desc)
    }

    pub fn set_math(&self, m: sys::cudnnMathType_t) -> Result<()> {
        // SAFETY: valid descriptor.
        cudnn_check(
            unsafe { sys::cudnnSetConvolutionMathType(self.0, m) },
            "cudnnSetConvolutionMathType",
        )
    }
}

fn to_int(v: &[usize]) -> Result<Vec<i32>> {
    v.iter()
        .map(|&x| {
            i32::try_from(x).map_err(|_| CudaError::Unsupported(format!("dimension {x} too large")))
        })
        .collect()
}
