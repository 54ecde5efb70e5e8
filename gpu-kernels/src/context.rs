//! The wgpu context: instance, adapter and device, built once per process.
