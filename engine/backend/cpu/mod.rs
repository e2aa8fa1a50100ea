//! The CPU backend: rayon over images, convolutions through the `gemm` crate.
