//! Rounding of values to Tile IR dtypes, as the hardware does it.
//!
//! The interpreter holds every element as an `f64` that is exactly representable in its dtype.
//! Arithmetic results are rounded with [`round`] (round to nearest, ties to even; fp8 saturates to
//! its largest finite value, as `cvt.rn.satfinite` does). [`convert`] is the `convert` op.

use crate::types::ScalarType;

/// Rounds an arithmetic result to `dtype`.
///
/// Floats: round to nearest even (f32 and f16/bf16 overflow to infinity; fp8 saturates, NaN stays
/// NaN). Integers: the result of integer arithmetic wraps around (two's complement), as hardware
/// integer units do; a value with a fraction (a host value, a `fill` or `mask` attribute) first
/// rounds to nearest even, NaN becomes 0 and ±infinity saturates to the dtype's range. Bool: nonzero is true.
pub fn round(dtype: ScalarType, x: f64) -> f64 {
    match dtype {
        ScalarType::F32 => f64::from(x as f32),
        ScalarType::F16 => round_float(x, F16_FORMAT),
        ScalarType::BF16 => round_float(x, BF16_FORMAT),
        ScalarType::F8E4M3 => round_float(x, E4M3_FORMAT),
        ScalarType::F8E5M2 => round_float(x, E5M2_FORMAT),
        ScalarType::I8 | ScalarType::I32 | ScalarType::U32 | ScalarType::I64 if x.is_infinite() => {
            let (lo, hi) = int_range(dtype);
            x.clamp(lo, hi)
        }
        ScalarType::I8 => f64::from(wrap_int(x) as i8),
        ScalarType::I32 => f64::from(wrap_int(x) as i32),
        ScalarType::U32 => f64::from(wrap_int(x) as u32),
        ScalarType::I64 => wrap_int(x) as f64,
        ScalarType::Bool => {
            if x != 0.0 {
                1.0
            } else {
                0.0
            }
        }
    }
}

fn wrap_int(x: f64) -> i64 {
    if x.is_nan() {
        0
    } else {
        // `as` saturates at the i64 range; values of our integer ops stay well inside it.
        // A value with a fraction (a host value, a `fill` or `mask` attribute) rounds to
        // nearest even first.
        round_half_even(x) as i64
    }
}

/// The `convert` op: a value of dtype `from` to dtype `to`.
///
/// Float → float: round to nearest even (fp8 saturating). Float → int: truncate toward zero and
/// saturate to the int range; NaN → 0. Int → float: round to nearest even. Int → int: saturate
/// to the destination's range (as the crate docs' table says: "ints saturate").
/// Anything → bool: nonzero is true. Bool → number: 0 or 1.
pub fn convert(from: ScalarType, to: ScalarType, x: f64) -> f64 {
    if from.is_int() && to.is_int() {
        let (lo, hi) = int_range(to);
        return x.clamp(lo, hi);
    }
    if from.is_float() && to.is_int() {
        if x.is_nan() {
            return 0.0;
        }
        let t = x.trunc();
        let (lo, hi) = int_range(to);
        return t.clamp(lo, hi);
    }
    round(to, x)
}

/// The smallest and largest value of an integer dtype, as f64.
pub fn int_range(dtype: ScalarType) -> (f64, f64) {
    match dtype {
        ScalarType::I8 => (f64::from(i8::MIN), f64::from(i8::MAX)),
        ScalarType::I32 => (f64::from(i32::MIN), f64::from(i32::MAX)),
        ScalarType::U32 => (0.0, f64::from(u32::MAX)),
        ScalarType::I64 => (i64::MIN as f64, i64::MAX as f64),
        ScalarType::Bool => (0.0, 1.0),
        _ => (f64::NEG_INFINITY, f64::INFINITY),
    }
}

/// A binary floating-point format narrower than f64.
#[derive(Clone, Copy, Debug)]
struct Format {
    mantissa_bits: i32,
    /// Exponent of the smallest normal number.
    min_exp: i32,
    max_finite: f64,
    /// Whether overflow saturates to `max_finite` (fp8, `.satfinite`) or goes to infinity.
    saturate: bool,
}

const BF16_FORMAT: Format = Format {
    mantissa_bits: 7,
    min_exp: -126,
    max_finite: 3.389_531_389_251_535_5e38,
    saturate: false,
};

const F16_FORMAT: Format = Format {
    mantissa_bits: 10,
    min_exp: -14,
    max_finite: 65504.0,
    saturate: false,
};

const E4M3_FORMAT: Format = Format {
    mantissa_bits: 3,
    min_exp: -6,
    max_finite: 448.0,
    saturate: true,
};

const E5M2_FORMAT: Format = Format {
    mantissa_bits: 2,
    min_exp: -14,
    max_finite: 57344.0,
    saturate: true,
};

