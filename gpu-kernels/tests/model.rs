//! Model JSON: round trips, strict errors naming the field, XGBoost import, CPU reference
//! against hand-computed values.

mod common;

use gpu_kernels::model::{
    Activation, Layer, Model, ModelError, ModelKind, Node, Tree, TreeOutput, sigmoid,
};
use proptest::prelude::*;

fn close(a: f32, b: f64) -> bool {
    (f64::from(a) - b).abs() <= 1e-6 * (1.0 + b.abs())
}

fn sig(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

fn score(m: &Model, rows: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; rows.len() / m.features.len()];
    m.score_cpu(rows, &mut out);
    out
}

const LOGISTIC: &str = r#"{
  "format": "strix-model", "version": 1, "name": "toy", "features": ["a", "b"],
  "kind": "logistic", "weights": [2.0, -1.0], "bias": 0.5
}"#;

#[test]
fn logistic_by_hand() {
    let m = Model::from_json(LOGISTIC, "toy.json").unwrap();
    let out = score(&m, &[1.0, 3.0, 0.0, 0.0]);
    assert!(close(out[0], sig(0.5 + 2.0 - 3.0)), "{out:?}");
    assert!(close(out[1], sig(0.5)), "{out:?}");
    let std = LOGISTIC.replace(
        r#""bias": 0.5"#,
        r#""bias": 0.5, "standardize": {"mean": [1, 1], "std": [2, 0.5]}"#,
    );
    let m = Model::from_json(&std, "toy.json").unwrap();
    // x = ((1-1)/2, (3-1)/0.5) = (0, 4): z = 0.5 + 0 - 4.
    assert!(close(score(&m, &[1.0, 3.0])[0], sig(-3.5)));
}

const MLP: &str = r#"{
  "format": "strix-model", "version": 1, "name": "net", "features": ["a", "b"], "kind": "mlp",
  "layers": [
    {"weights": [[1, -1], [0.5, 0.5]], "bias": [0, -1], "activation": "relu"},
    {"weights": [[2, 3]], "bias": [0.25], "activation": "identity"}
  ]
}"#;

