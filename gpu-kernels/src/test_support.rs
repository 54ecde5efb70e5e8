//! Helpers for GPU tests: a context, or a clear skip (a failure under `REQUIRE_GPU=1`).
