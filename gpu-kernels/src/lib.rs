//! Strix GPU kernels: batched model scoring and parameter-sweep backtests on wgpu.
//!
//! The GPU is for throughput, never on the microsecond path: every kernel here has a CPU
//! reference that gives the same results (within a documented tolerance for floating-point
//! scores, exactly for counts), used when no adapter exists or a batch is too small to pay off.
//!
//! Stages: [`context`] (device built once) → [`model`] (JSON models, CPU reference) →
//! [`score`] (GPU/CPU/automatic scorers implementing `cep_core::scorer::Scorer`); [`sweep`]
//! runs parameter variants on the same context.

pub mod context;
pub mod model;
pub mod score;
pub mod sweep;
pub mod test_support;

/// The wgpu version this crate is built against, for callers that need its types
/// (`wgpu::Backend`, `wgpu::Buffer`) without depending on it themselves.
pub use wgpu;
