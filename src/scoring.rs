//! Scorer stage: signals of `score using MODEL` rules scored in batches (GPU or CPU).
