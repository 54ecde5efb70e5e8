//! Scoring models (logistic regression, MLP, tree ensembles): JSON format and CPU reference.
//!
//! Input: a `strix-model` JSON document (see `docs/models.md`) or an XGBoost `save_model` JSON
//! booster. Output: a validated [`Model`] and its CPU reference scorer [`Model::score_cpu`].
//! Next stage: [`crate::score`] wraps the model in a CPU or GPU scorer.
//!
//! The CPU reference computes in `f32` in the same order as the WGSL shaders (bias first, then
//! products added feature by feature; standardisation as `(x − mean) · (1 / std)`; the same
//! clamps before `exp` and `tanh`), so GPU and CPU agree within
//! `|gpu − cpu| ≤ 1e-5 + 1e-5·|cpu|` (the GPU's `exp`/`tanh` and fused multiply-adds differ in
//! the last bits; tree comparisons are exact).

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

/// The `format` value of a Strix model document.
pub const FORMAT: &str = "strix-model";
/// The document version this crate reads and writes.
pub const VERSION: u64 = 1;

/// Logits are clamped to this before `exp` (CPU and GPU), so `exp` never overflows `f32`.
pub const SIGMOID_CLAMP: f32 = 80.0;
/// `tanh` arguments are clamped to this (CPU and GPU): `tanh(15)` is 1 in `f32`, and some GPU
/// `tanh` implementations overflow to NaN on large arguments.
pub const TANH_CLAMP: f32 = 15.0;

/// A model that fails to load or validate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file cannot be read.
    #[error("{origin}: {source}")]
    Io {
        /// The file.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The text is not JSON.
    #[error("{origin}:{line}:{column}: invalid JSON: {message}")]
    Json {
        /// File or other origin of the text.
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What the parser expected.
        message: String,
    },
    /// A field is missing, of the wrong type or inconsistent with the rest of the model.
    #[error("{origin}: {field}: {message}")]
    Invalid {
        /// File or other origin of the text.
        origin: String,
        /// JSON path of the field, e.g. `layers[1].weights[3]`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A scoring model: named input features and the function over them.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    /// Model name (for reports).
    pub name: String,
    /// Feature names, in row order: row value `i` is feature `features[i]`.
    pub features: Vec<String>,
    /// The function.
    pub kind: ModelKind,
}

/// The model families.
#[derive(Clone, Debug, PartialEq)]
pub enum ModelKind {
    /// `sigmoid(bias + Σ weights[i]·x[i])`, `x` optionally standardised.
    Logistic {
        /// One weight per feature.
        weights: Vec<f32>,
        /// Intercept.
        bias: f32,
        /// Optional `(x − mean) / std` applied to the inputs first.
        standardize: Option<Standardize>,
    },
    /// A multilayer perceptron; the last layer has one output, the score.
    Mlp {
        /// Layers from input to output.
        layers: Vec<Layer>,
        /// Optional standardisation of the inputs.
        standardize: Option<Standardize>,
    },
    /// A sum of regression trees: `output(base_score + Σ leaf_t)`.
    Trees {
        /// The trees, summed in order.
        trees: Vec<Tree>,
        /// Starting margin (before the output function).
        base_score: f32,
        /// Function applied to the margin.
        output: TreeOutput,
    },
}

/// Per-feature standardisation `(x − mean) / std`, computed as `(x − mean) · (1 / std)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardize {
    /// One mean per feature.
    pub mean: Vec<f32>,
    /// One standard deviation per feature (finite, > 0).
    pub std: Vec<f32>,
}

/// A dense layer: `activation(bias + weights · x)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// `out × in` weights: `weights[j][i]` links input `i` to output `j`.
    pub weights: Vec<Vec<f32>>,
    /// One bias per output.
    pub bias: Vec<f32>,
    /// Applied to each output.
    pub activation: Activation,
}

/// Layer activation functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// `tanh(clamp(x, ±TANH_CLAMP))`.
    Tanh,
    /// `1 / (1 + exp(−clamp(x, ±SIGMOID_CLAMP)))`.
    Sigmoid,
    /// `x`.
    Identity,
}

impl Activation {
    /// The JSON name.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Identity => "identity",
        }
    }

    /// The code the MLP shader uses.
    pub(crate) fn code(self) -> u32 {
        match self {
            Activation::Identity => 0,
            Activation::Relu => 1,
            Activation::Tanh => 2,
            Activation::Sigmoid => 3,
        }
    }

    fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::Tanh => x.clamp(-TANH_CLAMP, TANH_CLAMP).tanh(),
            Activation::Sigmoid => sigmoid(x),
            Activation::Identity => x,
        }
    }
}

/// The output function of a tree ensemble.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeOutput {
    /// Probability: `sigmoid(margin)` (binary classification).
    Sigmoid,
    /// The margin itself (regression).
    Identity,
}

/// One regression tree; node 0 is the root.
#[derive(Clone, Debug, PartialEq)]
pub struct Tree {
    /// Nodes; children are indices into this vector.
    pub nodes: Vec<Node>,
}

