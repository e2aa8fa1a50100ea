//! The CUDA backend: kernels in CUDA C (kernels/*.cu), launched through a [`Launcher`].
//!
//! - [`KERNEL_SOURCES`] / [`KERNEL_ENTRIES`]: every kernel family embedded at build time,
//!   with its content hash and the parameter types of each entry point (parsed by build.rs);
//! - `nvrtc` (feature `cuda`): run-time compilation to PTX with an on-disk cache;
//! - [`launch`]: the [`Launcher`] trait, written once for both launchers below;
//! - `emu` (feature `emu`): the kernels compiled for the host with kernels/emu/cuda_emu.h,
//!   "device memory" in host memory, for tests without a GPU;
//! - `driver` (feature `cuda`): the real launcher over cudarc;
//! - [`backend`]: [`CudaBackend`], the `Backend` trait over `ops.rs` for either launcher;
//! - [`pooled`]: a launcher wrapper reusing device memory given back (buffers, scratch);
//! - [`counting`]: a launcher wrapper counting launches, transfers and waits.

pub mod backend;
pub mod counting;
pub mod launch;
pub mod ops;
pub mod pooled;

#[cfg(feature = "emu")]
pub mod emu;

#[cfg(feature = "cuda")]
pub mod driver;
#[cfg(feature = "cuda")]
pub mod nvrtc;

pub use backend::{CudaAcc, CudaBackend, CudaBuf, CudaWords, Storage};
pub use counting::{CountingLauncher, DeviceCounts};
pub use launch::{Arg, Dim3, LaunchConfig, LaunchError, Launcher, Scratch, StorageLauncher};
pub use pooled::{PooledLauncher, POOL_BYTES};

include!(concat!(env!("OUT_DIR"), "/kernel_sources.rs"));

/// The entry points of one kernel family.
pub fn family_entries(family: &str) -> impl Iterator<Item = &'static str> + '_ {
    KERNEL_ENTRIES
        .iter()
        .filter(move |(f, _, _)| *f == family)
        .map(|(_, name, _)| *name)
}

/// The declared parameter types of kernel `name`; a 16-bit storage variant (`NAME__bf16`) has
/// its kernel's declaration, if its family is a storage family.
pub fn kernel_params(name: &str) -> Option<&'static [&'static str]> {
    let (base, storage) = Storage::split_kernel_name(name);
    KERNEL_ENTRIES
        .iter()
        .find(|(family, n, _)| {
            *n == base && (storage == Storage::F32 || STORAGE_FAMILIES.contains(family))
        })
        .map(|(_, _, params)| *params)
}

/// Whether kernel `name` (a plain name) belongs to a storage family, i.e. has 16-bit variants.
pub fn has_storage_variants(name: &str) -> bool {
    KERNEL_ENTRIES
        .iter()
        .any(|(family, n, _)| *n == name && STORAGE_FAMILIES.contains(family))
}
