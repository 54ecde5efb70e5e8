//! Helpers shared by the `feeds` integration tests.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A unique temp path; the file is removed when the guard drops.
pub struct TempPath(pub PathBuf);

impl TempPath {
    /// A fresh path ending in `name` (nothing is created).
    pub fn new(name: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self(std::env::temp_dir().join(format!("strix-feeds-{}-{n}-{name}", std::process::id())))
    }

    /// A fresh file holding `text`.
    #[allow(dead_code)] // Not every test file writes input files.
    pub fn with(name: &str, text: &str) -> Self {
        let p = Self::new(name);
        std::fs::write(&p.0, text).expect("writing a temp file");
        p
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
