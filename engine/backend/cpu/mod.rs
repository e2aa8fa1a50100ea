//! The CPU backend: rayon over images, convolutions through the `gemm` crate.
//!
//! Tensors are NCHW, contiguous, batch first. Forward ops overwrite their outputs; backward
//! ops accumulate (`+=`) into gradient buffers the caller zeroed; per-sample gradient
//! outputs are overwritten. Every op asserts its slice lengths.

pub mod act;
mod backend;
pub mod channel;
pub mod codes;
pub mod conv;
pub mod elementwise;
pub mod gemm;
pub mod gram;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod pool;
mod scratch;
mod winograd;
#[cfg(target_arch = "x86_64")]
mod winograd4_fused;
#[cfg(target_arch = "x86_64")]
mod winograd_fused;

pub use act::{relu_backward, relu_forward};
pub use backend::CpuBackend;
pub use conv::{
    conv2d_backward_data, conv2d_backward_data_many_with, conv2d_backward_data_with,
    conv2d_backward_weight, conv2d_backward_weight_many_with, conv2d_backward_weight_with,
    conv2d_forward, conv2d_forward_with, conv2d_weight_grad_per_sample, ConvAlgo,
};
pub use elementwise::add_assign;
pub use linear::{linear_backward, linear_forward, linear_grad_per_sample};
pub use loss::softmax_cross_entropy;
pub use norm::{
    batchnorm_backward, batchnorm_backward_data, batchnorm_forward, batchnorm_param_grad_per_sample,
};
pub use pool::{
    avgpool2x2_backward, avgpool2x2_forward, avgpool3x3_backward, avgpool3x3_forward,
    global_avgpool_backward, global_avgpool_forward,
};

/// `slice` as f32 when `T` is f32 (for the f32-only SIMD kernels), else `None`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn as_f32<T: crate::backend::Real>(slice: &[T]) -> Option<&[f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: T is f32, so the slice is reinterpreted as itself.
        .then(|| unsafe { std::slice::from_raw_parts(slice.as_ptr().cast(), slice.len()) })
}

/// [`as_f32`] of a mutable slice.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
fn as_f32_mut<T: crate::backend::Real>(slice: &mut [T]) -> Option<&mut [f32]> {
    (std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>())
        // SAFETY: as in `as_f32`.
        .then(|| unsafe { std::slice::from_raw_parts_mut(slice.as_mut_ptr().cast(), slice.len()) })
}