/// A tree node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Node {
    /// Goes to `left` when `x[feature] < threshold`, to `right` otherwise; a NaN value goes to
    /// `left` when `default_left`.
    Split {
        /// Feature index.
        feature: u32,
        /// Split value.
        threshold: f32,
        /// Node index taken when below the threshold.
        left: u32,
        /// Node index taken otherwise.
        right: u32,
        /// Direction of missing (NaN) values.
        default_left: bool,
    },
    /// A leaf adding `value` to the margin.
    Leaf {
        /// The leaf's contribution.
        value: f32,
    },
}

/// The logistic function on a clamped logit, as the shaders compute it.
pub fn sigmoid(z: f32) -> f32 {
    1.0 / (1.0 + (-z.clamp(-SIGMOID_CLAMP, SIGMOID_CLAMP)).exp())
}

impl Standardize {
    /// `1 / std` per feature, as uploaded to the GPU (computed once, in `f32`).
    pub fn inv_std(&self) -> Vec<f32> {
        self.std.iter().map(|s| 1.0 / s).collect()
    }
}

fn invalid(origin: &str, field: impl Into<String>, message: impl Into<String>) -> ModelError {
    ModelError::Invalid {
        origin: origin.to_string(),
        field: field.into(),
        message: message.into(),
    }
}

fn json_error(origin: &str, e: &serde_json::Error) -> ModelError {
    // serde_json appends " at line L column C" to its message; the position is shown in front.
    let mut message = e.to_string();
    if let Some(i) = message.find(" at line ") {
        message.truncate(i);
    }
    ModelError::Json {
        origin: origin.to_string(),
        line: e.line(),
        column: e.column(),
        message,
    }
}

/// A JSON object with its path, for field-naming errors.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
    origin: &'a str,
}

impl<'a> Obj<'a> {
    fn new(v: &'a Value, path: &str, origin: &'a str) -> Result<Obj<'a>, ModelError> {
        match v {
            Value::Object(map) => Ok(Obj {
                map,
                path: path.to_string(),
                origin,
            }),
            _ => Err(invalid(
                origin,
                display_path(path),
                format!("expected an object, found {}", kind_of(v)),
            )),
        }
    }

    fn sub(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_string()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn only(&self, allowed: &[&str]) -> Result<(), ModelError> {
        match self.map.keys().find(|k| !allowed.contains(&k.as_str())) {
            Some(k) => Err(invalid(
                self.origin,
                self.sub(k),
                format!("unknown field (expected one of: {})", allowed.join(", ")),
            )),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Result<&'a Value, ModelError> {
        self.map
            .get(key)
            .ok_or_else(|| invalid(self.origin, self.sub(key), "missing"))
    }

    fn opt(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn str(&self, key: &str) -> Result<&'a str, ModelError> {
        let v = self.get(key)?;
        v.as_str().ok_or_else(|| {
            invalid(
                self.origin,
                self.sub(key),
                format!("expected a string, found {}", kind_of(v)),
            )
        })
    }

    fn f32(&self, key: &str) -> Result<f32, ModelError> {
        to_f32(self.get(key)?, &self.sub(key), self.origin)
    }

    fn f32s(&self, key: &str) -> Result<Vec<f32>, ModelError> {
        let path = self.sub(key);
        array(self.get(key)?, &path, self.origin)?
            .iter()
            .enumerate()
            .map(|(i, v)| to_f32(v, &format!("{path}[{i}]"), self.origin))
            .collect()
    }

    fn obj(&self, key: &str) -> Result<Obj<'a>, ModelError> {
        Obj::new(self.get(key)?, &self.sub(key), self.origin)
    }
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "(document)".to_string()
    } else {
        path.to_string()
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn array<'a>(v: &'a Value, path: &str, origin: &str) -> Result<&'a Vec<Value>, ModelError> {
    v.as_array().ok_or_else(|| {
        invalid(
            origin,
            path,
            format!("expected an array, found {}", kind_of(v)),
        )
    })
}

fn to_f32(v: &Value, path: &str, origin: &str) -> Result<f32, ModelError> {
    let x = v.as_f64().ok_or_else(|| {
        invalid(
            origin,
            path,
            format!("expected a number, found {}", kind_of(v)),
        )
    })?;
    let y = x as f32;
    if !y.is_finite() {
        return Err(invalid(
            origin,
            path,
            format!("{x:e} is out of range for f32"),
        ));
    }
    Ok(y)
}

fn to_u32(v: &Value, path: &str, origin: &str) -> Result<u32, ModelError> {
    v.as_u64()
        .and_then(|x| u32::try_from(x).ok())
        .ok_or_else(|| {
            invalid(
                origin,
                path,
                format!("expected a non-negative integer, found {v}"),
            )
        })
}

