//! The real launcher: every kernel family compiled by NVRTC for the device's compute
//! capability (through the PTX cache), loaded as modules, launched on one stream through
//! cudarc. Buffers are `CudaSlice<u8>`; a kernel's typed pointer is the same device address.
//!
//! Not exercised without a GPU: kept minimal, the logic above it is shared with the emulator.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cudarc::driver::{
    CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    PushKernelArg,
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

/// How a host thread waits for its stream, from `NASRANK_CUDA_SYNC`: `spin`, `yield`,
/// `block` (it sleeps until the device is done), or unset: the driver's choice (it spins
/// while there are fewer active contexts than cores). Waiting threads that spin hold cores
/// that the other workers and the host scores need (docs/PERF.md, "GPU").
fn set_sync_mode(ctx: &CudaContext) -> Result<(), LaunchError> {
    use cudarc::driver::sys::CUctx_flags;
    let flag = match std::env::var("NASRANK_CUDA_SYNC").as_deref() {
        Err(_) | Ok("" | "auto") => return Ok(()),
        Ok("spin") => CUctx_flags::CU_CTX_SCHED_SPIN,
        Ok("yield") => CUctx_flags::CU_CTX_SCHED_YIELD,
        Ok("block") => CUctx_flags::CU_CTX_SCHED_BLOCKING_SYNC,
        Ok(other) => {
            return Err(LaunchError::Device(format!(
                "NASRANK_CUDA_SYNC={other}: expected auto, spin, yield or block"
            )))
        }
    };
    // SAFETY: sets the scheduling flags of the device's primary context, which `ctx` holds.
    unsafe { cudarc::driver::sys::cuDevicePrimaryCtxSetFlags_v2(ctx.cu_device(), flag as u32) }
        .result()
        .map_err(device)
}

/// Kernels loaded on one device, launched in order on a stream of the launcher's own.
pub struct DriverLauncher {
    /// Per-operation timing, when `NASRANK_CUDA_PROFILE` names a file (first, so that it is
    /// dropped, and its events read, before the stream).
    profile: Option<StreamProfile>,
    stream: Arc<CudaStream>,
    /// By launch name (`conv_forward`, `conv_forward__bf16`, ...).
    functions: HashMap<String, CudaFunction>,
}

/// Where a stream's time goes, by operation (kernel name, `memset`, `memcpy_*`): how many,
/// the device time between timing events recorded around each, and the host time of the
/// call that queued it. For finding out what bounds a run on a GPU with no profiler
/// installed (docs/PERF.md, "GPU"); `NASRANK_CUDA_PROFILE=FILE` turns it on, and each
/// launcher appends its totals to FILE when dropped, one `name count device_ms host_ms`
/// line per operation plus a `wall` line (its lifetime). The events cost a little time of
/// their own, and reading them waits for the stream every 4,096 operations.
struct StreamProfile {
    path: PathBuf,
    created: Instant,
    pending: Mutex<Vec<(String, CudaEvent, CudaEvent, Duration)>>,
    totals: Mutex<HashMap<String, (u64, f64, f64)>>,
}

impl StreamProfile {
    fn from_env() -> Option<Self> {
        let path = std::env::var_os("NASRANK_CUDA_PROFILE")?;
        Some(StreamProfile {
            path: path.into(),
            created: Instant::now(),
            pending: Mutex::default(),
            totals: Mutex::default(),
        })
    }

    /// Queues `op` on `stream` between two timing events.
    fn time<T>(
        &self,
        stream: &CudaStream,
        name: &str,
        op: impl FnOnce() -> Result<T, LaunchError>,
    ) -> Result<T, LaunchError> {
        let timing = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
        let start = stream.record_event(timing).map_err(device)?;
        let host = Instant::now();
        let out = op()?;
        let host = host.elapsed();
        let end = stream.record_event(timing).map_err(device)?;
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.push((name.to_owned(), start, end, host));
        if pending.len() >= 4096 {
            self.fold(&mut pending);
        }
        Ok(out)
    }

    fn fold(&self, pending: &mut Vec<(String, CudaEvent, CudaEvent, Duration)>) {
        let mut totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
        for (name, start, end, host) in pending.drain(..) {
            let t = totals.entry(name).or_default();
            t.0 += 1;
            t.1 += f64::from(start.elapsed_ms(&end).unwrap_or(f32::NAN));
            t.2 += host.as_secs_f64() * 1e3;
        }
    }
}

impl Drop for StreamProfile {
    fn drop(&mut self) {
        let mut pending = std::mem::take(self.pending.get_mut().unwrap_or_else(|e| e.into_inner()));
        self.fold(&mut pending);
        let totals = self.totals.get_mut().unwrap_or_else(|e| e.into_inner());
        let mut text = format!(
            "wall\t1\t0\t{:.3}\n",
            self.created.elapsed().as_secs_f64() * 1e3
        );
        for (name, (count, device_ms, host_ms)) in totals.iter() {
            text += &format!("{name}\t{count}\t{device_ms:.3}\t{host_ms:.3}\n");
        }
        // One append per launcher, so that workers' totals do not interleave.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "NASRANK_CUDA_PROFILE: cannot write {}: {e}",
                self.path.display()
            );
        }
    }
}

impl DriverLauncher {
    /// Compiles (or takes from the cache) and loads every kernel family on device `ordinal`.
    pub fn new(ordinal: usize) -> Result<Self, LaunchError> {
        let ctx = CudaContext::new(ordinal).map_err(device)?;
        set_sync_mode(&ctx)?;
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
        Ok(DriverLauncher {
            profile: StreamProfile::from_env(),
            stream,
            functions,
        })
    }

    /// Runs `op`, timed under `name` when profiling.
    fn queue<T>(
        &self,
        name: &str,
        op: impl FnOnce() -> Result<T, LaunchError>,
    ) -> Result<T, LaunchError> {
        match &self.profile {
            Some(p) => p.time(&self.stream, name, op),
            None => op(),
        }
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
        self.queue("memcpy_htod", || {
            self.stream.memcpy_htod(host, buf).map_err(device)
        })
    }

    fn download_bytes(&self, buf: &Self::Buf, out: &mut [u8]) -> Result<(), LaunchError> {
        Self::check_len("download", buf.len(), out.len())?;
        self.queue("memcpy_dtoh", || {
            self.stream.memcpy_dtoh(buf, out).map_err(device)
        })?;
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
        self.queue("memset", || self.stream.memset_zeros(buf).map_err(device))
    }

    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<(), LaunchError> {
        Self::check_len("copy", src.len(), dst.len())?;
        self.queue("memcpy_dtod", || {
            self.stream.memcpy_dtod(src, dst).map_err(device)
        })
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
        self.queue(kernel, || unsafe { builder.launch(cfg) }.map_err(device))?;
        Ok(())
    }
}
