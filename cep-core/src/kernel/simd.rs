//! AVX2 and AVX-512 kernels (x86_64). The only `unsafe` code of the predicate kernels.
//!
//! Input: a column (`u64` raw slots, or the `u16` type ids) and a test. Output: the test's bitmask
//! words, for the kernel set to combine. Every kernel fills whole 64-row words with vector code
//! and hands the rows past the last full word to the scalar kernels, so results are identical for
//! any length. The kernels are reached only through [`Avx2`] and [`Avx512`], tokens that exist
//! only once the instruction set has been detected on this CPU.

#![deny(unsafe_op_in_unsafe_fn)]

use std::arch::x86_64::*;

use super::scalar;
use super::{FloatTest, IntTest};
use crate::expr::CmpOp;
use crate::schema::TypeId;

/// Proof that the CPU supports AVX2: only [`Avx2::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    /// A token if this CPU has AVX2.
    pub(crate) fn detect() -> Option<Self> {
        is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    /// [`IntTest`] over `col` into `out` (`out.len() >= col.len().div_ceil(64)`).
    pub(crate) fn int(self, col: &[u64], t: &IntTest, out: &mut [u64]) {
        let full = col.len() / 64;
        let (head, tail) = col.split_at(full * 64);
        // SAFETY: an `Avx2` token exists only after `is_x86_feature_detected!("avx2")`.
        unsafe { int_words(head, t, out) };
        if let Some(rest) = out.get_mut(full..) {
            scalar::column(tail, |x| t.test(x), rest);
        }
    }

    /// [`FloatTest`] over `col` into `out`.
    pub(crate) fn float(self, col: &[u64], t: &FloatTest, out: &mut [u64]) {
        let full = col.len() / 64;
        let (head, tail) = col.split_at(full * 64);
        // SAFETY: an `Avx2` token exists only after `is_x86_feature_detected!("avx2")`.
        unsafe {
            match t.op {
                CmpOp::Eq => float_words::<_CMP_EQ_OQ>(head, t.c, out),
                CmpOp::Ne => float_words::<_CMP_NEQ_OQ>(head, t.c, out),
                CmpOp::Lt => float_words::<_CMP_LT_OQ>(head, t.c, out),
                CmpOp::Le => float_words::<_CMP_LE_OQ>(head, t.c, out),
                CmpOp::Gt => float_words::<_CMP_GT_OQ>(head, t.c, out),
                CmpOp::Ge => float_words::<_CMP_GE_OQ>(head, t.c, out),
            }
        };
        if let Some(rest) = out.get_mut(full..) {
            scalar::column(tail, |x| t.test(x), rest);
        }
    }

    /// Rows of `ids` whose type is in `types`, into `out`.
    pub(crate) fn types(self, ids: &[TypeId], types: &[TypeId], out: &mut [u64]) {
        let full = ids.len() / 64;
        let (head, tail) = ids.split_at(full * 64);
        // SAFETY: an `Avx2` token exists only after `is_x86_feature_detected!("avx2")`.
        unsafe { type_words(head, types, out) };
        if let Some(rest) = out.get_mut(full..) {
            scalar::types(tail, types, rest);
        }
    }
}

/// Loads 4 `u64` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn load4(x: &[u64; 4]) -> __m256i {
    // SAFETY: `x` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
}

/// Loads 16 `u16` lanes.
#[inline]
#[target_feature(enable = "avx2")]
fn load16(x: &[u16; 16]) -> __m256i {
    // SAFETY: `x` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(x.as_ptr().cast()) }
}

/// Full words only: `col.len()` is a multiple of 64 and `out` has a word per 64 rows.
#[target_feature(enable = "avx2")]
fn int_words(col: &[u64], t: &IntTest, out: &mut [u64]) {
    let mask = _mm256_set1_epi64x(t.mask as i64);
    let flip = _mm256_set1_epi64x(t.flip as i64);
    let lo = _mm256_set1_epi64x(t.lo);
    let hi = _mm256_set1_epi64x(t.hi);
    let invert = if t.inside { u64::MAX } else { 0 };
    for (word, o) in col.chunks_exact(64).zip(out.iter_mut()) {
        let mut outside = 0u64;
        for (k, lanes) in word.chunks_exact(4).enumerate() {
            let Ok(lanes) = <&[u64; 4]>::try_from(lanes) else {
                continue; // unreachable: chunks_exact(4) yields 4 elements
            };
            let x = _mm256_xor_si256(_mm256_and_si256(load4(lanes), mask), flip);
            let out_of = _mm256_or_si256(_mm256_cmpgt_epi64(lo, x), _mm256_cmpgt_epi64(x, hi));
            let bits = _mm256_movemask_pd(_mm256_castsi256_pd(out_of)) as u64;
            outside |= bits << (4 * k);
        }
        *o = outside ^ invert;
    }
}

