//! The floating-point types the CPU backend runs in: f32 for speed, f64 for
//! finite-difference checks and scores that overflow in f32 (synflow).

use std::fmt::Debug;
use std::iter::Sum;
use std::ops::{AddAssign, DivAssign, MulAssign, SubAssign};

/// A real scalar the CPU primitives are generic over (`f32` or `f64`).
pub trait Real:
    num_traits::Float
    + num_traits::FromPrimitive
    + AddAssign
    + SubAssign
    + MulAssign
    + DivAssign
    + Sum
    + Default
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Lossless widening to f64.
    fn to_f64_lossless(self) -> f64;
    /// Rounding from f64.
    fn from_f64_rounded(v: f64) -> Self;
}

impl Real for f32 {
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    fn from_f64_rounded(v: f64) -> Self {
        v as f32
    }
}

impl Real for f64 {
    fn to_f64_lossless(self) -> f64 {
        self
    }
    fn from_f64_rounded(v: f64) -> Self {
        v
    }
}
