//! Backends (primitives on buffers) and the executor that runs a plan on them.

pub mod cpu;
pub mod real;

pub use real::Real;
