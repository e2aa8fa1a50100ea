//! [`PooledLauncher`]: a [`Launcher`] that keeps memory given back, by size in bytes (up to
//! [`POOL_BYTES`]), and hands it out again from [`Launcher::take_bytes`] (and so for
//! uploads), so that scoring arch after arch neither allocates nor frees every layer's
//! buffers, every kernel's scratch and every uploaded weight. The memory is reused in stream order: it is given back once the work that uses
//! it is queued, and the next user's work is queued after that on the same stream.
//! An allocation that fails first empties the pool (its memory may be what is missing) and
//! tries once more. Everything else is the inner launcher's.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::launch::{pass_to_inner, LaunchError, Launcher};

/// Bytes of given-back memory a [`PooledLauncher`] keeps at most.
pub const POOL_BYTES: usize = 4 << 30;

struct Pool<B> {
    /// Given-back device memory by size in bytes.
    free: HashMap<usize, Vec<B>>,
    bytes: usize,
}

impl<B> Default for Pool<B> {
    fn default() -> Self {
        Pool {
            free: HashMap::new(),
            bytes: 0,
        }
    }
}

/// `L` with a pool of given-back memory (see the module docs).
pub struct PooledLauncher<L: Launcher> {
    inner: L,
    pool: Mutex<Pool<L::Buf>>,
}

impl<L: Launcher> PooledLauncher<L> {
    pub fn new(inner: L) -> Self {
        PooledLauncher {
            inner,
            pool: Mutex::new(Pool::default()),
        }
    }

    pub fn inner(&self) -> &L {
        &self.inner
    }

    /// Bytes held by the pool.
    pub fn pooled_bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> MutexGuard<'_, Pool<L::Buf>> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<L: Launcher> Launcher for PooledLauncher<L> {
    type Buf = L::Buf;

    pass_to_inner!(
        alloc_zeroed,
        write_bytes,
        download_bytes,
        byte_len,
        address,
        read_address,
        zero,
        copy,
        synchronize,
        storage,
        launch,
    );

    fn take_bytes(&self, bytes: usize) -> Result<L::Buf, LaunchError> {
        let reused = {
            let mut pool = self.lock();
            let buf = pool.free.get_mut(&bytes).and_then(Vec::pop);
            if buf.is_some() {
                pool.bytes -= bytes;
            }
            buf
        };
        if let Some(buf) = reused {
            return Ok(buf);
        }
        self.inner.take_bytes(bytes).or_else(|_| {
            let freed = std::mem::take(&mut *self.lock());
            drop(freed);
            self.inner.take_bytes(bytes)
        })
    }

    fn give_back(&self, buf: L::Buf) {
        let bytes = self.inner.byte_len(&buf);
        let mut pool = self.lock();
        if pool.bytes + bytes <= POOL_BYTES {
            pool.bytes += bytes;
            pool.free.entry(bytes).or_default().push(buf);
        } else {
            drop(pool);
            self.inner.give_back(buf);
        }
    }
}
