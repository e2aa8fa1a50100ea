//! Embeds the CUDA C sources of kernels/ for run-time compilation with NVRTC, each with a
//! content hash (the key of the on-disk compile cache).

use std::env;
use std::fs;
use std::path::Path;

/// FNV-1a, 64 bit: a stable content hash with no dependency.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn main() {
    println!("cargo:rerun-if-changed=kernels");
    let out = Path::new(&env::var("OUT_DIR").unwrap()).join("kernel_sources.rs");
    let mut entries: Vec<(String, String)> = fs::read_dir("kernels")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "cu"))
                .map(|p| {
                    let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                    let abs = fs::canonicalize(&p).unwrap();
                    println!("cargo:rerun-if-changed={}", p.display());
                    (name, abs.to_string_lossy().into_owned())
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut code = String::from(
        "/// Kernel sources embedded at build time: (family, CUDA C source, content hash).\n\
         pub const KERNEL_SOURCES: &[(&str, &str, u64)] = &[\n",
    );
    for (name, path) in &entries {
        let hash = fnv1a(&fs::read(path).unwrap());
        code.push_str(&format!(
            "    ({name:?}, include_str!({path:?}), 0x{hash:016x}),\n"
        ));
    }
    code.push_str("];\n");
    fs::write(out, code).unwrap();
}
