//! Scorer stage: signals of `score using MODEL` rules scored in batches (GPU or CPU).
//!
//! Input: the compiled [`Program`] (each rule's `emit … score using MODEL [threshold X]`) and
//! the signals its engine emits, in output order. Output: the same signals with
//! [`Signal::score`] set for model-scored rules, and [`SignalScorer::passes`] telling which
//! ones reach the threshold (a signal scoring below it, or NaN, is dropped by the caller).
//! Next stage: the replay sink ([`crate::replay`]) writes the signals that pass as JSON Lines
//! and scores them against the tape's labels.
//!
//! Models are resolved when the stage is built: a bare name `fraud_lr` is
//! `<models dir>/fraud_lr.json` (the models directory defaults to the rules file's directory),
//! a string `"../models/m.json"` is a path relative to the rules file. Every feature of a model
//! must name an emit field of the rule, and a field that holds symbols or enum variants cannot
//! be a feature; errors point at the model reference as `rules.cep:line:col`. Each distinct
//! model file is loaded once and wrapped in a [`gpu_kernels::score::AutoScorer`] (device
//! `auto`, `gpu` or `cpu`), shared by the rules that use it.
//!
//! Feature rows are built from the signal's emit fields: integers, floats and booleans (0/1)
//! become `f32`; a missing value (`Null`, e.g. a non-finite float) becomes NaN (trees follow
//! their default branch; logistic and MLP scores are then NaN and never pass a threshold).
//! Scores are computed in `f32` and stored widened to `f64`; GPU and CPU scores agree within
//! `1e-5 + 1e-5·|cpu|` ([`gpu_kernels::score::within_tolerance`]).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cep_core::rule::{Program, ScoreSource};
use cep_core::schema::FieldType;
use cep_core::scorer::{ScoreError, Scorer};
use cep_core::signal::{Signal, SignalKind};
use cep_core::value::Value;
use gpu_kernels::context::GpuError;
use gpu_kernels::model::{Model, ModelError};
use gpu_kernels::score::{AutoScorer, DEFAULT_MIN_GPU_BATCH, ScoreDevice, ScoreStats};

/// Default rows per scoring call (and most signals a replay holds back for one batch).
pub const DEFAULT_SCORE_BATCH: usize = 65_536;

/// Errors of the scorer stage. Messages start with `rules.cep:line:col` of the model reference
/// where there is one.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// The model file is missing or is not a valid model.
    #[error("{at}: model \"{model}\": {source}")]
    Model {
        /// `file:line:col` of the model reference.
        at: String,
        /// The model as written.
        model: String,
        /// Why it did not load.
        source: ModelError,
    },
    /// A model feature names no emit field of the rule.
    #[error(
        "{at}: model \"{model}\" needs feature \"{feature}\", which emit {signal} does not have (fields: {fields})"
    )]
    MissingFeature {
        /// `file:line:col` of the model reference.
        at: String,
        /// The model as written.
        model: String,
        /// The feature.
        feature: String,
        /// The rule's signal name.
        signal: String,
        /// The emit fields there are.
        fields: String,
    },
    /// A feature's emit field holds symbols or enum variants, not numbers.
    #[error(
        "{at}: model \"{model}\" feature \"{feature}\": emit {signal} field `{feature}` is a {ty}, not a number or bool"
    )]
    FeatureType {
        /// `file:line:col` of the model reference.
        at: String,
        /// The model as written.
        model: String,
        /// The feature.
        feature: String,
        /// The rule's signal name.
        signal: String,
        /// The field's type.
        ty: String,
    },
    /// The requested device cannot score the model (e.g. `gpu` without an adapter).
    #[error("{at}: model \"{model}\": {source}")]
    Device {
        /// `file:line:col` of the model reference.
        at: String,
        /// The model as written.
        model: String,
        /// The device error.
        source: GpuError,
    },
    /// Scoring a batch failed.
    #[error("model {model}: {source}")]
    Score {
        /// The model's name.
        model: String,
        /// The failure.
        source: ScoreError,
    },
}