fn parse_standardize(o: &Obj<'_>, n: usize) -> Result<Option<Standardize>, ModelError> {
    let Some(v) = o.opt("standardize") else {
        return Ok(None);
    };
    let s = Obj::new(v, &o.sub("standardize"), o.origin)?;
    s.only(&["mean", "std"])?;
    let st = Standardize {
        mean: s.f32s("mean")?,
        std: s.f32s("std")?,
    };
    validate_standardize(&st, n, o.origin)?;
    Ok(Some(st))
}

fn validate_standardize(s: &Standardize, n: usize, origin: &str) -> Result<(), ModelError> {
    for (name, v) in [("mean", &s.mean), ("std", &s.std)] {
        if v.len() != n {
            return Err(invalid(
                origin,
                format!("standardize.{name}"),
                format!("has {} values, expected {n} (one per feature)", v.len()),
            ));
        }
    }
    if let Some(i) = s.mean.iter().position(|m| !m.is_finite()) {
        return Err(invalid(
            origin,
            format!("standardize.mean[{i}]"),
            "must be finite",
        ));
    }
    if let Some(i) = s
        .std
        .iter()
        .position(|d| !(d.is_finite() && *d > 0.0 && (1.0 / d).is_finite()))
    {
        return Err(invalid(
            origin,
            format!("standardize.std[{i}]"),
            format!("must be finite and > 0, found {}", s.std[i]),
        ));
    }
    Ok(())
}

fn check_finite(v: &[f32], path: &str, origin: &str) -> Result<(), ModelError> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(i) => Err(invalid(origin, format!("{path}[{i}]"), "must be finite")),
        None => Ok(()),
    }
}

/// Checks that `nodes` form one tree rooted at node 0: children in range, every node reached
/// exactly once (so no cycles and no shared or orphaned nodes), features in range.
fn validate_tree(
    nodes: &[Node],
    n_features: usize,
    path: &str,
    origin: &str,
) -> Result<(), ModelError> {
    if nodes.is_empty() {
        return Err(invalid(
            origin,
            format!("{path}.nodes"),
            "a tree needs at least one node",
        ));
    }
    let mut seen = vec![false; nodes.len()];
    let mut stack = vec![0u32];
    seen[0] = true;
    while let Some(i) = stack.pop() {
        let at = format!("{path}.nodes[{i}]");
        match nodes[i as usize] {
            Node::Leaf { value } => {
                if !value.is_finite() {
                    return Err(invalid(origin, format!("{at}.leaf"), "must be finite"));
                }
            }
            Node::Split {
                feature,
                threshold,
                left,
                right,
                ..
            } => {
                if feature as usize >= n_features {
                    return Err(invalid(
                        origin,
                        format!("{at}.feature"),
                        format!("{feature} is not a feature index (model has {n_features})"),
                    ));
                }
                if threshold.is_nan() {
                    return Err(invalid(
                        origin,
                        format!("{at}.threshold"),
                        "must be a number",
                    ));
                }
                for (name, c) in [("left", left), ("right", right)] {
                    if c as usize >= nodes.len() {
                        return Err(invalid(
                            origin,
                            format!("{at}.{name}"),
                            format!("{c} is not a node index (tree has {} nodes)", nodes.len()),
                        ));
                    }
                    if std::mem::replace(&mut seen[c as usize], true) {
                        return Err(invalid(
                            origin,
                            format!("{at}.{name}"),
                            format!("node {c} is reached twice (a cycle or a shared child)"),
                        ));
                    }
                    stack.push(c);
                }
            }
        }
    }
    if let Some(i) = seen.iter().position(|s| !s) {
        return Err(invalid(
            origin,
            format!("{path}.nodes[{i}]"),
            "is not reachable from the root (node 0)",
        ));
    }
    Ok(())
}

