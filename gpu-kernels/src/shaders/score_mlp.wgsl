// Multilayer perceptron, one invocation per row.
// Input: rows (row-major n_rows × n_features); weights = [mean[n], inv_std[n] (when
// standardize != 0), then per layer: W (out × in, row-major) followed by bias[out]];
// layers[l] = (inputs, outputs, offset of W in weights, activation code).
// Output: out[row] = the last layer's single output. Hidden widths ≤ MAX_WIDTH (checked on
// the host). Same operation order as Model::score_cpu: acc = bias; acc += w·x in input order.

struct Params {
    n_rows: u32,
    n_features: u32,
    n_layers: u32,
    standardize: u32,
}

const MAX_WIDTH: u32 = 128u;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> layers: array<vec4<u32>>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// Codes of model::Activation::code; clamps match model::SIGMOID_CLAMP and TANH_CLAMP.
fn activate(code: u32, x: f32) -> f32 {
    switch code {
        case 1u: { return max(x, 0.0); }
        case 2u: { return tanh(clamp(x, -15.0, 15.0)); }
        case 3u: { return 1.0 / (1.0 + exp(-clamp(x, -80.0, 80.0))); }
        default: { return x; }
    }
}

fn input(base: u32, i: u32) -> f32 {
    let x = rows[base + i];
    if params.standardize != 0u {
        let n = params.n_features;
        return (x - weights[i]) * weights[n + i];
    }
    return x;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let row = id.x;
    if row >= params.n_rows {
        return;
    }
    let base = row * params.n_features;
    var cur: array<f32, MAX_WIDTH>;
    var next: array<f32, MAX_WIDTH>;
    for (var l = 0u; l < params.n_layers; l = l + 1u) {
        let desc = layers[l];
        let n_in = desc.x;
        let n_out = desc.y;
        let w = desc.z;
        let b = w + n_in * n_out;
        for (var j = 0u; j < n_out; j = j + 1u) {
            var acc = weights[b + j];
            let wrow = w + j * n_in;
            if l == 0u {
                for (var i = 0u; i < n_in; i = i + 1u) {
                    acc = acc + weights[wrow + i] * input(base, i);
                }
            } else {
                for (var i = 0u; i < n_in; i = i + 1u) {
                    acc = acc + weights[wrow + i] * cur[i];
                }
            }
            next[j] = activate(desc.w, acc);
        }
        for (var j = 0u; j < n_out; j = j + 1u) {
            cur[j] = next[j];
        }
    }
    out[row] = cur[0];
}
