//! The `Scorer` trait: feature rows in, scores out (implemented by the CPU and GPU scorers).
//!
//! Input: a batch of feature rows, row-major `n × feature_count` `f32`s (built from signal
//! fields by the scoring stage). Output: one score per row. Next stage: the scoring stage
//! stores the score on the signal and applies the rule's threshold before the sink.
//! Implementations live outside this crate (`gpu-kernels`), so the engine core never depends on
//! a GPU library.

/// A scoring failure (a malformed batch, or a device error), with a message saying what failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("scoring failed: {message}")]
pub struct ScoreError {
    /// What went wrong, for the user.
    pub message: String,
}

impl ScoreError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> ScoreError {
        ScoreError {
            message: message.into(),
        }
    }
}

/// Scores batches of feature rows.
pub trait Scorer {
    /// Features per row.
    fn feature_count(&self) -> usize;

    /// Scores `rows` (row-major, `n × feature_count()` values) into `out` (length `n`).
    /// `rows.len()` must equal `out.len() × feature_count()`; otherwise an error, never a panic.
    fn score_batch(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), ScoreError>;
}

/// Checks the shape contract of [`Scorer::score_batch`]; returns the row count.
pub fn check_batch(feature_count: usize, rows: &[f32], out: &[f32]) -> Result<usize, ScoreError> {
    let expected = out.len().checked_mul(feature_count);
    if expected != Some(rows.len()) {
        return Err(ScoreError::new(format!(
            "batch of {} values is not {} rows × {} features",
            rows.len(),
            out.len(),
            feature_count
        )));
    }
    Ok(out.len())
}

impl<S: Scorer + ?Sized> Scorer for Box<S> {
    fn feature_count(&self) -> usize {
        (**self).feature_count()
    }

    fn score_batch(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), ScoreError> {
        (**self).score_batch(rows, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sum(usize);

    impl Scorer for Sum {
        fn feature_count(&self) -> usize {
            self.0
        }
        fn score_batch(&mut self, rows: &[f32], out: &mut [f32]) -> Result<(), ScoreError> {
            check_batch(self.0, rows, out)?;
            for (o, r) in out.iter_mut().zip(rows.chunks_exact(self.0)) {
                *o = r.iter().sum();
            }
            Ok(())
        }
    }

    #[test]
    fn trait_object_scores_and_checks_shape() {
        let mut s: Box<dyn Scorer> = Box::new(Sum(2));
        let mut out = [0.0; 2];
        s.score_batch(&[1.0, 2.0, 3.0, 4.0], &mut out).unwrap();
        assert_eq!(out, [3.0, 7.0]);
        let err = s.score_batch(&[1.0, 2.0, 3.0], &mut out).unwrap_err();
        assert!(err.message.contains("3 values"), "{err}");
    }
}
