//! `--device`: the names, and the one place a backend is built from them.
//!
//! `cpu` is the CPU backend; `cuda` / `cuda:K` the CUDA backend on GPU 0 / K (build feature
//! `cuda`); `cuda:all` every GPU (score's workers on each, one backend: GPU 0); `emu` the CUDA backend's host code on the kernels compiled for the host (build
//! feature `emu`; slow, for checking); `auto` the GPU when the CUDA backend can run on one,
//! else the CPU with a one-line notice. A device that cannot be had is
//! [`RunError::Unavailable`].

use super::RunError;
use crate::backend::cpu::CpuBackend;
#[cfg(feature = "cuda")]
use crate::backend::cuda::driver::DriverLauncher;
#[cfg(feature = "emu")]
use crate::backend::cuda::emu::EmuLauncher;
#[cfg(any(feature = "cuda", feature = "emu"))]
use crate::backend::cuda::CudaBackend;
pub use crate::backend::cuda::Storage;
use anyhow::anyhow;

/// A `--device` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Auto,
    /// GPU K (`cuda` is GPU 0).
    Cuda(usize),
    /// Every GPU the driver sees (`cuda:all`): `score` runs its workers on each; commands
    /// with one backend use GPU 0.
    CudaAll,
    Emu,
}

impl Device {
    /// The name `--device` takes for this device.
    pub fn name(self) -> String {
        match self {
            Device::Cpu => "cpu".into(),
            Device::Auto => "auto".into(),
            Device::Cuda(k) => format!("cuda:{k}"),
            Device::CudaAll => "cuda:all".into(),
            Device::Emu => "emu".into(),
        }
    }
}

/// Parses a `--device` value (whether it can be had is decided by [`Device::backend`]).
pub fn parse_device(text: &str) -> Result<Device, String> {
    match text {
        "cpu" => Ok(Device::Cpu),
        "auto" => Ok(Device::Auto),
        "cuda" => Ok(Device::Cuda(0)),
        "emu" => Ok(Device::Emu),
        "cuda:all" => Ok(Device::CudaAll),
        _ => text
            .strip_prefix("cuda:")
            .and_then(|k| k.parse().ok())
            .map(Device::Cuda)
            .ok_or_else(|| format!("{text:?} is not cpu, auto, cuda, cuda:K, cuda:all or emu")),
    }
}

/// A backend chosen at run time; [`with_backend!`] runs code on the one inside.
pub enum AnyBackend {
    Cpu(CpuBackend<f32>),
    #[cfg(feature = "emu")]
    Emu(CudaBackend<EmuLauncher>),
    #[cfg(feature = "cuda")]
    Cuda(CudaBackend<DriverLauncher>),
}

/// `with_backend!(any, be => expr)`: evaluates `expr` with `be` bound to the concrete
/// backend of `any` (a `&AnyBackend`), so code generic over `B: Backend` runs on any of them.
#[macro_export]
macro_rules! with_backend {
    ($any:expr, $be:ident => $body:expr) => {
        match $any {
            $crate::run::device::AnyBackend::Cpu($be) => $body,
            #[cfg(feature = "emu")]
            $crate::run::device::AnyBackend::Emu($be) => $body,
            #[cfg(feature = "cuda")]
            $crate::run::device::AnyBackend::Cuda($be) => $body,
        }
    };
}
pub use with_backend;

impl Device {
    /// `count` independent backends per device (on a GPU: one stream and buffer pool each)
    /// holding activations to `storage`, or why this device cannot be had. `auto` decides
    /// once, for all of them. Without `count`: 4 on a GPU, whose small kernels leave room
    /// for several archs side by side; 2 on the CPU (1 with one thread), each worker on its
    /// share of the cores.
    pub fn backends(
        self,
        count: Option<usize>,
        storage: Storage,
    ) -> Result<Vec<AnyBackend>, RunError> {
        let with_storage = |be: AnyBackend| match be {
            AnyBackend::Cpu(_) if storage != Storage::F32 => Err(RunError::input(anyhow!(
                "--storage {}: only the CUDA backend (--device cuda or emu) stores activations \
                 in 16 bits",
                storage_name(storage)
            ))),
            AnyBackend::Cpu(be) => Ok(AnyBackend::Cpu(be)),
            #[cfg(feature = "emu")]
            AnyBackend::Emu(be) => Ok(AnyBackend::Emu(be.with_storage(storage))),
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(be) => Ok(AnyBackend::Cuda(be.with_storage(storage))),
        };
        let first = with_storage(self.backend()?)?;
        let count = count.unwrap_or(match first {
            // Two archs side by side, each on half the cores (see `score`'s worker pools):
            // ~11 % faster than one arch on all cores (docs/PERF.md), at twice the memory.
            AnyBackend::Cpu(_) => rayon::current_num_threads().min(2),
            #[cfg(feature = "emu")]
            AnyBackend::Emu(_) => 1,
            #[cfg(feature = "cuda")]
            AnyBackend::Cuda(_) => 4,
        });
        let devices = match (&first, self) {
            (AnyBackend::Cpu(_), Device::Auto) => vec![Device::Cpu],
            (_, Device::CudaAll) => (0..gpu_count().map_err(RunError::unavailable)?)
                .map(Device::Cuda)
                .collect(),
            _ => vec![self],
        };
        // `count` per device, dealt round-robin so the first workers cover every GPU.
        let mut all = vec![first];
        for device in (0..count).flat_map(|_| devices.iter()).skip(1) {
            all.push(with_storage(device.backend()?)?);
        }
        Ok(all)
    }

