//! Sweep kernels on the GPU: many rule variants over one tape in one dispatch.
//!
//! Input: a tape already reduced to integers by the planner (`strix::sweep_kernel`): events grouped
//! by partition key in CSR form (`key_offsets`), per event a 64-bit condition bitmask (two `u32`
//! words: bit `c` = distinct condition `c` holds), a time (two `u32` words, or one `u32` time
//! unit for windows) and a target-label word (0, or 1 + the dense id of the label instance when
//! the event carries the target class), plus one small parameter struct per variant. Output: per
//! variant, signals, true-positive signals and the number of distinct instances found. Next
//! stage: the sweep report.
//!
//! Two kernels, each as WGSL (`shaders/sweep_chain.wgsl`, `shaders/sweep_window.wgsl`) and as the
//! same algorithm in Rust on one thread ([`chain_cpu`], [`window_cpu`]): integer arithmetic only,
//! so the GPU and the CPU give identical counts.
//!
//! - **chain**: a strict chain of up to 32 single-event conditions (Shift-And word per key), with
//!   `within` and an after-match "keep" mask.
//! - **window**: count-threshold windows (tumbling or sliding, sizes in units of the gcd of all
//!   variants' slides), piecewise-constant window counts swept with two pointers.
//!
//! Layout on the GPU: one invocation per (variant, key); a workgroup holds [`WORKGROUP`]
//! consecutive variants of the same key, so it reads the same events. Dispatches are chunked to
//! 65535 keys, event buffers to the device's storage-binding limit (whole keys per chunk), and
//! the per-variant found-instance bitsets to variant chunks. Counts accumulate with atomics
//! (`u32` pairs with carry), found instances with `atomicOr`.

use bytemuck::{Pod, Zeroable};

use crate::context::{GpuContext, GpuError, Readback};

/// Longest strict chain the chain kernel runs (its run word is one `u32`).
pub const MAX_CHAIN: usize = 32;
/// Invocations per workgroup (variants of one key).
pub const WORKGROUP: u32 = 64;
/// Condition id meaning "always true" in [`WindowVariant::cond`] (no `where`).
pub const ALWAYS: u32 = 64;

/// Parameters of one strict-chain variant (64 bytes, WGSL `ChainVariant`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ChainVariant {
    /// States in the chain, 1 to [`MAX_CHAIN`].
    pub len: u32,
    /// Runs kept after a match: bit `j` keeps the run started `j` events before the match's last.
    pub keep: u32,
    /// `within` in ns, low and high words (ignored unless `has_within`).
    pub within_lo: u32,
    /// High word of `within`.
    pub within_hi: u32,
    /// 1 if the rule has `within`.
    pub has_within: u32,
    /// Padding.
    pub pad: [u32; 3],
    /// Condition id (below 64) of state `s` in byte `s % 4` of word `s / 4`.
    pub conds: [u32; 8],
}

impl ChainVariant {
    /// Condition id of state `s`.
    #[inline]
    pub fn cond(&self, s: usize) -> u32 {
        (self.conds[s / 4] >> ((s % 4) * 8)) & 0xff
    }

    /// Sets the condition id of state `s`.
    pub fn set_cond(&mut self, s: usize, c: u32) {
        let shift = (s % 4) * 8;
        self.conds[s / 4] = (self.conds[s / 4] & !(0xff << shift)) | ((c & 0xff) << shift);
    }
}

/// Parameters of one count-window variant (32 bytes, WGSL `WindowVariant`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct WindowVariant {
    /// Condition id of `where` (below 64), or [`ALWAYS`].
    pub cond: u32,
    /// Slide in time units (at least 1).
    pub slide: u32,
    /// Offset added to an event's unit before dividing by `slide` (aligns windows to multiples
    /// of the slide from ts 0).
    pub offset: u32,
    /// Windows per event (`size / slide`, at least 1).
    pub per_event: u32,
    /// Least count of a derived event (at least 1).
    pub threshold: u32,
    /// Padding.
    pub pad: [u32; 3],
}