impl Model {
    /// Reads a `strix-model` JSON document; `origin` (a file name) prefixes error messages.
    /// Strict: unknown fields, wrong lengths, bad node indices and cycles are errors naming the
    /// field.
    pub fn from_json(text: &str, origin: &str) -> Result<Model, ModelError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| json_error(origin, &e))?;
        let o = Obj::new(&doc, "", origin)?;
        let format = o.str("format")?;
        if format != FORMAT {
            return Err(invalid(
                origin,
                "format",
                format!("expected \"{FORMAT}\", found {format:?}"),
            ));
        }
        let version = o.get("version")?;
        if version.as_u64() != Some(VERSION) {
            return Err(invalid(
                origin,
                "version",
                format!("unsupported version {version} (this build reads {VERSION})"),
            ));
        }
        let name = o.str("name")?.to_string();
        let feats = array(o.get("features")?, "features", origin)?;
        let features = feats
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| invalid(origin, format!("features[{i}]"), "expected a string"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let n = features.len();
        let kind = match o.str("kind")? {
            "logistic" => {
                o.only(&[
                    "format",
                    "version",
                    "name",
                    "features",
                    "kind",
                    "weights",
                    "bias",
                    "standardize",
                ])?;
                let weights = o.f32s("weights")?;
                if weights.len() != n {
                    return Err(invalid(
                        origin,
                        "weights",
                        format!(
                            "has {} values, expected {n} (one per feature)",
                            weights.len()
                        ),
                    ));
                }
                ModelKind::Logistic {
                    weights,
                    bias: o.f32("bias")?,
                    standardize: parse_standardize(&o, n)?,
                }
            }
            "mlp" => {
                o.only(&[
                    "format",
                    "version",
                    "name",
                    "features",
                    "kind",
                    "layers",
                    "standardize",
                ])?;
                let raw = array(o.get("layers")?, "layers", origin)?;
                let mut layers = Vec::with_capacity(raw.len());
                for (li, lv) in raw.iter().enumerate() {
                    let l = Obj::new(lv, &format!("layers[{li}]"), origin)?;
                    l.only(&["weights", "bias", "activation"])?;
                    let wpath = l.sub("weights");
                    let weights = array(l.get("weights")?, &wpath, origin)?
                        .iter()
                        .enumerate()
                        .map(|(j, row)| {
                            let rpath = format!("{wpath}[{j}]");
                            array(row, &rpath, origin)?
                                .iter()
                                .enumerate()
                                .map(|(i, v)| to_f32(v, &format!("{rpath}[{i}]"), origin))
                                .collect::<Result<Vec<_>, _>>()
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    let activation = match l.str("activation")? {
                        "relu" => Activation::Relu,
                        "tanh" => Activation::Tanh,
                        "sigmoid" => Activation::Sigmoid,
                        "identity" | "linear" => Activation::Identity,
                        other => {
                            return Err(invalid(
                                origin,
                                l.sub("activation"),
                                format!(
                                    "unknown activation {other:?} (relu, tanh, sigmoid, identity)"
                                ),
                            ));
                        }
                    };
                    layers.push(Layer {
                        weights,
                        bias: l.f32s("bias")?,
                        activation,
                    });
                }
                ModelKind::Mlp {
                    layers,
                    standardize: parse_standardize(&o, n)?,
                }
            }
            "trees" => {
                o.only(&[
                    "format",
                    "version",
                    "name",
                    "features",
                    "kind",
                    "trees",
                    "base_score",
                    "output",
                ])?;
                let output = match o.str("output")? {
                    "sigmoid" => TreeOutput::Sigmoid,
                    "identity" => TreeOutput::Identity,
                    other => {
                        return Err(invalid(
                            origin,
                            "output",
                            format!("unknown output {other:?} (sigmoid, identity)"),
                        ));
                    }
                };
                let raw = array(o.get("trees")?, "trees", origin)?;
                let mut trees = Vec::with_capacity(raw.len());
                for (ti, tv) in raw.iter().enumerate() {
                    let t = Obj::new(tv, &format!("trees[{ti}]"), origin)?;
                    t.only(&["nodes"])?;
                    let npath = t.sub("nodes");
                    let nodes = array(t.get("nodes")?, &npath, origin)?
                        .iter()
                        .enumerate()
                        .map(|(ni, nv)| {
                            let nd = Obj::new(nv, &format!("{npath}[{ni}]"), origin)?;
                            if nd.map.contains_key("leaf") {
                                nd.only(&["leaf"])?;
                                return Ok(Node::Leaf {
                                    value: nd.f32("leaf")?,
                                });
                            }
                            nd.only(&["feature", "threshold", "left", "right", "default_left"])?;
                            let default_left = match nd.opt("default_left") {
                                None => false,
                                Some(Value::Bool(b)) => *b,
                                Some(v) => {
                                    return Err(invalid(
                                        origin,
                                        nd.sub("default_left"),
                                        format!("expected a boolean, found {}", kind_of(v)),
                                    ));
                                }
                            };
                            Ok(Node::Split {
                                feature: to_u32(nd.get("feature")?, &nd.sub("feature"), origin)?,
                                threshold: nd.f32("threshold")?,
                                left: to_u32(nd.get("left")?, &nd.sub("left"), origin)?,
                                right: to_u32(nd.get("right")?, &nd.sub("right"), origin)?,
                                default_left,
                            })
                        })
                        .collect::<Result<Vec<_>, ModelError>>()?;
                    trees.push(Tree { nodes });
                }
                ModelKind::Trees {
                    trees,
                    base_score: o.f32("base_score")?,
                    output,
                }
            }
            other => {
                return Err(invalid(
                    origin,
                    "kind",
                    format!("unknown kind {other:?} (logistic, mlp, trees)"),
                ));
            }
        };
        let model = Model {
            name,
            features,
            kind,
        };
        model.validate_in(origin)?;
        Ok(model)
    }

    /// Reads a model file: a `strix-model` document, or an XGBoost JSON booster (recognised by
    /// its top-level `learner` field).
    pub fn load(path: impl AsRef<Path>) -> Result<Model, ModelError> {
        let path = path.as_ref();
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            origin: origin.clone(),
            source,
        })?;
        let is_xgboost = serde_json::from_str::<Value>(&text)
            .map(|v| v.get("learner").is_some() && v.get("format").is_none())
            .unwrap_or(false);
        if is_xgboost {
            Model::from_xgboost_json(&text, &origin)
        } else {
            Model::from_json(&text, &origin)
        }
    }

    /// Checks a model built in code (the JSON readers call this): the same rules as
    /// [`Model::from_json`], errors prefixed with `model NAME`.
    pub fn validate(&self) -> Result<(), ModelError> {
        self.validate_in(&format!("model {:?}", self.name))
    }

    fn validate_in(&self, origin: &str) -> Result<(), ModelError> {
        let n = self.features.len();
        if n == 0 {
            return Err(invalid(
                origin,
                "features",
                "a model needs at least one feature",
            ));
        }
        let mut names = std::collections::HashSet::new();
        if let Some((i, f)) = self
            .features
            .iter()
            .enumerate()
            .find(|(_, f)| !names.insert(f.as_str()))
        {
            return Err(invalid(
                origin,
                format!("features[{i}]"),
                format!("{f:?} appears twice"),
            ));
        }
        match &self.kind {
            ModelKind::Logistic {
                weights,
                bias,
                standardize,
            } => {
                if weights.len() != n {
                    return Err(invalid(
                        origin,
                        "weights",
                        format!(
                            "has {} values, expected {n} (one per feature)",
                            weights.len()
                        ),
                    ));
                }
                check_finite(weights, "weights", origin)?;
                if !bias.is_finite() {
                    return Err(invalid(origin, "bias", "must be finite"));
                }
                if let Some(s) = standardize {
                    validate_standardize(s, n, origin)?;
                }
            }
            ModelKind::Mlp {
                layers,
                standardize,
            } => {
                if layers.is_empty() {
                    return Err(invalid(origin, "layers", "an MLP needs at least one layer"));
                }
                let mut inputs = n;
                for (li, l) in layers.iter().enumerate() {
                    let path = format!("layers[{li}]");
                    if l.weights.is_empty() {
                        return Err(invalid(
                            origin,
                            format!("{path}.weights"),
                            "a layer needs at least one output",
                        ));
                    }
                    for (j, row) in l.weights.iter().enumerate() {
                        if row.len() != inputs {
                            return Err(invalid(
                                origin,
                                format!("{path}.weights[{j}]"),
                                format!(
                                    "has {} values, expected {inputs} (the layer's inputs)",
                                    row.len()
                                ),
                            ));
                        }
                        check_finite(row, &format!("{path}.weights[{j}]"), origin)?;
                    }
                    if l.bias.len() != l.weights.len() {
                        return Err(invalid(
                            origin,
                            format!("{path}.bias"),
                            format!(
                                "has {} values, expected {} (one per output)",
                                l.bias.len(),
                                l.weights.len()
                            ),
                        ));
                    }
                    check_finite(&l.bias, &format!("{path}.bias"), origin)?;
                    inputs = l.weights.len();
                }
                if inputs != 1 {
                    return Err(invalid(
                        origin,
                        format!("layers[{}].weights", layers.len() - 1),
                        format!("the last layer has {inputs} outputs, expected 1 (the score)"),
                    ));
                }
                if let Some(s) = standardize {
                    validate_standardize(s, n, origin)?;
                }
            }
            ModelKind::Trees {
                trees, base_score, ..
            } => {
                if !base_score.is_finite() {
                    return Err(invalid(origin, "base_score", "must be finite"));
                }
                for (ti, t) in trees.iter().enumerate() {
                    validate_tree(&t.nodes, n, &format!("trees[{ti}]"), origin)?;
                }
            }
        }
        Ok(())
    }

    /// The `strix-model` JSON document for this model (pretty-printed; floats written in their
    /// shortest `f32` form, so reading it back gives the same model).
    pub fn to_json(&self) -> String {
        #[derive(Serialize)]
        struct Std<'a> {
            mean: &'a [f32],
            std: &'a [f32],
        }
        #[derive(Serialize)]
        struct L<'a> {
            weights: &'a [Vec<f32>],
            bias: &'a [f32],
            activation: &'static str,
        }
        #[derive(Serialize)]
        #[serde(untagged)]
        enum N {
            Split {
                feature: u32,
                threshold: f32,
                left: u32,
                right: u32,
                default_left: bool,
            },
            Leaf {
                leaf: f32,
            },
        }
        #[derive(Serialize)]
        struct T {
            nodes: Vec<N>,
        }
        #[derive(Serialize)]
        #[serde(tag = "kind", rename_all = "lowercase")]
        enum K<'a> {
            Logistic {
                weights: &'a [f32],
                bias: f32,
                #[serde(skip_serializing_if = "Option::is_none")]
                standardize: Option<Std<'a>>,
            },
            Mlp {
                layers: Vec<L<'a>>,
                #[serde(skip_serializing_if = "Option::is_none")]
                standardize: Option<Std<'a>>,
            },
            Trees {
                base_score: f32,
                output: &'static str,
                trees: Vec<T>,
            },
        }
        #[derive(Serialize)]
        struct Doc<'a> {
            format: &'static str,
            version: u64,
            name: &'a str,
            features: &'a [String],
            #[serde(flatten)]
            kind: K<'a>,
        }
        fn std(s: &Standardize) -> Std<'_> {
            Std {
                mean: &s.mean,
                std: &s.std,
            }
        }
        let kind = match &self.kind {
            ModelKind::Logistic {
                weights,
                bias,
                standardize,
            } => K::Logistic {
                weights,
                bias: *bias,
                standardize: standardize.as_ref().map(std),
            },
            ModelKind::Mlp {
                layers,
                standardize,
            } => K::Mlp {
                layers: layers
                    .iter()
                    .map(|l| L {
                        weights: &l.weights,
                        bias: &l.bias,
                        activation: l.activation.name(),
                    })
                    .collect(),
                standardize: standardize.as_ref().map(std),
            },
            ModelKind::Trees {
                trees,
                base_score,
                output,
            } => K::Trees {
                base_score: *base_score,
                output: match output {
                    TreeOutput::Sigmoid => "sigmoid",
                    TreeOutput::Identity => "identity",
                },
                trees: trees
                    .iter()
                    .map(|t| T {
                        nodes: t
                            .nodes
                            .iter()
                            .map(|n| match *n {
                                Node::Leaf { value } => N::Leaf { leaf: value },
                                Node::Split {
                                    feature,
                                    threshold,
                                    left,
                                    right,
                                    default_left,
                                } => N::Split {
                                    feature,
                                    threshold,
                                    left,
                                    right,
                                    default_left,
                                },
                            })
                            .collect(),
                    })
                    .collect(),
            },
        };
        let doc = Doc {
            format: FORMAT,
            version: VERSION,
            name: &self.name,
            features: &self.features,
            kind,
        };
        // Serialising plain structs of strings and finite floats cannot fail; fall back to an
        // empty object rather than panic if it ever did.
        serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".to_string())
    }

    /// The CPU reference: scores `rows` (row-major, `features.len()` values each) into `out`,
    /// one score per row, in `f32` and in the shader's order. Scores `min(out.len(), rows / n)`
    /// rows; a model that fails [`Model::validate`] gives unspecified scores (NaN), never a panic.
    pub fn score_cpu(&self, rows: &[f32], out: &mut [f32]) {
        let n = self.features.len().max(1);
        match &self.kind {
            ModelKind::Logistic {
                weights,
                bias,
                standardize,
            } => {
                let pre = Pre::new(standardize.as_ref());
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(n)) {
                    let mut acc = *bias;
                    for (i, (w, x)) in weights.iter().zip(row).enumerate() {
                        acc += w * pre.apply(i, *x);
                    }
                    *o = sigmoid(acc);
                }
            }
            ModelKind::Mlp {
                layers,
                standardize,
            } => {
                let pre = Pre::new(standardize.as_ref());
                let width = layers
                    .iter()
                    .map(|l| l.weights.len())
                    .max()
                    .unwrap_or(0)
                    .max(n);
                let mut cur = vec![0.0f32; width];
                let mut next = vec![0.0f32; width];
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(n)) {
                    for (i, x) in row.iter().enumerate() {
                        cur[i] = pre.apply(i, *x);
                    }
                    for l in layers {
                        for (j, (wrow, b)) in l.weights.iter().zip(&l.bias).enumerate() {
                            let mut acc = *b;
                            for (w, x) in wrow.iter().zip(&cur) {
                                acc += w * x;
                            }
                            next[j] = l.activation.apply(acc);
                        }
                        std::mem::swap(&mut cur, &mut next);
                    }
                    *o = cur[0];
                }
            }
            ModelKind::Trees {
                trees,
                base_score,
                output,
            } => {
                for (o, row) in out.iter_mut().zip(rows.chunks_exact(n)) {
                    let mut acc = *base_score;
                    for t in trees {
                        acc += leaf_value(&t.nodes, row);
                    }
                    *o = match output {
                        TreeOutput::Sigmoid => sigmoid(acc),
                        TreeOutput::Identity => acc,
                    };
                }
            }
        }
    }

    /// A short description: kind and size, e.g. `logistic, 30 features`.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let n = self.features.len();
        // Writing to a String cannot fail.
        let _ = match &self.kind {
            ModelKind::Logistic { .. } => write!(s, "logistic, {n} features"),
            ModelKind::Mlp { layers, .. } => {
                let widths: Vec<String> =
                    layers.iter().map(|l| l.weights.len().to_string()).collect();
                write!(s, "mlp {n}→{}", widths.join("→"))
            }
            ModelKind::Trees { trees, .. } => {
                write!(s, "trees, {} trees, {n} features", trees.len())
            }
        };
        s
    }
}

