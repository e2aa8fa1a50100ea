//! Every kernel family compiles with NVRTC to PTX that exports each declared entry point, a
//! family holding activations once per activation storage.
//!
//! Needs the NVRTC library (no GPU): `tools/ci_nvrtc.sh` installs it and prints the directory
//! to put on `LD_LIBRARY_PATH`. Without it the test fails when `CI` is set and is skipped
//! with a notice otherwise.
#![cfg(feature = "cuda")]

use nasrank::backend::cuda::nvrtc::{self, NvrtcError};
use nasrank::backend::cuda::{family_entries, Storage, KERNEL_SOURCES, STORAGE_FAMILIES};

/// Hopper (the H200 of the project's GPU runs) and the oldest architecture with the double
/// atomicAdd the kernels use.
const ARCHS: &[&str] = &["compute_90", "compute_60"];

fn nvrtc_or_skip() -> bool {
    if nvrtc::is_available() {
        return true;
    }
    let help =
        "the NVRTC library is not loadable: run `export LD_LIBRARY_PATH=\"$(tools/ci_nvrtc.sh)\
                ${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}\"` (installs the nvidia-cuda-nvrtc-cu12 \
                wheel with pip) before `cargo test --features cuda`";
    if std::env::var_os("CI").is_some() {
        panic!("{help}");
    }
    eprintln!("NOTICE: skipping the NVRTC compile test: {help}");
    false
}

#[test]
fn every_family_compiles_to_ptx_with_its_entry_points() {
    if !nvrtc_or_skip() {
        return;
    }
    let (major, minor) = nvrtc::version().unwrap();
    assert!(
        major >= 12,
        "NVRTC {major}.{minor}: the bindings are for CUDA 12.9"
    );
    assert!(!KERNEL_SOURCES.is_empty());
    assert!(STORAGE_FAMILIES.contains(&"conv"), "{STORAGE_FAMILIES:?}");
    for arch in ARCHS {
        for (family, storage) in KERNEL_SOURCES
            .iter()
            .flat_map(|(f, _, _)| nvrtc::family_storages(f).iter().map(move |s| (*f, *s)))
        {
            let ptx = nvrtc::compile_ptx(family, storage, arch)
                .unwrap_or_else(|e| panic!("{family} ({storage:?}) for {arch}: {e}"));
            if storage != Storage::F32 {
                // The variant is compiled with its own storage, not f32's.
                let f32_ptx = nvrtc::compile_ptx(family, Storage::F32, arch).unwrap();
                assert_ne!(ptx, f32_ptx, "{family} ({storage:?}): the f32 PTX");
            }
            let target = format!(".target sm_{}", &arch["compute_".len()..]);
            assert!(ptx.contains(&target), "{family}: no `{target}` in the PTX");
            let entries = nvrtc::ptx_entries(&ptx);
            let expected: Vec<&str> = family_entries(family).collect();
            assert!(!expected.is_empty(), "{family}: no entry points parsed");
            for name in &expected {
                assert!(
                    entries.contains(name),
                    "{family} ({arch}): `.entry {name}` missing; PTX has {entries:?}"
                );
            }
            assert_eq!(
                entries.len(),
                expected.len(),
                "{family}: {entries:?} vs {expected:?}"
            );
        }
    }
}

#[test]
fn compile_errors_carry_the_nvrtc_log() {
    if !nvrtc_or_skip() {
        return;
    }
    match nvrtc::compile_ptx("no_such_family", Storage::F32, "compute_90") {
        Err(NvrtcError::UnknownFamily(f)) => assert_eq!(f, "no_such_family"),
        other => panic!("expected UnknownFamily, got {other:?}"),
    }
    // An architecture NVRTC rejects: the error names the family and keeps NVRTC's message.
    match nvrtc::compile_ptx("act", Storage::Bf16, "compute_1") {
        Err(e @ NvrtcError::Compile { .. }) => {
            let text = e.to_string();
            assert!(text.contains("kernels/act.cu"), "{text}");
        }
        other => panic!("expected a compile error, got {other:?}"),
    }
}

#[test]
fn the_ptx_cache_returns_what_was_compiled() {
    if !nvrtc_or_skip() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("nasrank-ptx-cache-{}", std::process::id()));
    // The variable is read on each call; this is the only test in this binary that sets it.
    std::env::set_var("NASRANK_CACHE", &dir);
    let first = nvrtc::compile_ptx_cached("hamming", Storage::F32, "compute_90").unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.join("ptx"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "one cached module: {files:?}");
    // Mark the cached file: a second call must return it rather than recompile.
    let marked = format!("// cached\n{first}");
    std::fs::write(&files[0], &marked).unwrap();
    assert_eq!(
        nvrtc::compile_ptx_cached("hamming", Storage::F32, "compute_90").unwrap(),
        marked
    );
    // Another architecture is another key.
    let other = nvrtc::compile_ptx_cached("hamming", Storage::F32, "compute_60").unwrap();
    assert!(!other.contains("// cached") && other.contains(".target sm_60"));
    // And so is another activation storage.
    let bf16 = nvrtc::compile_ptx_cached("act", Storage::Bf16, "compute_90").unwrap();
    let f32 = nvrtc::compile_ptx_cached("act", Storage::F32, "compute_90").unwrap();
    assert_ne!(bf16, f32);
    std::fs::remove_dir_all(&dir).unwrap();
}