/// Full words only; `IMM` is the ordered (NaN is false) comparison predicate.
#[target_feature(enable = "avx2")]
fn float_words<const IMM: i32>(col: &[u64], c: f64, out: &mut [u64]) {
    let c = _mm256_set1_pd(c);
    for (word, o) in col.chunks_exact(64).zip(out.iter_mut()) {
        let mut w = 0u64;
        for (k, lanes) in word.chunks_exact(4).enumerate() {
            let Ok(lanes) = <&[u64; 4]>::try_from(lanes) else {
                continue; // unreachable: chunks_exact(4) yields 4 elements
            };
            let x = _mm256_castsi256_pd(load4(lanes));
            let bits = _mm256_movemask_pd(_mm256_cmp_pd::<IMM>(x, c)) as u64;
            w |= bits << (4 * k);
        }
        *o = w;
    }
}

/// Full words only.
#[target_feature(enable = "avx2")]
fn type_words(ids: &[TypeId], types: &[TypeId], out: &mut [u64]) {
    for (word, o) in ids.chunks_exact(64).zip(out.iter_mut()) {
        let mut acc = [_mm256_setzero_si256(); 4];
        for (a, lanes) in acc.iter_mut().zip(word.chunks_exact(16)) {
            let Ok(lanes) = <&[u16; 16]>::try_from(lanes) else {
                continue; // unreachable: chunks_exact(16) yields 16 elements
            };
            let v = load16(lanes);
            for t in types {
                *a = _mm256_or_si256(*a, _mm256_cmpeq_epi16(v, _mm256_set1_epi16(*t as i16)));
            }
        }
        // Pack 16-bit lanes to bytes (per 128-bit half), restore row order, take one bit a row.
        let lo = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(acc[0], acc[1]));
        let hi = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi16(acc[2], acc[3]));
        let lo = _mm256_movemask_epi8(lo) as u32 as u64;
        let hi = _mm256_movemask_epi8(hi) as u32 as u64;
        *o = lo | (hi << 32);
    }
}

/// Proof that the CPU supports AVX-512 F and BW: only [`Avx512::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    /// A token if this CPU has AVX-512 F (64-bit lanes, mask registers) and BW (16-bit lanes,
    /// for the type ids).
    pub(crate) fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"))
            .then_some(Avx512(()))
    }

    /// [`IntTest`] over `col` into `out` (`out.len() >= col.len().div_ceil(64)`).
    pub(crate) fn int(self, col: &[u64], t: &IntTest, out: &mut [u64]) {
        let full = col.len() / 64;
        let (head, tail) = col.split_at(full * 64);
        // SAFETY: an `Avx512` token exists only after AVX-512 F and BW were detected.
        unsafe { int_words_512(head, t, out) };
        if let Some(rest) = out.get_mut(full..) {
            scalar::column(tail, |x| t.test(x), rest);
        }
    }

    /// [`FloatTest`] over `col` into `out`.
    pub(crate) fn float(self, col: &[u64], t: &FloatTest, out: &mut [u64]) {
        let full = col.len() / 64;
        let (head, tail) = col.split_at(full * 64);
        // SAFETY: an `Avx512` token exists only after AVX-512 F and BW were detected.
        unsafe {
            match t.op {
                CmpOp::Eq => float_words_512::<_CMP_EQ_OQ>(head, t.c, out),
                CmpOp::Ne => float_words_512::<_CMP_NEQ_OQ>(head, t.c, out),
                CmpOp::Lt => float_words_512::<_CMP_LT_OQ>(head, t.c, out),
                CmpOp::Le => float_words_512::<_CMP_LE_OQ>(head, t.c, out),
                CmpOp::Gt => float_words_512::<_CMP_GT_OQ>(head, t.c, out),
                CmpOp::Ge => float_words_512::<_CMP_GE_OQ>(head, t.c, out),
            }
        };
        if let Some(rest) = out.get_mut(full..) {
            scalar::column(tail, |x| t.test(x), rest);
        }
    }

    /// Rows of `ids` whose type is in `types`, into `out`.
    pub(crate) fn types(self, ids: &[TypeId], types: &[TypeId], out: &mut [u64]) {
        let full = ids.len() / 64;
        let (head, tail) = ids.split_at(full * 64);
        // SAFETY: an `Avx512` token exists only after AVX-512 F and BW were detected.
        unsafe { type_words_512(head, types, out) };
        if let Some(rest) = out.get_mut(full..) {
            scalar::types(tail, types, rest);
        }
    }
}

