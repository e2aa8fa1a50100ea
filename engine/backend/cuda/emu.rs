//! The emulated launcher: kernels compiled for the host (build.rs, feature `emu`) over
//! "device memory" in host memory. Launches go through the generated shims with a
//! cuLaunchKernel-style `void**` parameter array, exactly as the driver receives them.

use std::ffi::c_void;

use super::launch::{check_launch, Arg, LaunchConfig, LaunchError, Launcher};

/// A generated launch shim: grid x/y/z, block x/y/z, dynamic shared bytes, parameters.
pub type EmuLaunch = unsafe extern "C" fn(u32, u32, u32, u32, u32, u32, u32, *mut *mut c_void);

include!(concat!(env!("OUT_DIR"), "/emu_kernels.rs"));

/// Host memory standing in for a device buffer; 8-byte aligned for any kernel type.
#[derive(Debug, Default)]
pub struct EmuBuf {
    words: Vec<u64>,
    bytes: usize,
}

impl EmuBuf {
    fn zeroed(bytes: usize) -> Self {
        EmuBuf {
            words: vec![0; bytes.div_ceil(8)],
            bytes,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &super::launch::as_bytes(&self.words)[..self.bytes]
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut super::launch::as_bytes_mut(&mut self.words)[..self.bytes]
    }
}

/// Runs kernels under the CUDA emulator (kernels/emu/cuda_emu.h).
#[derive(Clone, Copy, Debug, Default)]
pub struct EmuLauncher;

impl EmuLauncher {
    pub fn new() -> Self {
        EmuLauncher
    }
}

fn length_check(what: &str, a: usize, b: usize) -> Result<(), LaunchError> {
    if a == b {
        Ok(())
    } else {
        Err(LaunchError::Length(format!(
            "{what}: {a} bytes vs {b} bytes"
        )))
    }
}

/// The first 8 bytes of a parameter slot hold the value (native byte order), as a pointer
/// to the slot is what the kernel shim reads through.
fn slot(bytes: &[u8]) -> u64 {
    let mut s = [0u8; 8];
    s[..bytes.len()].copy_from_slice(bytes);
    u64::from_ne_bytes(s)
}

impl Launcher for EmuLauncher {
    type Buf = EmuBuf;

    fn alloc_zeroed(&self, bytes: usize) -> Result<EmuBuf, LaunchError> {
        Ok(EmuBuf::zeroed(bytes))
    }

    /// Memory of unspecified contents, filled with all-ones bytes (a NaN in every f32 and
    /// f64), so that a kernel or host path that reads it before writing it shows in the
    /// tests instead of reading the zeros a fresh allocation happens to hold.
    fn take_bytes(&self, bytes: usize) -> Result<EmuBuf, LaunchError> {
        let mut buf = EmuBuf::zeroed(bytes);
        buf.words.fill(u64::MAX);
        Ok(buf)
    }

    fn write_bytes(&self, host: &[u8], buf: &mut EmuBuf) -> Result<(), LaunchError> {
        length_check("upload", host.len(), buf.bytes)?;
        buf.as_bytes_mut().copy_from_slice(host);
        Ok(())
    }

    fn download_bytes(&self, buf: &EmuBuf, out: &mut [u8]) -> Result<(), LaunchError> {
        length_check("download", buf.bytes, out.len())?;
        out.copy_from_slice(buf.as_bytes());
        Ok(())
    }

    fn byte_len(&self, buf: &EmuBuf) -> usize {
        buf.bytes
    }

    fn address(&self, buf: &mut EmuBuf) -> u64 {
        buf.words.as_mut_ptr() as usize as u64
    }

    fn read_address(&self, buf: &EmuBuf) -> u64 {
        buf.words.as_ptr() as usize as u64
    }

    fn zero(&self, buf: &mut EmuBuf) -> Result<(), LaunchError> {
        buf.words.fill(0);
        Ok(())
    }

    fn copy(&self, src: &EmuBuf, dst: &mut EmuBuf) -> Result<(), LaunchError> {
        length_check("copy", src.bytes, dst.bytes)?;
        dst.words.copy_from_slice(&src.words);
        Ok(())
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        config: LaunchConfig,
        args: &mut [Arg<'_, EmuBuf>],
    ) -> Result<(), LaunchError> {
        check_launch(kernel, &config, args)?;
        let shim = EMU_KERNELS
            .iter()
            .find(|(name, _)| *name == kernel)
            .map(|(_, f)| *f)
            .ok_or_else(|| LaunchError::UnknownKernel(kernel.into()))?;
        let mut slots: Vec<u64> = args
            .iter_mut()
            .map(|arg| match arg {
                Arg::Buf(b) => b.words.as_ptr() as usize as u64,
                Arg::BufMut(b) => b.words.as_mut_ptr() as usize as u64,
                Arg::I32(v) => slot(&v.to_ne_bytes()),
                Arg::U32(v) => slot(&v.to_ne_bytes()),
                Arg::I64(v) => slot(&v.to_ne_bytes()),
                Arg::U64(v) => *v,
                Arg::F32(v) => slot(&v.to_ne_bytes()),
                Arg::F64(v) => v.to_bits(),
            })
            .collect();
        let mut params: Vec<*mut c_void> = slots
            .iter_mut()
            .map(|s| (s as *mut u64).cast::<c_void>())
            .collect();
        let (g, b) = (config.grid, config.block);
        // SAFETY: the parameters match the kernel's declaration (checked above); the caller
        // guarantees the kernel stays inside the buffers.
        unsafe {
            shim(
                g.x,
                g.y,
                g.z,
                b.x,
                b.y,
                b.z,
                config.shared_bytes,
                params.as_mut_ptr(),
            )
        };
        Ok(())
    }
}