/// A tape for the chain kernel (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct ChainTape<'a> {
    /// Events of key `k` are `key_offsets[k]..key_offsets[k + 1]`.
    pub key_offsets: &'a [u32],
    /// Two words per event: condition bits 0–31, 32–63.
    pub masks: &'a [u32],
    /// Two words per event: time (rebased, unsigned) low and high.
    pub ts: &'a [u32],
    /// Per event: 0, or 1 + dense instance id of the target class.
    pub target: &'a [u32],
    /// Number of dense instance ids.
    pub instances: u32,
}

/// A tape for the window kernel (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct WindowTape<'a> {
    /// Events of group `g` are `key_offsets[g]..key_offsets[g + 1]`, sorted by time.
    pub key_offsets: &'a [u32],
    /// Two words per event: condition bits 0–31, 32–63.
    pub masks: &'a [u32],
    /// Per event: time in units (`floor(ts / unit)` minus the tape's first), nondecreasing
    /// within a group.
    pub units: &'a [u32],
    /// Per event: 0, or 1 + dense instance id of the target class.
    pub target: &'a [u32],
    /// Number of dense instance ids.
    pub instances: u32,
}

/// Per-variant results of a kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Signals.
    pub signals: u64,
    /// True-positive signals.
    pub true_positives: u64,
    /// Distinct instances found.
    pub instances_found: u64,
}

/// Words of one variant's found-instance bitset.
#[inline]
pub fn found_words(instances: u32) -> usize {
    (instances as usize).div_ceil(32).max(1)
}

#[inline]
fn bit(masks: &[u32], e: usize, c: u32) -> bool {
    if c >= 64 {
        return true;
    }
    (masks[2 * e + (c as usize >> 5)] >> (c & 31)) & 1 == 1
}

#[inline]
fn ts_at(ts: &[u32], e: usize) -> u64 {
    u64::from(ts[2 * e]) | (u64::from(ts[2 * e + 1]) << 32)
}

/// One (variant, key) of the chain kernel: adds its signals and true positives to `counts` and
/// its found instances to `found`. The WGSL kernel is this function, line for line.
fn chain_key(
    tape: &ChainTape<'_>,
    v: &ChainVariant,
    key: usize,
    counts: &mut Counts,
    found: &mut [u32],
) {
    let (start, end) = (
        tape.key_offsets[key] as usize,
        tape.key_offsets[key + 1] as usize,
    );
    let k = v.len.clamp(1, MAX_CHAIN as u32);
    let full = if k == 32 { u32::MAX } else { (1u32 << k) - 1 };
    let done = 1u32 << (k - 1);
    let within = u64::from(v.within_lo) | (u64::from(v.within_hi) << 32);
    let first = v.cond(0);
    let mut d = 0u32;
    for e in start..end {
        if d == 0 && !bit(tape.masks, e, first) {
            continue;
        }
        if v.has_within != 0 && d != 0 {
            // Runs whose first event is more than `within` older than this one die first.
            let now = ts_at(tape.ts, e);
            let mut live = d;
            while live != 0 {
                let j = live.trailing_zeros() as usize;
                live &= live - 1;
                if ts_at(tape.ts, e - 1 - j).wrapping_add(within) < now {
                    d &= !(1 << j);
                }
            }
        }
        let mut b = 0u32;
        for s in 0..k as usize {
            if bit(tape.masks, e, v.cond(s)) {
                b |= 1 << s;
            }
        }
        d = (((d & (b >> 1)) << 1) | (b & 1)) & full;
        if d & done != 0 {
            counts.signals += 1;
            let mut tp = false;
            for m in e + 1 - k as usize..=e {
                let t = tape.target[m];
                if t != 0 {
                    tp = true;
                    let i = (t - 1) as usize;
                    found[i / 32] |= 1 << (i % 32);
                }
            }
            counts.true_positives += u64::from(tp);
            d &= !done & v.keep;
        }
    }
}

