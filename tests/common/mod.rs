//! Helpers shared by the integration tests that run the `strix` binary.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Context, Result};

/// Runs the built `strix` binary with `args`.
pub fn strix(args: &[&str]) -> Result<Output> {
    Command::new(env!("CARGO_BIN_EXE_strix"))
        .args(args)
        .output()
        .context("running strix")
}

/// Command output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Paths built by these tests are UTF-8 (temp dir and manifest dir joined with ASCII names).
pub fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// A path in this test process's own temp folder (`strix-<suite>-<pid>`).
pub fn tmp_in(suite: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("strix-{suite}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok();
    dir.join(name)
}

/// Proptest settings shared by the property tests: `cases` random cases from a fixed `seed`, so
/// every run checks the same cases (`PROPTEST_CASES` and `PROPTEST_RNG_SEED` override them), and
/// no failure-persistence files.
pub fn proptest_config(cases: u32, seed: u64) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngSeed};
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    if c.rng_seed == RngSeed::Random {
        c.rng_seed = RngSeed::Fixed(seed);
    }
    c.failure_persistence = None;
    c
}
