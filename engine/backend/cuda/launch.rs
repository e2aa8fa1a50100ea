//! The [`Launcher`]: device buffers and kernel launches by name, the one interface the CUDA
//! backend's host code is written against. Implemented by the emulator (host memory, kernels
//! compiled for the host) and by the driver (cudarc).
//!
//! Arguments are checked against the kernel's declared parameter types (from the source, see
//! build.rs) before every launch: a count or type mismatch, or a read-only buffer passed for a
//! pointer the kernel may write, is an error instead of memory corruption.

use thiserror::Error;

use super::{has_storage_variants, kernel_params, Storage};

/// Grid or block extent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dim3 {
    pub x: u32,
    pub y: u32,
    pub z: u32,
}

impl Dim3 {
    pub fn count(&self) -> u64 {
        u64::from(self.x) * u64::from(self.y) * u64::from(self.z)
    }
}

impl From<u32> for Dim3 {
    fn from(x: u32) -> Self {
        Dim3 { x, y: 1, z: 1 }
    }
}

impl From<(u32, u32)> for Dim3 {
    fn from((x, y): (u32, u32)) -> Self {
        Dim3 { x, y, z: 1 }
    }
}

impl From<(u32, u32, u32)> for Dim3 {
    fn from((x, y, z): (u32, u32, u32)) -> Self {
        Dim3 { x, y, z }
    }
}

/// Grid, block and dynamic shared memory of a launch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: Dim3,
    pub block: Dim3,
    pub shared_bytes: u32,
}

impl LaunchConfig {
    pub fn new(grid: impl Into<Dim3>, block: impl Into<Dim3>) -> Self {
        LaunchConfig {
            grid: grid.into(),
            block: block.into(),
            shared_bytes: 0,
        }
    }
}

/// One kernel argument, in declaration order.
pub enum Arg<'a, B> {
    /// A buffer for a `const T*` parameter.
    Buf(&'a B),
    /// A buffer for a `T*` parameter (the kernel may write it).
    BufMut(&'a mut B),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
}

impl<B> Arg<'_, B> {
    /// Whether this argument may be passed for a parameter declared as `ty`.
    fn fits(&self, ty: &str) -> bool {
        match self {
            Arg::Buf(_) => ty.ends_with('*') && ty.starts_with("const "),
            Arg::BufMut(_) => ty.ends_with('*') && !ty.starts_with("const "),
            Arg::I32(_) => ty == "int",
            Arg::U32(_) => ty == "unsigned" || ty == "unsigned int",
            Arg::I64(_) => ty == "long long",
            Arg::U64(_) => ty == "u64" || ty == "unsigned long long",
            Arg::F32(_) => ty == "float",
            Arg::F64(_) => ty == "double",
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Arg::Buf(_) => "read-only buffer",
            Arg::BufMut(_) => "writable buffer",
            Arg::I32(_) => "i32",
            Arg::U32(_) => "u32",
            Arg::I64(_) => "i64",
            Arg::U64(_) => "u64",
            Arg::F32(_) => "f32",
            Arg::F64(_) => "f64",
        }
    }
}

#[derive(Debug, Error)]
pub enum LaunchError {
    #[error("no kernel named {0:?} in kernels/*.cu")]
    UnknownKernel(String),
    #[error("kernel {kernel}: {detail}")]
    BadArgs { kernel: String, detail: String },
    #[error("kernel {kernel}: invalid launch configuration {config:?}")]
    BadConfig {
        kernel: String,
        config: LaunchConfig,
    },
    #[error("size {0} does not fit the kernel's parameter type")]
    SizeOverflow(usize),
    #[error("buffer length mismatch: {0}")]
    Length(String),
    #[error("device: {0}")]
    Device(String),
    #[error("NVRTC: {0}")]
    Compile(String),
}