    /// Builds the backend, or says why this device cannot be had.
    pub fn backend(self) -> Result<AnyBackend, RunError> {
        match self {
            Device::Cpu => Ok(AnyBackend::Cpu(CpuBackend::new())),
            Device::Emu => emu(),
            Device::Cuda(k) => {
                cuda(k).map_err(|e| RunError::unavailable(anyhow!("--device cuda:{k}: {e}")))
            }
            Device::CudaAll => {
                cuda(0).map_err(|e| RunError::unavailable(anyhow!("--device cuda:all: {e}")))
            }
            Device::Auto => Ok(cuda(0).unwrap_or_else(|e| {
                eprintln!("notice: --device auto: using the CPU ({e})");
                AnyBackend::Cpu(CpuBackend::new())
            })),
        }
    }
}

/// Parses a `--storage` value: `f32` (default), `f16` or `bf16` (see [`Storage`]).
pub fn parse_storage(text: &str) -> Result<Storage, String> {
    match text {
        "f32" => Ok(Storage::F32),
        "f16" => Ok(Storage::F16),
        "bf16" => Ok(Storage::Bf16),
        _ => Err(format!("{text:?} is not f32, f16 or bf16")),
    }
}

/// The name `--storage` takes for `storage`.
pub fn storage_name(storage: Storage) -> &'static str {
    match storage {
        Storage::F32 => "f32",
        Storage::F16 => "f16",
        Storage::Bf16 => "bf16",
    }
}

#[cfg(feature = "emu")]
fn emu() -> Result<AnyBackend, RunError> {
    Ok(AnyBackend::Emu(CudaBackend::new(EmuLauncher::new())))
}

#[cfg(not(feature = "emu"))]
fn emu() -> Result<AnyBackend, RunError> {
    Err(RunError::unavailable(anyhow!(
        "--device emu: this nasrank was built without the `emu` feature (cargo build --features emu)"
    )))
}

/// The CUDA backend on GPU `k`, or why not (no driver, no GPU, `k` out of range, NVRTC
/// missing or failing).
#[cfg(feature = "cuda")]
fn cuda(k: usize) -> Result<AnyBackend, String> {
    use crate::backend::cuda::driver::device_count;
    let count = device_count().map_err(|e| e.to_string())?;
    if count == 0 {
        return Err("the CUDA driver sees no GPU".into());
    }
    if k >= count {
        return Err(format!(
            "there is no GPU {k}: the CUDA driver sees {count} (cuda:0..cuda:{})",
            count - 1
        ));
    }
    let launcher = DriverLauncher::new(k).map_err(|e| e.to_string())?;
    Ok(AnyBackend::Cuda(CudaBackend::new(launcher)))
}

/// How many GPUs the CUDA driver sees.
#[cfg(feature = "cuda")]
fn gpu_count() -> Result<usize, anyhow::Error> {
    crate::backend::cuda::driver::device_count().map_err(|e| anyhow!("--device cuda:all: {e}"))
}

#[cfg(not(feature = "cuda"))]
fn gpu_count() -> Result<usize, anyhow::Error> {
    Err(anyhow!(
        "--device cuda:all: this nasrank was built without the `cuda` feature"
    ))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_k: usize) -> Result<AnyBackend, String> {
    Err("this nasrank was built without the `cuda` feature (cargo build --features cuda)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_others_are_refused() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device("auto"), Ok(Device::Auto));
        assert_eq!(parse_device("emu"), Ok(Device::Emu));
        assert_eq!(parse_device("cuda"), Ok(Device::Cuda(0)));
        assert_eq!(parse_device("cuda:3"), Ok(Device::Cuda(3)));
        assert_eq!(parse_device("cuda:all"), Ok(Device::CudaAll));
        for bad in ["tpu", "cuda:", "cuda:-1", "cuda:x", "CPU"] {
            assert!(parse_device(bad).unwrap_err().contains("cuda:K"), "{bad}");
        }
    }
}
