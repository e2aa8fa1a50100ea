//! [`CudaBackend`]: the [`Backend`] primitives as the kernels of kernels/*.cu, launched
//! through a [`Launcher`] (the GPU through cudarc, or the host emulator in tests).
//!
//! Errors. The primitives cannot return errors, so the backend does what a CUDA context
//! does: the first failed allocation, transfer or launch is kept (sticky), every later
//! primitive is skipped, and [`Backend::status`] reports it (`score_arch` checks it after
//! each score). Buffers know their length even when their allocation failed, so the
//! executor's shape checks still hold and downloads give zeros of the right length until
//! the caller looks at the status.
//!
//! Storage. Arithmetic is f32. Activations and activation gradients are held in the
//! backend's [`Storage`] (f32, or 16-bit buffers of half the bytes); parameters, their
//! gradients, per-sample gradients and batch-norm statistics in f32. `Backend` has one buffer
//! type for all of these, so a buffer's storage is decided by what writes it first:
//! [`Backend::alloc`] hands out a *fresh* buffer (no memory yet, reads as zeros), and a
//! primitive writing it gives it its role's storage (`y` of a convolution: the activation
//! storage; `dw`: f32). A buffer read in the other storage than its role's (uploaded f32
//! images read as activations) goes through a converted temporary, and one written in the
//! other storage (a buffer the executor reuses for another role) is converted in place;
//! copies and sums take their destination's storage, or their source's for a fresh one.
//!
//! Memory. The launcher is wrapped in a [`PooledLauncher`]: released buffers, converted
//! temporaries and the kernels' scratch (ops.rs) go back to its pool and are handed out
//! again, so scoring arch after arch neither allocates nor frees device memory.
//! Zero-length buffers own no device memory; a primitive given one does nothing.

use std::marker::PhantomData;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::launch::{LaunchError, Launcher, Pod, StorageLauncher};
use super::ops;
use super::pooled::PooledLauncher;
use crate::backend::{Backend, BackendError, BnGeom, BnGrad, ChannelView, ConvGeom, Reduction};
use crate::net::init::InitRule;

/// A device buffer of `len` values of `T` (for `T = f32`: held in `storage`).
pub struct DeviceBuf<L: Launcher, T> {
    /// `None` when empty, fresh, or when its allocation failed (the backend then holds the
    /// error).
    raw: Option<L::Buf>,
    len: usize,
    /// How `raw` holds the values (f32 for every buffer but activations).
    storage: Storage,
    /// Allocated, never written: no memory yet, reads as zeros, and takes the storage of the
    /// first primitive that writes it.
    fresh: bool,
    /// The pool `raw` goes back to when the buffer is dropped (set with `raw`).
    home: Option<Arc<PooledLauncher<L>>>,
    _values: PhantomData<T>,
}

impl<L: Launcher, T> Drop for DeviceBuf<L, T> {
    /// Hands the memory back to the backend's pool: a buffer the caller drops is reused as
    /// one it [`Backend::release`]s.
    fn drop(&mut self) {
        if let (Some(raw), Some(home)) = (self.raw.take(), &self.home) {
            home.give_back(raw);
        }
    }
}

impl<L: Launcher, T> Default for DeviceBuf<L, T> {
    fn default() -> Self {
        DeviceBuf::missing(0)
    }
}

impl<L: Launcher, T> DeviceBuf<L, T> {
    fn missing(len: usize) -> Self {
        DeviceBuf {
            raw: None,
            len,
            storage: Storage::F32,
            fresh: false,
            home: None,
            _values: PhantomData,
        }
    }

    fn holding(raw: L::Buf, len: usize, storage: Storage, home: &Arc<PooledLauncher<L>>) -> Self {
        DeviceBuf {
            raw: Some(raw),
            len,
            storage,
            fresh: false,
            home: Some(Arc::clone(home)),
            _values: PhantomData,
        }
    }

    /// Values held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How the values are held: the backend's activation storage for a buffer an activation
    /// was written to, else f32.
    pub fn storage(&self) -> Storage {
        self.storage
    }

    /// Bytes of device memory held (0 while fresh).
    pub fn device_bytes(&self) -> usize {
        if self.raw.is_some() {
            self.len * self.storage.value_bytes()
        } else {
            0
        }
    }
}

/// f32 values: activations (in the backend's storage), weights and gradients.
pub type CudaBuf<L> = DeviceBuf<L, f32>;
/// u64 words: packed sign codes, exact counts.
pub type CudaWords<L> = DeviceBuf<L, u64>;
/// f64 Gram accumulators.
pub type CudaAcc<L> = DeviceBuf<L, f64>;

/// Why a primitive did not run: a buffer without device memory (empty: nothing to do),
/// or a launcher error (kept as the backend's failure).
enum Fault {
    Empty,
    Launch(LaunchError),
}

