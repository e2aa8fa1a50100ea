//! [`CudaBackend`]: the [`Backend`] primitives as the kernels of kernels/*.cu, launched
//! through a [`Launcher`] (the GPU through cudarc, or the host emulator in tests), in f32.
//!
//! Errors. The primitives cannot return errors, so the backend does what a CUDA context
//! does: the first failed allocation, transfer or launch is kept (sticky), every later
//! primitive is skipped, and [`Backend::status`] reports it (`score_arch` checks it after
//! each score). Buffers know their length even when their allocation failed, so the
//! executor's shape checks still hold and downloads give zeros of the right length until
//! the caller looks at the status.
//!
//! Memory. Released buffers are kept by length (up to [`POOL_BYTES`]) and handed out again
//! after a memset, so scoring arch after arch does not allocate and free every layer's
//! buffers; an allocation that fails first empties the pool and tries once more.
//! Zero-length buffers own no device memory; a primitive given one does nothing.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use super::launch::{LaunchError, Launcher, Pod};
use super::ops;
use crate::backend::{Backend, BackendError, BnGeom, BnGrad, ConvGeom, Reduction};

/// A device buffer of `len` values of `T`.
pub struct DeviceBuf<L: Launcher, T> {
    /// `None` when empty, or when its allocation failed (the backend then holds the error).
    raw: Option<L::Buf>,
    len: usize,
    _values: PhantomData<T>,
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
}

/// f32 activations, weights and gradients.
pub type CudaBuf<L> = DeviceBuf<L, f32>;
/// u64 words: packed sign codes, exact counts.
pub type CudaWords<L> = DeviceBuf<L, u64>;
/// f64 Gram accumulators.
pub type CudaAcc<L> = DeviceBuf<L, f64>;

/// Bytes of released buffers the pool keeps at most.
pub const POOL_BYTES: usize = 4 << 30;

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

struct Pool<B> {
    /// f32 buffers by length.
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

/// The values activations are held to. `F16` and `Bf16` round every activation and
/// activation gradient a primitive writes (conv, batch norm, pools, sums, linear outputs)
/// to IEEE half / bfloat16, ties to even, as 16-bit storage with f32 arithmetic would; the
/// buffers stay f32, so this measures what such storage does to the scores, not its speed.
/// Parameters, their gradients, batch-norm statistics and Gram accumulators are untouched.
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
    launcher: L,
    storage: Storage,
    pool: Mutex<Pool<L::Buf>>,
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
            launcher,
            storage: Storage::F32,
            pool: Mutex::new(Pool::default()),
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
        }
    }

    /// The backend with activations rounded to `storage`'s values (a precision study:
    /// buffers stay f32; see [`Storage`]).
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// Rounds a freshly written activation (or activation gradient) to the storage format.
    fn stored(&self, buf: &mut CudaBuf<L>) {
        let mode = match self.storage {
            Storage::F32 => return,
            Storage::F16 => 1,
            Storage::Bf16 => 2,
        };
        let len = buf.len;
        self.run("round_to_storage", |l| {
            Ok(ops::round_to_storage(l, len, dev_mut(buf)?, mode)?)
        });
    }

    pub fn launcher(&self) -> &L {
        &self.launcher
    }

    /// Bytes held by the pool of released buffers.
    pub fn pooled_bytes(&self) -> usize {
        lock(&self.pool).bytes
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
    fn run(&self, op: &'static str, f: impl FnOnce(&L) -> Run) {
        if self.failed() {
            return;
        }
        match f(&self.launcher) {
            Ok(()) | Err(Fault::Empty) => {}
            Err(Fault::Launch(e)) => self.fail(op, e),
        }
    }

    /// A zeroed buffer of `len` values straight from the launcher; on failure the pool is
    /// emptied (its memory may be what is missing) and the allocation tried once more.
    fn alloc_fresh<T: Pod>(&self, op: &'static str, len: usize) -> DeviceBuf<L, T> {
        let mut buf = DeviceBuf::missing(len);
        if len == 0 || self.failed() {
            return buf;
        }
        let raw = self.launcher.alloc::<T>(len).or_else(|_| {
            let freed = std::mem::take(&mut *lock(&self.pool));
            drop(freed);
            self.launcher.alloc::<T>(len)
        });
        match raw {
            Ok(raw) => buf.raw = Some(raw),
            Err(e) => self.fail(op, e),
        }
        buf
    }

    fn download_as<T: Pod>(&self, op: &'static str, buf: &DeviceBuf<L, T>) -> Vec<T> {
        if let (Some(raw), false) = (&buf.raw, self.failed()) {
            match self.launcher.download::<T>(raw) {
                Ok(values) => return values,
                Err(e) => self.fail(op, e),
            }
        }
        vec![T::default(); buf.len]
    }
}

impl<L: Launcher> Backend for CudaBackend<L> {
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