/// Loads 8 `u64` lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn load8(x: &[u64; 8]) -> __m512i {
    // SAFETY: `x` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_epi64(x.as_ptr().cast()) }
}

/// Loads 32 `u16` lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn load32(x: &[u16; 32]) -> __m512i {
    // SAFETY: `x` is 64 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm512_loadu_epi16(x.as_ptr().cast()) }
}

/// Full words only: `col.len()` is a multiple of 64 and `out` has a word per 64 rows. Each
/// 8-lane mask is stored as one byte of `out` (x86_64 is little-endian: byte k of a word holds
/// its rows 8k..8k+8), so no mask is moved through general registers.
#[target_feature(enable = "avx512f")]
fn int_words_512(col: &[u64], t: &IntTest, out: &mut [u64]) {
    let mask = _mm512_set1_epi64(t.mask as i64);
    let flip = _mm512_set1_epi64(t.flip as i64);
    let lo = _mm512_set1_epi64(t.lo);
    let hi = _mm512_set1_epi64(t.hi);
    let invert = if t.inside { 0 } else { u8::MAX };
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
    for (lanes, byte) in col.chunks_exact(8).zip(bytes.iter_mut()) {
        let Ok(lanes) = <&[u64; 8]>::try_from(lanes) else {
            continue; // unreachable: chunks_exact(8) yields 8 elements
        };
        let x = _mm512_xor_si512(_mm512_and_si512(load8(lanes), mask), flip);
        // lo <= x, then x <= hi only in the lanes that passed.
        *byte = _mm512_mask_cmple_epi64_mask(_mm512_cmple_epi64_mask(lo, x), x, hi) ^ invert;
    }
}

/// Full words only; `IMM` is the ordered (NaN is false) comparison predicate. Masks are stored
/// a byte at a time as in [`int_words_512`].
#[target_feature(enable = "avx512f")]
fn float_words_512<const IMM: i32>(col: &[u64], c: f64, out: &mut [u64]) {
    let c = _mm512_set1_pd(c);
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
    for (lanes, byte) in col.chunks_exact(8).zip(bytes.iter_mut()) {
        let Ok(lanes) = <&[u64; 8]>::try_from(lanes) else {
            continue; // unreachable: chunks_exact(8) yields 8 elements
        };
        *byte = _mm512_cmp_pd_mask::<IMM>(_mm512_castsi512_pd(load8(lanes)), c);
    }
}

/// Full words only.
#[target_feature(enable = "avx512f,avx512bw")]
fn type_words_512(ids: &[TypeId], types: &[TypeId], out: &mut [u64]) {
    // Each 32-lane mask is one little-endian half of a word, as in `int_words_512`.
    let halves: &mut [u32] = bytemuck::cast_slice_mut(out);
    for (lanes, half) in ids.chunks_exact(32).zip(halves.iter_mut()) {
        let Ok(lanes) = <&[u16; 32]>::try_from(lanes) else {
            continue; // unreachable: chunks_exact(32) yields 32 elements
        };
        let v = load32(lanes);
        let mut hits = 0u32;
        for t in types {
            hits |= _mm512_cmpeq_epi16_mask(v, _mm512_set1_epi16(*t as i16));
        }
        *half = hits;
    }
}