impl From<LaunchError> for Fault {
    fn from(e: LaunchError) -> Self {
        Fault::Launch(e)
    }
}

type Run = Result<(), Fault>;

fn dev<L: Launcher, T>(b: &DeviceBuf<L, T>) -> Result<&L::Buf, Fault> {
    b.raw.as_ref().ok_or(Fault::Empty)
}

fn dev_mut<L: Launcher, T>(b: &mut DeviceBuf<L, T>) -> Result<&mut L::Buf, Fault> {
    b.raw.as_mut().ok_or(Fault::Empty)
}

/// A buffer's device memory in the storage a kernel reads it in: the buffer's own, or a
/// converted temporary that goes back to the pool when dropped.
struct Input<'b, L: Launcher> {
    backend: &'b CudaBackend<L>,
    borrowed: Option<&'b L::Buf>,
    temporary: Option<L::Buf>,
}

impl<L: Launcher> Deref for Input<'_, L> {
    type Target = L::Buf;
    fn deref(&self) -> &L::Buf {
        match (self.borrowed, &self.temporary) {
            (Some(b), _) => b,
            (None, Some(t)) => t,
            (None, None) => unreachable!("an Input holds a buffer"),
        }
    }
}

impl<L: Launcher> Drop for Input<'_, L> {
    fn drop(&mut self) {
        if let Some(t) = self.temporary.take() {
            self.backend.launcher.give_back(t);
        }
    }
}

/// How activations are held. `F16` and `Bf16` keep every activation and activation gradient
/// (conv, batch-norm, pool, ReLU, sum, linear and loss outputs) in 16-bit buffers of IEEE
/// half / bfloat16 values, written rounded to nearest, ties to even, read into f32
/// arithmetic (kernels/storage.cuh); half the bytes of f32. Parameters, their gradients,
/// per-sample gradients, batch-norm statistics and Gram accumulators stay f32.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Storage {
    #[default]
    F32,
    F16,
    Bf16,
}

impl Storage {
    pub const ALL: [Storage; 3] = [Storage::F32, Storage::F16, Storage::Bf16];

    /// The `ACT_STORAGE` value of the kernels compiled for this storage (kernels/storage.cuh).
    pub fn act_storage(self) -> u32 {
        match self {
            Storage::F32 => 0,
            Storage::F16 => 1,
            Storage::Bf16 => 2,
        }
    }

    /// What the kernels of a storage family compiled for this storage are named after:
    /// `conv_forward` + `__bf16`.
    pub fn kernel_suffix(self) -> &'static str {
        match self {
            Storage::F32 => "",
            Storage::F16 => "__f16",
            Storage::Bf16 => "__bf16",
        }
    }

    /// Bytes per stored activation.
    pub fn value_bytes(self) -> usize {
        match self {
            Storage::F32 => 4,
            Storage::F16 | Storage::Bf16 => 2,
        }
    }

    /// A launch name split into the kernel's plain name and the storage it was compiled for.
    pub fn split_kernel_name(name: &str) -> (&str, Storage) {
        for storage in [Storage::F16, Storage::Bf16] {
            if let Some(base) = name.strip_suffix(storage.kernel_suffix()) {
                return (base, storage);
            }
        }
        (name, Storage::F32)
    }
}

/// The CUDA backend over launcher `L`.
pub struct CudaBackend<L: Launcher> {
    /// Shared with every buffer holding memory, which hands it back when dropped.
    launcher: Arc<PooledLauncher<L>>,
    storage: Storage,
    failed: AtomicBool,
    first_error: Mutex<Option<BackendError>>,
}

