//! Embeds the CUDA C sources of kernels/ for run-time compilation with NVRTC, each with a
//! content hash (the key of the on-disk compile cache), and the table of their
//! `extern "C" __global__` entry points with parameter types.
//!
//! A family may say `#include "NAME.cuh"` for a header of kernels/ (common.cuh: grid-stride
//! loops and block sums; storage.cuh: the activation storage); the embedded source has that
//! line replaced by the header itself (NVRTC is given no include files). A family that
//! includes storage.cuh holds activations and is listed in `STORAGE_FAMILIES`: it is
//! compiled once per activation storage (`-DACT_STORAGE=0|1|2`), its 16-bit variants'
//! kernels named `NAME__f16` / `NAME__bf16`.
//!
//! With the `emu` feature, also compiles every kernel family (and variant) for the host with
//! kernels/emu/cuda_emu.h and generates one launch shim per entry point
//! (`emu_launch_NAME(grid, block, shared_bytes, void** params)`, params as for
//! cuLaunchKernel) plus the Rust table `EMU_KERNELS` of those shims.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::PathBuf;

/// FNV-1a, 64 bit: a stable content hash with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One `extern "C" __global__ void name(type name, ...)` of a kernel family.
struct Entry {
    name: String,
    /// Parameter types, normalised (`__restrict__` dropped, single spaces, `*` attached).
    params: Vec<String>,
}