/// The chain kernel on one CPU thread: one [`Counts`] per variant.
pub fn chain_cpu(tape: &ChainTape<'_>, variants: &[ChainVariant]) -> Vec<Counts> {
    per_variant_cpu(
        tape.key_offsets,
        tape.instances,
        variants,
        |v, key, c, found| chain_key(tape, v, key, c, found),
    )
}

/// Runs `per_key(variant, key, counts, found)` over every key of every variant, one variant at
/// a time; the found-instance bitset is cleared per variant and counted into its
/// `instances_found`.
fn per_variant_cpu<V>(
    key_offsets: &[u32],
    instances: u32,
    variants: &[V],
    mut per_key: impl FnMut(&V, usize, &mut Counts, &mut [u32]),
) -> Vec<Counts> {
    let keys = key_offsets.len().saturating_sub(1);
    let mut found = vec![0u32; found_words(instances)];
    variants
        .iter()
        .map(|v| {
            let mut c = Counts::default();
            found.fill(0);
            for key in 0..keys {
                per_key(v, key, &mut c, &mut found);
            }
            c.instances_found = found.iter().map(|w| u64::from(w.count_ones())).sum();
            c
        })
        .collect()
}

/// One (variant, group) of the window kernel. The WGSL kernel is this function, line for line.
fn window_key(
    tape: &WindowTape<'_>,
    v: &WindowVariant,
    key: usize,
    counts: &mut Counts,
    found: &mut [u32],
) {
    let (start, end) = (
        tape.key_offsets[key] as usize,
        tape.key_offsets[key + 1] as usize,
    );
    let slide = v.slide.max(1);
    let n = v.per_event.max(1);
    let thr = v.threshold.max(1);
    // Window index of an event: its slide index `j`; it lies in the windows ending at slide
    // indices j + 1 ..= j + n. Entries happen at j + 1, exits at j + n + 1.
    let idx = |e: usize| (tape.units[e] + v.offset) / slide;
    let next_pass = |mut e: usize| {
        while e < end && !bit(tape.masks, e, v.cond) {
            e += 1;
        }
        e
    };
    let mut hi = next_pass(start); // next event to enter
    let mut lo = hi; // oldest event in the window
    let mut marked = start; // targets before this are already marked found
    let mut cnt = 0u32;
    let mut tcnt = 0u32;
    let mut signals = 0u64;
    let mut tps = 0u64;
    while hi < end || cnt > 0 {
        // The next change point: an entry or an exit.
        let mut at = u32::MAX;
        if hi < end {
            at = idx(hi) + 1;
        }
        if cnt > 0 {
            at = at.min(idx(lo) + n + 1);
        }
        while hi < end && idx(hi) + 1 == at {
            cnt += 1;
            tcnt += u32::from(tape.target[hi] != 0);
            hi = next_pass(hi + 1);
        }
        while cnt > 0 && idx(lo) + n + 1 == at {
            cnt -= 1;
            tcnt -= u32::from(tape.target[lo] != 0);
            lo = next_pass(lo + 1);
        }
        if cnt == 0 {
            continue;
        }
        let mut next = u32::MAX;
        if hi < end {
            next = idx(hi) + 1;
        }
        next = next.min(idx(lo) + n + 1);
        if cnt >= thr {
            let windows = u64::from(next - at);
            signals += windows;
            if tcnt > 0 {
                tps += windows;
                let mut m = marked.max(lo);
                while m < hi {
                    let t = tape.target[m];
                    if t != 0 && bit(tape.masks, m, v.cond) {
                        let i = (t - 1) as usize;
                        found[i / 32] |= 1 << (i % 32);
                    }
                    m += 1;
                }
                marked = hi;
            }
        }
    }
    counts.signals += signals;
    counts.true_positives += tps;
}

/// The window kernel on one CPU thread: one [`Counts`] per variant.
pub fn window_cpu(tape: &WindowTape<'_>, variants: &[WindowVariant]) -> Vec<Counts> {
    per_variant_cpu(
        tape.key_offsets,
        tape.instances,
        variants,
        |v, key, c, found| window_key(tape, v, key, c, found),
    )
}