/// A lock whose data a panic elsewhere cannot leave inconsistent.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<L: Launcher> CudaBackend<L> {
    pub fn new(launcher: L) -> Self {
        CudaBackend {
            launcher: Arc::new(PooledLauncher::new(launcher)),
            storage: Storage::F32,
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
        }
    }

    /// The backend holding activations in `storage` (see [`Storage`]).
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    pub fn launcher(&self) -> &L {
        self.launcher.inner()
    }

    /// The launcher of the kernels compiled for the activation storage.
    fn act_launcher(&self) -> StorageLauncher<'_, PooledLauncher<L>> {
        StorageLauncher::new(&*self.launcher, self.storage)
    }

    /// Bytes held by the pool of released buffers.
    pub fn pooled_bytes(&self) -> usize {
        self.launcher.pooled_bytes()
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }

    /// Records `e` unless an earlier failure is already kept.
    fn fail(&self, op: &'static str, e: LaunchError) {
        let mut first = lock(&self.first_error);
        if first.is_none() {
            *first = Some(BackendError {
                op,
                message: e.to_string(),
            });
        }
        self.failed.store(true, Ordering::Release);
    }

    /// Runs one primitive unless the backend has failed; keeps its error.
    fn run(&self, op: &'static str, f: impl FnOnce(&PooledLauncher<L>) -> Run) {
        if self.failed() {
            return;
        }
        match f(&*self.launcher) {
            Ok(()) | Err(Fault::Empty) => {}
            Err(Fault::Launch(e)) => self.fail(op, e),
        }
    }

    /// Device memory of `bytes` from the pool (zeroed if `zero`, else of unspecified
    /// contents).
    fn take(&self, bytes: usize, zero: bool) -> Result<L::Buf, LaunchError> {
        let mut raw = self.launcher.take_bytes(bytes)?;
        if zero {
            self.launcher.zero(&mut raw)?;
        }
        Ok(raw)
    }

    /// A buffer of `len` values of `T` (f32 ones held as f32) with its memory, zeroed if
    /// `zero` (words, accumulators), else of unspecified contents.
    fn alloc_now<T: Pod>(&self, op: &'static str, len: usize, zero: bool) -> DeviceBuf<L, T> {
        if len == 0 || self.failed() {
            return DeviceBuf::missing(len);
        }
        match self.take(len * std::mem::size_of::<T>(), zero) {
            Ok(raw) => DeviceBuf::holding(raw, len, Storage::F32, &self.launcher),
            Err(e) => {
                self.fail(op, e);
                DeviceBuf::missing(len)
            }
        }
    }

    fn download_as<T: Pod>(&self, op: &'static str, buf: &DeviceBuf<L, T>) -> Vec<T> {
        self.download_raw(op, buf.raw.as_ref(), buf.len)
    }

    /// `len` values of `T` from `raw`; zeros when there is none or the backend has failed.
    fn download_raw<T: Pod>(&self, op: &'static str, raw: Option<&L::Buf>, len: usize) -> Vec<T> {
        if let (Some(raw), false) = (raw, self.failed()) {
            match self.launcher.download::<T>(raw) {
                Ok(values) => return values,
                Err(e) => self.fail(op, e),
            }
        }
        vec![T::default(); len]
    }

    /// `buf`'s memory as `storage` for reading: its own, a converted copy, or zeros for a
    /// fresh buffer.
    fn read<'b>(&'b self, buf: &'b CudaBuf<L>, storage: Storage) -> Result<Input<'b, L>, Fault> {
        let input = |borrowed, temporary| Input {
            backend: self,
            borrowed,
            temporary,
        };
        match &buf.raw {
            Some(raw) if buf.storage == storage => Ok(input(Some(raw), None)),
            Some(raw) => {
                let mut converted = self.take(buf.len * storage.value_bytes(), false)?;
                ops::convert_storage(
                    &*self.launcher,
                    buf.len,
                    (raw, buf.storage),
                    (&mut converted, storage),
                )?;
                Ok(input(None, Some(converted)))
            }
            None if buf.fresh => Ok(input(
                None,
                Some(self.take(buf.len * storage.value_bytes(), true)?),
            )),
            None => Err(Fault::Empty),
        }
    }

    /// `buf`'s memory as `storage` for a primitive that adds to it, and whether it must add:
    /// a fresh buffer (zeros) gets memory of unspecified contents, which the primitive
    /// overwrites with what adding to zeros gives (the same bits, no memset).
    fn place_for_adding<'b>(
        &self,
        buf: &'b mut CudaBuf<L>,
        storage: Storage,
    ) -> Result<(&'b mut L::Buf, bool), Fault> {
        let accumulate = !buf.fresh;
        Ok((self.place(buf, storage, accumulate)?, accumulate))
    }

    /// `buf`'s memory as `storage` for writing, its values kept (`keep`: the primitive adds to
    /// them) or not. A fresh buffer gets memory (zeroed if kept); one in another storage is
    /// converted (kept) or replaced.
    fn place<'b>(
        &self,
        buf: &'b mut CudaBuf<L>,
        storage: Storage,
        keep: bool,
    ) -> Result<&'b mut L::Buf, Fault> {
        if buf.len == 0 || (buf.raw.is_none() && !buf.fresh) {
            return Err(Fault::Empty);
        }
        if buf.raw.is_none() || buf.storage != storage {
            let mut raw = self.take(buf.len * storage.value_bytes(), keep && buf.fresh)?;
            if let Some(old) = buf.raw.take() {
                if keep {
                    let converted = ops::convert_storage(
                        &*self.launcher,
                        buf.len,
                        (&old, buf.storage),
                        (&mut raw, storage),
                    );
                    self.launcher.give_back(old);
                    converted?;
                } else {
                    self.launcher.give_back(old);
                }
            }
            buf.raw = Some(raw);
            buf.home = Some(Arc::clone(&self.launcher));
            buf.storage = storage;
            buf.fresh = false;
        }
        dev_mut(buf)
    }
}