/// Checks `args` against the declared parameters of `kernel`, and the configuration
/// against the CUDA limits every device shares.
pub fn check_launch<B>(
    kernel: &str,
    config: &LaunchConfig,
    args: &[Arg<'_, B>],
) -> Result<(), LaunchError> {
    let params = kernel_params(kernel).ok_or_else(|| LaunchError::UnknownKernel(kernel.into()))?;
    let bad = |detail: String| LaunchError::BadArgs {
        kernel: kernel.into(),
        detail,
    };
    if params.len() != args.len() {
        return Err(bad(format!(
            "{} arguments for {} parameters {params:?}",
            args.len(),
            params.len()
        )));
    }
    for (i, (arg, ty)) in args.iter().zip(params).enumerate() {
        if !arg.fits(ty) {
            return Err(bad(format!(
                "argument {i} is a {}, parameter is `{ty}`",
                arg.describe()
            )));
        }
    }
    let (g, b) = (config.grid, config.block);
    let ok = g.count() > 0
        && b.count() > 0
        && b.count() <= 1024
        && b.z <= 64
        && g.y <= 65_535
        && g.z <= 65_535;
    if !ok {
        return Err(LaunchError::BadConfig {
            kernel: kernel.into(),
            config: *config,
        });
    }
    Ok(())
}

/// A value that lives in device buffers (plain old data: any bit pattern is valid).
pub trait Pod: Copy + Default + Send + Sync + 'static + private::Sealed {}
impl Pod for f32 {}
impl Pod for f64 {}
impl Pod for u64 {}
impl Pod for u32 {}
impl Pod for i32 {}
impl Pod for u16 {}

mod private {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
    impl Sealed for u64 {}
    impl Sealed for u32 {}
    impl Sealed for i32 {}
    impl Sealed for u16 {}
}

/// The bytes of a slice of plain old data.
pub fn as_bytes<T: Pod>(v: &[T]) -> &[u8] {
    // SAFETY: T is a sealed primitive with no padding; u8 has alignment 1.
    unsafe { std::slice::from_raw_parts(v.as_ptr().cast(), std::mem::size_of_val(v)) }
}

/// The bytes of a mutable slice of plain old data.
pub fn as_bytes_mut<T: Pod>(v: &mut [T]) -> &mut [u8] {
    // SAFETY: as in `as_bytes`, and every bit pattern is a valid T.
    unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr().cast(), std::mem::size_of_val(v)) }
}

/// Device memory and kernel launches.
pub trait Launcher: Send + Sync {
    /// A device buffer of bytes.
    type Buf: Send + Sync;

