//! The `Scorer` trait: feature rows in, scores out (implemented by the CPU and GPU scorers).
