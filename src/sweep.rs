//! Parameter sweeps: one rule template, many parameter vectors, one pass over a tape.