/// WGSL of the chain kernel.
pub const CHAIN_WGSL: &str = include_str!("shaders/sweep_chain.wgsl");
/// WGSL of the window kernel.
pub const WINDOW_WGSL: &str = include_str!("shaders/sweep_window.wgsl");

/// Uniform parameters of one dispatch (WGSL `Params`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, Pod, Zeroable)]
struct Params {
    variants: u32,
    key_base: u32,
    keys: u32,
    words: u32,
}

/// A kernel's tape as the dispatcher sees it: CSR key offsets and per-event arrays.
struct GpuTape<'a> {
    key_offsets: &'a [u32],
    masks: &'a [u32],
    /// Per-event time words (`time_words` per event).
    times: &'a [u32],
    time_words: usize,
    target: &'a [u32],
    instances: u32,
}

/// The chain kernel on the GPU: one [`Counts`] per variant, equal to [`chain_cpu`]'s.
pub fn chain_gpu(
    ctx: &GpuContext,
    tape: &ChainTape<'_>,
    variants: &[ChainVariant],
) -> Result<Vec<Counts>, GpuError> {
    let t = GpuTape {
        key_offsets: tape.key_offsets,
        masks: tape.masks,
        times: tape.ts,
        time_words: 2,
        target: tape.target,
        instances: tape.instances,
    };
    run_gpu(ctx, "sweep chain", CHAIN_WGSL, &t, variants)
}

/// The window kernel on the GPU: one [`Counts`] per variant, equal to [`window_cpu`]'s.
pub fn window_gpu(
    ctx: &GpuContext,
    tape: &WindowTape<'_>,
    variants: &[WindowVariant],
) -> Result<Vec<Counts>, GpuError> {
    let t = GpuTape {
        key_offsets: tape.key_offsets,
        masks: tape.masks,
        times: tape.units,
        time_words: 1,
        target: tape.target,
        instances: tape.instances,
    };
    run_gpu(ctx, "sweep window", WINDOW_WGSL, &t, variants)
}

/// Consecutive key ranges whose events each fit `max_events` (whole keys per range).
fn key_chunks(
    key_offsets: &[u32],
    max_events: u64,
) -> Result<Vec<std::ops::Range<usize>>, GpuError> {
    let keys = key_offsets.len().saturating_sub(1);
    let mut chunks = Vec::new();
    let mut first = 0;
    while first < keys {
        let base = u64::from(key_offsets[first]);
        let mut last = first;
        while last < keys && u64::from(key_offsets[last + 1]) - base <= max_events {
            last += 1;
        }
        if last == first {
            return Err(GpuError::TooLarge {
                what: "events of one partition key".into(),
                needed: u64::from(key_offsets[first + 1]) - base,
                limit: max_events,
            });
        }
        chunks.push(first..last);
        first = last;
    }
    Ok(chunks)
}

