//! Sweep kernels: rules and queries whose variants run as data-parallel kernels (GPU or CPU).