/// Input standardisation as the shaders apply it: `(x − mean) · inv_std`.
struct Pre {
    mean: Vec<f32>,
    inv_std: Vec<f32>,
}

impl Pre {
    fn new(s: Option<&Standardize>) -> Pre {
        match s {
            Some(s) => Pre {
                mean: s.mean.clone(),
                inv_std: s.inv_std(),
            },
            None => Pre {
                mean: Vec::new(),
                inv_std: Vec::new(),
            },
        }
    }

    #[inline]
    fn apply(&self, i: usize, x: f32) -> f32 {
        match (self.mean.get(i), self.inv_std.get(i)) {
            (Some(m), Some(s)) => (x - m) * s,
            _ => x,
        }
    }
}

/// The leaf `row` reaches in `nodes` (NaN for a malformed tree: a bad index or a cycle).
fn leaf_value(nodes: &[Node], row: &[f32]) -> f32 {
    let mut i = 0usize;
    // A valid tree reaches a leaf in fewer steps than it has nodes; the bound stops cycles.
    for _ in 0..=nodes.len() {
        match nodes.get(i) {
            Some(Node::Leaf { value }) => return *value,
            Some(Node::Split {
                feature,
                threshold,
                left,
                right,
                default_left,
            }) => {
                let x = row.get(*feature as usize).copied().unwrap_or(f32::NAN);
                let go_left = if x.is_nan() {
                    *default_left
                } else {
                    x < *threshold
                };
                i = if go_left { *left } else { *right } as usize;
            }
            None => return f32::NAN,
        }
    }
    f32::NAN
}

