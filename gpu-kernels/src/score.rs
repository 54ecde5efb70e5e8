//! Batched scorers: GPU, CPU reference and the automatic choice between them.
