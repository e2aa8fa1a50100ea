//! Layer geometry shared by the plan and the backends that execute it.

/// A 2-D convolution without bias: `cin x h x w` -> `cout x out_h x out_w` per image,
/// square `k x k` kernel, weights `[cout][cin][k][k]` as PyTorch lays them out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvGeom {
    pub cin: usize,
    pub cout: usize,
    pub h: usize,
    pub w: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvGeom {
    pub fn out_h(&self) -> usize {
        (self.h + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn out_w(&self) -> usize {
        (self.w + 2 * self.pad - self.k) / self.stride + 1
    }

    pub fn weight_len(&self) -> usize {
        self.cout * self.cin * self.k * self.k
    }

    /// Input elements per image.
    pub fn in_len(&self) -> usize {
        self.cin * self.h * self.w
    }

    /// Output elements per image.
    pub fn out_len(&self) -> usize {
        self.cout * self.out_h() * self.out_w()
    }

    /// Multiply-adds per image.
    pub fn macs(&self) -> usize {
        self.out_len() * self.cin * self.k * self.k
    }
}