    fn alloc(&self, len: usize) -> CudaBuf<L> {
        let reused = {
            let mut pool = lock(&self.pool);
            let raw = pool.free.get_mut(&len).and_then(Vec::pop);
            if raw.is_some() {
                pool.bytes -= len * std::mem::size_of::<f32>();
            }
            raw
        };
        let Some(raw) = reused else {
            return self.alloc_fresh("alloc", len);
        };
        let mut buf = DeviceBuf::missing(len);
        buf.raw = Some(raw);
        self.fill_zero(&mut buf);
        buf
    }
    fn release(&self, buf: CudaBuf<L>) {
        let (Some(raw), false) = (buf.raw, self.failed()) else {
            return;
        };
        let bytes = buf.len * std::mem::size_of::<f32>();
        let mut pool = lock(&self.pool);
        if pool.bytes + bytes <= POOL_BYTES {
            pool.bytes += bytes;
            pool.free.entry(buf.len).or_default().push(raw);
        }
    }
    fn upload(&self, host: &[f32]) -> CudaBuf<L> {
        let mut buf = DeviceBuf::missing(host.len());
        if host.is_empty() || self.failed() {
            return buf;
        }
        match self.launcher.upload(host) {
            Ok(raw) => buf.raw = Some(raw),
            Err(e) => self.fail("upload", e),
        }
        buf
    }
    fn download(&self, buf: &CudaBuf<L>) -> Vec<f32> {
        self.download_as("download", buf)
    }
    fn buf_len(&self, buf: &CudaBuf<L>) -> usize {
        buf.len
    }
    fn fill_zero(&self, buf: &mut CudaBuf<L>) {
        self.run("fill_zero", |l| Ok(l.zero(dev_mut(buf)?)?));
    }
    fn copy(&self, src: &CudaBuf<L>, dst: &mut CudaBuf<L>) {
        self.run("copy", |l| Ok(l.copy(dev(src)?, dev_mut(dst)?)?));
    }
    fn add_assign(&self, dst: &mut CudaBuf<L>, src: &CudaBuf<L>) {
        let len = dst.len;
        self.run("add_assign", |l| {
            Ok(ops::add_assign(l, len, dev_mut(dst)?, dev(src)?)?)
        });
        self.stored(dst);
    }
    fn copy_into(&self, src: &CudaBuf<L>, dst: &mut CudaBuf<L>, offset: usize) {
        self.run("copy_into", |l| {
            Ok(ops::copy_into(
                l,
                src.len,
                dev(src)?,
                dev_mut(dst)?,
                offset,
            )?)
        });
    }

    fn alloc_words(&self, len: usize) -> CudaWords<L> {
        self.alloc_fresh("alloc_words", len)
    }
    fn download_words(&self, words: &CudaWords<L>) -> Vec<u64> {
        self.download_as("download_words", words)
    }
    fn buf_len_words(&self, words: &CudaWords<L>) -> usize {
        words.len
    }
    fn alloc_acc(&self, len: usize) -> CudaAcc<L> {
        self.alloc_fresh("alloc_acc", len)
    }
    fn download_acc(&self, acc: &CudaAcc<L>) -> Vec<f64> {
        self.download_as("download_acc", acc)
    }

