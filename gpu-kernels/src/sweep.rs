//! Sweep kernels on the GPU: many rule variants over one tape in one dispatch.
