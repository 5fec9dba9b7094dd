//! DECIMAL `+`, `-` and `*` without an overflow check a value, where the
//! operands' largest magnitudes show that no result can overflow.
//!
//! arrow's kernels check every value: an i128 `checked_mul` is a call to
//! compiler-rt's `__muloti4`, and the checks keep the loop from being
//! tight. In TPC-H Q1 (`l_extendedprice * (1 - l_discount) * (1 + l_tax)`
//! and the like, over SF1's 6M rows) the decimal `-` and `*` kernels were
//! about 30% of the query's CPU time. Here one pass finds each array's
//! largest magnitude; if the result of those bounds fits in an i128, every
//! value's does, and the values are computed with wrapping operations that
//! then never wrap. Otherwise arrow's checked kernels run, and report the
//! overflow as before.
//!
//! The result (values, nulls, precision and scale) is the one arrow's
//! kernels give: the same Hive rules for the result type, the same exact
//! arithmetic.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Datum, PrimitiveArray};
use arrow::compute::kernels::arity::{binary, unary};
use arrow::datatypes::{DataType, Decimal128Type, DECIMAL128_MAX_PRECISION, DECIMAL128_MAX_SCALE};
use arrow::error::ArrowError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecimalOp {
    Add,
    Sub,
    Mul,
}

/// `l op r` for two Decimal128 operands (at least one an array) that
/// cannot overflow; `None` where that is not shown or the operands are
/// something else, for arrow's kernels to do.
pub fn unchecked(
    op: DecimalOp,
    l: &dyn Datum,
    r: &dyn Datum,
) -> Result<Option<ArrayRef>, ArrowError> {
    let ((la, l_scalar), (ra, r_scalar)) = (l.get(), r.get());
    let (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) =
        (la.data_type(), ra.data_type())
    else {
        return Ok(None);
    };
    // Two scalars are one value: not worth a fast path. A NULL scalar
    // makes every row NULL, which arrow's kernels do.
    let null_scalar = |a: &dyn Array, scalar: bool| scalar && a.is_null(0);
    if (l_scalar && r_scalar) || null_scalar(la, l_scalar) || null_scalar(ra, r_scalar) {
        return Ok(None);
    }
    let (l, r) = (
        la.as_primitive::<Decimal128Type>(),
        ra.as_primitive::<Decimal128Type>(),
    );
    let (bound_l, bound_r) = (magnitude(l), magnitude(r));
    let (precision, scale, l_mul, r_mul) = match op {
        DecimalOp::Add | DecimalOp::Sub => {
            let (s1, s2) = (*s1 as i16, *s2 as i16);
            let scale = s1.max(s2);
            let precision = (scale + (*p1 as i16 - s1).max(*p2 as i16 - s2) + 1)
                .min(DECIMAL128_MAX_PRECISION as i16) as u8;
            let (Some(l_mul), Some(r_mul)) = (power_of_ten(scale - s1), power_of_ten(scale - s2))
            else {
                return Ok(None);
            };
            let fits = bound_l
                .checked_mul(l_mul)
                .zip(bound_r.checked_mul(r_mul))
                .and_then(|(a, b)| a.checked_add(b))
                .is_some_and(|m| m <= i128::MAX as u128);
            if !fits {
                return Ok(None);
            }
            (precision, scale as i8, l_mul as i128, r_mul as i128)
        }
        DecimalOp::Mul => {
            let precision = p1.saturating_add(p2 + 1).min(DECIMAL128_MAX_PRECISION);
            let scale = *s1 as i16 + *s2 as i16;
            // Out of range scales are arrow's error to give.
            let Ok(scale) = i8::try_from(scale) else {
                return Ok(None);
            };
            let fits = bound_l
                .checked_mul(bound_r)
                .is_some_and(|m| m <= i128::MAX as u128);
            if scale > DECIMAL128_MAX_SCALE || !fits {
                return Ok(None);
            }
            (precision, scale, 1, 1)
        }
    };
    let f = move |a: i128, b: i128| match op {
        DecimalOp::Add => a.wrapping_mul(l_mul).wrapping_add(b.wrapping_mul(r_mul)),
        DecimalOp::Sub => a.wrapping_mul(l_mul).wrapping_sub(b.wrapping_mul(r_mul)),
        DecimalOp::Mul => a.wrapping_mul(b),
    };
    let out: PrimitiveArray<Decimal128Type> = if l_scalar {
        let a = l.value(0);
        unary(r, |b| f(a, b))
    } else if r_scalar {
        let b = r.value(0);
        unary(l, |a| f(a, b))
    } else {
        binary(l, r, f)?
    };
    Ok(Some(Arc::new(
        out.with_precision_and_scale(precision, scale)?,
    )))
}

