//! The CPU backend: rayon over images, convolutions through the `gemm` crate.
//!
//! Tensors are NCHW, contiguous, batch first. Forward ops overwrite their outputs; backward
//! ops accumulate (`+=`) into gradient buffers the caller zeroed; per-sample gradient
//! outputs are overwritten. Every op asserts its slice lengths.

pub mod act;
mod backend;
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
mod winograd_fused;

pub use act::{relu_backward, relu_forward};
pub use backend::CpuBackend;
pub use conv::{
    conv2d_backward_data, conv2d_backward_data_with, conv2d_backward_weight,
    conv2d_backward_weight_with, conv2d_forward, conv2d_forward_with,
    conv2d_weight_grad_per_sample, ConvAlgo,
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
