//! Model fitting: L2-regularised logistic regression by Newton's method (IRLS), in f64.
//!
//! Input: labelled feature rows, either given directly ([`Dataset`]) or read from a tape
//! ([`read_dataset`]: the events of one type, the named numeric fields as features, and
//! "the event carries label class N" as the target). Output: a [`LogisticFit`] (weights and
//! bias in the space of the features as fitted, plus the standardisation used) and
//! [`Metrics`] on any rows. Next stage: [`LogisticFit::to_model`] gives the model document the
//! scorer stage ([`crate::scoring`]) loads, written by `strix model fit`.
//!
//! The fit minimises `sum_i logloss(y_i, sigmoid(w·x_i + b)) + l2/2 · |w|²` (the bias is not
//! penalised). Each Newton step solves `(XᵀWX + l2·I) Δ = -gradient` by Cholesky and halves the
//! step until the objective decreases, so it converges on separable data too once `l2 > 0`.
//! Everything runs in a fixed order in f64: the same rows give the same model bit for bit.
//!
//! With `standardize`, every feature is centred and scaled by its mean and standard deviation
//! over the training rows before fitting (a constant feature gets scale 1); the fitted weights
//! apply to the standardised features and the model stores the mean and scale so that scorers
//! standardise the same way.

use std::path::PathBuf;

use cep_core::schema::FieldType;
use feeds::tape::{TapeError, TapeReader};
use gpu_kernels::model::{Model, ModelKind, Standardize};

/// Errors fitting a model.
#[derive(Debug, thiserror::Error)]
pub enum FitError {
    /// The tape is unreadable.
    #[error(transparent)]
    Tape(#[from] TapeError),
    /// The tape has no event type of that name.
    #[error("{}: no event type `{type_name}` (types: {})", .tape.display(), .known.join(", "))]
    UnknownType {
        /// Tape path.
        tape: PathBuf,
        /// Requested type.
        type_name: String,
        /// Types on the tape.
        known: Vec<String>,
    },
    /// A feature names no field of the type, or a field that is not a number or bool.
    #[error("{}: feature `{feature}`: {why}", .tape.display())]
    Feature {
        /// Tape path.
        tape: PathBuf,
        /// Feature name.
        feature: String,
        /// What is wrong.
        why: String,
    },
    /// The tape carries no labels, or the class is not one of its label classes.
    #[error("{}: {why}", .tape.display())]
    Labels {
        /// Tape path.
        tape: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The rows cannot be fitted (no rows, one class only, non-finite values, ...).
    #[error("cannot fit: {0}")]
    Data(String),
}

/// Labelled rows: `x` row-major `rows × features`, `y` 0 or 1 per row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// Feature names, in column order.
    pub features: Vec<String>,
    /// Row-major feature values.
    pub x: Vec<f64>,
    /// Targets (0.0 or 1.0).
    pub y: Vec<f64>,
}

impl Dataset {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Row `i`'s features.
    pub fn row(&self, i: usize) -> &[f64] {
        let d = self.features.len();
        &self.x[i * d..(i + 1) * d]
    }

    /// Rows with target 1.
    pub fn positives(&self) -> usize {
        self.y.iter().filter(|&&v| v > 0.5).count()
    }