/// A bound on the magnitude of every value of `a`, NULL slots included
/// (whose values are unspecified, so the bound may be larger than needed).
///
/// Not the exact largest magnitude: the bits of every value's, ORed (`!v`
/// is `-v - 1` for a negative `v`), plus one. That is at most twice the
/// largest, and a bitwise fold is a fraction of the time of a fold of
/// 128-bit maxima (Q1's bounds took 6% of its CPU time that way).
fn magnitude(a: &PrimitiveArray<Decimal128Type>) -> u128 {
    // Over the values' 64-bit halves (little-endian: low, then high), which
    // the compiler vectorizes; as i128s it did not (Q1: 5.0% of the CPU
    // time, 3.8% so). arrow aligns an i128 buffer for i128, so for u64 too;
    // were it not, or on a big-endian machine, the i128 fold does.
    let buffer = a.values().inner();
    if cfg!(target_endian = "big") || buffer.as_ptr().align_offset(std::mem::align_of::<u64>()) != 0
    {
        let bits = a
            .values()
            .iter()
            .fold(0u128, |bits, &v| bits | (v ^ (v >> 127)) as u128);
        return bits.saturating_add(1);
    }
    let words: &[u64] = buffer.typed_data();
    let (low, high) = words.chunks_exact(2).fold((0u64, 0u64), |(low, high), v| {
        let sign = ((v[1] as i64) >> 63) as u64;
        (low | (v[0] ^ sign), high | (v[1] ^ sign))
    });
    (((high as u128) << 64) | low as u128).saturating_add(1)
}

fn power_of_ten(exponent: i16) -> Option<u128> {
    10u128.checked_pow(u32::try_from(exponent).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Decimal128Array, Scalar};
    use arrow::compute::kernels::numeric;

    fn decimals(values: &[Option<i128>], precision: u8, scale: i8) -> Decimal128Array {
        Decimal128Array::from(values.to_vec())
            .with_precision_and_scale(precision, scale)
            .unwrap()
    }

    fn arrow_op(op: DecimalOp, l: &dyn Datum, r: &dyn Datum) -> Result<ArrayRef, ArrowError> {
        match op {
            DecimalOp::Add => numeric::add(l, r),
            DecimalOp::Sub => numeric::sub(l, r),
            DecimalOp::Mul => numeric::mul(l, r),
        }
    }

    /// Where the fast path is taken it agrees with arrow's kernels (the
    /// same values, nulls and type), whichever side is a scalar. Returns
    /// how many of the three pairings took it.
    fn assert_same(op: DecimalOp, l: &Decimal128Array, r: &Decimal128Array) -> usize {
        let scalar_l = Scalar::new(l.slice(0, 1));
        let scalar_r = Scalar::new(r.slice(0, 1));
        let pairs: [(&dyn Datum, &dyn Datum); 3] = [(l, r), (&scalar_l, r), (l, &scalar_r)];
        let mut fast = 0;
        for (a, b) in pairs {
            let expected = arrow_op(op, a, b).unwrap();
            if let Some(got) = unchecked(op, a, b).unwrap() {
                fast += 1;
                assert_eq!(got.data_type(), expected.data_type(), "{op:?}");
                assert_eq!(got.nulls(), expected.nulls(), "{op:?}");
                let (got, expected) = (
                    got.as_primitive::<Decimal128Type>(),
                    expected.as_primitive::<Decimal128Type>(),
                );
                for i in 0..got.len() {
                    if got.is_valid(i) {
                        assert_eq!(got.value(i), expected.value(i), "{op:?} row {i}");
                    }
                }
            }
        }
        fast
    }

    #[test]
    fn results_are_arrows_for_every_op_scale_and_side() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (p1, s1, p2, s2) in [
            (15, 2, 15, 2),
            (15, 2, 1, 0),
            (12, 0, 18, 6),
            (38, 10, 5, 2),
        ] {
            let mut values = |p: u8| -> Vec<Option<i128>> {
                let max = 10i128.pow(u32::from(p).min(18));
                (0..200)
                    .map(|i| {
                        let v = (next() as i128).rem_euclid(2 * max) - max;
                        (i % 11 != 3).then_some(v)
                    })
                    .collect()
            };
            let l = decimals(&values(p1), p1, s1);
            let r = decimals(&values(p2), p2, s2);
            for op in [DecimalOp::Add, DecimalOp::Sub, DecimalOp::Mul] {
                assert_eq!(
                    assert_same(op, &l, &r),
                    3,
                    "{op:?} of ({p1},{s1}) and ({p2},{s2}) did not always take the fast path"
                );
            }
        }
    }

    #[test]
    fn a_product_that_could_overflow_is_left_to_arrow_which_reports_it() {
        let big = decimals(&[Some(i128::MAX / 2), Some(2)], 38, 0);
        let three = decimals(&[Some(3), Some(4)], 38, 0);
        assert!(unchecked(DecimalOp::Mul, &big, &three).unwrap().is_none());
        assert!(numeric::mul(&big, &three).is_err());
        // Only the bounds decide: the same values without the large one
        // take the fast path.
        let small = decimals(&[Some(5), Some(2)], 38, 0);
        assert!(unchecked(DecimalOp::Mul, &small, &three).unwrap().is_some());
        let large = decimals(&[Some(1 << 100), Some(-(1 << 100))], 38, 0);
        assert!(unchecked(DecimalOp::Sub, &large, &large).unwrap().is_some());
        let edge = decimals(&[Some(i128::MAX / 2 + 1), Some(0)], 38, 0);
        assert!(unchecked(DecimalOp::Add, &edge, &edge).unwrap().is_none());
        assert!(numeric::add(&edge, &edge).is_err());
    }

    #[test]
    fn null_scalars_and_other_types_are_left_to_arrow() {
        let l = decimals(&[Some(1), None], 10, 2);
        let null = Scalar::new(decimals(&[None], 10, 2));
        assert!(unchecked(DecimalOp::Add, &l, &null).unwrap().is_none());
        let ints = arrow::array::Int64Array::from(vec![1, 2]);
        assert!(unchecked(DecimalOp::Add, &ints, &ints).unwrap().is_none());
    }
}