impl<L: Launcher + 'static> Backend for CudaBackend<L> {
    type Real = f32;
    type Buf = CudaBuf<L>;
    type Words = CudaWords<L>;
    type Acc = CudaAcc<L>;

    fn status(&self) -> Result<(), BackendError> {
        match &*lock(&self.first_error) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn synchronize(&self) {
        self.run("synchronize", |l| Ok(l.synchronize()?));
    }

    /// A fresh buffer: device memory comes with its first write (see the module docs).
    fn alloc(&self, len: usize) -> CudaBuf<L> {
        let mut buf = DeviceBuf::missing(len);
        buf.fresh = len > 0 && !self.failed();
        buf
    }
    fn release(&self, buf: CudaBuf<L>) {
        drop(buf); // its memory goes back to the pool (DeviceBuf's Drop)
    }
    fn upload(&self, host: &[f32]) -> CudaBuf<L> {
        if host.is_empty() || self.failed() {
            return DeviceBuf::missing(host.len());
        }
        match self.launcher.upload(host) {
            Ok(raw) => DeviceBuf::holding(raw, host.len(), Storage::F32, &self.launcher),
            Err(e) => {
                self.fail("upload", e);
                DeviceBuf::missing(host.len())
            }
        }
    }
    /// The values as f32 (16-bit ones widened on the host, exactly).
    /// Drawn on the device (kernels/init.cu): one table upload and one launch for every
    /// parameter, not an upload each.
    fn draw_params(&self, seed: u64, params: &[(InitRule, usize)]) -> Vec<CudaBuf<L>> {
        let mut bufs: Vec<CudaBuf<L>> = params
            .iter()
            .map(|&(_, len)| self.alloc_now("draw_params", len, false))
            .collect();
        self.run("draw_params", |l| {
            let mut targets: Vec<(&mut L::Buf, usize, InitRule)> = bufs
                .iter_mut()
                .zip(params)
                .filter_map(|(buf, &(rule, len))| Some((buf.raw.as_mut()?, len, rule)))
                .collect();
            Ok(ops::init_params(l, seed, &mut targets)?)
        });
        bufs
    }
    fn download(&self, buf: &CudaBuf<L>) -> Vec<f32> {
        let widen = |f: fn(u16) -> f32| -> Vec<f32> {
            let bits: Vec<u16> = self.download_raw("download", buf.raw.as_ref(), buf.len);
            bits.into_iter().map(f).collect()
        };
        match buf.storage {
            Storage::F32 => self.download_as("download", buf),
            Storage::F16 => widen(|b| half::f16::from_bits(b).to_f32()),
            Storage::Bf16 => widen(|b| half::bf16::from_bits(b).to_f32()),
        }
    }
    fn buf_len(&self, buf: &CudaBuf<L>) -> usize {
        buf.len
    }
    /// The buffer becomes fresh again (its memory back to the pool): it reads as zeros, and
    /// a primitive that adds to it first overwrites instead where it can (no memset).
    fn fill_zero(&self, buf: &mut CudaBuf<L>) {
        if self.failed() || (buf.raw.is_none() && !buf.fresh) {
            return;
        }
        if let Some(raw) = buf.raw.take() {
            self.launcher.give_back(raw);
        }
        buf.fresh = buf.len > 0;
    }
    fn copy(&self, src: &CudaBuf<L>, dst: &mut CudaBuf<L>) {
        if !self.same_len("copy", src, dst) {
            return;
        }
        if src.fresh {
            // dst becomes zeros: fresh again, its memory back to the pool.
            if let Some(raw) = dst.raw.take() {
                self.launcher.give_back(raw);
            }
            dst.fresh = dst.len > 0 && !self.failed();
            return;
        }
        self.run("copy", |l| {
            let dst = self.place(dst, src.storage, false)?;
            Ok(l.copy(dev(src)?, dst)?)
        });
    }
    fn add_assign(&self, dst: &mut CudaBuf<L>, src: &CudaBuf<L>) {
        if !self.same_len("add_assign", src, dst) {
            return;
        }
        if src.fresh {
            return; // adding zeros
        }
        let storage = if dst.fresh { src.storage } else { dst.storage };
        let len = dst.len;
        self.run("add_assign", |l| {
            let src = self.read(src, storage)?;
            let dst = self.place(dst, storage, true)?;
            Ok(ops::add_assign(
                &StorageLauncher::new(l, storage),
                len,
                dst,
                &src,
            )?)
        });
    }
    fn copy_into(&self, src: &CudaBuf<L>, dst: &mut CudaBuf<L>, offset: usize) {
        let storage = if dst.fresh { src.storage } else { dst.storage };
        let len = src.len;
        self.run("copy_into", |l| {
            let src = self.read(src, storage)?;
            let dst = self.place(dst, storage, true)?;
            Ok(ops::copy_into(
                &StorageLauncher::new(l, storage),
                len,
                &src,
                dst,
                offset,
            )?)
        });
    }

    /// One table upload and one launch when every buffer is f32 (parameters and their
    /// gradients), else [`Backend::copy_into`] one by one.
    fn copy_into_many(&self, copies: &mut [(&CudaBuf<L>, &mut CudaBuf<L>, usize)]) {
        let f32_only = copies.iter().all(|(src, dst, _)| {
            src.storage == Storage::F32 && (dst.fresh || dst.storage == Storage::F32)
        });
        if !f32_only {
            for (src, dst, offset) in copies.iter_mut() {
                self.copy_into(src, dst, *offset);
            }
            return;
        }
        self.run("copy_into_many", |l| {
            let mut inputs = Vec::with_capacity(copies.len());
            let mut targets = Vec::with_capacity(copies.len());
            for (src, dst, offset) in copies.iter_mut() {
                if src.len == 0 {
                    continue; // nothing to copy (and no memory to address)
                }
                inputs.push(self.read(src, Storage::F32)?);
                targets.push((self.place(dst, Storage::F32, true)?, *offset));
            }
            let mut table: Vec<(&L::Buf, &mut L::Buf, usize)> = inputs
                .iter()
                .zip(targets)
                .map(|(src, (dst, offset))| (&**src, dst, offset))
                .collect();
            Ok(ops::copy_into_many(l, &mut table)?)
        });
    }

    fn alloc_words(&self, len: usize) -> CudaWords<L> {
        self.alloc_now("alloc_words", len, true)
    }
    fn download_words(&self, words: &CudaWords<L>) -> Vec<u64> {
        self.download_as("download_words", words)
    }
    fn buf_len_words(&self, words: &CudaWords<L>) -> usize {
        words.len
    }
    fn alloc_acc(&self, len: usize) -> CudaAcc<L> {
        self.alloc_now("alloc_acc", len, true)
    }
    fn download_acc(&self, acc: &CudaAcc<L>) -> Vec<f64> {
        self.download_as("download_acc", acc)
    }

    fn pack_signs(&self, x: &CudaBuf<L>, n: usize, units: usize, codes: &mut CudaWords<L>) {
        let act = self.storage;
        self.run("pack_signs", |_| {
            let x = self.read(x, act)?;
            Ok(ops::pack_signs(
                &self.act_launcher(),
                n,
                units,
                &x,
                None,
                dev_mut(codes)?,
            )?)
        });
    }
    fn hamming_gram_accumulate(
        &self,
        codes: &CudaWords<L>,
        n: usize,
        units: usize,
        weight: u64,
        k: &mut CudaWords<L>,
    ) {
        self.run("hamming_gram_accumulate", |l| {
            Ok(ops::hamming_gram_accumulate(
                l,
                n,
                units,
                weight,
                dev(codes)?,
                dev_mut(k)?,
            )?)
        });
    }
    fn gram_accumulate(&self, a: &CudaBuf<L>, n: usize, len: usize, g: &mut CudaAcc<L>) {
        self.run("gram_accumulate", |l| {
            let a = self.read(a, Storage::F32)?;
            Ok(ops::gram_accumulate(l, n, len, &a, dev_mut(g)?)?)
        });
    }
    fn column_moments(
        &self,
        a: &CudaBuf<L>,
        n: usize,
        len: usize,
        out: &mut CudaAcc<L>,
        at: usize,
    ) {
        self.run("column_moments", |l| {
            let a = self.read(a, Storage::F32)?;
            Ok(ops::column_moments(l, n, len, &a, dev_mut(out)?, at)?)
        });
    }

    fn add_scaled(&self, x: &CudaBuf<L>, alpha: f64, y: &CudaBuf<L>, out: &mut CudaBuf<L>) {
        self.run("add_scaled", |l| {
            let (x_in, y_in) = (self.read(x, Storage::F32)?, self.read(y, Storage::F32)?);
            let out = self.place(out, Storage::F32, false)?;
            Ok(ops::add_scaled(l, x.len, (&x_in, alpha, &y_in), out)?)
        });
    }

    fn difference_dot(
        &self,
        x: &CudaBuf<L>,
        a: &CudaBuf<L>,
        b: &CudaBuf<L>,
        out: &mut CudaAcc<L>,
        at: usize,
    ) {
        self.run("difference_dot", |l| {
            let x_in = self.read(x, Storage::F32)?;
            let (a_in, b_in) = (self.read(a, Storage::F32)?, self.read(b, Storage::F32)?);
            let out = dev_mut(out)?;
            Ok(ops::difference_dot(
                l,
                x.len,
                (&x_in, &a_in, &b_in),
                out,
                at,
            )?)
        });
    }

    fn abs_products_and_squares(
        &self,
        a: &CudaBuf<L>,
        b: &CudaBuf<L>,
        out: &mut CudaAcc<L>,
        at: usize,
    ) {
        self.run("abs_products_and_squares", |l| {
            let (a_in, b_in) = (self.read(a, Storage::F32)?, self.read(b, Storage::F32)?);
            let out = dev_mut(out)?;
            Ok(ops::abs_products_and_squares(
                l, a.len, &a_in, &b_in, out, at,
            )?)
        });
    }

    fn row_dot_squares(
        &self,
        a: &CudaBuf<L>,
        b: &CudaBuf<L>,
        rows: usize,
        len: usize,
        out: &mut CudaAcc<L>,
        at: usize,
    ) {
        self.run("row_dot_squares", |_| {
            let (a_in, b_in) = (self.read(a, self.storage)?, self.read(b, self.storage)?);
            let out = dev_mut(out)?;
            let l = &self.act_launcher();
            Ok(ops::row_dot_squares(l, (rows, len), &a_in, &b_in, out, at)?)
        });
    }

    fn count_unequal(&self, a: &CudaBuf<L>, b: &CudaBuf<L>, out: &mut CudaAcc<L>, at: usize) {
        if !self.same_len("count_unequal", a, b) {
            return;
        }
        self.run("count_unequal", |_| {
            let (a_in, b_in) = (self.read(a, self.storage)?, self.read(b, self.storage)?);
            let out = dev_mut(out)?;
            let l = &self.act_launcher();
            Ok(ops::count_unequal(l, a.len, &a_in, &b_in, out, at)?)
        });
    }

    fn channel_sums(
        &self,
        a: &CudaBuf<L>,
        view: ChannelView,
        n: usize,
        out: &mut CudaAcc<L>,
        at: usize,
    ) {
        self.run("channel_sums", |_| {
            let a_in = self.read(a, self.storage)?;
            let out = dev_mut(out)?;
            let l = &self.act_launcher();
            Ok(ops::channel_sums(l, (&a_in, view), n, out, at)?)
        });
    }

    /// A map with itself is read once (and, centred, its sums taken once).
    fn channel_gram(
        &self,
        a: &CudaBuf<L>,
        va: ChannelView,
        b: &CudaBuf<L>,
        vb: ChannelView,
        n: usize,
        centred: bool,
        out: &mut CudaAcc<L>,
        at: usize,
    ) {
        self.run("channel_gram", |_| {
            let a_in = self.read(a, self.storage)?;
            let b_in = if std::ptr::eq(a, b) {
                None
            } else {
                Some(self.read(b, self.storage)?)
            };
            let b_in: &L::Buf = b_in.as_deref().unwrap_or(&*a_in);
            let out = dev_mut(out)?;
            let l = &self.act_launcher();
            Ok(ops::channel_gram(
                l,
                (&a_in, va),
                (b_in, vb),
                n,
                centred,
                out,
                at,
            )?)
        });
    }

    fn conv_forward(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &CudaBuf<L>,
        w: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("conv_forward", |_| {
            let (x, w) = (self.read(x, act)?, self.read(w, Storage::F32)?);
            let y = self.place(y, act, false)?;
            Ok(ops::conv_forward(&self.act_launcher(), g, n, &x, &w, y)?)
        });
    }
    fn conv_backward_data(
        &self,
        g: &ConvGeom,
        n: usize,
        dy: &CudaBuf<L>,
        w: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("conv_backward_data", |_| {
            let (dy, w) = (self.read(dy, act)?, self.read(w, Storage::F32)?);
            let (dx, accumulate) = self.place_for_adding(dx, act)?;
            Ok(ops::conv_backward_data(
                &self.act_launcher(),
                g,
                n,
                &dy,
                &w,
                dx,
                accumulate,
            )?)
        });
    }
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dw: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("conv_backward_weight", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let (dw, accumulate) = self.place_for_adding(dw, Storage::F32)?;
            Ok(ops::conv_backward_weight(
                &self.act_launcher(),
                g,
                n,
                &x,
                &dy,
                dw,
                accumulate,
            )?)
        });
    }
    fn conv_weight_grad_per_sample(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        out: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("conv_weight_grad_per_sample", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let out = self.place(out, Storage::F32, false)?;
            Ok(ops::conv_weight_grad_per_sample(
                &self.act_launcher(),
                g,
                n,
                &x,
                &dy,
                out,
            )?)
        });
    }

    fn bn_forward(
        &self,
        g: &BnGeom,
        eps: f64,
        x: &CudaBuf<L>,
        gamma: &CudaBuf<L>,
        beta: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
        mean: &mut CudaBuf<L>,
        inv_std: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("bn_forward", |_| {
            let x = self.read(x, act)?;
            let gamma = self.read(gamma, Storage::F32)?;
            let beta = self.read(beta, Storage::F32)?;
            Ok(ops::bn_forward(
                &self.act_launcher(),
                g,
                eps,
                &x,
                &gamma,
                &beta,
                self.place(y, act, false)?,
                self.place(mean, Storage::F32, false)?,
                self.place(inv_std, Storage::F32, false)?,
            )?)
        });
    }
    fn bn_backward(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &CudaBuf<L>,
        gamma: &CudaBuf<L>,
        mean: &CudaBuf<L>,
        inv_std: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dx: Option<&mut CudaBuf<L>>,
        dgamma: &mut CudaBuf<L>,
        dbeta: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("bn_backward", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let gamma = self.read(gamma, Storage::F32)?;
            let mean = self.read(mean, Storage::F32)?;
            let inv_std = self.read(inv_std, Storage::F32)?;
            let dx = dx.map(|dx| self.place_for_adding(dx, act)).transpose()?;
            // Overwritten only if both are fresh (one flag for the pair).
            let accumulate = !(dgamma.fresh && dbeta.fresh);
            Ok(ops::bn_backward(
                &self.act_launcher(),
                g,
                mode,
                &x,
                &gamma,
                &mean,
                &inv_std,
                &dy,
                dx,
                self.place(dgamma, Storage::F32, accumulate)?,
                self.place(dbeta, Storage::F32, accumulate)?,
                accumulate,
            )?)
        });
    }
    fn bn_backward_data(
        &self,
        g: &BnGeom,
        mode: BnGrad,
        x: &CudaBuf<L>,
        gamma: &CudaBuf<L>,
        mean: &CudaBuf<L>,
        inv_std: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("bn_backward_data", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let gamma = self.read(gamma, Storage::F32)?;
            let mean = self.read(mean, Storage::F32)?;
            let inv_std = self.read(inv_std, Storage::F32)?;
            let (dx, accumulate) = self.place_for_adding(dx, act)?;
            Ok(ops::bn_backward_data(
                &self.act_launcher(),
                g,
                mode,
                &x,
                &gamma,
                &mean,
                &inv_std,
                &dy,
                dx,
                accumulate,
            )?)
        });
    }
    fn bn_param_grad_per_sample(
        &self,
        g: &BnGeom,
        x: &CudaBuf<L>,
        mean: &CudaBuf<L>,
        inv_std: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dgamma: &mut CudaBuf<L>,
        dbeta: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("bn_param_grad_per_sample", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let mean = self.read(mean, Storage::F32)?;
            let inv_std = self.read(inv_std, Storage::F32)?;
            Ok(ops::bn_param_grad_per_sample(
                &self.act_launcher(),
                g,
                &x,
                &mean,
                &inv_std,
                &dy,
                self.place(dgamma, Storage::F32, false)?,
                self.place(dbeta, Storage::F32, false)?,
            )?)
        });
    }

    fn relu_forward(&self, x: &CudaBuf<L>, y: &mut CudaBuf<L>) {
        let act = self.storage;
        self.run("relu_forward", |_| {
            let x = self.read(x, act)?;
            let len = y.len;
            let y = self.place(y, act, false)?;
            Ok(ops::relu_forward(&self.act_launcher(), len, &x, y)?)
        });
    }
    fn relu_backward(&self, x: &CudaBuf<L>, dy: &CudaBuf<L>, dx: &mut CudaBuf<L>) {
        let act = self.storage;
        self.run("relu_backward", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let len = dx.len;
            let (dx, accumulate) = self.place_for_adding(dx, act)?;
            Ok(ops::relu_backward(
                &self.act_launcher(),
                len,
                &x,
                &dy,
                dx,
                accumulate,
            )?)
        });
    }

    fn avgpool3x3_forward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        x: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
    ) {
        self.pool_op("avgpool3x3_forward", x, y, false, |l, x, y, _| {
            ops::avgpool3x3_forward(l, (n, c, h, w), x, y)
        });
    }
    fn avgpool3x3_backward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        dy: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        self.pool_op(
            "avgpool3x3_backward",
            dy,
            dx,
            true,
            |l, dy, dx, accumulate| ops::avgpool3x3_backward(l, (n, c, h, w), dy, dx, accumulate),
        );
    }
    fn avgpool2x2_forward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        x: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
    ) {
        self.pool_op("avgpool2x2_forward", x, y, false, |l, x, y, _| {
            ops::avgpool2x2_forward(l, (n, c, h, w), x, y)
        });
    }
    fn avgpool2x2_backward(
        &self,
        n: usize,
        c: usize,
        h: usize,
        w: usize,
        dy: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        self.pool_op(
            "avgpool2x2_backward",
            dy,
            dx,
            true,
            |l, dy, dx, accumulate| ops::avgpool2x2_backward(l, (n, c, h, w), dy, dx, accumulate),
        );
    }
    fn global_avgpool_forward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
    ) {
        self.pool_op("global_avgpool_forward", x, y, false, |l, x, y, _| {
            ops::global_avgpool_forward(l, (n, c, hw), x, y)
        });
    }
    fn global_avgpool_backward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        self.pool_op(
            "global_avgpool_backward",
            dy,
            dx,
            true,
            |l, dy, dx, accumulate| ops::global_avgpool_backward(l, (n, c, hw), dy, dx, accumulate),
        );
    }

    fn linear_forward(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &CudaBuf<L>,
        w: &CudaBuf<L>,
        b: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("linear_forward", |_| {
            let x = self.read(x, act)?;
            let (w, b) = (self.read(w, Storage::F32)?, self.read(b, Storage::F32)?);
            Ok(ops::linear_forward(
                &self.act_launcher(),
                n,
                fin,
                fout,
                &x,
                &w,
                &b,
                self.place(y, act, false)?,
            )?)
        });
    }
    fn linear_backward(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &CudaBuf<L>,
        w: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dx: Option<&mut CudaBuf<L>>,
        dw: &mut CudaBuf<L>,
        db: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("linear_backward", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            let w = self.read(w, Storage::F32)?;
            let dx = dx.map(|dx| self.place(dx, act, true)).transpose()?;
            Ok(ops::linear_backward(
                &self.act_launcher(),
                n,
                fin,
                fout,
                &x,
                &w,
                &dy,
                dx,
                self.place(dw, Storage::F32, true)?,
                self.place(db, Storage::F32, true)?,
            )?)
        });
    }
    fn linear_grad_per_sample(
        &self,
        n: usize,
        fin: usize,
        fout: usize,
        x: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dw: &mut CudaBuf<L>,
        db: &mut CudaBuf<L>,
    ) {
        let act = self.storage;
        self.run("linear_grad_per_sample", |_| {
            let (x, dy) = (self.read(x, act)?, self.read(dy, act)?);
            Ok(ops::linear_grad_per_sample(
                &self.act_launcher(),
                n,
                fin,
                fout,
                &x,
                &dy,
                self.place(dw, Storage::F32, false)?,
                self.place(db, Storage::F32, false)?,
            )?)
        });
    }

    /// The loss, or NaN when the backend has failed (see [`Backend::status`]).
    fn softmax_cross_entropy(
        &self,
        n: usize,
        classes: usize,
        logits: &CudaBuf<L>,
        labels: &[usize],
        reduction: Reduction,
        dlogits: &mut CudaBuf<L>,
    ) -> f32 {
        let act = self.storage;
        let mut loss = f32::NAN;
        self.run("softmax_cross_entropy", |_| {
            let logits = self.read(logits, act)?;
            loss = ops::softmax_cross_entropy(
                &self.act_launcher(),
                n,
                classes,
                &logits,
                labels,
                reduction,
                self.place(dlogits, act, false)?,
            )?;
            Ok(())
        });
        loss
    }
}