    fn alloc_zeroed(&self, bytes: usize) -> Result<Self::Buf, LaunchError>;
    /// Copies `host` into `buf` (same length).
    fn write_bytes(&self, host: &[u8], buf: &mut Self::Buf) -> Result<(), LaunchError>;
    /// A buffer holding `host` ([`Launcher::take_bytes`], then [`Launcher::write_bytes`]).
    fn upload_bytes(&self, host: &[u8]) -> Result<Self::Buf, LaunchError> {
        let mut buf = self.take_bytes(host.len())?;
        self.write_bytes(host, &mut buf)?;
        Ok(buf)
    }
    /// Copies the whole buffer into `out` (same length).
    fn download_bytes(&self, buf: &Self::Buf, out: &mut [u8]) -> Result<(), LaunchError>;
    fn byte_len(&self, buf: &Self::Buf) -> usize;
    /// The device address of `buf`'s memory, for a kernel that reads buffer addresses from a
    /// table (kernels/init.cu) and may write there (hence `&mut`).
    fn address(&self, buf: &mut Self::Buf) -> u64;
    /// [`Launcher::address`] of a buffer a kernel only reads.
    fn read_address(&self, buf: &Self::Buf) -> u64;
    fn zero(&self, buf: &mut Self::Buf) -> Result<(), LaunchError>;
    /// Copies `src` into `dst` (same length).
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf) -> Result<(), LaunchError>;
    /// Waits for every launch and copy issued so far (the emulator runs them before
    /// returning, so its default does nothing).
    fn synchronize(&self) -> Result<(), LaunchError> {
        Ok(())
    }

    /// The storage of the activations the launched kernels read and write (f32 unless this
    /// is a [`StorageLauncher`]); the host code sizes activation buffers by it.
    fn storage(&self) -> Storage {
        Storage::F32
    }

    /// Launches `kernel` after [`check_launch`]; returns once the kernel's effects are
    /// visible to the next launch and download.
    ///
    /// # Safety
    /// The kernel trusts its size arguments: every index it derives from them must lie
    /// inside the buffers passed (each kernel's header comment states its layout).
    unsafe fn launch(
        &self,
        kernel: &str,
        config: LaunchConfig,
        args: &mut [Arg<'_, Self::Buf>],
    ) -> Result<(), LaunchError>;

    /// A buffer holding `host`.
    fn upload<T: Pod>(&self, host: &[T]) -> Result<Self::Buf, LaunchError> {
        self.upload_bytes(as_bytes(host))
    }

    /// The buffer's contents as `T`s.
    fn download<T: Pod>(&self, buf: &Self::Buf) -> Result<Vec<T>, LaunchError> {
        let len = self.byte_len(buf) / std::mem::size_of::<T>();
        let mut out = vec![T::default(); len];
        self.download_bytes(buf, as_bytes_mut(&mut out))?;
        Ok(out)
    }

    /// A zeroed buffer of `len` values of `T`.
    fn alloc<T: Pod>(&self, len: usize) -> Result<Self::Buf, LaunchError> {
        self.alloc_zeroed(len * std::mem::size_of::<T>())
    }

    /// Device memory of `bytes` whose contents are unspecified (its user writes before it
    /// reads), to be handed back with [`Launcher::give_back`]. The default allocates;
    /// a [`PooledLauncher`](super::pooled::PooledLauncher) hands out memory given back.
    fn take_bytes(&self, bytes: usize) -> Result<Self::Buf, LaunchError> {
        self.alloc_zeroed(bytes)
    }

    /// Memory no longer needed once the work queued so far is done with it: a later
    /// [`Launcher::take_bytes`] may hand it out again (the work queued after it on the
    /// same stream runs after). The default frees it.
    fn give_back(&self, buf: Self::Buf) {
        drop(buf);
    }

    /// `len` values of `T` for one primitive's intermediate values
    /// ([`Launcher::take_bytes`]: contents unspecified), given back when dropped.
    fn scratch<T: Pod>(&self, len: usize) -> Result<Scratch<'_, Self>, LaunchError>
    where
        Self: Sized,
    {
        let buf = self.take_bytes(len * std::mem::size_of::<T>())?;
        Ok(Scratch {
            launcher: self,
            buf: Some(buf),
        })
    }
}

/// Scratch memory of a [`Launcher`], given back to it when dropped.
pub struct Scratch<'a, L: Launcher> {
    launcher: &'a L,
    buf: Option<L::Buf>,
}

impl<L: Launcher> std::ops::Deref for Scratch<'_, L> {
    type Target = L::Buf;
    fn deref(&self) -> &L::Buf {
        self.buf.as_ref().expect("scratch held until dropped")
    }
}

impl<L: Launcher> std::ops::DerefMut for Scratch<'_, L> {
    fn deref_mut(&mut self) -> &mut L::Buf {
        self.buf.as_mut().expect("scratch held until dropped")
    }
}

impl<L: Launcher> Drop for Scratch<'_, L> {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take() {
            self.launcher.give_back(buf);
        }
    }
}

/// `value` as an `int` kernel argument.
pub fn int(value: usize) -> Result<i32, LaunchError> {
    i32::try_from(value).map_err(|_| LaunchError::SizeOverflow(value))
}

/// `value` as a `long long` kernel argument.
pub fn long(value: usize) -> Result<i64, LaunchError> {
    i64::try_from(value).map_err(|_| LaunchError::SizeOverflow(value))
}

