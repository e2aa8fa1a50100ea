//! Training-free scores. Each is a short function over the executor's products (codes,
//! Gram matrices, gradients); none walks the network itself.

pub mod linalg;
