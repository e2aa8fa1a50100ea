//! The CPU backend: rayon over images, convolutions through the `gemm` crate.
pub mod codes;
pub mod gram;
