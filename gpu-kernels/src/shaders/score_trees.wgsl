// Tree ensemble, one invocation per row.
// Input: rows (row-major n_rows × n_features); nodes[k] = (flags|feature, value bits, left,
// right) with global node indices, flags bit 31 = leaf, bit 30 = NaN goes left; roots[t] = the
// root node of tree t. A split goes left when x < threshold, a NaN follows its default.
// Output: out[row] = output(base_score + Σ leaf_t), leaves added in tree order (as
// Model::score_cpu). Comparisons are exact, so only the final sigmoid may differ from the CPU.

struct Params {
    n_rows: u32,
    n_features: u32,
    n_trees: u32,
    sigmoid: u32,
    base_score: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const LEAF: u32 = 0x80000000u;
const DEFAULT_LEFT: u32 = 0x40000000u;
const FEATURE_MASK: u32 = 0x3fffffffu;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> rows: array<f32>;
@group(0) @binding(2) var<storage, read> nodes: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> roots: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

// By bits: shader compilers may assume floats are never NaN, so `x != x` is not reliable.
fn is_nan(x: f32) -> bool {
    return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    let row = id.x;
    if row >= params.n_rows {
        return;
    }
    let base = row * params.n_features;
    let n_nodes = arrayLength(&nodes);
    var acc = params.base_score;
    for (var t = 0u; t < params.n_trees; t = t + 1u) {
        var k = roots[t];
        // A validated tree reaches a leaf in fewer steps than there are nodes; the bound keeps
        // the loop finite whatever the buffer holds.
        for (var step = 0u; step < n_nodes; step = step + 1u) {
            let nd = nodes[k];
            if (nd.x & LEAF) != 0u {
                acc = acc + bitcast<f32>(nd.y);
                break;
            }
            let x = rows[base + (nd.x & FEATURE_MASK)];
            var left: bool;
            if is_nan(x) {
                left = (nd.x & DEFAULT_LEFT) != 0u;
            } else {
                left = x < bitcast<f32>(nd.y);
            }
            k = select(nd.w, nd.z, left);
        }
    }
    if params.sigmoid != 0u {
        acc = 1.0 / (1.0 + exp(-clamp(acc, -80.0, 80.0)));
    }
    out[row] = acc;
}
