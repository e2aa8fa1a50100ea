//! Shared helpers for integration tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::PathBuf;

/// The shared data folder (`$NASRANK_DATA`, else `../shared/data` beside the checkout),
/// or `None` with a printed notice naming what the calling test could not check.
pub fn shared_data(what: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("NASRANK_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    if dir.is_dir() {
        Some(dir)
    } else {
        // Written to the stream itself: the test harness captures only the print macros,
        // and this notice must show even when the test passes.
        let _ = writeln!(
            std::io::stderr(),
            "NOTICE: {} not found (set NASRANK_DATA): not checked: {what}",
            dir.display()
        );
        None
    }
}
