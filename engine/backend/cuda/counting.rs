//! [`CountingLauncher`]: a [`Launcher`] that passes everything to another and counts what
//! the host asks of the device: launches by kernel, memsets, copies, uploads, downloads,
//! synchronisations and allocations. On a GPU each of these costs host time and a slot in
//! the stream whatever its size, so the counts tell how launch-bound a score is without a
//! GPU (under the emulator) and check that a pass never waits on the device
//! (tests/cuda_emu_backend.rs, examples/launch_counts.rs).

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use super::launch::{pass_to_inner, Arg, LaunchConfig, LaunchError, Launcher};

/// What a [`CountingLauncher`] was asked since it was made or last [`taken`].
///
/// [`taken`]: CountingLauncher::take_counts
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceCounts {
    /// Launches by kernel name (as launched: `NAME__bf16` for a 16-bit variant).
    pub launches: BTreeMap<String, usize>,
    pub memsets: usize,
    /// Device-to-device copies.
    pub copies: usize,
    pub uploads: usize,
    /// Downloads: each waits for the stream.
    pub downloads: usize,
    pub synchronizations: usize,
    /// New device memory (`alloc_zeroed`, `take_bytes`, an upload's memory).
    pub allocations: usize,
}

impl DeviceCounts {
    pub fn total_launches(&self) -> usize {
        self.launches.values().sum()
    }

    /// Operations queued on the stream: launches, memsets, copies and transfers.
    pub fn stream_operations(&self) -> usize {
        self.total_launches() + self.memsets + self.copies + self.uploads + self.downloads
    }

    /// Times the host waited for the device: downloads and synchronisations.
    pub fn waits(&self) -> usize {
        self.downloads + self.synchronizations
    }
}

/// `L`, counting (see the module docs).
#[derive(Debug, Default)]
pub struct CountingLauncher<L> {
    inner: L,
    counts: Mutex<DeviceCounts>,
}

impl<L: Launcher> CountingLauncher<L> {
    pub fn new(inner: L) -> Self {
        CountingLauncher {
            inner,
            counts: Mutex::new(DeviceCounts::default()),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> DeviceCounts {
        self.lock().clone()
    }

    /// The counts so far, starting again from zero.
    pub fn take_counts(&self) -> DeviceCounts {
        std::mem::take(&mut *self.lock())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DeviceCounts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, what: impl FnOnce(&mut DeviceCounts)) {
        what(&mut self.lock());
    }
}

impl<L: Launcher> Launcher for CountingLauncher<L> {
    type Buf = L::Buf;

    pass_to_inner!(byte_len, address, read_address, storage, give_back);

    fn alloc_zeroed(&self, bytes: usize) -> Result<L::Buf, LaunchError> {
        self.count(|c| c.allocations += 1);
        self.inner.alloc_zeroed(bytes)
    }
    fn write_bytes(&self, host: &[u8], buf: &mut L::Buf) -> Result<(), LaunchError> {
        self.count(|c| c.uploads += 1);
        self.inner.write_bytes(host, buf)
    }
    fn download_bytes(&self, buf: &L::Buf, out: &mut [u8]) -> Result<(), LaunchError> {
        self.count(|c| c.downloads += 1);
        self.inner.download_bytes(buf, out)
    }
    fn zero(&self, buf: &mut L::Buf) -> Result<(), LaunchError> {
        self.count(|c| c.memsets += 1);
        self.inner.zero(buf)
    }
    fn copy(&self, src: &L::Buf, dst: &mut L::Buf) -> Result<(), LaunchError> {
        self.count(|c| c.copies += 1);
        self.inner.copy(src, dst)
    }
    fn synchronize(&self) -> Result<(), LaunchError> {
        self.count(|c| c.synchronizations += 1);
        self.inner.synchronize()
    }
    fn take_bytes(&self, bytes: usize) -> Result<L::Buf, LaunchError> {
        self.count(|c| c.allocations += 1);
        self.inner.take_bytes(bytes)
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        config: LaunchConfig,
        args: &mut [Arg<'_, L::Buf>],
    ) -> Result<(), LaunchError> {
        self.count(|c| *c.launches.entry(kernel.to_string()).or_default() += 1);
        // SAFETY: the caller's guarantee, passed on.
        unsafe { self.inner.launch(kernel, config, args) }
    }
}
