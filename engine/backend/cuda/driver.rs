//! The real launcher: every kernel family compiled by NVRTC for the device's compute
//! capability (through the PTX cache), loaded as modules, launched on one stream through
//! cudarc. Buffers are `CudaSlice<u8>`; a kernel's typed pointer is the same device address.
//!
//! Not exercised without a GPU: kept minimal, the logic above it is shared with the emulator.

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, PushKernelArg,
};

use super::launch::{check_launch, Arg, LaunchConfig, LaunchError, Launcher};
use super::{family_entries, nvrtc, KERNEL_SOURCES};

fn device(e: impl std::fmt::Debug) -> LaunchError {
    LaunchError::Device(format!("{e:?}"))
}

/// How many CUDA devices this process can use (0 when the driver finds none), or why the
/// driver cannot be asked (no driver library, or its initialisation failed).
pub fn device_count() -> Result<usize, LaunchError> {
    // SAFETY: only tries to dlopen the candidate library names.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(LaunchError::Device(
            "the CUDA driver library (libcuda.so) could not be loaded: no NVIDIA driver here"
                .into(),
        ));
    }
    match CudaContext::device_count() {
        Ok(count) => Ok(usize::try_from(count).unwrap_or(0)),
        Err(e) if e.0 == cudarc::driver::sys::CUresult::CUDA_ERROR_NO_DEVICE => Ok(0),
        Err(e) => Err(device(e)),
    }
}

/// Kernels loaded on one device, launched in order on a stream of the launcher's own.
pub struct DriverLauncher {
    stream: Arc<CudaStream>,
    /// By launch name (`conv_forward`, `conv_forward__bf16`, ...).
    functions: HashMap<String, CudaFunction>,
}

impl DriverLauncher {
    /// Compiles (or takes from the cache) and loads every kernel family on device `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self, LaunchError> {
        let ctx = CudaContext::new(ordinal).map_err(device)?;
        let (major, minor) = ctx.compute_capability().map_err(device)?;
        let arch = nvrtc::arch_for(major, minor);
        let mut functions = HashMap::new();
        for (family, _, _) in KERNEL_SOURCES {
            for &storage in nvrtc::family_storages(family) {
                let ptx = nvrtc::compile_ptx_cached(family, storage, &arch)
                    .map_err(|e| LaunchError::Compile(e.to_string()))?;
                let module = ctx
                    .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
                    .map_err(device)?;
                for name in family_entries(family) {
                    functions.insert(
                        format!("{name}{}", storage.kernel_suffix()),
                        module.load_function(name).map_err(device)?,
                    );
                }
            }
        }
        // A stream of its own, so that launchers on one device (one per worker) overlap;
        // non-blocking: it does not wait on the legacy default stream.
        // SAFETY: every buffer of this launcher is allocated, used and freed on its one
        // stream, so cudarc's cross-stream event tracking is not needed.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().map_err(device)?;
        Ok(DriverLauncher { stream, functions })
    }

    fn check_len(what: &str, a: usize, b: usize) -> Result<(), LaunchError> {
        if a == b {
            Ok(())
        } else {
            Err(LaunchError::Length(format!(
                "{what}: {a} bytes vs {b} bytes"
            )))
        }
    }
}

impl Launcher for DriverLauncher {
    type Buf = CudaSlice<u8>;

    fn alloc_zeroed(&self, bytes: usize) -> Result<Self::Buf, LaunchError> {
        self.stream.alloc_zeros::<u8>(bytes).map_err(device)
    }

    fn take_bytes(&self, bytes: usize) -> Result<Self::Buf, LaunchError> {
        // SAFETY: the contents are unspecified by contract (`take_bytes`): the user writes
        // before it reads, so no memset is queued.
        unsafe { self.stream.alloc::<u8>(bytes) }.map_err(device)
    }

    fn write_bytes(&self, host: &[u8], buf: &mut Self::Buf) -> Result<(), LaunchError> {
        Self::check_len("upload", host.len(), buf.len())?;
        self.stream.memcpy_htod(host, buf).map_err(device)
    }

    fn download_bytes(&self, buf: &Self::Buf, out: &mut [u8]) -> Result<(), LaunchError> {
        Self::check_len("download", buf.len(), out.len())?;
        self.stream.memcpy_dtoh(buf, out).map_err(device)?;
        self.stream.synchronize().map_err(device)
    }

    fn byte_len(&self, buf: &Self::Buf) -> usize {
        buf.len()
    }

    fn address(&self, buf: &mut Self::Buf) -> u64 {
        // Event tracking is off (see `new`), so the guard cudarc returns does nothing.
        let (ptr, _guard) = buf.device_ptr_mut(&self.stream);
        ptr
    }

    fn read_address(&self, buf: &Self::Buf) -> u64 {
        let (ptr, _guard) = buf.device_ptr(&self.stream);
        ptr
    }

    fn synchronize(&self) -> Result<(), LaunchError> {
        self.stream.synchronize().map_err(device)
    }

    fn zero(&self, buf: &mut Self::Buf) -> Result<(), LaunchError> {
        self.stream.memset_zeros(buf).map_err(device)
    }

    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<(), LaunchError> {
        Self::check_len("copy", src.len(), dst.len())?;
        self.stream.memcpy_dtod(src, dst).map_err(device)
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        config: LaunchConfig,
        args: &mut [Arg<'_, Self::Buf>],
    ) -> Result<(), LaunchError> {
        check_launch(kernel, &config, args)?;
        let function = self
            .functions
            .get(kernel)
            .ok_or_else(|| LaunchError::UnknownKernel(kernel.into()))?;
        let mut builder = self.stream.launch_builder(function);
        for arg in args.iter_mut() {
            match arg {
                Arg::Buf(b) => builder.arg(&**b),
                Arg::BufMut(b) => builder.arg(&mut **b),
                Arg::I32(v) => builder.arg(&*v),
                Arg::U32(v) => builder.arg(&*v),
                Arg::I64(v) => builder.arg(&*v),
                Arg::U64(v) => builder.arg(&*v),
                Arg::F32(v) => builder.arg(&*v),
                Arg::F64(v) => builder.arg(&*v),
            };
        }
        let (g, b) = (config.grid, config.block);
        let cfg = cudarc::driver::LaunchConfig {
            grid_dim: (g.x, g.y, g.z),
            block_dim: (b.x, b.y, b.z),
            shared_mem_bytes: config.shared_bytes,
        };
        // SAFETY: arguments match the declaration (checked); the caller vouches for bounds.
        unsafe { builder.launch(cfg) }.map_err(device)?;
        Ok(())
    }
}