    /// Splits into (training, holdout): with `holdout_every = Some(k)`, every k-th row (rows
    /// `k-1, 2k-1, ...`) is held out; with `None` all rows train and the holdout is empty.
    pub fn split(&self, holdout_every: Option<usize>) -> (Dataset, Dataset) {
        let mut train = Dataset {
            features: self.features.clone(),
            ..Dataset::default()
        };
        let mut hold = train.clone();
        for i in 0..self.rows() {
            let to = match holdout_every {
                Some(k) if k > 0 && i % k == k - 1 => &mut hold,
                _ => &mut train,
            };
            to.x.extend_from_slice(self.row(i));
            to.y.push(self.y[i]);
        }
        (train, hold)
    }
}

/// Reads the events of `type_name` from `tape` as rows: the named fields as features (f64, i64,
/// u64, bool and ts fields; bools are 0/1), target 1 when the event carries label class
/// `label_class`.
pub fn read_dataset(
    tape: &TapeReader,
    type_name: &str,
    features: &[String],
    label_class: u16,
) -> Result<Dataset, FitError> {
    let path = tape.path().to_path_buf();
    let catalog = tape.catalog();
    let type_id = catalog
        .type_by_name(type_name)
        .ok_or_else(|| FitError::UnknownType {
            tape: path.clone(),
            type_name: type_name.into(),
            known: catalog.types().iter().map(|t| t.name.clone()).collect(),
        })?;
    let Some(ty) = catalog.event_type(type_id) else {
        return Err(FitError::UnknownType {
            tape: path,
            type_name: type_name.into(),
            known: Vec::new(),
        });
    };
    if !tape.has_labels() {
        return Err(FitError::Labels {
            tape: path,
            why: "the tape has no labels to fit against (import with --label-field)".into(),
        });
    }
    if usize::from(label_class) >= tape.label_names().len() || label_class == 0 {
        return Err(FitError::Labels {
            tape: path,
            why: format!(
                "label class {label_class} is not a positive class of the tape (classes: {})",
                tape.label_names()
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("{i} = {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let mut cols = Vec::with_capacity(features.len());
    for f in features {
        let feature_err = |why: String| FitError::Feature {
            tape: path.clone(),
            feature: f.clone(),
            why,
        };
        let slot = ty.slot(f).ok_or_else(|| {
            feature_err(format!(
                "event type `{type_name}` has no such field (fields: {})",
                ty.fields
                    .iter()
                    .map(|f| f.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        let fty = ty.fields[slot].ty;
        match fty {
            FieldType::F64 | FieldType::I64 | FieldType::U64 | FieldType::Bool | FieldType::Ts => {}
            other => {
                return Err(feature_err(format!(
                    "field type {} is not a number or bool",
                    catalog.type_name(other)
                )));
            }
        }
        cols.push((slot, fty));
    }
    let mut data = Dataset {
        features: features.to_vec(),
        ..Dataset::default()
    };
    for batch in tape.batches() {
        let b = batch?;
        for row in 0..b.len() {
            if b.type_ids()[row] != type_id {
                continue;
            }
            for &(slot, fty) in &cols {
                let raw = b.slot_column(slot)[row];
                data.x.push(match fty {
                    FieldType::F64 => f64::from_bits(raw),
                    FieldType::I64 | FieldType::Ts => raw as i64 as f64,
                    FieldType::U64 => raw as f64,
                    _ => f64::from(u8::from(raw != 0)),
                });
            }
            data.y
                .push(f64::from(u8::from(b.classes()[row] == label_class)));
        }
    }
    Ok(data)
}

/// How to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Standardise features (mean 0, standard deviation 1 over the training rows) first.
    pub standardize: bool,
    /// L2 penalty on the weights (not the bias).
    pub l2: f64,
    /// Most Newton iterations.
    pub iterations: usize,
    /// Stop when no weight moves more than this in an iteration.
    pub tolerance: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        Self {
            standardize: true,
            l2: 1.0,
            iterations: 100,
            tolerance: 1e-10,
        }
    }
}

/// A fitted logistic regression.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticFit {
    /// Feature names.
    pub features: Vec<String>,
    /// Weights on the (standardised, if [`LogisticFit::standardize`]) features.
    pub weights: Vec<f64>,
    /// Bias.
    pub bias: f64,
    /// Mean and scale per feature when the features were standardised.
    pub standardize: Option<(Vec<f64>, Vec<f64>)>,
    /// Newton iterations run.
    pub iterations: usize,
    /// Whether the tolerance was met within the iteration limit.
    pub converged: bool,
}

/// Training or holdout metrics.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Metrics {
    /// Rows.
    pub rows: usize,
    /// Rows with target 1.
    pub positives: usize,
    /// Mean log-loss (natural log).
    pub log_loss: f64,
    /// Share of rows classified right at probability 0.5.
    pub accuracy: f64,
    /// Rows with probability >= 0.5 and target 1.
    pub true_positives: usize,
    /// Rows with probability >= 0.5 and target 0.
    pub false_positives: usize,
}

impl Metrics {
    /// True positives over predicted positives (`None` without predicted positives).
    pub fn precision(&self) -> Option<f64> {
        let p = self.true_positives + self.false_positives;
        (p > 0).then(|| self.true_positives as f64 / p as f64)
    }

    /// True positives over positives (`None` without positives).
    pub fn recall(&self) -> Option<f64> {
        (self.positives > 0).then(|| self.true_positives as f64 / self.positives as f64)
    }
}

/// `1 / (1 + e^-z)`, without overflow.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// `-ln(sigmoid(z))` if `y == 1`, `-ln(1 - sigmoid(z))` if `y == 0`, computed stably.
fn log_loss_of_logit(z: f64, y: f64) -> f64 {
    // ln(1 + e^z) - y·z, with softplus evaluated without overflow.
    let softplus = if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    };
    softplus - y * z
}

impl LogisticFit {
    /// The logit `w·x' + b` of raw features `x` (standardised here when the fit was).
    pub fn logit(&self, x: &[f64]) -> f64 {
        let mut z = self.bias;
        for (j, (&w, &v)) in self.weights.iter().zip(x).enumerate() {
            let v = match &self.standardize {
                Some((mean, scale)) => (v - mean[j]) / scale[j],
                None => v,
            };
            z += w * v;
        }
        z
    }

    /// The model document: weights, bias and standardisation rounded to `f32` (scorers compute
    /// in `f32`; the difference from the `f64` fit is far below any useful threshold step).
    pub fn to_model(&self, name: &str) -> Model {
        let f32s = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Model {
            name: name.to_string(),
            features: self.features.clone(),
            kind: ModelKind::Logistic {
                weights: f32s(&self.weights),
                bias: self.bias as f32,
                standardize: self.standardize.as_ref().map(|(mean, scale)| Standardize {
                    mean: f32s(mean),
                    std: f32s(scale),
                }),
            },
        }
    }

    /// The probability of class 1 for raw features `x`.
    pub fn probability(&self, x: &[f64]) -> f64 {
        sigmoid(self.logit(x))
    }

    /// Log-loss, accuracy, and counts at 0.5 over `data`.
    pub fn metrics(&self, data: &Dataset) -> Metrics {
        let mut m = Metrics {
            rows: data.rows(),
            positives: data.positives(),
            ..Metrics::default()
        };
        let mut loss = 0.0;
        let mut right = 0usize;
        for i in 0..data.rows() {
            let z = self.logit(data.row(i));
            let y = data.y[i];
            loss += log_loss_of_logit(z, y);
            let predicted = sigmoid(z) >= 0.5;
            let positive = y > 0.5;
            right += usize::from(predicted == positive);
            m.true_positives += usize::from(predicted && positive);
            m.false_positives += usize::from(predicted && !positive);
        }
        if m.rows > 0 {
            m.log_loss = loss / m.rows as f64;
            m.accuracy = right as f64 / m.rows as f64;
        }
        m
    }
}

/// Fits a logistic regression to `data` (see the module docs).
pub fn fit_logistic(data: &Dataset, opts: &FitOptions) -> Result<LogisticFit, FitError> {
    let d = data.features.len();
    let n = data.rows();
    if d == 0 {
        return Err(FitError::Data("no features".into()));
    }
    if n == 0 || data.x.len() != n * d {
        return Err(FitError::Data(format!(
            "{n} rows and {} values for {d} features",
            data.x.len()
        )));
    }
    if !(opts.l2.is_finite() && opts.l2 >= 0.0) {
        return Err(FitError::Data(format!(
            "the L2 penalty must be a finite number >= 0, not {}",
            opts.l2
        )));
    }
    if let Some(i) = data.x.iter().position(|v| !v.is_finite()) {
        return Err(FitError::Data(format!(
            "row {} feature `{}` is {} (every value must be finite)",
            i / d,
            data.features[i % d],
            data.x[i]
        )));
    }
    let pos = data.positives();
    if pos == 0 || pos == n {
        return Err(FitError::Data(format!(
            "all {n} rows are in one class ({pos} positives): nothing to separate"
        )));
    }
    let standardize = opts.standardize.then(|| {
        let mut mean = vec![0.0; d];
        for i in 0..n {
            for (m, v) in mean.iter_mut().zip(data.row(i)) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut var = vec![0.0; d];
        for i in 0..n {
            for ((s, v), m) in var.iter_mut().zip(data.row(i)).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        // A constant feature keeps scale 1: it only shifts the bias.
        let scale: Vec<f64> = var
            .iter()
            .map(|s| (s / n as f64).sqrt())
            .map(|s| if s > 0.0 { s } else { 1.0 })
            .collect();
        (mean, scale)
    });
    // The design matrix as fitted, with a trailing 1 for the bias: n × (d + 1).
    let k = d + 1;
    let mut xs = Vec::with_capacity(n * k);
    for i in 0..n {
        for (j, &v) in data.row(i).iter().enumerate() {
            xs.push(match &standardize {
                Some((mean, scale)) => (v - mean[j]) / scale[j],
                None => v,
            });
        }
        xs.push(1.0);
    }
    let objective = |beta: &[f64]| -> f64 {
        let mut loss = 0.0;
        for i in 0..n {
            let z: f64 = xs[i * k..(i + 1) * k]
                .iter()
                .zip(beta)
                .map(|(a, b)| a * b)
                .sum();
            loss += log_loss_of_logit(z, data.y[i]);
        }
        loss + 0.5 * opts.l2 * beta[..d].iter().map(|w| w * w).sum::<f64>()
    };
    let mut beta = vec![0.0; k];
    // Start the bias at the base rate's logit: fewer iterations on unbalanced classes.
    let rate = pos as f64 / n as f64;
    beta[d] = (rate / (1.0 - rate)).ln();
    let mut current = objective(&beta);
    let mut converged = false;
    let mut iterations = 0;
    let mut grad = vec![0.0; k];
    let mut hess = vec![0.0; k * k];
    while iterations < opts.iterations {
        iterations += 1;
        grad.iter_mut().for_each(|g| *g = 0.0);
        hess.iter_mut().for_each(|h| *h = 0.0);
        for i in 0..n {
            let row = &xs[i * k..(i + 1) * k];
            let z: f64 = row.iter().zip(&beta).map(|(a, b)| a * b).sum();
            let p = sigmoid(z);
            let r = p - data.y[i];
            let w = p * (1.0 - p);
            for a in 0..k {
                grad[a] += r * row[a];
                let wa = w * row[a];
                // Lower triangle only; mirrored below.
                for b in 0..=a {
                    hess[a * k + b] += wa * row[b];
                }
            }
        }
        for a in 0..d {
            grad[a] += opts.l2 * beta[a];
            hess[a * k + a] += opts.l2;
        }
        for a in 0..k {
            for b in 0..a {
                hess[b * k + a] = hess[a * k + b];
            }
        }
        let neg: Vec<f64> = grad.iter().map(|g| -g).collect();
        let step = solve_spd(&hess, &neg, k)
            .ok_or_else(|| FitError::Data("the Hessian is singular (collinear or constant features without an L2 penalty); try --l2 1".into()))?;
        // Step halving: accept the first step that does not increase the objective.
        let mut t = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let trial: Vec<f64> = beta.iter().zip(&step).map(|(b, s)| b + t * s).collect();
            let obj = objective(&trial);
            if obj.is_finite() && obj <= current {
                accepted = Some((trial, obj));
                break;
            }
            t *= 0.5;
        }
        let Some((next, obj)) = accepted else {
            converged = true;
            break;
        };
        let moved = next
            .iter()
            .zip(&beta)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        beta = next;
        current = obj;
        if moved <= opts.tolerance {
            converged = true;
            break;
        }
    }
    Ok(LogisticFit {
        features: data.features.clone(),
        weights: beta[..d].to_vec(),
        bias: beta[d],
        standardize,
        iterations,
        converged,
    })
}

/// Solves `a x = b` for symmetric positive definite `a` (`k × k`, row-major) by Cholesky;
/// `None` when `a` is not positive definite.
fn solve_spd(a: &[f64], b: &[f64], k: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0; k * k];
    for i in 0..k {
        for j in 0..=i {
            let mut s = a[i * k + j];
            for p in 0..j {
                s -= l[i * k + p] * l[j * k + p];
            }
            if i == j {
                if s <= 1e-300 {
                    return None;
                }
                l[i * k + i] = s.sqrt();
            } else {
                l[i * k + j] = s / l[j * k + j];
            }
        }
    }
    let mut y = vec![0.0; k];
    for i in 0..k {
        let mut s = b[i];
        for p in 0..i {
            s -= l[i * k + p] * y[p];
        }
        y[i] = s / l[i * k + i];
    }
    let mut x = vec![0.0; k];
    for i in (0..k).rev() {
        let mut s = y[i];
        for p in i + 1..k {
            s -= l[p * k + i] * x[p];
        }
        x[i] = s / l[i * k + i];
    }
    Some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows drawn with a fixed generator; labels drawn from the true model's probability.
    fn synthetic(n: usize, weights: &[f64], bias: f64, seed: u64) -> Dataset {
        let mut rng = fastrand_like(seed);
        let d = weights.len();
        let mut data = Dataset {
            features: (0..d).map(|j| format!("x{j}")).collect(),
            ..Dataset::default()
        };
        for _ in 0..n {
            let row: Vec<f64> = (0..d).map(|_| rng() * 4.0 - 2.0).collect();
            let z = bias + row.iter().zip(weights).map(|(a, b)| a * b).sum::<f64>();
            data.y.push(f64::from(u8::from(rng() < sigmoid(z))));
            data.x.extend(row);
        }
        data
    }

    /// A small deterministic uniform [0, 1) generator (splitmix64).
    fn fastrand_like(seed: u64) -> impl FnMut() -> f64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    #[test]
    fn recovers_known_weights() {
        let truth = [2.0, -1.0, 0.5, 0.0];
        let data = synthetic(40_000, &truth, -0.5, 11);
        let opts = FitOptions {
            standardize: false,
            l2: 0.0,
            ..FitOptions::default()
        };
        let fit = fit_logistic(&data, &opts).unwrap();
        assert!(fit.converged);
        for (w, t) in fit.weights.iter().zip(truth) {
            assert!((w - t).abs() < 0.06, "{:?} vs {truth:?}", fit.weights);
        }
        assert!((fit.bias + 0.5).abs() < 0.06, "bias {}", fit.bias);
        let m = fit.metrics(&data);
        assert_eq!(m.rows, 40_000);
        assert!(m.accuracy > 0.75, "{m:?}");
    }

    #[test]
    fn standardised_fits_predict_like_raw_fits_and_are_deterministic() {
        let mut data = synthetic(5_000, &[1.5, -2.0], 0.3, 5);
        // Scale one feature far from unit range: standardisation must undo it.
        for i in 0..data.rows() {
            data.x[i * 2] *= 1000.0;
        }
        let raw = FitOptions {
            standardize: false,
            l2: 0.0,
            ..FitOptions::default()
        };
        let std = FitOptions {
            standardize: true,
            ..raw
        };
        let a = fit_logistic(&data, &raw).unwrap();
        let b = fit_logistic(&data, &std).unwrap();
        assert!((a.weights[0] * 1000.0 - 1.5).abs() < 0.15, "{a:?}");
        for i in 0..50 {
            let (pa, pb) = (a.probability(data.row(i)), b.probability(data.row(i)));
            assert!((pa - pb).abs() < 1e-6, "row {i}: {pa} vs {pb}");
        }
        assert_eq!(fit_logistic(&data, &std).unwrap(), b);
    }

    #[test]
    fn l2_keeps_separable_data_finite_and_shrinks_weights() {
        // Perfectly separable at x = 0.
        let mut data = Dataset {
            features: vec!["x".into()],
            ..Dataset::default()
        };
        for i in -50..50 {
            data.x.push(f64::from(i) + 0.5);
            data.y.push(f64::from(u8::from(i >= 0)));
        }
        let weak = fit_logistic(
            &data,
            &FitOptions {
                standardize: false,
                l2: 0.01,
                ..FitOptions::default()
            },
        )
        .unwrap();
        let strong = fit_logistic(
            &data,
            &FitOptions {
                standardize: false,
                l2: 100.0,
                ..FitOptions::default()
            },
        )
        .unwrap();
        assert!(weak.converged && strong.converged);
        assert!(weak.weights[0].is_finite() && weak.weights[0] > strong.weights[0]);
        assert!(strong.weights[0] > 0.0);
        assert_eq!(weak.metrics(&data).accuracy, 1.0);
    }

    #[test]
    fn bad_data_is_an_error() {
        let one_class = Dataset {
            features: vec!["x".into()],
            x: vec![1.0, 2.0],
            y: vec![0.0, 0.0],
        };
        let e = fit_logistic(&one_class, &FitOptions::default()).unwrap_err();
        assert!(e.to_string().contains("one class"), "{e}");
        let nan = Dataset {
            features: vec!["x".into()],
            x: vec![1.0, f64::NAN],
            y: vec![0.0, 1.0],
        };
        let e = fit_logistic(&nan, &FitOptions::default()).unwrap_err();
        assert!(e.to_string().contains("row 1 feature `x`"), "{e}");
    }

    #[test]
    fn holdout_takes_every_kth_row() {
        let data = Dataset {
            features: vec!["x".into()],
            x: (0..7).map(f64::from).collect(),
            y: vec![0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        };
        let (train, hold) = data.split(Some(3));
        assert_eq!(hold.x, vec![2.0, 5.0]);
        assert_eq!(train.x, vec![0.0, 1.0, 3.0, 4.0, 6.0]);
        let (all, none) = data.split(None);
        assert_eq!((all.rows(), none.rows()), (7, 0));
    }

    #[test]
    fn metrics_count_at_one_half() {
        let fit = LogisticFit {
            features: vec!["x".into()],
            weights: vec![1.0],
            bias: 0.0,
            standardize: None,
            iterations: 0,
            converged: true,
        };
        let data = Dataset {
            features: vec!["x".into()],
            x: vec![-1.0, 1.0, 2.0, -3.0],
            y: vec![0.0, 1.0, 0.0, 1.0],
        };
        let m = fit.metrics(&data);
        assert_eq!((m.true_positives, m.false_positives), (1, 1));
        assert_eq!(m.accuracy, 0.5);
        assert_eq!(m.precision(), Some(0.5));
        assert_eq!(m.recall(), Some(0.5));
        let expect = [(-1.0f64, 0.0), (1.0, 1.0), (2.0, 0.0), (-3.0, 1.0)]
            .iter()
            .map(|&(z, y): &(f64, f64)| {
                let p = sigmoid(z);
                -(y * p.ln() + (1.0 - y) * (1.0 - p).ln())
            })
            .sum::<f64>()
            / 4.0;
        assert!((m.log_loss - expect).abs() < 1e-12);
    }
}