// ---------------------------------------------------------------------------------------------
// XGBoost import
// ---------------------------------------------------------------------------------------------

/// Objectives whose prediction is `sigmoid(margin)`; their `base_score` is a probability.
const XGB_SIGMOID: &[&str] = &["binary:logistic", "reg:logistic"];
/// Objectives whose prediction is the margin; `binary:logitraw` keeps a probability
/// `base_score` (turned into a logit), the others use it as is.
const XGB_IDENTITY: &[&str] = &[
    "binary:logitraw",
    "reg:squarederror",
    "reg:linear",
    "reg:pseudohubererror",
    "reg:absoluteerror",
];

fn xgb_param(v: &Value, path: &str, origin: &str) -> Result<f64, ModelError> {
    // XGBoost writes its learner parameters as strings ("5E-1"; "[5E-1]" since 3.0).
    let parsed = match v {
        Value::String(s) => s
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .next()
            .and_then(|t| t.trim().parse::<f64>().ok()),
        Value::Number(n) => n.as_f64(),
        _ => None,
    };
    parsed.ok_or_else(|| invalid(origin, path, format!("expected a number, found {v}")))
}

impl Model {
    /// Reads the JSON written by XGBoost's `Booster.save_model("m.json")` for a `gbtree`
    /// booster with objective `binary:logistic`, `reg:logistic` (sigmoid output),
    /// `binary:logitraw` or `reg:squarederror`-like objectives (identity output).
    ///
    /// Leaf values come from `split_conditions` (XGBoost stores a leaf's value there; learning
    /// rate already applied). The probability `base_score` of logistic objectives becomes the
    /// margin `ln(p / (1 − p))`. Features are `learner.feature_names` when present, else
    /// `f0 … f{n−1}`. The model is named after `origin`'s file stem.
    pub fn from_xgboost_json(text: &str, origin: &str) -> Result<Model, ModelError> {
        let doc: Value = serde_json::from_str(text).map_err(|e| json_error(origin, &e))?;
        let root = Obj::new(&doc, "", origin)?;
        let learner = root.obj("learner")?;
        let params = learner.obj("learner_model_param")?;
        if let Some(nc) = params.opt("num_class") {
            let k = xgb_param(nc, &params.sub("num_class"), origin)?;
            if k > 1.0 {
                return Err(invalid(
                    origin,
                    params.sub("num_class"),
                    format!("multi-class boosters ({k} classes) are not supported"),
                ));
            }
        }
        if let Some(nt) = params.opt("num_target") {
            let k = xgb_param(nt, &params.sub("num_target"), origin)?;
            if k > 1.0 {
                return Err(invalid(
                    origin,
                    params.sub("num_target"),
                    format!("multi-target boosters ({k} targets) are not supported"),
                ));
            }
        }
        let base_p = xgb_param(params.get("base_score")?, &params.sub("base_score"), origin)?;
        let objective = learner.obj("objective")?.str("name")?;
        let (output, base_margin) = if XGB_SIGMOID.contains(&objective)
            || objective == "binary:logitraw"
        {
            if !(base_p > 0.0 && base_p < 1.0) {
                return Err(invalid(
                    origin,
                    params.sub("base_score"),
                    format!("{base_p} is not a probability in (0, 1)"),
                ));
            }
            let out = if objective == "binary:logitraw" {
                TreeOutput::Identity
            } else {
                TreeOutput::Sigmoid
            };
            (out, (base_p / (1.0 - base_p)).ln())
        } else if XGB_IDENTITY.contains(&objective) {
            (TreeOutput::Identity, base_p)
        } else {
            return Err(invalid(
                origin,
                "learner.objective.name",
                format!(
                    "objective {objective:?} is not supported (binary:logistic, reg:logistic, binary:logitraw, reg:squarederror)"
                ),
            ));
        };
        let booster = learner.obj("gradient_booster")?;
        let bname = booster.str("name")?;
        let model = match bname {
            "gbtree" => booster.obj("model")?,
            // DART keeps its trees in an inner gbtree; its weight_drop scales apply at training only.
            "dart" => booster.obj("gbtree")?.obj("model")?,
            other => {
                return Err(invalid(
                    origin,
                    booster.sub("name"),
                    format!("booster {other:?} is not supported (gbtree)"),
                ));
            }
        };
        let num_feature = match params.opt("num_feature") {
            Some(v) => xgb_param(v, &params.sub("num_feature"), origin)? as usize,
            None => 0,
        };
        let features: Vec<String> = match learner.opt("feature_names").and_then(Value::as_array) {
            Some(names) if !names.is_empty() => names
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().map(str::to_string).ok_or_else(|| {
                        invalid(
                            origin,
                            format!("learner.feature_names[{i}]"),
                            "expected a string",
                        )
                    })
                })
                .collect::<Result<_, _>>()?,
            _ => (0..num_feature).map(|i| format!("f{i}")).collect(),
        };
        let raw_trees = array(model.get("trees")?, &model.sub("trees"), origin)?;
        let mut trees = Vec::with_capacity(raw_trees.len());
        for (ti, tv) in raw_trees.iter().enumerate() {
            let t = Obj::new(tv, &format!("{}[{ti}]", model.sub("trees")), origin)?;
            let ints = |key: &str| -> Result<Vec<i64>, ModelError> {
                let path = t.sub(key);
                array(t.get(key)?, &path, origin)?
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.as_i64().ok_or_else(|| {
                            invalid(origin, format!("{path}[{i}]"), "expected an integer")
                        })
                    })
                    .collect()
            };
            let left = ints("left_children")?;
            let right = ints("right_children")?;
            let index = ints("split_indices")?;
            let cond = t.f32s("split_conditions")?;
            let dpath = t.sub("default_left");
            let default_left = array(t.get("default_left")?, &dpath, origin)?
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::Bool(b) => Ok(*b),
                    Value::Number(n) if n.as_u64() == Some(0) || n.as_u64() == Some(1) => {
                        Ok(n.as_u64() == Some(1))
                    }
                    _ => Err(invalid(
                        origin,
                        format!("{dpath}[{i}]"),
                        "expected 0, 1 or a boolean",
                    )),
                })
                .collect::<Result<Vec<bool>, _>>()?;
            let count = left.len();
            for (key, len) in [
                ("right_children", right.len()),
                ("split_indices", index.len()),
                ("split_conditions", cond.len()),
                ("default_left", default_left.len()),
            ] {
                if len != count {
                    return Err(invalid(
                        origin,
                        t.sub(key),
                        format!("has {len} entries, left_children has {count}"),
                    ));
                }
            }
            if let Some(st) = t.opt("split_type").and_then(Value::as_array) {
                if let Some(i) = st.iter().position(|v| v.as_i64() != Some(0)) {
                    return Err(invalid(
                        origin,
                        format!("{}[{i}]", t.sub("split_type")),
                        "categorical splits are not supported",
                    ));
                }
            }
            let mut nodes = Vec::with_capacity(count);
            for i in 0..count {
                let at = |key: &str| format!("{}[{i}]", t.sub(key));
                if left[i] == -1 {
                    if right[i] != -1 {
                        return Err(invalid(
                            origin,
                            at("right_children"),
                            "a leaf (left child -1) must have right child -1",
                        ));
                    }
                    nodes.push(Node::Leaf { value: cond[i] });
                } else {
                    let child = |v: i64, key: &str| {
                        u32::try_from(v).map_err(|_| {
                            invalid(origin, at(key), format!("{v} is not a node index"))
                        })
                    };
                    let feature = u32::try_from(index[i]).map_err(|_| {
                        invalid(origin, at("split_indices"), "expected a feature index")
                    })?;
                    nodes.push(Node::Split {
                        feature,
                        threshold: cond[i],
                        left: child(left[i], "left_children")?,
                        right: child(right[i], "right_children")?,
                        default_left: default_left[i],
                    });
                }
            }
            trees.push(Tree { nodes });
        }
        let name = Path::new(origin)
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "xgboost".into());
        let model = Model {
            name,
            features,
            kind: ModelKind::Trees {
                trees,
                base_score: base_margin as f32,
                output,
            },
        };
        // Tree paths in errors are Strix ones (`trees[i].nodes[j]`), with indices equal to XGBoost's.
        model.validate_in(origin)?;
        Ok(model)
    }
}
