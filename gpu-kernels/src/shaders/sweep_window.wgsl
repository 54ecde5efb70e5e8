// Count-threshold window sweep kernel: one invocation per (variant, group), a workgroup = 64
// variants of one group. The same algorithm as `window_cpu` in sweep.rs; integers only.
//
// A group's events are sorted by time unit; an event with slide index j lies in the windows
// ending at slide indices j + 1 ..= j + per_event. The window count is constant between entries
// (j + 1) and exits (j + per_event + 1), so the sweep visits change points only.

struct Params {
    variants: u32,
    key_base: u32,
    keys: u32,
    words: u32,
}

struct WindowVariant {
    cond: u32,
    slide: u32,
    offset: u32,
    per_event: u32,
    threshold: u32,
    pad0: u32,
    pad1: u32,
    pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> variants: array<WindowVariant>;
@group(0) @binding(2) var<storage, read> key_offsets: array<u32>;
@group(0) @binding(3) var<storage, read> masks: array<u32>;
@group(0) @binding(4) var<storage, read> units: array<u32>;
@group(0) @binding(5) var<storage, read> tgt: array<u32>;
@group(0) @binding(6) var<storage, read_write> counts: array<atomic<u32>>;
@group(0) @binding(7) var<storage, read_write> found: array<atomic<u32>>;

fn has(e: u32, c: u32) -> bool {
    if (c >= 64u) {
        return true;
    }
    return ((masks[2u * e + (c >> 5u)] >> (c & 31u)) & 1u) == 1u;
}

fn add64(i: u32, lo: u32, hi: u32) {
    if (lo != 0u) {
        let old = atomicAdd(&counts[i], lo);
        if (old + lo < old) {
            atomicAdd(&counts[i + 1u], 1u);
        }
    }
    if (hi != 0u) {
        atomicAdd(&counts[i + 1u], hi);
    }
}

fn next_pass(begin: u32, end: u32, c: u32) -> u32 {
    var e = begin;
    while (e < end && !has(e, c)) {
        e++;
    }
    return e;
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
    let slide = max(v.slide, 1u);
    let n = max(v.per_event, 1u);
    let thr = max(v.threshold, 1u);
    var hi = next_pass(start, end, v.cond);
    var lo = hi;
    var marked = start;
    var cnt = 0u;
    var tcnt = 0u;
    var sig_lo = 0u;
    var sig_hi = 0u;
    var tp_lo = 0u;
    var tp_hi = 0u;
    while (hi < end || cnt > 0u) {
        var at = 0xffffffffu;
        if (hi < end) {
            at = (units[hi] + v.offset) / slide + 1u;
        }
        if (cnt > 0u) {
            at = min(at, (units[lo] + v.offset) / slide + n + 1u);
        }
        while (hi < end && (units[hi] + v.offset) / slide + 1u == at) {
            cnt += 1u;
            if (tgt[hi] != 0u) {
                tcnt += 1u;
            }
            hi = next_pass(hi + 1u, end, v.cond);
        }
        while (cnt > 0u && (units[lo] + v.offset) / slide + n + 1u == at) {
            cnt -= 1u;
            if (tgt[lo] != 0u) {
                tcnt -= 1u;
            }
            lo = next_pass(lo + 1u, end, v.cond);
        }
        if (cnt == 0u) {
            continue;
        }
        var next = 0xffffffffu;
        if (hi < end) {
            next = (units[hi] + v.offset) / slide + 1u;
        }
        next = min(next, (units[lo] + v.offset) / slide + n + 1u);
        if (cnt >= thr) {
            let windows = next - at;
            let s = sig_lo + windows;
            sig_hi += select(0u, 1u, s < sig_lo);
            sig_lo = s;
            if (tcnt > 0u) {
                let t = tp_lo + windows;
                tp_hi += select(0u, 1u, t < tp_lo);
                tp_lo = t;
                for (var m = max(marked, lo); m < hi; m++) {
                    let x = tgt[m];
                    if (x != 0u && has(m, v.cond)) {
                        let i = x - 1u;
                        atomicOr(&found[vi * params.words + i / 32u], 1u << (i % 32u));
                    }
                }
                marked = hi;
            }
        }
    }
    add64(4u * vi, sig_lo, sig_hi);
    add64(4u * vi + 2u, tp_lo, tp_hi);
}
