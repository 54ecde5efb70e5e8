//! Helpers for GPU tests: a context, or a clear skip (a failure under `REQUIRE_GPU=1`).
//!
//! Input: the shared [`GpuContext`] probe. Output: `Some(context)` for the test to use, or
//! `None` after printing why the test is skipped. CI machines with a GPU (or a software Vulkan
//! driver) set `REQUIRE_GPU=1` so that a missing adapter fails loudly instead of passing quietly.

use crate::context::GpuContext;

/// The shared GPU context for test `name`, or `None` after printing
/// `skipped: no GPU adapter (<reason>)` when there is none.
///
/// # Panics
///
/// When there is no adapter and the environment variable `REQUIRE_GPU` is `1`: a machine that
/// promises a GPU must not skip GPU tests silently.
pub fn context_or_skip(name: &str) -> Option<&'static GpuContext> {
    match GpuContext::shared() {
        Ok(ctx) => Some(ctx),
        Err(e) => {
            if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("{name}: REQUIRE_GPU=1 but there is no GPU adapter ({e})");
            }
            eprintln!("{name}: skipped: no GPU adapter ({e})");
            println!("{name}: skipped: no GPU adapter ({e})");
            None
        }
    }
}
