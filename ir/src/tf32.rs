//! TensorFloat-32: the operand format of tensor-core products of f32 tiles.
//!
//! An `mma` whose A and B are f32 tiles multiplies in tf32, as Triton's `tl.dot` does on f32
//! inputs by default and cuBLAS does in its TF32 math mode: each operand element is first rounded
//! to tf32 (the f32 format with 10 instead of 23 fraction bits: same sign, same 8-bit exponent,
//! so the same range and subnormals), then the products (exact: 11 × 11 significant bits fit
//! f32's 24) accumulate in f32. The rounding is PTX's `cvt.rna.tf32.f32` (PTX ISA, *cvt*:
//! `.rna` is "round to nearest, ties away from zero"), which the NVIDIA lowering emits before
//! each `mma.sync.aligned.m16n8k8…tf32` and which [`round_tf32`] computes for the interpreter,
//! so the CPU and the GPU round the same inputs to the same values.
//!
//! The relative error of one rounded operand is at most 2^-11 (half a unit in the 11th
//! significant bit), so one product `ã·b̃` is within `(2·2^-11 + 2^-22)·|a·b|` of `a·b`.

/// `x` rounded to tf32 as `cvt.rna.tf32.f32` does: to the nearest value with 10 fraction bits,
/// ties away from zero; the result is an f32 whose low 13 bits are zero. Infinities stay;
/// finite values past the largest tf32 (`(2 − 2^-10)·2^127`) by half a unit or more become
/// infinities of their sign; a NaN stays a NaN (quiet, same sign).
pub fn round_tf32(x: f32) -> f32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return f32::from_bits((bits | 0x7fc0_0000) & !0x1fff);
    }
    if x.is_infinite() {
        return x;
    }
    // Sign-magnitude: adding half of the dropped unit to the magnitude and truncating rounds
    // the magnitude to nearest with ties away from zero; a carry out of the fraction bumps the
    // exponent, which is the correct next binade (or infinity past the largest finite value).
    let sign = bits & 0x8000_0000;
    let mag = bits & 0x7fff_ffff;
    let rounded = (mag + 0x1000) & !0x1fff;
    f32::from_bits(sign | rounded)
}

#[cfg(test)]
mod tests {
    use super::round_tf32;

    #[test]
    fn rounds_to_nearest_with_ties_away_from_zero() {
        let ulp = 2f32.powi(-10);
        // Exactly representable values stay.
        for x in [1.0f32, -1.5, 1.0 + ulp, 0.0, -0.0, 3.0 * 2f32.powi(-130)] {
            assert_eq!(round_tf32(x).to_bits(), x.to_bits(), "{x:e}");
        }
        // A tie goes away from zero (to the odd neighbour here, where ties-to-even would not).
        assert_eq!(round_tf32(1.0 + ulp / 2.0), 1.0 + ulp);
        assert_eq!(round_tf32(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
        assert_eq!(round_tf32(1.0 + 2.5 * ulp), 1.0 + 3.0 * ulp);
        // Just below a tie rounds down; just above rounds up.
        let below = f32::from_bits((1.0f32 + ulp / 2.0).to_bits() - 1);
        assert_eq!(round_tf32(below), 1.0);
        // A carry into the exponent.
        assert_eq!(round_tf32(2.0 - ulp / 4.0), 2.0);
        // Past the largest tf32 by half a unit: infinity.
        assert_eq!(round_tf32(f32::MAX), f32::INFINITY);
        assert_eq!(round_tf32(-f32::MAX), f32::NEG_INFINITY);
        assert!(round_tf32(f32::NAN).is_nan());
        assert!(round_tf32(-f32::NAN).is_nan());
        assert_eq!(round_tf32(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn the_error_is_at_most_half_a_unit_of_the_eleventh_bit() {
        let mut s = 0x1234_5678u32;
        for _ in 0..10_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let x = f32::from_bits(s & 0x3fff_ffff | (s & 0x8000_0000));
            if !x.is_normal() {
                continue;
            }
            let r = round_tf32(x);
            assert_eq!(r.to_bits() & 0x1fff, 0);
            let rel = ((f64::from(r) - f64::from(x)) / f64::from(x)).abs();
            assert!(rel <= 2f64.powi(-11), "{x:e} -> {r:e}");
        }
    }
}