impl<L: Launcher> CudaBackend<L> {
    /// Whether `a` and `b` hold as many values; if not, the backend fails with `op` (the
    /// shortcuts for fresh buffers launch nothing that would check it).
    fn same_len(&self, op: &'static str, a: &CudaBuf<L>, b: &CudaBuf<L>) -> bool {
        if a.len == b.len {
            return true;
        }
        if !self.failed() {
            let detail = format!("{op}: {} values vs {}", a.len, b.len);
            self.fail(op, LaunchError::Length(detail));
        }
        false
    }

    /// A pool primitive: activation `src` read, activation `dst` written (`keep`: added to;
    /// `f` is told whether to add, false for a fresh `dst`, which it overwrites).
    fn pool_op(
        &self,
        op: &'static str,
        src: &CudaBuf<L>,
        dst: &mut CudaBuf<L>,
        keep: bool,
        f: impl FnOnce(
            &StorageLauncher<'_, PooledLauncher<L>>,
            &L::Buf,
            &mut L::Buf,
            bool,
        ) -> Result<(), LaunchError>,
    ) {
        let act = self.storage;
        self.run(op, |_| {
            let src = self.read(src, act)?;
            let (dst, accumulate) = if keep {
                self.place_for_adding(dst, act)?
            } else {
                (self.place(dst, act, false)?, false)
            };
            Ok(f(&self.act_launcher(), &src, dst, accumulate)?)
        });
    }
}