#[test]
fn mlp_by_hand() {
    let m = Model::from_json(MLP, "net.json").unwrap();
    // (3, 1): hidden relu(2), relu(1) → 0.25 + 4 + 3; (0, 2): relu(-2), relu(0) → 0.25.
    assert_eq!(score(&m, &[3.0, 1.0, 0.0, 2.0]), vec![7.25, 0.25]);
    for (act, f) in [("tanh", f64::tanh as fn(f64) -> f64), ("sigmoid", sig)] {
        let m = Model::from_json(
            &MLP.replace(
                r#""activation": "identity""#,
                &format!(r#""activation": "{act}""#),
            ),
            "net.json",
        )
        .unwrap();
        assert!(close(score(&m, &[3.0, 1.0])[0], f(7.25)), "{act}");
        let m = Model::from_json(
            &MLP.replace(
                r#""activation": "relu""#,
                &format!(r#""activation": "{act}""#),
            ),
            "net.json",
        )
        .unwrap();
        // Hidden (3-1, 1.5+0.5-1) = (2, 1) through the activation, then the identity output.
        let expect = 0.25 + 2.0 * f(2.0) + 3.0 * f(1.0);
        assert!(close(score(&m, &[3.0, 1.0])[0], expect), "{act}");
    }
}

const TREES: &str = r#"{
  "format": "strix-model", "version": 1, "name": "forest", "features": ["a", "b"], "kind": "trees",
  "base_score": 0.0, "output": "identity",
  "trees": [
    {"nodes": [
      {"feature": 0, "threshold": 0.5, "left": 1, "right": 2, "default_left": true},
      {"leaf": 1.0},
      {"feature": 1, "threshold": 2.0, "left": 3, "right": 4},
      {"leaf": -0.5},
      {"leaf": 0.25}
    ]},
    {"nodes": [{"leaf": 0.125}]}
  ]
}"#;

#[test]
fn trees_by_hand() {
    let m = Model::from_json(TREES, "forest.json").unwrap();
    let nan = f32::NAN;
    let rows = [0.0, 0.0, 1.0, 1.0, 1.0, 3.0, nan, 3.0, 1.0, nan, 0.5, 2.0];
    // a < 0.5 → 1.0; else b < 2 → -0.5, else 0.25; NaN a goes left, NaN b goes right
    // (default_left absent = false); equal to the threshold goes right. Plus 0.125.
    assert_eq!(
        score(&m, &rows),
        vec![1.125, -0.375, 0.375, 1.125, 0.375, 0.375]
    );
    let m = Model::from_json(
        &TREES
            .replace(r#""identity""#, r#""sigmoid""#)
            .replace(r#""base_score": 0.0"#, r#""base_score": -1.0"#),
        "f",
    )
    .unwrap();
    assert!(close(score(&m, &[0.0, 0.0])[0], sig(0.125)));
}

#[test]
fn round_trips() {
    for text in [LOGISTIC, MLP, TREES] {
        let m = Model::from_json(text, "x.json").unwrap();
        let again = Model::from_json(&m.to_json(), "again.json").unwrap();
        assert_eq!(m, again);
    }
    let std = LOGISTIC.replace(
        r#""bias": 0.5"#,
        r#""bias": 0.1, "standardize": {"mean": [0.1, 0.2], "std": [0.3, 3]}"#,
    );
    let m = Model::from_json(&std, "x.json").unwrap();
    let json = m.to_json();
    assert!(
        json.contains("0.1,") || json.contains("0.1\n"),
        "shortest f32 form expected:\n{json}"
    );
    assert_eq!(Model::from_json(&json, "again").unwrap(), m);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn random_models_round_trip(m in common::any_model()) {
        m.validate().unwrap();
        let again = Model::from_json(&m.to_json(), "again.json").unwrap();
        prop_assert_eq!(&m, &again);
        let rows = common::rows_for(&m, 5, 7, true);
        let (a, b) = (score(&m, &rows), score(&again, &rows));
        prop_assert_eq!(a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(), b.iter().map(|x| x.to_bits()).collect::<Vec<_>>());
    }
}

fn err(text: &str) -> String {
    match Model::from_json(text, "bad.json") {
        Ok(m) => panic!("accepted: {m:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn errors_name_the_field() {
    let cases: Vec<(String, &str)> = vec![
        (
            LOGISTIC.replace("[2.0, -1.0]", "[2.0]"),
            "bad.json: weights: has 1 values, expected 2",
        ),
        (
            LOGISTIC.replace(r#""bias": 0.5"#, r#""bias": 0.5, "bais": 1"#),
            "bad.json: bais: unknown field",
        ),
        (
            LOGISTIC.replace(r#""bias": 0.5"#, r#""bias": "x""#),
            "bad.json: bias: expected a number, found a string",
        ),
        (
            LOGISTIC.replace(r#""bias": 0.5"#, r#""bias": 1e300"#),
            "bad.json: bias: 1e300 is out of range for f32",
        ),
        (
            LOGISTIC.replace(r#", "bias": 0.5"#, ""),
            "bad.json: bias: missing",
        ),
        (
            LOGISTIC.replace("strix-model", "other"),
            "bad.json: format: expected \"strix-model\"",
        ),
        (
            LOGISTIC.replace(r#""version": 1"#, r#""version": 2"#),
            "bad.json: version: unsupported version 2",
        ),
        (
            LOGISTIC.replace("logistic", "svm"),
            "bad.json: kind: unknown kind \"svm\"",
        ),
        (
            LOGISTIC.replace(r#"["a", "b"]"#, r#"["a", "a"]"#),
            "bad.json: features[1]: \"a\" appears twice",
        ),
        (
            LOGISTIC.replace(
                r#""bias": 0.5"#,
                r#""bias": 0.5, "standardize": {"mean": [0, 0], "std": [1, 0]}"#,
            ),
            "bad.json: standardize.std[1]: must be finite and > 0",
        ),
        (
            LOGISTIC.replace(
                r#""bias": 0.5"#,
                r#""bias": 0.5, "standardize": {"mean": [0], "std": [1, 1]}"#,
            ),
            "bad.json: standardize.mean: has 1 values, expected 2",
        ),
        (
            MLP.replace("[[2, 3]]", "[[2, 3, 4]]"),
            "bad.json: layers[1].weights[0]: has 3 values, expected 2",
        ),
        (
            MLP.replace("[0.25]", "[0.25, 1]"),
            "bad.json: layers[1].bias: has 2 values, expected 1",
        ),
        (
            MLP.replace(r#""relu""#, r#""gelu""#),
            "bad.json: layers[0].activation: unknown activation \"gelu\"",
        ),
        (
            MLP.replace(
                r#"[[2, 3]], "bias": [0.25]"#,
                r#"[[2, 3], [1, 1]], "bias": [0.25, 0]"#,
            ),
            "bad.json: layers[1].weights: the last layer has 2 outputs, expected 1",
        ),
        (
            MLP.replace("[[1, -1], [0.5, 0.5]]", "[[1, -1], [0.5, \"x\"]]"),
            "bad.json: layers[0].weights[1][1]: expected a number",
        ),
        (
            TREES.replace(r#""left": 3"#, r#""left": 1"#),
            "bad.json: trees[0].nodes[2].left: node 1 is reached twice",
        ),
        (
            TREES.replace(r#""left": 3"#, r#""left": 0"#),
            "bad.json: trees[0].nodes[2].left: node 0 is reached twice",
        ),
        (
            TREES.replace(r#""right": 4"#, r#""right": 9"#),
            "bad.json: trees[0].nodes[2].right: 9 is not a node index (tree has 5 nodes)",
        ),
        (
            TREES.replace(r#""feature": 1"#, r#""feature": 2"#),
            "bad.json: trees[0].nodes[2].feature: 2 is not a feature index",
        ),
        (
            TREES.replace(r#""left": 3, "right": 4"#, r#""left": 3, "right": 3"#),
            "bad.json: trees[0].nodes[2].right: node 3 is reached twice",
        ),
        (
            TREES.replace(r#"{"leaf": 0.125}"#, r#"{"leaf": 0.125}, {"leaf": 1}"#),
            "bad.json: trees[1].nodes[1]: is not reachable from the root",
        ),
        (
            TREES.replace(r#""output": "identity""#, r#""output": "softmax""#),
            "bad.json: output: unknown output \"softmax\"",
        ),
        (
            TREES.replace(r#""default_left": true"#, r#""default_left": 1"#),
            "bad.json: trees[0].nodes[0].default_left: expected a boolean",
        ),
        (
            TREES.replace(r#"{"nodes": [{"leaf": 0.125}]}"#, r#"{"nodes": []}"#),
            "bad.json: trees[1].nodes: a tree needs at least one node",
        ),
        (
            "{\n  \"format\": \"strix-model\",\n  \"version\" 1\n}".to_string(),
            "bad.json:3:13: invalid JSON: expected `:`",
        ),
        (
            "[]".to_string(),
            "bad.json: (document): expected an object, found an array",
        ),
    ];
    for (text, want) in cases {
        let got = err(&text);
        assert!(got.starts_with(want), "want {want:?}\n got {got:?}");
    }
}

#[test]
fn validate_checks_models_built_in_code() {
    let m = Model {
        name: "code".into(),
        features: vec!["a".into()],
        kind: ModelKind::Mlp {
            layers: vec![Layer {
                weights: vec![vec![1.0, 2.0]],
                bias: vec![0.0],
                activation: Activation::Relu,
            }],
            standardize: None,
        },
    };
    let e = m.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("model \"code\": layers[0].weights[0]: has 2 values, expected 1"),
        "{e}"
    );
    // A cyclic tree built in code is rejected by validate; score_cpu gives NaN, not a hang.
    let cyc = Model {
        name: "cyc".into(),
        features: vec!["a".into()],
        kind: ModelKind::Trees {
            trees: vec![Tree {
                nodes: vec![Node::Split {
                    feature: 0,
                    threshold: 0.0,
                    left: 0,
                    right: 0,
                    default_left: false,
                }],
            }],
            base_score: 0.0,
            output: TreeOutput::Identity,
        },
    };
    assert!(cyc.validate().is_err());
    assert!(score(&cyc, &[1.0])[0].is_nan());
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("strix-model-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("toy.json");
    std::fs::write(&p, LOGISTIC).unwrap();
    assert_eq!(Model::load(&p).unwrap().name, "toy");
    let x = dir.join("boost.json");
    std::fs::write(&x, XGB).unwrap();
    let m = Model::load(&x).unwrap();
    assert_eq!(m.name, "boost");
    assert!(matches!(m.kind, ModelKind::Trees { .. }));
    let e = Model::load(dir.join("missing.json")).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }), "{e}");
    assert!(e.to_string().contains("missing.json"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A hand-written booster in the layout of XGBoost's `save_model` JSON (1.7-style strings).
const XGB: &str = r#"{
  "learner": {
    "attributes": {},
    "feature_names": ["amount", "age"],
    "feature_types": ["float", "float"],
    "gradient_booster": {
      "model": {
        "gbtree_model_param": {"num_parallel_tree": "1", "num_trees": "2"},
        "iteration_indptr": [0, 1, 2],
        "tree_info": [0, 0],
        "trees": [
          {
            "base_weights": [0.1, 0.8, -0.6],
            "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
            "default_left": [1, 0, 0],
            "id": 0,
            "left_children": [1, -1, -1],
            "loss_changes": [3.5, 0, 0],
            "parents": [2147483647, 0, 0],
            "right_children": [2, -1, -1],
            "split_conditions": [100.0, 0.4, -0.3],
            "split_indices": [0, 0, 0],
            "split_type": [0, 0, 0],
            "sum_hessian": [10, 5, 5],
            "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3", "size_leaf_vector": "1"}
          },
          {
            "base_weights": [0.0, 0.4, -0.2],
            "categories": [], "categories_nodes": [], "categories_segments": [], "categories_sizes": [],
            "default_left": [0, 0, 0],
            "id": 1,
            "left_children": [1, -1, -1],
            "loss_changes": [1.5, 0, 0],
            "parents": [2147483647, 0, 0],
            "right_children": [2, -1, -1],
            "split_conditions": [30.0, 0.2, -0.1],
            "split_indices": [1, 0, 0],
            "split_type": [0, 0, 0],
            "sum_hessian": [10, 6, 4],
            "tree_param": {"num_deleted": "0", "num_feature": "2", "num_nodes": "3", "size_leaf_vector": "1"}
          }
        ]
      },
      "name": "gbtree"
    },
    "learner_model_param": {"base_score": "5E-1", "boost_from_average": "1", "num_class": "0", "num_feature": "2", "num_target": "1"},
    "objective": {"name": "binary:logistic", "reg_loss_param": {"scale_pos_weight": "1"}}
  },
  "version": [1, 7, 6]
}"#;

#[test]
fn xgboost_by_hand() {
    let m = Model::from_xgboost_json(XGB, "models/boost.json").unwrap();
    assert_eq!(m.features, vec!["amount", "age"]);
    let nan = f32::NAN;
    let out = score(&m, &[50.0, 20.0, 150.0, 40.0, nan, nan, 100.0, 30.0]);
    // amount < 100 → 0.4 else -0.3 (NaN left); age < 30 → 0.2 else -0.1 (NaN right);
    // base_score 0.5 is margin 0.
    for (got, margin) in out.iter().zip([0.6, -0.4, 0.3, -0.4]) {
        assert!(close(*got, sig(margin)), "{out:?}");
    }
    // base_score 0.2 → margin ln(0.25); version 3 writes "[2E-1]".
    let m = Model::from_xgboost_json(&XGB.replace(r#""5E-1""#, r#""[2E-1]""#), "b").unwrap();
    assert!(close(score(&m, &[50.0, 20.0])[0], sig(0.6 + 0.25f64.ln())));
    // Regression: identity output, base_score added as is; no feature names → f0, f1.
    let reg = XGB
        .replace("binary:logistic", "reg:squarederror")
        .replace(r#""feature_names": ["amount", "age"],"#, "");
    let m = Model::from_xgboost_json(&reg, "r").unwrap();
    assert_eq!(m.features, vec!["f0", "f1"]);
    assert!(close(score(&m, &[50.0, 20.0])[0], 0.5 + 0.6));
    // logitraw: margin out, base_score as a logit.
    let m =
        Model::from_xgboost_json(&XGB.replace("binary:logistic", "binary:logitraw"), "r").unwrap();
    assert!(close(score(&m, &[150.0, 40.0])[0], -0.4));
    // Booleans for default_left are accepted too.
    let m = Model::from_xgboost_json(
        &XGB.replace(
            r#""default_left": [1, 0, 0]"#,
            r#""default_left": [true, false, false]"#,
        ),
        "b",
    )
    .unwrap();
    assert!(close(score(&m, &[nan, nan])[0], sig(0.3)));
    // Same model through the Strix format.
    assert_eq!(Model::from_json(&m.to_json(), "again").unwrap(), m);
}

#[test]
fn xgboost_errors() {
    let cases = [
        (
            XGB.replace("binary:logistic", "multi:softprob"),
            "objective \"multi:softprob\" is not supported",
        ),
        (
            XGB.replace(r#""num_class": "0""#, r#""num_class": "3""#),
            "learner.learner_model_param.num_class: multi-class",
        ),
        (
            XGB.replace(r#""name": "gbtree""#, r#""name": "gblinear""#),
            "learner.gradient_booster.name: booster \"gblinear\"",
        ),
        (
            XGB.replace(
                r#""split_type": [0, 0, 0],
            "sum_hessian": [10, 5, 5]"#,
                r#""split_type": [1, 0, 0],
            "sum_hessian": [10, 5, 5]"#,
            ),
            "learner.gradient_booster.model.trees[0].split_type[0]: categorical",
        ),
        (
            XGB.replace(
                r#""split_indices": [1, 0, 0]"#,
                r#""split_indices": [5, 0, 0]"#,
            ),
            "trees[1].nodes[0].feature: 5 is not a feature index",
        ),
        (
            XGB.replace(
                r#""split_conditions": [30.0, 0.2, -0.1]"#,
                r#""split_conditions": [30.0, 0.2]"#,
            ),
            "trees[1].split_conditions: has 2 entries, left_children has 3",
        ),
        (
            XGB.replace(r#""5E-1""#, r#""1""#),
            "learner.learner_model_param.base_score: 1 is not a probability",
        ),
    ];
    for (text, want) in cases {
        let e = Model::from_xgboost_json(&text, "x.json")
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "want {want:?}\n got {e:?}");
    }
}

#[test]
fn sigmoid_is_clamped() {
    assert_eq!(sigmoid(-1000.0), sigmoid(-80.0));
    assert!(sigmoid(-1000.0) > 0.0);
    assert_eq!(sigmoid(1000.0), 1.0);
}