/// Implements the named [`Launcher`] methods of a wrapper (a struct with an `inner`
/// launcher) by passing them on to `self.inner`: the wrappers (`StorageLauncher`,
/// `PooledLauncher`, `CountingLauncher`) each change a few methods and pass on the rest.
macro_rules! pass_to_inner {
    ($($method:ident),* $(,)?) => {
        $($crate::backend::cuda::launch::pass_to_inner!(@one $method);)*
    };
    (@one alloc_zeroed) => {
        fn alloc_zeroed(
            &self,
            bytes: usize,
        ) -> Result<Self::Buf, $crate::backend::cuda::LaunchError> {
            self.inner.alloc_zeroed(bytes)
        }
    };
    (@one write_bytes) => {
        fn write_bytes(
            &self,
            host: &[u8],
            buf: &mut Self::Buf,
        ) -> Result<(), $crate::backend::cuda::LaunchError> {
            self.inner.write_bytes(host, buf)
        }
    };
    (@one download_bytes) => {
        fn download_bytes(
            &self,
            buf: &Self::Buf,
            out: &mut [u8],
        ) -> Result<(), $crate::backend::cuda::LaunchError> {
            self.inner.download_bytes(buf, out)
        }
    };
    (@one byte_len) => {
        fn byte_len(&self, buf: &Self::Buf) -> usize {
            self.inner.byte_len(buf)
        }
    };
    (@one address) => {
        fn address(&self, buf: &mut Self::Buf) -> u64 {
            self.inner.address(buf)
        }
    };
    (@one read_address) => {
        fn read_address(&self, buf: &Self::Buf) -> u64 {
            self.inner.read_address(buf)
        }
    };
    (@one zero) => {
        fn zero(&self, buf: &mut Self::Buf) -> Result<(), $crate::backend::cuda::LaunchError> {
            self.inner.zero(buf)
        }
    };
    (@one copy) => {
        fn copy(
            &self,
            src: &Self::Buf,
            dst: &mut Self::Buf,
        ) -> Result<(), $crate::backend::cuda::LaunchError> {
            self.inner.copy(src, dst)
        }
    };
    (@one synchronize) => {
        fn synchronize(&self) -> Result<(), $crate::backend::cuda::LaunchError> {
            self.inner.synchronize()
        }
    };
    (@one storage) => {
        fn storage(&self) -> $crate::backend::cuda::Storage {
            self.inner.storage()
        }
    };
    (@one take_bytes) => {
        fn take_bytes(
            &self,
            bytes: usize,
        ) -> Result<Self::Buf, $crate::backend::cuda::LaunchError> {
            self.inner.take_bytes(bytes)
        }
    };
    (@one give_back) => {
        fn give_back(&self, buf: Self::Buf) {
            self.inner.give_back(buf);
        }
    };
    (@one launch) => {
        unsafe fn launch(
            &self,
            kernel: &str,
            config: $crate::backend::cuda::LaunchConfig,
            args: &mut [$crate::backend::cuda::Arg<'_, Self::Buf>],
        ) -> Result<(), $crate::backend::cuda::LaunchError> {
            // SAFETY: the caller's guarantee, passed on.
            unsafe { self.inner.launch(kernel, config, args) }
        }
    };
}
pub(crate) use pass_to_inner;

/// `L` launching the kernels compiled for activation storage `storage`: a kernel of a family
/// that holds activations (kernels/storage.cuh) is launched as that storage's variant
/// (`conv_forward__bf16`), any other kernel as it is. Everything else is `L`'s.
pub struct StorageLauncher<'a, L> {
    inner: &'a L,
    storage: Storage,
}

impl<'a, L: Launcher> StorageLauncher<'a, L> {
    pub fn new(inner: &'a L, storage: Storage) -> Self {
        StorageLauncher { inner, storage }
    }
}

impl<L: Launcher> Launcher for StorageLauncher<'_, L> {
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
        take_bytes,
        give_back,
    );

    fn storage(&self) -> Storage {
        self.storage
    }

    unsafe fn launch(
        &self,
        kernel: &str,
        config: LaunchConfig,
        args: &mut [Arg<'_, L::Buf>],
    ) -> Result<(), LaunchError> {
        if self.storage == Storage::F32 || !has_storage_variants(kernel) {
            // SAFETY: the caller's guarantee, passed on.
            return unsafe { self.inner.launch(kernel, config, args) };
        }
        let name = format!("{kernel}{}", self.storage.kernel_suffix());
        // SAFETY: as above; the variant has the kernel's parameters, its activation buffers
        // sized for this storage by the caller (ops.rs sizes them by `storage()`).
        unsafe { self.inner.launch(&name, config, args) }
    }
}