/// Rounds `x` to the format, to nearest with ties to even, directly from f64 (no intermediate
/// f32 rounding, which would round twice).
fn round_float(x: f64, f: Format) -> f64 {
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() {
        return if f.saturate {
            f.max_finite.copysign(x)
        } else {
            x
        };
    }
    if x == 0.0 {
        return x;
    }
    let a = x.abs();
    // Spacing of representable numbers around `a`: 2^(e - mantissa_bits), where e is the
    // exponent of `a`, but never below the subnormal spacing 2^(min_exp - mantissa_bits).
    let e = exponent(a).max(f.min_exp);
    let ulp = (2.0f64).powi(e - f.mantissa_bits);
    let q = a / ulp; // exact: dividing by a power of two
    let r = round_half_even(q) * ulp;
    let r = if r > f.max_finite {
        if f.saturate {
            f.max_finite
        } else {
            f64::INFINITY
        }
    } else {
        r
    };
    r.copysign(x)
}

/// The binary exponent of a positive finite f64 (floor(log2(a))), read from its bits.
fn exponent(a: f64) -> i32 {
    let biased = ((a.to_bits() >> 52) & 0x7ff) as i32;
    if biased == 0 {
        // Subnormal f64: far below every narrower format's smallest normal.
        -1023
    } else {
        biased - 1023
    }
}

fn round_half_even(q: f64) -> f64 {
    let fl = q.floor();
    let diff = q - fl;
    let up = diff > 0.5 || (diff == 0.5 && fl % 2.0 != 0.0);
    if up {
        fl + 1.0
    } else {
        fl
    }
}

/// Encodes a value (already representable) as an fp8 byte.
pub fn fp8_to_bits(dtype: ScalarType, x: f64) -> u8 {
    let f = match dtype {
        ScalarType::F8E4M3 => E4M3_FORMAT,
        _ => E5M2_FORMAT,
    };
    let x = round_float(x, f);
    let exp_bits = if f.mantissa_bits == 3 { 4 } else { 5 };
    let bias = (1 << (exp_bits - 1)) - 1;
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    if x.is_nan() {
        return 0x7f; // E4M3: S.1111.111; E5M2: S.11111.11 (both 0x7f)
    }
    let a = x.abs();
    if a == 0.0 {
        return sign;
    }
    let e = exponent(a);
    if e < f.min_exp {
        let m = (a / (2.0f64).powi(f.min_exp - f.mantissa_bits)) as u8;
        return sign | m;
    }
    let m = ((a / (2.0f64).powi(e) - 1.0) * f64::from(1u32 << f.mantissa_bits)) as u8;
    sign | (((e + bias) as u8) << f.mantissa_bits) | m
}

