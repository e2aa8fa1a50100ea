//! Run-time compilation of the embedded kernel families to PTX with NVRTC, and an on-disk
//! cache of the results.
//!
//! The NVRTC library is loaded on first use by cudarc (dlopen of `libnvrtc.so`,
//! `libnvrtc.so.12`, ... through the usual search path, i.e. `LD_LIBRARY_PATH`, set before the
//! process starts). [`is_available`] checks for it without panicking; every other function
//! returns [`NvrtcError::NotFound`] when it is missing.
//!
//! Cache: `$NASRANK_CACHE/ptx` or `~/.cache/nasrank/ptx`, one file per (family, source
//! hash, activation storage, architecture, NVRTC version). A cache that cannot be read or written is skipped:
//! it only saves time.

use std::ffi::{c_int, CString};
use std::path::PathBuf;

use cudarc::nvrtc::{result, sys};
use thiserror::Error;

use super::{Storage, KERNEL_SOURCES, STORAGE_FAMILIES};

#[derive(Debug, Error)]
pub enum NvrtcError {
    #[error(
        "the NVRTC library could not be loaded (looked for libnvrtc.so / libnvrtc.so.12 on the \
         library search path); install it with tools/ci_nvrtc.sh and put the directory it \
         prints on LD_LIBRARY_PATH"
    )]
    NotFound,
    #[error("no kernel family {0:?} in kernels/")]
    UnknownFamily(String),
    #[error("NVRTC failed to compile kernels/{family}.cu for {arch} ({status}):\n{log}")]
    Compile {
        family: String,
        arch: String,
        status: String,
        log: String,
    },
    #[error("NVRTC call failed: {0}")]
    Api(String),
}

/// Whether the NVRTC library can be loaded.
pub fn is_available() -> bool {
    // SAFETY: only tries to dlopen the candidate names.
    unsafe { sys::is_culib_present() }
}

fn require() -> Result<(), NvrtcError> {
    if is_available() {
        Ok(())
    } else {
        Err(NvrtcError::NotFound)
    }
}

/// The NVRTC version (major, minor).
pub fn version() -> Result<(i32, i32), NvrtcError> {
    require()?;
    let (mut major, mut minor): (c_int, c_int) = (0, 0);
    // SAFETY: the library is present; the out-pointers are valid.
    unsafe { sys::nvrtcVersion(&mut major, &mut minor) }
        .result()
        .map_err(|e| NvrtcError::Api(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// The virtual architecture for a compute capability, e.g. (9, 0) -> `compute_90`.
pub fn arch_for(major: i32, minor: i32) -> String {
    format!("compute_{major}{minor}")
}

fn source(family: &str) -> Result<(&'static str, u64), NvrtcError> {
    KERNEL_SOURCES
        .iter()
        .find(|(f, _, _)| *f == family)
        .map(|(_, src, hash)| (*src, *hash))
        .ok_or_else(|| NvrtcError::UnknownFamily(family.into()))
}

fn c_chars_to_string(chars: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = chars
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The activation storages `family` is compiled for: all of them for a storage family
/// (kernels/storage.cuh), else f32 alone.
pub fn family_storages(family: &str) -> &'static [Storage] {
    if STORAGE_FAMILIES.contains(&family) {
        &Storage::ALL
    } else {
        &Storage::ALL[..1]
    }
}

/// Compiles kernel family `family` to PTX for `arch` (e.g. `compute_90`) with its activations
/// stored as `storage` (f32 for a family that holds none), without the cache.
pub fn compile_ptx(family: &str, storage: Storage, arch: &str) -> Result<String, NvrtcError> {
    let (src, _) = source(family)?;
    require()?;
    let api = |what: &str, e: result::NvrtcError| NvrtcError::Api(format!("{what}: {e:?}"));
    let src_c = CString::new(src).map_err(|_| NvrtcError::Api("NUL in the source".into()))?;
    let name = CString::new(format!("{family}.cu")).expect("family names have no NUL");
    let prog = result::create_program(&src_c, Some(&name)).map_err(|e| api("create", e))?;
    let options = [
        format!("--gpu-architecture={arch}"),
        "--std=c++17".to_string(),
        format!("-DACT_STORAGE={}", storage.act_storage()),
    ];
    // SAFETY: `prog` is a live program until destroyed below.
    let compiled = unsafe { result::compile_program(prog, &options) };
    let outcome = match compiled {
        Ok(()) => unsafe { result::get_ptx(prog) }
            .map(|ptx| c_chars_to_string(&ptx))
            .map_err(|e| api("get PTX", e)),
        Err(status) => Err(NvrtcError::Compile {
            family: family.into(),
            arch: format!("{arch}, activations {storage:?}"),
            status: format!("{status:?}"),
            log: unsafe { result::get_program_log(prog) }
                .map(|log| c_chars_to_string(&log))
                .unwrap_or_else(|e| format!("(no log: {e:?})")),
        }),
    };
    // SAFETY: destroyed once, after its last use.
    unsafe { result::destroy_program(prog) }.map_err(|e| api("destroy", e))?;
    outcome
}

/// The cache directory: `$NASRANK_CACHE/ptx`, else `~/.cache/nasrank/ptx`.
pub fn cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("NASRANK_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nasrank")))?;
    Some(base.join("ptx"))
}

/// [`compile_ptx`] through the disk cache, keyed by source hash, storage, architecture and
/// NVRTC version.
pub fn compile_ptx_cached(
    family: &str,
    storage: Storage,
    arch: &str,
) -> Result<String, NvrtcError> {
    let (_, hash) = source(family)?;
    let (major, minor) = version()?;
    let variant = storage.act_storage();
    let file = cache_dir().map(|d| {
        d.join(format!(
            "{family}-{hash:016x}-s{variant}-{arch}-nvrtc{major}.{minor}.ptx"
        ))
    });
    if let Some(ptx) = file.as_ref().and_then(|f| std::fs::read_to_string(f).ok()) {
        if ptx.contains(".entry") {
            return Ok(ptx);
        }
    }
    let ptx = compile_ptx(family, storage, arch)?;
    if let Some(file) = file {
        // Write then rename, so concurrent processes never read a partial file.
        let tmp = file.with_extension(format!("tmp{}", std::process::id()));
        let stored = file
            .parent()
            .map(std::fs::create_dir_all)
            .transpose()
            .and_then(|_| std::fs::write(&tmp, &ptx))
            .and_then(|_| std::fs::rename(&tmp, &file));
        if stored.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
    Ok(ptx)
}

/// The `.entry` names of a PTX module.
pub fn ptx_entries(ptx: &str) -> Vec<&str> {
    ptx.lines()
        .filter_map(|l| l.trim_start().strip_prefix(".visible .entry "))
        .chain(
            ptx.lines()
                .filter_map(|l| l.trim_start().strip_prefix(".entry ")),
        )
        .map(|rest| {
            rest.split(|c: char| c == '(' || c.is_whitespace())
                .next()
                .unwrap_or("")
        })
        .collect()
}