/// How to build the scorer stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScoreOptions {
    /// Directory of bare model names (`score using NAME` → `DIR/NAME.json`); `None`: `rules_dir`.
    pub models_dir: Option<PathBuf>,
    /// Directory of the rules file (string model paths are relative to it).
    pub rules_dir: PathBuf,
    /// The rules file as named in messages (`file:line:col`).
    pub rules_file: String,
    /// Where to score.
    pub device: ScoreDevice,
    /// Most rows per scoring call (at least 1).
    pub batch: usize,
    /// With device `auto`, batches smaller than this go to the CPU.
    pub min_gpu_batch: usize,
}

impl ScoreOptions {
    /// Options for the rules file `rules`: models next to it, device `auto`, default batches.
    pub fn for_rules(rules: &Path) -> ScoreOptions {
        ScoreOptions {
            models_dir: None,
            rules_dir: rules
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            rules_file: rules.display().to_string(),
            device: ScoreDevice::Auto,
            batch: DEFAULT_SCORE_BATCH,
            min_gpu_batch: DEFAULT_MIN_GPU_BATCH,
        }
    }
}

/// One loaded model and its scorer.
#[derive(Debug)]
struct LoadedModel {
    path: PathBuf,
    scorer: AutoScorer,
    rules: Vec<String>,
    busy: Duration,
}

/// How one rule's signals are scored.
#[derive(Debug, Clone)]
struct RuleScoring {
    model: usize,
    /// Emit field index of each model feature, in model feature order.
    fields: Vec<usize>,
    threshold: Option<f64>,
}

/// What the scorer stage did for one model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStats {
    /// The model's name (from its document).
    pub name: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// Kind and size, e.g. `logistic, 29 features`.
    pub summary: String,
    /// Rules scored by it.
    pub rules: Vec<String>,
    /// The requested device.
    pub device: ScoreDevice,
    /// Where large batches ran: the adapter (`llvmpipe (Vulkan, CPU driver)`) or `CPU`.
    pub device_name: String,
    /// Why `auto` is not using a GPU, if it is not.
    pub fallback: Option<String>,
    /// Rows and batches scored on each device.
    pub stats: ScoreStats,
    /// Time spent in scoring calls (building rows excluded), seconds.
    pub seconds: f64,
}

/// Builds the model feature rows of signals from their emit values, in the threads that
/// produce the signals (a cheap clone of the scorer stage's field mapping).
#[derive(Debug, Clone)]
pub struct FeatureRows {
    /// Per rule: the emit field index of each model feature (`None`: not model-scored).
    rules: Vec<Option<Vec<usize>>>,
}

impl FeatureRows {
    /// Appends the feature row of a match signal of `rule` with emit values `fields` to `row`
    /// and returns true; returns false (appending nothing) when the rule is not model-scored.
    /// Numbers become f32, bools 0/1, Null NaN; symbols and enums, which the scorer refuses
    /// when it is built, become NaN.
    pub fn push(&self, rule: usize, fields: &[Value], row: &mut Vec<f32>) -> bool {
        let Some(Some(features)) = self.rules.get(rule) else {
            return false;
        };
        row.extend(
            features
                .iter()
                .map(|&f| feature_value(fields.get(f).copied().unwrap_or(Value::Null))),
        );
        true
    }
}

/// A feature value: numbers as f32, bools as 0/1, Null (and symbols or enums) as NaN.
fn feature_value(v: Value) -> f32 {
    match v {
        Value::I64(x) => x as f32,
        Value::U64(x) => x as f32,
        Value::F64(x) => x as f32,
        Value::Bool(b) => f32::from(u8::from(b)),
        Value::Null | Value::Sym(_) | Value::Enum(_) => f32::NAN,
    }
}

/// The scorer stage: see the module docs.
#[derive(Debug)]
pub struct SignalScorer {
    models: Vec<LoadedModel>,
    /// Per rule of the program: how its signals are scored (`None`: not by a model).
    rules: Vec<Option<RuleScoring>>,
    /// The emit field of each model feature, per rule (shared with the shards).
    features: FeatureRows,
    batch: usize,
    row: Vec<f32>,
    out: Vec<f32>,
}

