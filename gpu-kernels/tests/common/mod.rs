//! Random models and rows for the scoring tests.
#![allow(dead_code)]

use gpu_kernels::model::{
    Activation, Layer, Model, ModelKind, Node, Standardize, Tree, TreeOutput,
};
use proptest::prelude::*;

pub fn names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("x{i}")).collect()
}

fn standardize(n: usize) -> impl Strategy<Value = Option<Standardize>> {
    proptest::option::of(
        (
            proptest::collection::vec(-2.0f32..2.0, n),
            proptest::collection::vec(0.25f32..4.0, n),
        )
            .prop_map(|(mean, std)| Standardize { mean, std }),
    )
}

pub fn logistic(max_features: usize) -> impl Strategy<Value = Model> {
    (1..=max_features).prop_flat_map(|n| {
        (
            proptest::collection::vec(-1.0f32..1.0, n),
            -1.0f32..1.0,
            standardize(n),
        )
            .prop_map(move |(weights, bias, standardize)| Model {
                name: "logistic".into(),
                features: names(n),
                kind: ModelKind::Logistic {
                    weights,
                    bias,
                    standardize,
                },
            })
    })
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![
        Just(Activation::Relu),
        Just(Activation::Tanh),
        Just(Activation::Sigmoid),
        Just(Activation::Identity)
    ]
}

fn layer(inputs: usize, outputs: usize) -> impl Strategy<Value = Layer> {
    // Weights scaled by 1/inputs keep activations O(1), where the tolerance is meaningful.
    let scale = 1.0 / inputs as f32;
    (
        proptest::collection::vec(proptest::collection::vec(-1.0f32..1.0, inputs), outputs),
        proptest::collection::vec(-0.5f32..0.5, outputs),
        activation(),
    )
        .prop_map(move |(w, bias, activation)| Layer {
            weights: w
                .into_iter()
                .map(|r| r.into_iter().map(|x| x * scale * 2.0).collect())
                .collect(),
            bias,
            activation,
        })
}

pub fn mlp(max_features: usize, max_width: usize) -> impl Strategy<Value = Model> {
    (1..=max_features, 1..=max_width, 1..=max_width).prop_flat_map(|(n, h1, h2)| {
        (
            layer(n, h1),
            layer(h1, h2),
            layer(h2, 1),
            standardize(n),
            any::<bool>(),
        )
            .prop_map(move |(a, b, c, standardize, deep)| {
                let layers = if deep {
                    vec![a, b, c]
                } else {
                    vec![
                        a,
                        Layer {
                            weights: vec![vec![0.5; h1]],
                            bias: vec![0.1],
                            activation: Activation::Sigmoid,
                        },
                    ]
                };
                Model {
                    name: "mlp".into(),
                    features: names(n),
                    kind: ModelKind::Mlp {
                        layers,
                        standardize,
                    },
                }
            })
    })
}

/// A random tree over `n` features, built from a pre-order list of choices.
fn tree(n: usize, depth: u32) -> impl Strategy<Value = Tree> {
    proptest::collection::vec(
        (
            0..n as u32,
            -2.0f32..2.0,
            any::<bool>(),
            -1.0f32..1.0,
            0u8..3,
        ),
        1usize << depth,
    )
    .prop_map(move |choices| {
        let mut nodes = Vec::new();
        let mut k = 0usize;
        build(&mut nodes, &choices, &mut k, depth);
        Tree { nodes }
    })
}

fn build(
    nodes: &mut Vec<Node>,
    choices: &[(u32, f32, bool, f32, u8)],
    k: &mut usize,
    depth: u32,
) -> u32 {
    let (feature, threshold, default_left, value, leaf) = choices[*k % choices.len()];
    *k += 1;
    let at = nodes.len() as u32;
    if depth == 0 || leaf == 0 {
        nodes.push(Node::Leaf { value });
        return at;
    }
    nodes.push(Node::Leaf { value: 0.0 });
    let left = build(nodes, choices, k, depth - 1);
    let right = build(nodes, choices, k, depth - 1);
    nodes[at as usize] = Node::Split {
        feature,
        threshold,
        left,
        right,
        default_left,
    };
    at
}

pub fn trees(max_features: usize, max_trees: usize) -> impl Strategy<Value = Model> {
    (1..=max_features).prop_flat_map(move |n| {
        (
            proptest::collection::vec(tree(n, 4), 0..=max_trees),
            -1.0f32..1.0,
            any::<bool>(),
        )
            .prop_map(move |(trees, base_score, sig)| Model {
                name: "trees".into(),
                features: names(n),
                kind: ModelKind::Trees {
                    trees,
                    base_score,
                    output: if sig {
                        TreeOutput::Sigmoid
                    } else {
                        TreeOutput::Identity
                    },
                },
            })
    })
}

pub fn any_model() -> impl Strategy<Value = Model> {
    prop_oneof![logistic(12), mlp(8, 12), trees(8, 6)]
}

/// `rows` rows for `model`, values in [-3, 3], with some NaNs when `nans`.
pub fn rows_for(model: &Model, rows: usize, seed: u64, nans: bool) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..rows * model.features.len())
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            if nans && (s >> 20) % 17 == 0 {
                f32::NAN
            } else {
                u * 6.0 - 3.0
            }
        })
        .collect()
}