/// Decodes an fp8 byte.
pub fn fp8_from_bits(dtype: ScalarType, b: u8) -> f64 {
    let (mb, eb) = match dtype {
        ScalarType::F8E4M3 => (3, 4),
        _ => (2, 5),
    };
    let bias = (1 << (eb - 1)) - 1;
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = i32::from((b >> mb) & ((1 << eb) - 1));
    let m = f64::from(b & ((1 << mb) - 1));
    let scale = f64::from(1u32 << mb);
    if dtype == ScalarType::F8E4M3 && e == 15 && m == 7.0 {
        return f64::NAN;
    }
    if dtype == ScalarType::F8E5M2 && e == 31 {
        return if m == 0.0 {
            sign * f64::INFINITY
        } else {
            f64::NAN
        };
    }
    if e == 0 {
        sign * m / scale * (2.0f64).powi(1 - bias)
    } else {
        sign * (1.0 + m / scale) * (2.0f64).powi(e - bias)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ScalarType::*;

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0).
        assert_eq!(round(BF16, 1.0 + 2f64.powi(-8)), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even).
        assert_eq!(round(BF16, 1.0 + 3.0 * 2f64.powi(-8)), 1.0 + 2f64.powi(-6));
        // Just above the halfway point rounds up. Going through f32 first would lose the tiny bit.
        assert_eq!(
            round(BF16, 1.0 + 2f64.powi(-8) + 2f64.powi(-40)),
            1.0 + 2f64.powi(-7)
        );
    }

    #[test]
    fn bf16_and_f16_agree_with_the_half_crate_on_f32_inputs() {
        // For values that are already f32, rounding f32 -> 16 bits is a single rounding, so the
        // `half` crate's conversion is an independent reference.
        let mut x: u32 = 0x1234_5678;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let v = f32::from_bits(x);
            if !v.is_finite() {
                continue;
            }
            let v64 = f64::from(v);
            assert_eq!(
                round(BF16, v64),
                half::bf16::from_f32(v).to_f64(),
                "bf16 of {v:e}"
            );
            assert_eq!(
                round(F16, v64),
                half::f16::from_f32(v).to_f64(),
                "f16 of {v:e}"
            );
        }
        assert_eq!(round(BF16, 3.5e38), f64::INFINITY);
        assert_eq!(round(F16, 65519.0), 65504.0);
        assert_eq!(round(F16, 65520.0), f64::INFINITY);
    }

    #[test]
    fn f16_overflows_to_infinity_and_f32_rounds() {
        assert_eq!(round(F16, 70000.0), f64::INFINITY);
        assert_eq!(round(F16, 1.0 + 2f64.powi(-11)), 1.0);
        assert_eq!(round(F32, 0.1), f64::from(0.1f32));
    }

    #[test]
    fn e4m3_saturates_and_keeps_subnormals() {
        assert_eq!(round(F8E4M3, 1000.0), 448.0);
        assert_eq!(round(F8E4M3, -1e9), -448.0);
        assert_eq!(round(F8E4M3, f64::INFINITY), 448.0);
        assert!(round(F8E4M3, f64::NAN).is_nan());
        // Smallest subnormal is 2^-9; half of it ties to even (0).
        assert_eq!(round(F8E4M3, 2f64.powi(-9)), 2f64.powi(-9));
        assert_eq!(round(F8E4M3, 2f64.powi(-10)), 0.0);
        assert_eq!(round(F8E4M3, 1.5 * 2f64.powi(-9)), 2.0 * 2f64.powi(-9));
        // Between 1 and 2 the spacing is 1/8: 1.0625 is a tie and goes to the even 1.0.
        assert_eq!(round(F8E4M3, 1.0625), 1.0);
        assert_eq!(round(F8E4M3, 1.1875), 1.25);
    }

    #[test]
    fn e5m2_saturates() {
        assert_eq!(round(F8E5M2, 60000.0), 57344.0);
        assert_eq!(round(F8E5M2, 3.0), 3.0);
        assert_eq!(round(F8E5M2, 2.6), 2.5);
        assert_eq!(round(F8E5M2, 2f64.powi(-16)), 2f64.powi(-16));
    }

    #[test]
    fn fp8_bits_round_trip_every_byte() {
        for dt in [F8E4M3, F8E5M2] {
            for b in 0..=255u8 {
                let x = fp8_from_bits(dt, b);
                if x.is_nan() || x.is_infinite() {
                    continue;
                }
                assert_eq!(
                    round(dt, x),
                    x,
                    "{dt} byte {b:#04x} = {x} is not fixed by rounding"
                );
                let back = fp8_to_bits(dt, x);
                // +0/-0 both decode to zero with their sign; everything else is a bijection.
                assert_eq!(fp8_from_bits(dt, back), x, "{dt} byte {b:#04x}");
            }
        }
        assert_eq!(fp8_from_bits(F8E4M3, 0x7e), 448.0);
        assert_eq!(fp8_from_bits(F8E5M2, 0x7b), 57344.0);
    }

    #[test]
    fn float_to_int_truncates_and_saturates() {
        assert_eq!(convert(F32, I32, -2.7), -2.0);
        assert_eq!(convert(F32, I32, 3e10), f64::from(i32::MAX));
        assert_eq!(convert(F32, I8, -300.0), -128.0);
        assert_eq!(convert(F32, U32, -5.0), 0.0);
        assert_eq!(convert(F32, I32, f64::NAN), 0.0);
        assert_eq!(convert(I32, F32, 16_777_217.0), 16_777_216.0);
    }

    #[test]
    fn int_to_int_saturates() {
        assert_eq!(convert(I32, I8, 300.0), 127.0);
        assert_eq!(convert(I32, I8, -300.0), -128.0);
        assert_eq!(convert(I32, U32, -5.0), 0.0);
        assert_eq!(convert(U32, I32, 4294967295.0), f64::from(i32::MAX));
        assert_eq!(convert(I8, I32, -7.0), -7.0);
        assert_eq!(round(I32, 2147483648.0), -2147483648.0);
    }

    #[test]
    fn int_rounding_of_fractions_is_nearest_even_and_infinities_saturate() {
        assert_eq!(round(I32, 1.5), 2.0);
        assert_eq!(round(I32, 2.5), 2.0);
        assert_eq!(round(I32, -1.5), -2.0);
        assert_eq!(round(I8, -0.4), 0.0);
        assert_eq!(round(I32, f64::NAN), 0.0);
        assert_eq!(round(I32, f64::NEG_INFINITY), f64::from(i32::MIN));
        assert_eq!(round(I8, f64::INFINITY), 127.0);
        assert_eq!(round(U32, f64::NEG_INFINITY), 0.0);
    }
}