impl SignalScorer {
    /// Builds the stage for `program`; `Ok(None)` when no rule uses `score using`.
    pub fn new(
        program: &Program,
        opts: &ScoreOptions,
    ) -> Result<Option<SignalScorer>, ScoringError> {
        let mut models: Vec<LoadedModel> = Vec::new();
        let mut rules = Vec::with_capacity(program.rules.len());
        for rule in &program.rules {
            let emit = &rule.emit;
            let Some(spec) = &emit.score else {
                rules.push(None);
                continue;
            };
            let ScoreSource::Model(mref) = &spec.source else {
                rules.push(None);
                continue;
            };
            let at = format!("{}:{}:{}", opts.rules_file, mref.line, mref.col);
            let path = if mref.is_path {
                opts.rules_dir.join(&mref.name)
            } else {
                opts.models_dir
                    .as_deref()
                    .unwrap_or(&opts.rules_dir)
                    .join(format!("{}.json", mref.name))
            };
            let index = match models.iter().position(|m| m.path == path) {
                Some(i) => i,
                None => {
                    let model = Model::load(&path).map_err(|source| ScoringError::Model {
                        at: at.clone(),
                        model: mref.name.clone(),
                        source,
                    })?;
                    // Features are checked before the device is set up: a wrong rule file
                    // fails the same way on every machine.
                    check_features(&model, rule, &at, &mref.name)?;
                    let scorer = AutoScorer::new(model, opts.device, opts.min_gpu_batch).map_err(
                        |source| ScoringError::Device {
                            at: at.clone(),
                            model: mref.name.clone(),
                            source,
                        },
                    )?;
                    models.push(LoadedModel {
                        path,
                        scorer,
                        rules: Vec::new(),
                        busy: Duration::ZERO,
                    });
                    models.len() - 1
                }
            };
            let model = models[index].scorer.model();
            let fields = check_features(model, rule, &at, &mref.name)?;
            models[index].rules.push(rule.name.clone());
            rules.push(Some(RuleScoring {
                model: index,
                fields,
                threshold: spec.threshold,
            }));
        }
        if models.is_empty() {
            return Ok(None);
        }
        let features = FeatureRows {
            rules: rules
                .iter()
                .map(|r| r.as_ref().map(|r| r.fields.clone()))
                .collect(),
        };
        Ok(Some(SignalScorer {
            models,
            rules,
            features,
            batch: opts.batch.max(1),
            row: Vec::new(),
            out: Vec::new(),
        }))
    }

    /// True when signals of rule `rule` are scored by a model.
    pub fn scores_rule(&self, rule: usize) -> bool {
        matches!(self.rules.get(rule), Some(Some(_)))
    }

    /// The model (index into [`SignalScorer::stats`]) scoring rule `rule`.
    pub fn model_of(&self, rule: usize) -> Option<usize> {
        self.rules.get(rule)?.as_ref().map(|r| r.model)
    }

    /// The threshold of rule `rule`'s model score, if it has one.
    pub fn threshold(&self, rule: usize) -> Option<f64> {
        self.rules.get(rule)?.as_ref()?.threshold
    }

    /// Number of models.
    pub fn model_count(&self) -> usize {
        self.models.len()
    }

    /// Features per row of model `model`.
    pub fn feature_count(&self, model: usize) -> usize {
        self.models
            .get(model)
            .map_or(0, |m| m.scorer.feature_count())
    }

    /// The field mapping of the model-scored rules, for building feature rows elsewhere.
    pub fn feature_rows(&self) -> FeatureRows {
        self.features.clone()
    }