fn run_gpu<V: Pod>(
    ctx: &GpuContext,
    label: &str,
    wgsl: &str,
    tape: &GpuTape<'_>,
    variants: &[V],
) -> Result<Vec<Counts>, GpuError> {
    let mut out = vec![Counts::default(); variants.len()];
    let keys = tape.key_offsets.len().saturating_sub(1);
    if variants.is_empty() || keys == 0 {
        return Ok(out);
    }
    let kernel = ctx.pipeline(label, wgsl, "main")?;
    let limit = ctx.max_binding_bytes().max(64);
    let max_groups = ctx.max_workgroups_per_dimension().max(1);
    let words = found_words(tape.instances);
    // Variant chunks: the found bitsets, the variant structs and the x dimension must fit.
    let per_chunk = (limit / (words as u64 * 4))
        .min(limit / std::mem::size_of::<V>().max(16) as u64)
        .min(u64::from(max_groups) * u64::from(WORKGROUP))
        .max(1) as usize;
    // Event chunks: the widest per-event array is two words.
    let chunks = key_chunks(tape.key_offsets, limit / 8)?;
    let mut staging = Readback::new();
    for (vc, vs) in variants.chunks(per_chunk).enumerate() {
        let variant_buf = ctx.storage_buffer("sweep variants", vs)?;
        let counts_buf = ctx.storage_buffer_zeroed("sweep counts", (vs.len() * 16) as u64)?;
        let found_buf = ctx.storage_buffer_zeroed("sweep found", (vs.len() * words * 4) as u64)?;
        for range in &chunks {
            let (e0, e1) = (
                tape.key_offsets[range.start] as usize,
                tape.key_offsets[range.end] as usize,
            );
            let offsets: Vec<u32> = tape.key_offsets[range.start..=range.end]
                .iter()
                .map(|&o| o - e0 as u32)
                .collect();
            let offsets_buf = ctx.storage_buffer("sweep key offsets", &offsets)?;
            let masks_buf = ctx.storage_buffer("sweep masks", &tape.masks[2 * e0..2 * e1])?;
            let w = tape.time_words;
            let times_buf = ctx.storage_buffer("sweep times", &tape.times[w * e0..w * e1])?;
            let target_buf = ctx.storage_buffer("sweep target", &tape.target[e0..e1])?;
            let chunk_keys = range.len();
            let mut groups = Vec::new();
            let mut key_base = 0;
            while key_base < chunk_keys {
                let y = (chunk_keys - key_base).min(max_groups as usize);
                let params = Params {
                    variants: vs.len() as u32,
                    key_base: key_base as u32,
                    keys: chunk_keys as u32,
                    words: words as u32,
                };
                let params_buf = ctx.uniform_buffer("sweep params", &[params])?;
                let bind = ctx.bind(
                    &kernel,
                    &[
                        &params_buf,
                        &variant_buf,
                        &offsets_buf,
                        &masks_buf,
                        &times_buf,
                        &target_buf,
                        &counts_buf,
                        &found_buf,
                    ],
                )?;
                groups.push((bind, y as u32));
                key_base += y;
            }
            let x = (vs.len() as u32).div_ceil(WORKGROUP);
            ctx.scoped(|| {
                let mut encoder = ctx
                    .device()
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) });
                for (bind, y) in &groups {
                    ctx.encode_dispatch(&mut encoder, &kernel, bind, [x, *y, 1])?;
                }
                ctx.queue().submit([encoder.finish()]);
                Ok::<(), GpuError>(())
            })??;
        }
        let counts: Vec<u32> = ctx.read_back(&counts_buf, vs.len() * 4, &mut staging)?;
        let found: Vec<u32> = ctx.read_back(&found_buf, vs.len() * words, &mut staging)?;
        let base = vc * per_chunk;
        for i in 0..vs.len() {
            let pair =
                |j: usize| u64::from(counts[4 * i + j]) | (u64::from(counts[4 * i + j + 1]) << 32);
            out[base + i] = Counts {
                signals: pair(0),
                true_positives: pair(2),
                instances_found: found[i * words..(i + 1) * words]
                    .iter()
                    .map(|w| u64::from(w.count_ones()))
                    .sum(),
            };
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sweep_condition_ids_pack_four_per_word() {
        let mut v = ChainVariant::default();
        for s in 0..MAX_CHAIN {
            v.set_cond(s, (s as u32 * 7) % 64);
        }
        for s in 0..MAX_CHAIN {
            assert_eq!(v.cond(s), (s as u32 * 7) % 64);
        }
        v.set_cond(5, 63);
        assert_eq!((v.cond(4), v.cond(5), v.cond(6)), (28, 63, 42));
    }

    #[test]
    fn sweep_key_chunks_hold_whole_keys_within_the_limit() {
        let offsets = [0, 3, 4, 9, 10, 10, 12];
        let chunks = key_chunks(&offsets, 5).expect("fits");
        assert_eq!(chunks, vec![0..2, 2..3, 3..6]);
        let err = key_chunks(&offsets, 4).expect_err("key 2 has 5 events");
        assert!(matches!(err, GpuError::TooLarge { needed: 5, .. }), "{err}");
    }

    /// A hand-checked chain: `a a b` (conds 0, 0, 1), within 10 ns, skip past last, on one key.
    #[test]
    fn sweep_chain_cpu_counts_a_hand_checked_key() {
        // Events: a a a b a a b, at t = 0, 1, 2, 3, 20, 21, 40 (the last too late for t = 20).
        let bits = [1u32, 1, 1, 2, 1, 1, 2];
        let times = [0u32, 1, 2, 3, 20, 21, 40];
        let masks: Vec<u32> = bits.iter().flat_map(|&b| [b, 0]).collect();
        let ts: Vec<u32> = times.iter().flat_map(|&t| [t, 0]).collect();
        let target = [0, 0, 1, 0, 0, 2, 0];
        let tape = ChainTape {
            key_offsets: &[0, 7],
            masks: &masks,
            ts: &ts,
            target: &target,
            instances: 2,
        };
        let mut v = ChainVariant {
            len: 3,
            keep: 0,
            has_within: 1,
            within_lo: 10,
            ..ChainVariant::default()
        };
        for (s, c) in [0, 0, 1].into_iter().enumerate() {
            v.set_cond(s, c);
        }
        let no_within = ChainVariant { has_within: 0, ..v };
        let got = chain_cpu(&tape, &[v, no_within]);
        // [1, 2, 3] matches (target 1); [4, 5, 6] spans 20 ns > 10 with within.
        assert_eq!(
            got[0],
            Counts {
                signals: 1,
                true_positives: 1,
                instances_found: 1
            }
        );
        assert_eq!(
            got[1],
            Counts {
                signals: 2,
                true_positives: 2,
                instances_found: 2
            }
        );
    }

    /// Tumbling 2 units, threshold 2, on one group: windows [0,2) has 2, [2,4) has 1, [4,6) 3.
    #[test]
    fn sweep_window_cpu_counts_a_hand_checked_group() {
        let units = [0u32, 1, 3, 4, 4, 5];
        let masks: Vec<u32> = units.iter().flat_map(|_| [1u32, 0]).collect();
        let target = [0, 1, 2, 0, 0, 0];
        let tape = WindowTape {
            key_offsets: &[0, 6],
            masks: &masks,
            units: &units,
            target: &target,
            instances: 2,
        };
        let tumbling = WindowVariant {
            cond: ALWAYS,
            slide: 2,
            offset: 0,
            per_event: 1,
            threshold: 2,
            pad: [0; 3],
        };
        // Sliding 4 every 2: windows ending 2, 4, 6, 8 hold 2, 3, 4, 3 events.
        let sliding = WindowVariant {
            per_event: 2,
            threshold: 4,
            ..tumbling
        };
        let got = window_cpu(&tape, &[tumbling, sliding]);
        assert_eq!(
            got[0],
            Counts {
                signals: 2,
                true_positives: 1,
                instances_found: 1
            }
        );
        assert_eq!(
            got[1],
            Counts {
                signals: 1,
                true_positives: 1,
                instances_found: 1
            }
        );
        if let Some(ctx) = crate::test_support::context_or_skip("sweep window gpu hand-checked") {
            assert_eq!(
                window_gpu(ctx, &tape, &[tumbling, sliding]).expect("runs"),
                got
            );
            let chain = ChainVariant {
                len: 2,
                keep: u32::MAX,
                ..ChainVariant::default()
            };
            let ctape = ChainTape {
                key_offsets: tape.key_offsets,
                masks: &masks,
                ts: &[0; 12],
                target: &target,
                instances: 2,
            };
            assert_eq!(
                chain_gpu(ctx, &ctape, &[chain]).expect("runs"),
                chain_cpu(&ctape, &[chain])
            );
        }
    }
}
