// Strict-chain sweep kernel: one invocation per (variant, key), a workgroup = 64 variants of one
// key. The same algorithm as `chain_cpu` in sweep.rs, line for line; integers only.
//
// Per key, the live runs are one word `d` (bit j: the run that started j events before the last
// one); an event with condition bits `b` (bit s: state s's condition holds) gives
// d' = ((d & (b >> 1)) << 1) | (b & 1), and bit len-1 is a completed match.

struct Params {
    variants: u32,
    key_base: u32,
    keys: u32,
    words: u32,
}

struct ChainVariant {
    len: u32,
    keep: u32,
    within_lo: u32,
    within_hi: u32,
    has_within: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
    conds: array<u32, 8>,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> variants: array<ChainVariant>;
@group(0) @binding(2) var<storage, read> key_offsets: array<u32>;
@group(0) @binding(3) var<storage, read> masks: array<u32>;
@group(0) @binding(4) var<storage, read> times: array<u32>;
@group(0) @binding(5) var<storage, read> tgt: array<u32>;
// Per variant: signals (low, high), true positives (low, high).
@group(0) @binding(6) var<storage, read_write> counts: array<atomic<u32>>;
// Per variant: `params.words` words of found-instance bits.
@group(0) @binding(7) var<storage, read_write> found: array<atomic<u32>>;

fn has(e: u32, c: u32) -> bool {
    if (c >= 64u) {
        return true;
    }
    return ((masks[2u * e + (c >> 5u)] >> (c & 31u)) & 1u) == 1u;
}

fn cond_of(vi: u32, s: u32) -> u32 {
    return (variants[vi].conds[s / 4u] >> ((s % 4u) * 8u)) & 0xffu;
}

// Adds x to the 64-bit counter at counts[i], counts[i + 1].
fn add64(i: u32, x: u32) {
    if (x == 0u) {
        return;
    }
    let old = atomicAdd(&counts[i], x);
    if (old + x < old) {
        atomicAdd(&counts[i + 1u], 1u);
    }
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let vi = gid.x;
    let key = params.key_base + gid.y;
    if (vi >= params.variants || key >= params.keys) {
        return;
    }
    let v = variants[vi];
    let start = key_offsets[key];
    let end = key_offsets[key + 1u];
    let k = clamp(v.len, 1u, 32u);
    let full = select((1u << (k & 31u)) - 1u, 0xffffffffu, k == 32u);
    let done = 1u << (k - 1u);
    let first = cond_of(vi, 0u);
    var d = 0u;
    var signals = 0u;
    var tps = 0u;
    for (var e = start; e < end; e++) {
        if (d == 0u && !has(e, first)) {
            continue;
        }
        if (v.has_within != 0u && d != 0u) {
            // Runs whose first event is more than `within` older than this one die first.
            let now_lo = times[2u * e];
            let now_hi = times[2u * e + 1u];
            var live = d;
            while (live != 0u) {
                let j = countTrailingZeros(live);
                live &= live - 1u;
                let s = e - 1u - j;
                let s_lo = times[2u * s];
                let lo = s_lo + v.within_lo;
                let carry = select(0u, 1u, lo < s_lo);
                let hi = times[2u * s + 1u] + v.within_hi + carry;
                if (hi < now_hi || (hi == now_hi && lo < now_lo)) {
                    d &= ~(1u << j);
                }
            }
        }
        var b = 0u;
        for (var s = 0u; s < k; s++) {
            if (has(e, cond_of(vi, s))) {
                b |= 1u << s;
            }
        }
        d = (((d & (b >> 1u)) << 1u) | (b & 1u)) & full;
        if ((d & done) != 0u) {
            signals += 1u;
            var hit = false;
            for (var m = e + 1u - k; m <= e; m++) {
                let t = tgt[m];
                if (t != 0u) {
                    hit = true;
                    let i = t - 1u;
                    atomicOr(&found[vi * params.words + i / 32u], 1u << (i % 32u));
                }
            }
            if (hit) {
                tps += 1u;
            }
            d &= ~done & v.keep;
        }
    }
    add64(4u * vi, signals);
    add64(4u * vi + 2u, tps);
}