    /// Most rows per scoring call.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Scores `rows` (row-major, [`SignalScorer::feature_count`] values each) with model
    /// `model` into `out`, at most [`SignalScorer::batch`] rows per call.
    pub fn score_rows(
        &mut self,
        model: usize,
        rows: &[f32],
        out: &mut [f32],
    ) -> Result<(), ScoringError> {
        let batch = self.batch;
        let Some(m) = self.models.get_mut(model) else {
            return Err(ScoringError::Score {
                model: format!("#{model}"),
                source: ScoreError::new("no such model"),
            });
        };
        let n = m.scorer.feature_count().max(1);
        let started = Instant::now();
        for (rows, out) in rows.chunks(batch * n).zip(out.chunks_mut(batch)) {
            m.scorer
                .score_batch(rows, out)
                .map_err(|source| ScoringError::Score {
                    model: m.scorer.model().name.clone(),
                    source,
                })?;
        }
        m.busy += started.elapsed();
        Ok(())
    }

    /// Fills [`Signal::score`] of every signal of a model-scored rule, scoring each model's
    /// signals in batches; other signals are left as they are. Timeout signals (which carry the
    /// `on timeout emit` fields, never a model score) are left too.
    pub fn score(&mut self, signals: &mut [Signal]) -> Result<(), ScoringError> {
        for model in 0..self.models.len() {
            let mut row = std::mem::take(&mut self.row);
            row.clear();
            let mut which = Vec::new();
            for (i, s) in signals.iter().enumerate() {
                if s.kind == SignalKind::Match && self.model_of(s.rule) == Some(model) {
                    self.features.push(s.rule, &s.fields, &mut row);
                    which.push(i);
                }
            }
            let mut out = std::mem::take(&mut self.out);
            out.clear();
            out.resize(which.len(), 0.0);
            let result = self.score_rows(model, &row, &mut out);
            for (&i, &score) in which.iter().zip(&out) {
                signals[i].score = Some(f64::from(score));
            }
            self.row = row;
            self.out = out;
            result?;
        }
        Ok(())
    }

    /// Whether `score`, the model score of a signal of rule `rule`, reaches the rule's threshold
    /// (`score >= threshold`; NaN never does). Rules without a model score or threshold pass.
    pub fn passes_score(&self, rule: usize, score: Option<f64>) -> bool {
        match self.threshold(rule) {
            None => true,
            Some(t) => score.is_some_and(|s| s >= t),
        }
    }

    /// Whether signal `s` (after [`SignalScorer::score`]) reaches its rule's threshold.
    pub fn passes(&self, s: &Signal) -> bool {
        s.kind != SignalKind::Match || self.passes_score(s.rule, s.score)
    }

    /// What each model did so far.
    pub fn stats(&self) -> Vec<ModelStats> {
        self.models
            .iter()
            .map(|m| {
                let model = m.scorer.model();
                ModelStats {
                    name: model.name.clone(),
                    path: m.path.clone(),
                    summary: model.summary(),
                    rules: m.rules.clone(),
                    device: m.scorer.device(),
                    device_name: m.scorer.device_name(),
                    fallback: m.scorer.fallback_reason().map(str::to_string),
                    stats: m.scorer.stats(),
                    seconds: m.busy.as_secs_f64(),
                }
            })
            .collect()
    }
}

/// The emit field index of each feature of `model` for `rule`.
fn check_features(
    model: &Model,
    rule: &cep_core::rule::Rule,
    at: &str,
    written: &str,
) -> Result<Vec<usize>, ScoringError> {
    let emit = &rule.emit;
    model
        .features
        .iter()
        .map(|feature| {
            let i = emit
                .fields
                .iter()
                .position(|f| &f.name == feature)
                .ok_or_else(|| ScoringError::MissingFeature {
                    at: at.to_string(),
                    model: written.to_string(),
                    feature: feature.clone(),
                    signal: emit.signal.clone(),
                    fields: emit
                        .fields
                        .iter()
                        .map(|f| f.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            match emit.fields[i].ty {
                Some(FieldType::Sym) => Err("symbol"),
                Some(FieldType::Enum(_)) => Err("enum"),
                _ => Ok(i),
            }
            .map_err(|ty| ScoringError::FeatureType {
                at: at.to_string(),
                model: written.to_string(),
                feature: feature.clone(),
                signal: emit.signal.clone(),
                ty: ty.to_string(),
            })
        })
        .collect()
}