/// The source with comments replaced by spaces (kernels use no string literals other than
/// `"C"`).
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("//") {
            rest = r.find('\n').map_or("", |i| &r[i..]);
            out.push(' ');
        } else if let Some(r) = rest.strip_prefix("/*") {
            rest = r.find("*/").map_or("", |i| &r[i + 2..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().unwrap();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

fn normalise_type(t: &str) -> String {
    t.replace("__restrict__", " ")
        .replace('*', " * ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" *", "*")
}

/// Parses the entry points of a family; panics (failing the build) on a parameter it cannot
/// read, since a wrong shim would corrupt memory.
fn parse_entries(family: &str, src: &str) -> Vec<Entry> {
    const MARK: &str = "extern \"C\" __global__ void";
    let src = strip_comments(src);
    let mut entries = Vec::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find(MARK) {
        rest = &rest[at + MARK.len()..];
        let open = rest.find('(').expect("kernel parameter list");
        let close = rest.find(')').expect("kernel parameter list end");
        let name = rest[..open].trim().to_string();
        assert!(
            !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{family}.cu: cannot read the kernel name {name:?}"
        );
        let list = rest[open + 1..close].trim();
        let params = if list.is_empty() || list == "void" {
            Vec::new()
        } else {
            list.split(',')
                .map(|p| {
                    let p = p.trim();
                    let split = p
                        .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or_else(|| panic!("{family}.cu {name}: parameter {p:?}"));
                    normalise_type(&p[..=split])
                })
                .collect()
        };
        entries.push(Entry { name, params });
        rest = &rest[close..];
    }
    entries
}

/// The header whose families hold activations (compiled once per storage).
const STORAGE_HEADER: &str = "storage.cuh";

/// The 16-bit storage variants: (ACT_STORAGE, kernel-name suffix); variant 0 (f32) keeps the
/// plain names.
#[cfg_attr(not(feature = "emu"), allow(dead_code))]
const STORAGE_VARIANTS: [(u32, &str); 2] = [(1, "__f16"), (2, "__bf16")];

/// The header a line `#include "NAME.cuh"` names, if that is what the line is.
fn included_header(line: &str) -> Option<&str> {
    let name = line.trim().strip_prefix("#include \"")?.strip_suffix('"')?;
    name.ends_with(".cuh").then_some(name)
}

/// `src` with each `#include "NAME.cuh"` line replaced by kernels/NAME.cuh (with `#line`
/// markers, so compile errors still name the header's or the family's own lines), and the
/// headers it included; panics (failing the build) on a header that kernels/ lacks.
fn expand_includes(family: &str, src: &str) -> (String, Vec<String>) {
    let mut out = String::new();
    let mut included = Vec::new();
    for (i, line) in src.lines().enumerate() {
        match included_header(line) {
            Some(name) => {
                let path = format!("kernels/{name}");
                println!("cargo:rerun-if-changed={path}");
                let text = fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{family}.cu includes {path}: {e}"));
                writeln!(
                    out,
                    "#line 1 \"{name}\"\n{text}#line {} \"{family}.cu\"",
                    i + 2
                )
                .unwrap();
                included.push(name.to_string());
            }
            None => writeln!(out, "{line}").unwrap(),
        }
    }
    (out, included)
}

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut families: Vec<(String, PathBuf)> = fs::read_dir("kernels")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .map(|p| {
                    let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                    println!("cargo:rerun-if-changed={}", p.display());
                    (name, fs::canonicalize(&p).unwrap())
                })
                .collect()
        })
        .unwrap_or_default();
    families.sort();

    let mut code = String::from(
        "/// Kernel sources embedded at build time: (family, CUDA C source, content hash).\n\
         pub const KERNEL_SOURCES: &[(&str, &str, u64)] = &[\n",
    );
    let mut table = String::from(
        "/// Entry points: (family, kernel, parameter types as written in the source).\n\
         pub const KERNEL_ENTRIES: &[(&str, &str, &[&str])] = &[\n",
    );
    let mut storage_families = String::from(
        "/// The families holding activations: compiled once per activation storage.\n\
         pub const STORAGE_FAMILIES: &[&str] = &[",
    );
    let mut parsed = Vec::new();
    for (family, path) in &families {
        let (src, included) = expand_includes(family, &fs::read_to_string(path).unwrap());
        let storage = included.iter().any(|h| h == STORAGE_HEADER);
        if storage {
            write!(storage_families, "{family:?}, ").unwrap();
        }
        let path = if included.is_empty() {
            path.clone()
        } else {
            let out = out_dir.join(format!("{family}.cu"));
            fs::write(&out, &src).unwrap();
            out
        };
        let hash = fnv1a(src.as_bytes());
        writeln!(
            code,
            "    ({family:?}, include_str!({path:?}), 0x{hash:016x}),"
        )
        .unwrap();
        let entries = parse_entries(family, &src);
        for e in &entries {
            writeln!(table, "    ({family:?}, {:?}, &{:?}),", e.name, e.params).unwrap();
        }
        parsed.push((family.clone(), path, storage, entries));
    }
    code.push_str("];\n");
    table.push_str("];\n");
    storage_families.push_str("];\n");
    code.push_str(&table);
    code.push_str(&storage_families);
    fs::write(out_dir.join("kernel_sources.rs"), code).unwrap();

    #[cfg(feature = "emu")]
    build_emulated(&out_dir, &parsed);
    #[cfg(not(feature = "emu"))]
    drop(parsed);
}

/// Compiles the families for the host and writes `emu_kernels.rs`.
#[cfg(feature = "emu")]
fn build_emulated(out_dir: &std::path::Path, families: &[(String, PathBuf, bool, Vec<Entry>)]) {
    {
        let header = fs::canonicalize("kernels/emu/cuda_emu.h").expect("kernels/emu/cuda_emu.h");
        println!("cargo:rerun-if-changed={}", header.display());
        let mut seen = std::collections::BTreeSet::new();
        let mut rust = String::from(
            "/// Host launch shims of every kernel, by name (see kernels/emu/cuda_emu.h).\n\
             pub const EMU_KERNELS: &[(&str, EmuLaunch)] = &[\n",
        );
        let mut externs = String::from("extern \"C\" {\n");
        let mut build = cc::Build::new();
        build
            .cpp(true)
            .std("c++17")
            .flag("-include")
            .flag(header.to_str().unwrap())
            .flag("-Wno-unused-parameter")
            .define("NASRANK_EMU", None);
        for (family, path, storage, entries) in families {
            // One translation unit per family and variant: the .cu itself, then its shims,
            // inside a namespace of the family so that helpers (`__device__` functions) of
            // the same name in two families do not clash at link time; extern "C" names keep
            // C linkage. The 16-bit variants of a storage family are copies of the source
            // without `extern "C"`, so their kernels stay inside their own namespace.
            let mut variants = vec![(0, String::new(), path.clone())];
            if *storage {
                let text = fs::read_to_string(path)
                    .unwrap()
                    .replace("extern \"C\" __global__", "__global__");
                for (value, suffix) in STORAGE_VARIANTS {
                    let copy = out_dir.join(format!("{family}{suffix}.cu"));
                    fs::write(&copy, &text).unwrap();
                    variants.push((value, suffix.to_string(), copy));
                }
            }
            for (value, suffix, path) in variants {
                let mut unit = format!(
                "#define ACT_STORAGE {value}\nnamespace nasrank_emu_{family}{suffix} {{\n#include {:?}\n\n",
                path.to_str().unwrap()
            );
                for e in entries {
                    let launch_name = format!("{}{suffix}", e.name);
                    // Kernel names are global in the emulated link (one namespace for all).
                    assert!(
                        seen.insert(launch_name.clone()),
                        "kernel {launch_name} defined twice"
                    );
                    writeln!(
                    unit,
                    "extern \"C\" void emu_launch_{launch_name}(unsigned gx, unsigned gy, unsigned gz, \
                     unsigned bx, unsigned by, unsigned bz, unsigned shared_bytes, void **params) {{"
                )
                .unwrap();
                    let mut args = Vec::new();
                    for (i, ty) in e.params.iter().enumerate() {
                        writeln!(unit, "    {ty} a{i} = *static_cast<{ty} *>(params[{i}]);")
                            .unwrap();
                        args.push(format!("a{i}"));
                    }
                    writeln!(
                    unit,
                    "    emu::launch(dim3(gx, gy, gz), dim3(bx, by, bz), shared_bytes, [&] {{ {}({}); }});\n}}\n",
                    e.name,
                    args.join(", ")
                )
                .unwrap();
                    writeln!(
                    externs,
                    "    fn emu_launch_{launch_name}(gx: u32, gy: u32, gz: u32, bx: u32, by: u32, bz: u32, \
                     shared_bytes: u32, params: *mut *mut core::ffi::c_void);"
                )
                .unwrap();
                    writeln!(rust, "    ({launch_name:?}, emu_launch_{launch_name}),").unwrap();
                }
                unit.push_str("}\n");
                let unit_path = out_dir.join(format!("emu_{family}{suffix}.cpp"));
                fs::write(&unit_path, unit).unwrap();
                build.file(unit_path);
            }
        }
        build.compile("nasrank_emu");
        externs.push_str("}\n");
        rust.push_str("];\n");
        fs::write(out_dir.join("emu_kernels.rs"), externs + &rust).unwrap();
    }
}