    fn pack_signs(&self, x: &CudaBuf<L>, n: usize, units: usize, codes: &mut CudaWords<L>) {
        self.run("pack_signs", |l| {
            Ok(ops::pack_signs(
                l,
                n,
                units,
                dev(x)?,
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
            Ok(ops::gram_accumulate(l, n, len, dev(a)?, dev_mut(g)?)?)
        });
    }
    fn column_moments(&self, a: &CudaBuf<L>, n: usize, len: usize, out: &mut CudaAcc<L>) {
        self.run("column_moments", |l| {
            Ok(ops::column_moments(l, n, len, dev(a)?, dev_mut(out)?)?)
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
        self.run("conv_forward", |l| {
            Ok(ops::conv_forward(l, g, n, dev(x)?, dev(w)?, dev_mut(y)?)?)
        });
        self.stored(y);
    }
    fn conv_backward_data(
        &self,
        g: &ConvGeom,
        n: usize,
        dy: &CudaBuf<L>,
        w: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        self.run("conv_backward_data", |l| {
            Ok(ops::conv_backward_data(
                l,
                g,
                n,
                dev(dy)?,
                dev(w)?,
                dev_mut(dx)?,
            )?)
        });
        self.stored(dx);
    }
    fn conv_backward_weight(
        &self,
        g: &ConvGeom,
        n: usize,
        x: &CudaBuf<L>,
        dy: &CudaBuf<L>,
        dw: &mut CudaBuf<L>,
    ) {
        self.run("conv_backward_weight", |l| {
            Ok(ops::conv_backward_weight(
                l,
                g,
                n,
                dev(x)?,
                dev(dy)?,
                dev_mut(dw)?,
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
        self.run("conv_weight_grad_per_sample", |l| {
            Ok(ops::conv_weight_grad_per_sample(
                l,
                g,
                n,
                dev(x)?,
                dev(dy)?,
                dev_mut(out)?,
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
        self.run("bn_forward", |l| {
            Ok(ops::bn_forward(
                l,
                g,
                eps,
                dev(x)?,
                dev(gamma)?,
                dev(beta)?,
                dev_mut(y)?,
                dev_mut(mean)?,
                dev_mut(inv_std)?,
            )?)
        });
        self.stored(y);
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
        let mut dx = dx;
        self.run("bn_backward", |l| {
            Ok(ops::bn_backward(
                l,
                g,
                mode,
                dev(x)?,
                dev(gamma)?,
                dev(mean)?,
                dev(inv_std)?,
                dev(dy)?,
                dx.as_deref_mut().map(dev_mut).transpose()?,
                dev_mut(dgamma)?,
                dev_mut(dbeta)?,
            )?)
        });
        if let Some(dx) = dx {
            self.stored(dx);
        }
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
        self.run("bn_backward_data", |l| {
            Ok(ops::bn_backward_data(
                l,
                g,
                mode,
                dev(x)?,
                dev(gamma)?,
                dev(mean)?,
                dev(inv_std)?,
                dev(dy)?,
                dev_mut(dx)?,
            )?)
        });
        self.stored(dx);
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
        self.run("bn_param_grad_per_sample", |l| {
            Ok(ops::bn_param_grad_per_sample(
                l,
                g,
                dev(x)?,
                dev(mean)?,
                dev(inv_std)?,
                dev(dy)?,
                dev_mut(dgamma)?,
                dev_mut(dbeta)?,
            )?)
        });
    }

    fn relu_forward(&self, x: &CudaBuf<L>, y: &mut CudaBuf<L>) {
        self.run("relu_forward", |l| {
            Ok(ops::relu_forward(l, x.len, dev(x)?, dev_mut(y)?)?)
        });
    }
    fn relu_backward(&self, x: &CudaBuf<L>, dy: &CudaBuf<L>, dx: &mut CudaBuf<L>) {
        self.run("relu_backward", |l| {
            Ok(ops::relu_backward(
                l,
                x.len,
                dev(x)?,
                dev(dy)?,
                dev_mut(dx)?,
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
        self.run("avgpool3x3_forward", |l| {
            Ok(ops::avgpool3x3_forward(
                l,
                (n, c, h, w),
                dev(x)?,
                dev_mut(y)?,
            )?)
        });
        self.stored(y);
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
        self.run("avgpool3x3_backward", |l| {
            Ok(ops::avgpool3x3_backward(
                l,
                (n, c, h, w),
                dev(dy)?,
                dev_mut(dx)?,
            )?)
        });
        self.stored(dx);
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
        self.run("avgpool2x2_forward", |l| {
            Ok(ops::avgpool2x2_forward(
                l,
                (n, c, h, w),
                dev(x)?,
                dev_mut(y)?,
            )?)
        });
        self.stored(y);
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
        self.run("avgpool2x2_backward", |l| {
            Ok(ops::avgpool2x2_backward(
                l,
                (n, c, h, w),
                dev(dy)?,
                dev_mut(dx)?,
            )?)
        });
        self.stored(dx);
    }
    fn global_avgpool_forward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        x: &CudaBuf<L>,
        y: &mut CudaBuf<L>,
    ) {
        self.run("global_avgpool_forward", |l| {
            Ok(ops::global_avgpool_forward(
                l,
                (n, c, hw),
                dev(x)?,
                dev_mut(y)?,
            )?)
        });
        self.stored(y);
    }
    fn global_avgpool_backward(
        &self,
        n: usize,
        c: usize,
        hw: usize,
        dy: &CudaBuf<L>,
        dx: &mut CudaBuf<L>,
    ) {
        self.run("global_avgpool_backward", |l| {
            Ok(ops::global_avgpool_backward(
                l,
                (n, c, hw),
                dev(dy)?,
                dev_mut(dx)?,
            )?)
        });
        self.stored(dx);
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
        self.run("linear_forward", |l| {
            Ok(ops::linear_forward(
                l,
                n,
                fin,
                fout,
                dev(x)?,
                dev(w)?,
                dev(b)?,
                dev_mut(y)?,
            )?)
        });
        self.stored(y);
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
        let mut dx = dx;
        self.run("linear_backward", |l| {
            Ok(ops::linear_backward(
                l,
                n,
                fin,
                fout,
                dev(x)?,
                dev(w)?,
                dev(dy)?,
                dx.as_deref_mut().map(dev_mut).transpose()?,
                dev_mut(dw)?,
                dev_mut(db)?,
            )?)
        });
        if let Some(dx) = dx {
            self.stored(dx);
        }
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
        self.run("linear_grad_per_sample", |l| {
            Ok(ops::linear_grad_per_sample(
                l,
                n,
                fin,
                fout,
                dev(x)?,
                dev(dy)?,
                dev_mut(dw)?,
                dev_mut(db)?,
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
        let mut loss = f32::NAN;
        self.run("softmax_cross_entropy", |l| {
            loss = ops::softmax_cross_entropy(
                l,
                n,
                classes,
                dev(logits)?,
                labels,
                reduction,
                dev_mut(dlogits)?,
            )?;
            Ok(())
        });
        loss
    }
}
