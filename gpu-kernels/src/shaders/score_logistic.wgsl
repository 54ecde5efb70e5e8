// Logistic regression, one invocation per row.
// Input: rows (row-major n_rows × n_features), model = [bias, weights[n], mean[n], inv_std[n]].
// Output: out[row] = sigmoid(bias + Σ w[i]·x[i]), x standardised as (v − mean)·inv_std when
// params.standardize != 0. Same operation order as Model::score_cpu.

struct Params {
    n_rows: u32,
    n_features: u32,
    standardize: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read> model: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// Matches model::SIGMOID_CLAMP: exp never overflows.
fn sigmoid(z: f32) -> f32 {
    return 1.0 / (1.0 + exp(-clamp(z, -80.0, 80.0)));
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let row = id.x;
    if row >= params.n_rows {
        return;
    }
    let n = params.n_features;
    let base = row * n;
    var acc = model[0];
    for (var i = 0u; i < n; i = i + 1u) {
        var x = rows[base + i];
        if params.standardize != 0u {
            x = (x - model[1u + n + i]) * model[1u + 2u * n + i];
        }
        acc = acc + model[1u + i] * x;
    }
    out[row] = sigmoid(acc);
}
